"""The detection configuration: one frozen object, loaded once from a TOML file.

Example ``detect.toml`` (every key optional; unknown keys are errors)::

    [psf]
    fwhm = 3.2            # pixels; overrides the header
    beta = 4.765

    [background]
    mesh_size = 64

    [point]
    false_detections_per_mpix = 1.0

    [tiling]
    tile_size = 2048
    workers = 2
"""

from __future__ import annotations

import dataclasses
import os
import tomllib

from contracts.config import Config, check_choice, check_int, check_range
from contracts.errors import ConfigError
from contracts.vocabulary import SURVEY_EXPERTS
from moe_imaging.background import BackgroundConfig
from moe_imaging.experts.artifact import ArtifactExpertConfig
from moe_imaging.experts.extended import ExtendedExpertConfig
from moe_imaging.experts.learned import LearnedExpertConfig
from moe_imaging.experts.point import PointExpertConfig
from moe_imaging.experts.streak import StreakExpertConfig
from moe_imaging.psf import KOLMOGOROV_MOFFAT_BETA

__all__ = ["PSFConfig", "TilingConfig", "MicroscopyConfig", "DetectionConfig", "load_config"]


@dataclasses.dataclass(frozen=True)
class PSFConfig(Config):
    """How the PSF prior is chosen.

    Attributes
    ----------
    fwhm : float or None
        FWHM in pixels; when set it overrides the header.
    beta : float
        Moffat index for PSFs built from a FWHM (4.765 ~ Kolmogorov seeing),
        unless the header names a Moffat PSF with its own ``BETA``.
    estimate_min_snr : float
        Minimum S/N of stars used to estimate the PSF when the header has none.
    estimate_max_size : int
        Side of the central image region searched for PSF stars.
    vary : bool
        Let the PSF vary over the field: each tile uses the PSF estimated
        from its own stars (:func:`moe_imaging.psf.local_psf`), falling back
        to the global prior where it has too few.  The catalog then depends
        on the tiling (each tile has one PSF); keep ``tiling.tile_size`` the
        scale over which the PSF may change.
    vary_min_stars : int
        Fewest stars a tile needs for its own PSF.
    vary_max_ratio : float
        A tile's PSF FWHM must lie within this factor of the global one (the
        halo is sized for the largest allowed).
    measure : bool
        Detect with the PSF measured from the exposure's own stars (a
        free-beta Moffat, :func:`moe_imaging.psf_measure.measure_psf`) wherever
        there are enough of them; the header, PSF file or ``fwhm`` is then the
        starting guess and the fallback.  Off by default until the shipped gate
        is retrained on measured PSFs.  The PSF is measured (and recorded in the
        provenance, and used for ``spread_model`` and the gate's shift guard)
        either way.
    """

    fwhm: float | None = None
    beta: float = KOLMOGOROV_MOFFAT_BETA
    estimate_min_snr: float = 30.0
    estimate_max_size: int = 2048
    vary: bool = False
    vary_min_stars: int = 5
    vary_max_ratio: float = 1.5
    measure: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.measure, bool):
            raise ConfigError(f"psf.measure: expected true or false, got {self.measure!r}")
        if not isinstance(self.vary, bool):
            raise ConfigError(f"psf.vary: expected true or false, got {self.vary!r}")
        check_int("psf.vary_min_stars", self.vary_min_stars)
        check_range("psf.vary_min_stars", self.vary_min_stars, low=3, high=10000)
        check_range("psf.vary_max_ratio", self.vary_max_ratio, low=1.0, high=5.0)
        check_range("psf.fwhm", self.fwhm, low=0.3, high=200.0, allow_none=True)
        check_range("psf.beta", self.beta, low=1.01, high=100.0)
        check_range("psf.estimate_min_snr", self.estimate_min_snr, low=5.0)
        check_int("psf.estimate_max_size", self.estimate_max_size)
        check_range("psf.estimate_max_size", self.estimate_max_size, low=64)


@dataclasses.dataclass(frozen=True)
class TilingConfig(Config):
    """How the image is cut and scheduled.

    Attributes
    ----------
    tile_size : int or None
        Core side in pixels (``None``: one tile).  Results do not depend on it.
    workers : int or None
        Threads for the local Dask scheduler (``None``: all cores).
    scheduler : str
        ``"threads"`` (default; numpy/scipy release the GIL) or ``"sync"``.
    """

    tile_size: int | None = 2048
    workers: int | None = None
    scheduler: str = "threads"

    def __post_init__(self) -> None:
        check_int("tiling.tile_size", self.tile_size, allow_none=True)
        check_int("tiling.workers", self.workers, allow_none=True)
        check_range("tiling.tile_size", self.tile_size, low=64, allow_none=True)
        check_range("tiling.workers", self.workers, low=1, high=1024, allow_none=True)
        check_choice("tiling.scheduler", self.scheduler, ("threads", "sync"))


@dataclasses.dataclass(frozen=True)
class MicroscopyConfig(Config):
    """Microscopy mode: optics (when the file's metadata lacks them) and nuclei.

    Attributes
    ----------
    pixel_size_um : float or None
        Object-plane pixel size; overrides the OME metadata.  Required when
        the file has none (the nucleus scale depends on it).
    numerical_aperture : float
        Objective NA, used when the metadata has no ``LensNA``.
    wavelength_nm : float
        Emission wavelength, used when the metadata has none.
    nucleus_diameter_um : tuple of float
        Expected nucleus diameters (smallest, largest).
    threshold : float
        Foreground significance threshold of the nucleus expert.
    """

    pixel_size_um: float | None = None
    numerical_aperture: float = 0.75
    wavelength_nm: float = 520.0
    nucleus_diameter_um: tuple[float, float] = (8.0, 14.0)
    threshold: float = 5.0

    def __post_init__(self) -> None:
        check_range("microscopy.pixel_size_um", self.pixel_size_um, low=1e-3, high=1e3, allow_none=True)
        check_range("microscopy.numerical_aperture", self.numerical_aperture, low=0.01, high=1.6)
        check_range("microscopy.wavelength_nm", self.wavelength_nm, low=100.0, high=2000.0)
        if len(tuple(self.nucleus_diameter_um)) != 2:
            raise ConfigError("microscopy.nucleus_diameter_um: expected (smallest, largest)")
        check_range("microscopy.nucleus_diameter_um[0]", self.nucleus_diameter_um[0], low=0.1, high=1e4)
        check_range("microscopy.nucleus_diameter_um[1]", self.nucleus_diameter_um[1], low=self.nucleus_diameter_um[0], high=1e4)
        check_range("microscopy.threshold", self.threshold, low=1.0, high=100.0)


@dataclasses.dataclass(frozen=True)
class GateConfig(Config):
    """The gate and its certified triage (:mod:`moe_imaging.triage`).

    Attributes
    ----------
    enabled : bool
        Run the gate after fusion: every survey expert scores every
        detection, the gate gives calibrated class probabilities, and the
        triage decides automatically or routes to review.  In microscopy
        mode the nucleus triage (:mod:`moe_imaging.triage.microscopy`, the
        shipped ``nucleus_triage_v1.pt``) does the same for the nucleus
        expert's detections, with the same ``alpha``, ``delta`` and
        ``min_count``.
    weights : str or None
        Gate weights (default: the shipped ``gate_v1.pt``); survey mode only.
    nucleus_weights : str or None
        Nucleus triage weights (default: the shipped
        ``nucleus_triage_v1.pt``); microscopy mode only.  ``moe-imaging
        calibrate --model nucleus-triage --labels FILE`` writes one refitted
        with reviewers' labels.
    alpha : float
        Risk: the largest error rate allowed among automatic decisions.
    delta : float
        The guarantee holds with probability at least ``1 - delta``.
    min_count : int
        Strata with fewer calibration items are never decided automatically.
    shift_guard : bool
        Survey: check each exposure against the calibration domain before any
        of its decisions is certified (:mod:`moe_imaging.triage.guard`: the
        PSF measured from its stars, and bright stars called stars); an
        exposure that fails goes to review whole.
    """

    enabled: bool = False
    weights: str | None = None
    nucleus_weights: str | None = None
    alpha: float = 0.01
    delta: float = 0.05
    min_count: int = 50
    shift_guard: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.enabled, bool):
            raise ConfigError(f"gate.enabled: expected true or false, got {self.enabled!r}")
        if not isinstance(self.shift_guard, bool):
            raise ConfigError(f"gate.shift_guard: expected true or false, got {self.shift_guard!r}")
        if self.weights is not None and not isinstance(self.weights, str):
            raise ConfigError(f"gate.weights: expected a path, got {self.weights!r}")
        if self.nucleus_weights is not None and not isinstance(self.nucleus_weights, str):
            raise ConfigError(f"gate.nucleus_weights: expected a path, got {self.nucleus_weights!r}")
        check_range("gate.alpha", self.alpha, low=0.0, high=0.5, low_inclusive=False)
        check_range("gate.delta", self.delta, low=0.0, high=0.5, low_inclusive=False)
        check_int("gate.min_count", self.min_count)
        check_range("gate.min_count", self.min_count, low=1, high=10**9)


@dataclasses.dataclass(frozen=True)
class DetectionConfig(Config):
    """Everything ``detect_image`` needs, one section per stage.

    ``experts`` lists the survey experts to run (microscopy mode runs the
    nucleus expert).  With more than one, their candidates are fused into one
    row per object (:func:`moe_imaging.fusion.fuse`).
    """

    experts: tuple[str, ...] = ("point",)
    psf: PSFConfig = PSFConfig()
    background: BackgroundConfig = BackgroundConfig()
    point: PointExpertConfig = PointExpertConfig()
    extended: ExtendedExpertConfig = ExtendedExpertConfig()
    artifact: ArtifactExpertConfig = ArtifactExpertConfig()
    streak: StreakExpertConfig = StreakExpertConfig()
    learned: LearnedExpertConfig = LearnedExpertConfig()
    gate: GateConfig = GateConfig()
    tiling: TilingConfig = TilingConfig()
    microscopy: MicroscopyConfig = MicroscopyConfig()

    def __post_init__(self) -> None:
        known = SURVEY_EXPERTS
        names = tuple(self.experts)
        if not names or any(n not in known for n in names) or len(set(names)) != len(names):
            raise ConfigError(f"experts: survey experts are chosen from {list(known)}, got {list(names)}")

    def science_hash(self) -> str:
        """Hash of the options that can change the catalog (tiling excluded)."""
        return dataclasses.replace(self, tiling=TilingConfig()).config_hash()


def load_config(path: str | os.PathLike | None) -> DetectionConfig:
    """Read a TOML configuration file (``None``: the defaults)."""
    if path is None:
        return DetectionConfig()
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: configuration file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    try:
        return DetectionConfig.from_mapping(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None

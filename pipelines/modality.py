"""One strategy per modality: how a survey exposure or a microscopy image becomes detections.

:func:`pipelines.detect.detect_image` is the same for every image: open it,
prepare (background, PSF, experts), run the experts over the tiles, fuse,
triage, write the catalog.  What differs lives here, in one
:class:`Modality` per kind of image:

* :class:`Survey` (FITS): a global background; the PSF prior from a PSF image,
  the configuration, the header or the stars (:func:`choose_psf`); the
  configured survey experts (the learned one handed its network); with the gate,
  every survey expert scores every fused detection and the survey gate decides.
* :class:`Microscopy` (TIFF/OME-TIFF/Zarr): PSF and nucleus scale from the
  optics (:func:`microscopy_setup`); a two-pass background; the nucleus
  expert; with the gate, the nucleus triage decides.
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np
from astropy.table import Table

from contracts.errors import InputError, PSFError
from contracts.vocabulary import SURVEY_EXPERTS
from moe_imaging.background import BackgroundModel
from moe_imaging.experts import make_expert
from moe_imaging.experts.nucleus import (
    NucleusExpertConfig,
    microscopy_background_passes,
)
from moe_imaging.experts.streak import streak_prior_from_header
from moe_imaging.psf import KOLMOGOROV_MOFFAT_BETA, PSF, airy_psf, estimate_psf, moffat_psf, psf_from_image
from moe_imaging.psf_measure import PSFMeasurement, measure_psf, spread_model
from moe_imaging.triage import TriageContext, apply_triage
from moe_imaging.triage.guard import apply_guard, survey_shift_guard

from .config import DetectionConfig, MicroscopyConfig
from .execute import LocalPSF, SourceMasking, compute_background, score_tiles
from .io import Exposure, Optics, TiffExposure, open_exposure, open_tiff, read_psf_image
from .models import load_learned, open_triage
from .tiling import halo_for

__all__ = ["Setup", "Modality", "Survey", "Microscopy", "MODALITIES", "choose_psf", "make_configured_expert",
           "measure_exposure_psf", "microscopy_setup", "spread_columns"]


@dataclasses.dataclass(frozen=True, eq=False)
class Setup:
    """What a modality prepared for the tiles: the priors, the experts and the halo.

    Attributes
    ----------
    psf : PSF
        The PSF prior.
    background : BackgroundModel
        The global background model.
    experts : list
        The experts that propose candidates on every tile.
    threshold : float
        Detection threshold, sigma.
    halo : int
        Halo of every tile, pixels (from the PSF and the experts' footprints).
    scorers : list
        Survey with the gate: every survey expert, to score every fused detection.
    local : LocalPSF or None
        A PSF fitted per tile (``[psf] vary``).
    nucleus : NucleusExpertConfig or None
        Microscopy: the nucleus expert's configuration (the expected size).
    measured : PSFMeasurement or None
        Survey: the PSF fitted to the exposure's own stars (``None``: too few).
    prior_fwhm : float
        The FWHM of the prior (header, PSF file, configuration) before any measurement.
    extra : dict
        Provenance facts of the modality (e.g. the optics, the measured PSF).
    """

    psf: PSF
    background: BackgroundModel
    experts: list[Any]
    threshold: float
    halo: int
    scorers: list[Any] = dataclasses.field(default_factory=list)
    local: LocalPSF | None = None
    nucleus: NucleusExpertConfig | None = None
    measured: PSFMeasurement | None = None
    prior_fwhm: float = float("nan")
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)


class Modality(Protocol):
    """How one kind of image is opened, prepared and triaged."""

    name: ClassVar[str]

    def open(self, path: str | os.PathLike, *, hdu: int | str | None) -> Exposure | TiffExposure:
        """The image, opened lazily."""
        ...

    def prepare(self, exposure: Any, config: DetectionConfig, *, psf_file: str | os.PathLike | None,
                size: int | None, sched: dict[str, Any]) -> Setup:
        """Background, PSF, experts and halo for the tiles."""
        ...

    def annotate(self, table: Table, setup: Setup, exposure: Any) -> Table:
        """Measurements made on the fused detections of the whole image (e.g. ``spread_model``)."""
        ...

    def triage(self, table: Table, setup: Setup, exposure: Any, tiles: list[Any], config: DetectionConfig, *,
               progress: bool, sched: dict[str, Any]) -> Table:
        """The gate's calibrated decisions for the fused detections of the whole image."""
        ...


def make_configured_expert(name: str, expert_config: Any = None) -> Any:
    """An expert from its configuration (``None``: its defaults).

    The learned expert is handed its network, read here (``pipelines.models``),
    never by the core: the configuration's ``weights`` (default: the shipped
    ones) on its ``device``.
    """
    model = None
    if name == "learned":
        weights = getattr(expert_config, "weights", None)
        model = load_learned(weights, device=getattr(expert_config, "device", "cpu"))
    return make_expert(name, expert_config, model=model)


class Survey:
    """A survey exposure (FITS); see the module docs."""

    name: ClassVar[str] = "survey"

    def open(self, path: str | os.PathLike, *, hdu: int | str | None) -> Exposure:
        """The FITS exposure (the science HDU ``hdu``, else the first 2-D image)."""
        return open_exposure(path, hdu=hdu)

    def prepare(self, exposure: Exposure, config: DetectionConfig, *, psf_file: str | os.PathLike | None,
                size: int | None, sched: dict[str, Any]) -> Setup:
        """Background, PSF prior, the configured experts (and the scorers, with the gate)."""
        background = _background(exposure, config.background, size, sched)
        psf = choose_psf(exposure, background, config, psf_file=psf_file)
        prior_fwhm = float(psf.fwhm)
        measured, note = measure_exposure_psf(exposure, background, config, prior=psf)
        if measured is not None and config.psf.measure and psf_file is None and config.psf.fwhm is None:
            psf = measured.psf  # the exposure's own PSF; the prior was its starting guess
        experts = [make_configured_expert(name, _expert_config(name, config, exposure)) for name in config.experts]
        threshold = config.point.detection_threshold(psf)
        halo = halo_for(psf, experts)
        scorers = []
        if config.gate.enabled:  # the scoring pass runs every survey expert
            scorers = [make_configured_expert(n, _expert_config(n, config, exposure)) for n in SURVEY_EXPERTS]
            halo = max(halo, halo_for(psf, scorers))
        local = None
        if config.psf.vary:
            # each tile may get its own PSF, up to vary_max_ratio times wider: size the halo for that
            local = LocalPSF(config.psf.estimate_min_snr, config.psf.vary_min_stars, config.psf.vary_max_ratio)
            widest = moffat_psf(psf.fwhm * config.psf.vary_max_ratio, beta=psf.beta or config.psf.beta)
            halo = max(halo, halo_for(widest, experts))
        extra = {"psf_measured": measured.describe() if measured is not None else {"status": note}}
        return Setup(psf, background, experts, threshold, halo, scorers, local, measured=measured,
                     prior_fwhm=prior_fwhm, extra=extra)

    def annotate(self, table: Table, setup: Setup, exposure: Exposure) -> Table:
        """``spread_model`` of every detection against the measured PSF (else the prior)."""
        fwhm, beta = ((setup.measured.fwhm, setup.measured.beta) if setup.measured is not None
                      else (setup.psf.fwhm, setup.psf.beta or KOLMOGOROV_MOFFAT_BETA))
        return spread_columns(table, exposure, setup.background, fwhm=fwhm, beta=beta)

    def triage(self, table: Table, setup: Setup, exposure: Exposure, tiles: list[Any], config: DetectionConfig, *,
               progress: bool, sched: dict[str, Any]) -> Table:
        """Every survey expert scores every row, then the survey gate's certified decision (see GateConfig),
        then the shift guard: an exposure outside the calibration domain goes to review whole."""
        evidence = score_tiles(exposure, tiles, setup.psf, setup.background, setup.scorers, table,
                               progress=progress, **sched)
        gate = config.gate
        model = open_triage("gate", gate.weights)
        context = TriageContext(mode="survey", psf_fwhm=setup.psf.fwhm, threshold=setup.threshold,
                                image_shape=exposure.shape, evidence=evidence)
        out = apply_triage(model, table, context=context, alpha=gate.alpha, delta=gate.delta,
                           min_count=gate.min_count)
        for col in evidence.colnames:  # every expert's evidence stays with the row
            out[f"ev_{col}"] = evidence[col]
        if not gate.shift_guard:
            return out
        verdict = survey_shift_guard(out, measured_fwhm=None if setup.measured is None else setup.measured.fwhm,
                                     prior_fwhm=setup.prior_fwhm, fwhm_range=model.fwhm_range)
        return apply_guard(out, verdict)


class Microscopy:
    """A fluorescence microscopy image (TIFF/OME-TIFF/Zarr); see the module docs."""

    name: ClassVar[str] = "microscopy"

    def open(self, path: str | os.PathLike, *, hdu: int | str | None) -> TiffExposure:
        """The image and its optics metadata (``hdu`` does not apply)."""
        return open_tiff(path)

    def prepare(self, exposure: TiffExposure, config: DetectionConfig, *, psf_file: str | os.PathLike | None,
                size: int | None, sched: dict[str, Any]) -> Setup:
        """Airy PSF and nucleus scale from the optics, the two-pass background, the nucleus expert."""
        psf, nucleus_config, optics = microscopy_setup(exposure, config.microscopy)
        experts = [make_expert("nucleus", nucleus_config)]
        background = _microscopy_background(exposure, config, nucleus_config, psf, size, sched)
        return Setup(psf, background, experts, nucleus_config.threshold, halo_for(psf, experts),
                     nucleus=nucleus_config, prior_fwhm=float(psf.fwhm), extra={"optics": dataclasses.asdict(optics)})

    def annotate(self, table: Table, setup: Setup, exposure: TiffExposure) -> Table:
        """Nothing more: the nucleus expert measures what the triage needs."""
        return table

    def triage(self, table: Table, setup: Setup, exposure: TiffExposure, tiles: list[Any],
               config: DetectionConfig, *, progress: bool, sched: dict[str, Any]) -> Table:
        """The nucleus triage: calibrated ``p_nucleus`` and the certified decisions.

        Same ``gate.alpha``, ``gate.delta`` and ``gate.min_count`` as survey
        mode.  An image whose nucleus size or PSF (pixels) the calibration did
        not cover goes to review entirely.
        """
        gate = config.gate
        model = open_triage("nucleus_triage", gate.nucleus_weights)  # a bad file: one line naming it
        context = TriageContext(mode="microscopy", psf_fwhm=setup.psf.fwhm, diameter_px=setup.nucleus.diameter_px)
        return apply_triage(model, table, context=context, alpha=gate.alpha, delta=gate.delta,
                            min_count=gate.min_count)


MODALITIES: dict[str, Modality] = {"survey": Survey(), "microscopy": Microscopy()}
"""The strategy of each mode (``detect_image`` picks one by the file type or ``--mode``)."""


def microscopy_setup(exposure: TiffExposure, config: MicroscopyConfig) -> tuple[PSF, NucleusExpertConfig, Optics]:
    """PSF and nucleus scale from the optics: metadata first, configuration second.

    Raises
    ------
    InputError
        When neither the file nor the configuration gives the pixel size.
    """
    meta = exposure.optics
    pixel = config.pixel_size_um or meta.pixel_size_um
    if pixel is None:
        raise InputError(
            str(exposure.path),
            "no pixel size in the image metadata (OME PhysicalSizeX); give it with --pixel-size MICRONS",
        )
    na = meta.numerical_aperture or config.numerical_aperture
    wavelength = meta.wavelength_nm or config.wavelength_nm
    optics = Optics(pixel_size_um=pixel, numerical_aperture=na, wavelength_nm=wavelength)
    psf = airy_psf(
        numerical_aperture=na, wavelength_nm=wavelength, pixel_size_um=pixel,
        source=f"optics:NA={na:g},lambda={wavelength:g}nm,pixel={pixel:g}um",
    )
    nucleus = NucleusExpertConfig.from_optics(
        diameter_um=tuple(config.nucleus_diameter_um), pixel_size_um=pixel, threshold=config.threshold
    )
    return psf, nucleus, optics


def choose_psf(
    exposure: Exposure,
    background: BackgroundModel,
    config: DetectionConfig,
    *,
    psf_file: str | os.PathLike | None = None,
) -> PSF:
    """Pick the PSF prior (see module docs for the order) for an exposure.

    Raises
    ------
    InputError
        When no PSF can be found or estimated; the message names the options
        that supply one.
    """
    meta = exposure.meta
    if psf_file is not None:
        image, oversampling = read_psf_image(psf_file, image_pixscale=meta.pixscale)
        try:
            return psf_from_image(image, oversampling=oversampling, source=f"image:{Path(psf_file).name}")
        except PSFError as exc:
            raise InputError(str(psf_file), str(exc)) from None
    beta = config.psf.beta
    header = exposure.header
    if str(header.get("PSFMODEL", "")).strip().lower() == "moffat":
        hb = header.get("BETA", header.get("PSFBETA"))
        if isinstance(hb, (int, float)) and hb > 1:
            beta = float(hb)
    if config.psf.fwhm is not None:
        return moffat_psf(config.psf.fwhm, beta=beta, source="config")
    if meta.fwhm_px is not None and meta.fwhm_px > 0:
        return moffat_psf(meta.fwhm_px, beta=beta, source=meta.fwhm_source or "header")
    # Estimate from stars in the central region.
    image, rms, mask, _ = _central_section(exposure, background, config.psf.estimate_max_size)
    try:
        return estimate_psf(image, rms, mask=mask, min_snr=config.psf.estimate_min_snr)
    except PSFError as exc:
        raise InputError(
            str(exposure.path),
            f"no PSF keywords (FWHM or SEEING+PIXSCALE) and {exc}; "
            "give the PSF with --psf-fwhm PIXELS or --psf FILE",
        ) from None


def _central_section(exposure: Exposure, background: BackgroundModel, side: int):
    """The background-subtracted central ``side`` x ``side`` section: image, RMS, mask and origin."""
    ny, nx = exposure.shape
    y0, x0 = max(0, (ny - side) // 2), max(0, (nx - side) // 2)
    y1, x1 = min(ny, y0 + side), min(nx, x0 + side)
    section = exposure.read(y0, y1, x0, x1)
    level, rms = background.evaluate(y0, y1, x0, x1)
    return np.asarray(section.data, dtype=np.float64) - level, rms, section.mask, (y0, x0)


def measure_exposure_psf(exposure: Exposure, background: BackgroundModel, config: DetectionConfig, *,
                         prior: PSF) -> tuple[PSFMeasurement | None, str]:
    """The PSF fitted to the stars of the exposure's central region, or ``None`` and why not.

    The prior's FWHM is the starting guess; the fit is a free-beta Moffat
    (:func:`moe_imaging.psf_measure.measure_psf`).
    """
    image, rms, mask, _ = _central_section(exposure, background, config.psf.estimate_max_size)
    try:
        return measure_psf(image, rms, mask=mask, fwhm_guess=prior.fwhm, prior_fwhm=prior.fwhm,
                           min_snr=config.psf.estimate_min_snr), ""
    except PSFError as exc:
        return None, str(exc)


def spread_columns(table: Table, exposure: Exposure, background: BackgroundModel, *, fwhm: float, beta: float,
                   block: int = 1024) -> Table:
    """``spread_model`` and ``spread_model_err`` of every row (a new table), read block by block."""
    out = Table(table, copy=True)
    n = len(out)
    spread, err = np.full(n, np.nan), np.full(n, np.nan)
    if n:
        x, y = np.asarray(out["x"], float), np.asarray(out["y"], float)
        ny, nx = exposure.shape
        margin = int(math.ceil(max(3.0, 2.0 * fwhm))) + 2
        bx, by = np.floor(x / block), np.floor(y / block)
        for key in {(int(a), int(b)) for a, b in zip(by[np.isfinite(by)], bx[np.isfinite(bx)])}:
            rows = np.flatnonzero((by == key[0]) & (bx == key[1]))
            y0, x0 = max(0, key[0] * block - margin), max(0, key[1] * block - margin)
            y1, x1 = min(ny, (key[0] + 1) * block + margin), min(nx, (key[1] + 1) * block + margin)
            section = exposure.read(y0, y1, x0, x1)
            level, rms = background.evaluate(y0, y1, x0, x1)
            image = np.asarray(section.data, dtype=np.float64) - level
            spread[rows], err[rows] = spread_model(image, rms**2, x[rows] - x0, y[rows] - y0, fwhm=fwhm, beta=beta,
                                                   mask=section.mask)
    out["spread_model"] = spread
    out["spread_model_err"] = err
    return out


def _expert_config(name: str, config: DetectionConfig, exposure: Exposure):
    """An expert's configuration, with what the header tells it.

    The streak expert takes the trail length the header predicts (rate times
    exposure time, :func:`~moe_imaging.experts.streak.streak_prior_from_header`)
    when the configuration does not set one.
    """
    expert_config = getattr(config, name)
    if name == "streak" and expert_config.expected_length is None:
        length = streak_prior_from_header(exposure.header, exposure.meta.pixscale)
        if length is not None:
            expert_config = expert_config.replace(expected_length=length)
    return expert_config


def _background(exposure, config, size, sched, masking: SourceMasking | None = None) -> BackgroundModel:
    """The global background model; an image with no usable mesh is an input error."""
    try:
        return compute_background(
            exposure, config, block_size=size or max(exposure.shape), masking=masking, **sched
        )
    except ValueError as exc:  # no usable mesh
        raise InputError(str(exposure.path), f"cannot estimate the background: {exc}") from None


def _microscopy_background(
    exposure: TiffExposure,
    config: DetectionConfig,
    nucleus_config: NucleusExpertConfig,
    psf: PSF,
    size: int | None,
    sched: dict,
) -> BackgroundModel:
    """Two passes: coarse meshes several nuclei wide, then ordinary meshes with nuclei masked.

    Nuclei fill much of every ordinary mesh and would bias it; the coarse
    first model finds them, the second pass excludes them and follows the
    vignetting with ordinary meshes (the passes:
    :func:`moe_imaging.experts.nucleus.microscopy_background_passes`; the same
    model as :func:`~moe_imaging.experts.nucleus.microscopy_background` on the
    whole image).  When no ordinary mesh is left the coarse model is kept.
    """
    passes = microscopy_background_passes(nucleus_config, psf, config.background)
    first = _background(exposure, passes.coarse, size, sched)
    masking = SourceMasking(prior=first, smoothing=passes.smoothing, threshold=passes.threshold, grow=passes.grow)
    try:
        return _background(exposure, passes.fine, size, sched, masking=masking)
    except InputError:  # nuclei cover every mesh once masked: keep the coarse model (as microscopy_background)
        return first

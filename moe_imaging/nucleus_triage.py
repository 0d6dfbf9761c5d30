"""Certified triage of microscopy (nucleus) detections.

The survey gate (:mod:`moe_imaging.gate`) has a microscopy counterpart here:
a small calibrated classifier that says, for every detection of the nucleus
expert (:mod:`moe_imaging.experts.nucleus`), whether it is **one real nucleus**
(``nucleus``) or an **error** (``artifact``), and the certified triage of
:func:`moe_imaging.calibrate.fit_stratified_triage` that decides which of
these calls may be taken without a human.

What counts as an error
-----------------------
The classes are defined against the simulator's label mask
(:func:`label_detections`):

* ``nucleus``: the detection's centroid (or, failing that, its peak pixel)
  lies on a true nucleus that no other detection claims, and the detection
  did not swallow a neighbour (see *merge*);
* ``artifact`` -- every other detection, with its sub-case kept as the
  outcome:

  - ``spurious``: no true nucleus under it (noise, a background structure);
  - ``split``: one true nucleus claimed by two or more detections; *all* the
    pieces are errors (none of them is the whole nucleus, and a count or a
    size measured on one piece is wrong);
  - ``merge``: the detection covers a neighbour the expert did not find on
    its own (a missed true nucleus whose centre lies within 0.6 of the
    detection's diameter of its centroid, with the detection larger than its
    own nucleus by a third): two nuclei counted as one is an error.

So ``p_nucleus`` is the probability that a detection is exactly one real
nucleus and ``p_artifact = 1 - p_nucleus``.  A ``rejected`` decision means
"not a single nucleus" (spurious, a piece of a split nucleus or a merge).

Features (:data:`FEATURES`, :func:`nucleus_features`) are physics measured by
the nucleus expert, in units that carry across optics: S/N and the
significance at the marker, diameter relative to the expected nucleus size
(from the configuration's diameter range in pixels), the PSF FWHM relative to
that size, elongation and fill (area over that of the RMS ellipse: a merge of
two nuclei is elongated and under-filled), local crowding (neighbours within
the largest expected diameter, the nearest neighbour's distance), the
expert's ``BLENDED`` and ``EDGE`` flags, mean surface brightness over the
noise, and the background over the noise.

Strata and range
----------------
Triage strata (:func:`nucleus_stratum`) are ``microscopy:isolated`` and
``microscopy:crowded`` (flagged ``BLENDED`` by the expert, or a neighbour
closer than the smallest expected diameter): the errors live in the clumps,
and the easy isolated nuclei must not hide them.  An image whose expected
nucleus size (smallest diameter in pixels) or PSF FWHM (pixels) lies outside
the range covered by the calibration fields gets the stratum
``microscopy:outside-training-range``, which is never calibrated, so all its
detections go to review.  So does every single detection whose physics lies
outside the training range (:data:`RANGE_FEATURES`: S/N, significance, size,
fill, surface brightness, background; beyond the 0.1 %--99.9 % quantiles of
the training split, which the calibration split never touches): e.g. a
detection fainter or larger than anything the classifier was trained on.  The
calibration detections outside that range are left out of the calibration
of every stratum, so the rule is the same for calibration and new data.

Calibration
-----------
Temperature scaling is fitted on the calibration split (fields never used
for training).  With two classes the confidence ``max(p)`` is a monotone
function of ``|logit difference|`` for every temperature, so fitting the
temperature and the triage thresholds on the same split does not change
which detections are decided automatically; it only makes the
probabilities honest.  The split's scores, errors and strata are stored with
the weights, so the thresholds are refitted for any ``alpha`` at run time.

Training (:func:`train_nucleus_triage`, ``moe-imaging train nucleus-triage``)
simulates fields with :func:`moe_imaging.simulate_microscopy.simulate_microscopy`
over a range of pixel sizes, optics, densities, clumping, brightness, noise
and vignetting, from disjoint seeds for training, calibration and test
(``SeedSequence([seed, split, i])``).  The expert runs on each whole field as
one tile with the background and noise the pipeline would estimate
(:func:`moe_imaging.experts.nucleus.microscopy_background`), so the training
and calibration detections are the pipeline's, faint fragments of a
misestimated background included; ``benchmarks/bench_nucleus_triage.py``
checks the guarantee end to end through ``pipelines.detect_image``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from astropy.table import Table
from scipy.spatial import cKDTree
from torch import nn

from .calibrate import StratifiedTriage, expected_calibration_error, fit_stratified_triage, fit_temperature
from contracts.config import Config, check_int, check_range
from contracts.errors import ConfigError, InputError
from .experts.nucleus import NucleusExpertConfig, find_nuclei, microscopy_background
from contracts.flags import SourceFlag
from .psf import airy_psf
from .simulate_microscopy import MicroscopySimConfig, SimulatedMicroscopy, simulate_microscopy
from .tile import Tile

__all__ = [
    "NUCLEUS_CLASSES",
    "FEATURES",
    "OUTCOMES",
    "DEFAULT_NUCLEUS_TRIAGE_WEIGHTS",
    "OUT_OF_RANGE_STRATUM",
    "NucleusTriageConfig",
    "NucleusSamples",
    "NucleusTriageNet",
    "NucleusTriageModel",
    "nucleus_features",
    "label_detections",
    "nucleus_stratum",
    "RANGE_FEATURES",
    "outside_feature_range",
    "field_config",
    "detect_field",
    "simulate_samples",
    "train_nucleus_triage",
    "load_nucleus_triage",
    "open_nucleus_triage",
    "predict_nucleus",
    "fit_nucleus_triage",
    "apply_nucleus_triage",
]

NUCLEUS_CLASSES: tuple[str, ...] = ("nucleus", "artifact")
"""What the triage decides between: one real nucleus, or an error (see module docs)."""

OUTCOMES: tuple[str, ...] = ("nucleus", "spurious", "split", "merge")
"""The outcome of a detection against the truth; all but ``nucleus`` are ``artifact``."""

FEATURES: tuple[str, ...] = (
    "log_snr",
    "log_det_snr",
    "log_diameter_over_expected",
    "log_psf_over_expected",
    "elongation",
    "fill",
    "log1p_neighbours",
    "nearest_over_expected",
    "blended",
    "edge",
    "log_surface_snr",
    "background_over_noise",
)
"""Per-detection features (:func:`nucleus_features`), in this order."""

RANGE_FEATURES: tuple[str, ...] = (
    "log_snr",
    "log_det_snr",
    "log_diameter_over_expected",
    "fill",
    "log_surface_snr",
    "background_over_noise",
)
"""Features whose training range (0.1 %--99.9 % quantiles of the training split) a
detection must lie in to be decided automatically (:func:`outside_feature_range`)."""

_RANGE_QUANTILES = (0.001, 0.999)

DEFAULT_NUCLEUS_TRIAGE_WEIGHTS = Path(__file__).resolve().parent / "models" / "nucleus_triage_v1.pt"
"""The shipped model (``moe-imaging train nucleus-triage --seed 1`` reproduces it)."""

OUT_OF_RANGE_STRATUM = "microscopy:outside-training-range"
"""Stratum of images whose nucleus size or PSF (pixels) the calibration did not cover."""

_MERGE_REACH = 0.6  # a missed nucleus within this fraction of a detection's diameter is swallowed
_MERGE_GROWTH = 1.33  # ... when the detection is this much larger than its own nucleus


# --------------------------------------------------------------------------- configuration


@dataclasses.dataclass(frozen=True)
class NucleusTriageConfig(Config):
    """How the shipped nucleus triage is made (frozen, validated; the seed lives here).

    Attributes
    ----------
    seed : int
        Root seed; field ``i`` of split ``s`` uses ``SeedSequence([seed, s, i])``.
    n_train_fields, n_calibration_fields, n_test_fields : int
        Simulated fields per split (disjoint seeds).
    field_size : int
        Side of each simulated field, pixels.
    pixel_size_um : tuple of float
        Log-uniform range of object-plane pixel sizes, um.
    numerical_aperture : tuple of float
        Uniform range of the objective NA.
    wavelength_nm : tuple of float
        Uniform range of the emission wavelength, nm.
    diameter_low_um : tuple of float
        Uniform range of the smallest nucleus diameter, um; the largest is this
        times a factor uniform in ``diameter_spread``.  The expert is told the
        same range (as a user would configure it).
    diameter_spread : tuple of float
        Range of largest / smallest diameter.
    density_per_mm2 : tuple of float
        Log-uniform range of nuclei per mm^2.
    clump_fraction, dim_fraction, texture : tuple of float
        Uniform ranges of the simulator's parameters of the same names.
    brightness_e, background_e : tuple of float
        Log-uniform ranges, e- per pixel.
    read_noise_e, vignetting : tuple of float
        Uniform ranges.
    hidden : int
        Width of the classifier's hidden layers.
    epochs : int
        Full-batch Adam steps.
    learning_rate, weight_decay : float
        Adam options.
    threads : int
        torch threads during training (results depend on it).
    estimated_background : bool
        Run the expert with the background and noise the pipeline estimates
        (default), not the simulator's true ones (:func:`detect_field`).
    """

    seed: int = 1
    n_train_fields: int = 80
    n_calibration_fields: int = 150
    n_test_fields: int = 30
    field_size: int = 1024
    pixel_size_um: tuple[float, float] = (0.2, 0.65)
    numerical_aperture: tuple[float, float] = (0.3, 1.3)
    wavelength_nm: tuple[float, float] = (450.0, 650.0)
    diameter_low_um: tuple[float, float] = (6.0, 10.0)
    diameter_spread: tuple[float, float] = (1.4, 1.9)
    density_per_mm2: tuple[float, float] = (600.0, 3000.0)
    clump_fraction: tuple[float, float] = (0.1, 0.5)
    dim_fraction: tuple[float, float] = (0.05, 0.3)
    texture: tuple[float, float] = (0.1, 0.4)
    brightness_e: tuple[float, float] = (600.0, 6000.0)
    background_e: tuple[float, float] = (20.0, 400.0)
    read_noise_e: tuple[float, float] = (1.0, 6.0)
    vignetting: tuple[float, float] = (0.0, 0.4)
    hidden: int = 32
    epochs: int = 600
    learning_rate: float = 1e-2
    weight_decay: float = 1e-4
    threads: int = 2
    estimated_background: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.estimated_background, bool):
            raise ConfigError(f"nucleus_triage.estimated_background: expected true or false, "
                              f"got {self.estimated_background!r}")
        for name in ("seed", "n_train_fields", "n_calibration_fields", "n_test_fields", "field_size", "hidden",
                     "epochs", "threads"):
            check_int(f"nucleus_triage.{name}", getattr(self, name))
        check_range("nucleus_triage.seed", self.seed, low=0, high=2**63 - 1)
        check_range("nucleus_triage.n_train_fields", self.n_train_fields, low=1, high=100000)
        check_range("nucleus_triage.n_calibration_fields", self.n_calibration_fields, low=1, high=100000)
        check_range("nucleus_triage.n_test_fields", self.n_test_fields, low=0, high=100000)
        check_range("nucleus_triage.field_size", self.field_size, low=128, high=8192)
        check_range("nucleus_triage.hidden", self.hidden, low=2, high=4096)
        check_range("nucleus_triage.epochs", self.epochs, low=1, high=1000000)
        check_range("nucleus_triage.threads", self.threads, low=1, high=256)
        check_range("nucleus_triage.learning_rate", self.learning_rate, low=0.0, high=1.0, low_inclusive=False)
        check_range("nucleus_triage.weight_decay", self.weight_decay, low=0.0, high=1.0)
        limits = {
            "pixel_size_um": (0.01, 20.0), "numerical_aperture": (0.05, 1.6), "wavelength_nm": (200.0, 2000.0),
            "diameter_low_um": (0.5, 200.0), "diameter_spread": (1.0, 5.0), "density_per_mm2": (1.0, 1e6),
            "clump_fraction": (0.0, 1.0), "dim_fraction": (0.0, 1.0), "texture": (0.0, 2.0),
            "brightness_e": (1.0, 1e6), "background_e": (0.0, 1e6), "read_noise_e": (0.0, 1000.0),
            "vignetting": (0.0, 1.0),
        }
        for name, (lo, hi) in limits.items():
            value = tuple(float(v) for v in getattr(self, name))
            if len(value) != 2 or not lo <= value[0] <= value[1] <= hi:
                raise ConfigError(f"nucleus_triage.{name}: expected (low, high) with {lo} <= low <= high <= {hi}, "
                                  f"got {getattr(self, name)!r}")
            object.__setattr__(self, name, value)


# --------------------------------------------------------------------------- features and labels


def _col(table: Table, name: str, default: float = np.nan) -> np.ndarray:
    if name in table.colnames:
        return np.asarray(table[name], dtype=np.float64)
    return np.full(len(table), default)


def _neighbours(x: np.ndarray, y: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Other detections within ``radius`` and the nearest one's distance (inf when alone)."""
    n = len(x)
    count = np.zeros(n)
    nearest = np.full(n, np.inf)
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() >= 2:
        xy = np.column_stack([x[ok], y[ok]])
        tree = cKDTree(xy)
        count[ok] = [len(v) - 1 for v in tree.query_ball_point(xy, radius)]
        d, _ = tree.query(xy, k=2)
        nearest[ok] = d[:, 1]
    return count, nearest


def nucleus_features(
    candidates: Table,
    *,
    diameter_px: tuple[float, float],
    psf_fwhm: float,
) -> np.ndarray:
    """The :data:`FEATURES` of each nucleus detection.

    Parameters
    ----------
    candidates : astropy.table.Table
        The nucleus expert's table for a whole image (crowding is measured
        among its rows): ``x``, ``y``, ``snr``, ``det_snr``, ``flux``,
        ``area``, ``diameter``, ``a``, ``b``, ``flags``, ``background``,
        ``noise``; missing ones take neutral values.
    diameter_px : (float, float)
        Expected nucleus diameter range in pixels (the expert's configuration).
    psf_fwhm : float
        PSF FWHM in pixels.

    Returns
    -------
    numpy.ndarray, shape (n, len(FEATURES)), float32
    """
    d_lo, d_hi = (float(v) for v in diameter_px)
    if not (0 < d_lo <= d_hi) or not (psf_fwhm > 0):
        raise ValueError(f"diameter_px {diameter_px!r} and psf_fwhm {psf_fwhm!r} must be positive")
    n = len(candidates)
    if n == 0:
        return np.zeros((0, len(FEATURES)), np.float32)
    d_mid = math.sqrt(d_lo * d_hi)
    snr = np.nan_to_num(_col(candidates, "snr"), nan=0.0)
    det = np.nan_to_num(_col(candidates, "det_snr"), nan=0.0)
    diam = _col(candidates, "diameter")
    diam = np.where(np.isfinite(diam) & (diam > 0), diam, d_mid)
    a = _col(candidates, "a")
    b = _col(candidates, "b")
    good_ab = np.isfinite(a) & np.isfinite(b) & (a > 0)
    elong = np.where(good_ab, 1.0 - np.clip(b / np.where(good_ab, a, 1.0), 0.0, 1.0), 0.0)
    area = _col(candidates, "area")
    area = np.where(np.isfinite(area) & (area > 0), area, math.pi * d_mid**2 / 4)
    ellipse = 4.0 * math.pi * np.where(good_ab, a * np.where(good_ab, b, 1.0), d_mid**2 / 16)
    fill = np.clip(area / np.maximum(ellipse, 1e-6), 0.0, 3.0)
    count, nearest = _neighbours(_col(candidates, "x"), _col(candidates, "y"), d_hi)
    flags = np.nan_to_num(_col(candidates, "flags", 0.0), nan=0.0).astype(np.int64)
    noise = _col(candidates, "noise")
    noise = np.where(np.isfinite(noise) & (noise > 0), noise, 1.0)
    flux = np.nan_to_num(_col(candidates, "flux"), nan=0.0)
    bkg = np.nan_to_num(_col(candidates, "background"), nan=0.0)
    feats = np.column_stack([
        np.log10(np.clip(snr, 0.1, 1e7)),
        np.log10(np.clip(det, 0.1, 1e7)),
        np.log(np.clip(diam / d_mid, 0.05, 20.0)),
        np.full(n, math.log(float(psf_fwhm) / d_mid)),
        elong,
        fill,
        np.log1p(count),
        np.clip(nearest / d_mid, 0.0, 3.0),
        ((flags & int(SourceFlag.BLENDED)) != 0).astype(np.float64),
        ((flags & int(SourceFlag.EDGE)) != 0).astype(np.float64),
        np.log10(np.clip(flux / area / noise, 1e-3, 1e5)),
        np.arcsinh(bkg / noise / 10.0),
    ])
    return feats.astype(np.float32)


def label_detections(candidates: Table, labels: np.ndarray, truth: Table) -> np.ndarray:
    """The outcome (:data:`OUTCOMES`) of each detection against a simulated label mask.

    Parameters
    ----------
    candidates : astropy.table.Table
        Nucleus detections with ``x``, ``y`` (0-based centroid), ``x_peak``,
        ``y_peak``, ``area`` and ``diameter``.
    labels : numpy.ndarray of int
        The simulator's label mask (0 background, ``k`` nucleus ``k``).
    truth : astropy.table.Table
        The simulator's truth table (``label``, ``x``, ``y``, ``area_px``).

    Returns
    -------
    numpy.ndarray of str
        ``nucleus``, ``spurious``, ``split`` or ``merge`` per detection (see
        module docs); the class is ``nucleus`` only for ``nucleus``.
    """
    n = len(candidates)
    out = np.full(n, "nucleus", dtype="U8")
    if n == 0:
        return out
    lab = np.asarray(labels)
    ny, nx = lab.shape
    x = np.asarray(candidates["x"], float)
    y = np.asarray(candidates["y"], float)
    xi = np.clip(np.round(x).astype(np.int64), 0, nx - 1)
    yi = np.clip(np.round(y).astype(np.int64), 0, ny - 1)
    hit = lab[yi, xi].astype(np.int64)
    if "x_peak" in candidates.colnames:
        px = np.clip(np.asarray(candidates["x_peak"], np.int64), 0, nx - 1)
        py = np.clip(np.asarray(candidates["y_peak"], np.int64), 0, ny - 1)
        hit = np.where(hit > 0, hit, lab[py, px])
    out[hit == 0] = "spurious"
    claimed, counts = np.unique(hit[hit > 0], return_counts=True)
    split_labels = claimed[counts > 1]
    out[np.isin(hit, split_labels) & (hit > 0)] = "split"
    # merges: a true nucleus nobody claimed, swallowed by a detection that grew over it
    t_label = np.asarray(truth["label"], np.int64)
    t_area = dict(zip(t_label.tolist(), np.asarray(truth["area_px"], float).tolist()))
    missed = ~np.isin(t_label, claimed)
    if missed.any():
        mxy = np.column_stack([np.asarray(truth["x"], float)[missed], np.asarray(truth["y"], float)[missed]])
        tree = cKDTree(mxy)
        diam = np.asarray(candidates["diameter"], float)
        area = np.asarray(candidates["area"], float)
        for i in np.flatnonzero(out == "nucleus"):
            own = t_area.get(int(hit[i]), np.nan)
            if not (np.isfinite(own) and area[i] > _MERGE_GROWTH * own):
                continue
            if tree.query_ball_point([x[i], y[i]], _MERGE_REACH * diam[i]):
                out[i] = "merge"
    return out


def nucleus_stratum(
    candidates: Table,
    *,
    diameter_px: tuple[float, float],
    psf_fwhm: float,
    diameter_range: tuple[float, float] | None = None,
    psf_range: tuple[float, float] | None = None,
) -> np.ndarray:
    """The triage stratum of each detection (see module docs).

    ``microscopy:crowded`` (``BLENDED``, or a neighbour closer than the
    smallest expected diameter), else ``microscopy:isolated``; every row is
    ``microscopy:outside-training-range`` when the smallest expected diameter
    (pixels) is outside ``diameter_range`` or the PSF FWHM (pixels) outside
    ``psf_range`` (ranges of the calibration fields; ``None`` skips the check).
    """
    n = len(candidates)
    d_lo, d_hi = (float(v) for v in diameter_px)
    flags = np.nan_to_num(_col(candidates, "flags", 0.0), nan=0.0).astype(np.int64)
    _, nearest = _neighbours(_col(candidates, "x"), _col(candidates, "y"), d_hi)
    crowded = ((flags & int(SourceFlag.BLENDED)) != 0) | (nearest < d_lo)
    strata = np.where(crowded, "microscopy:crowded", "microscopy:isolated").astype("U40")
    outside = False
    if diameter_range is not None and not (diameter_range[0] <= d_lo <= diameter_range[1]):
        outside = True
    if psf_range is not None and not (psf_range[0] <= float(psf_fwhm) <= psf_range[1]):
        outside = True
    if outside:
        strata = np.full(n, OUT_OF_RANGE_STRATUM, dtype="U40")
    return strata


def outside_feature_range(features: np.ndarray, feature_range: dict[str, tuple[float, float]]) -> np.ndarray:
    """Per row: the names of the :data:`RANGE_FEATURES` outside ``feature_range`` (empty when inside).

    Parameters
    ----------
    features : numpy.ndarray, shape (n, len(FEATURES))
        From :func:`nucleus_features`.
    feature_range : mapping of str to (float, float)
        Allowed ``(low, high)`` per feature name (a model's ``feature_range``).

    Returns
    -------
    numpy.ndarray of str, shape (n,)
        Comma-separated names of the features out of range, ``""`` when all are in range.
    """
    f = np.asarray(features)
    out = np.full(len(f), "", dtype=object)
    for name, (lo, hi) in feature_range.items():
        v = f[:, FEATURES.index(name)]
        bad = (v < lo) | (v > hi) | ~np.isfinite(v)
        for i in np.flatnonzero(bad):
            out[i] = f"{out[i]},{name}" if out[i] else name
    return out.astype(str)


# --------------------------------------------------------------------------- simulated samples


def _uniform(rng: np.random.Generator, lohi: tuple[float, float]) -> float:
    return float(rng.uniform(lohi[0], lohi[1])) if lohi[1] > lohi[0] else float(lohi[0])


def _log_uniform(rng: np.random.Generator, lohi: tuple[float, float]) -> float:
    if lohi[1] <= lohi[0]:
        return float(lohi[0])
    return float(math.exp(rng.uniform(math.log(lohi[0]), math.log(lohi[1]))))


def field_config(config: NucleusTriageConfig, split: int, index: int) -> MicroscopySimConfig:
    """The simulated field ``index`` of ``split`` (0 train, 1 calibration, 2 test, 3+ benchmarks)."""
    ss = np.random.SeedSequence([int(config.seed), int(split), int(index)])
    rng = np.random.default_rng(ss)
    d_lo = _uniform(rng, config.diameter_low_um)
    d_hi = d_lo * _uniform(rng, config.diameter_spread)
    return MicroscopySimConfig(
        shape=(config.field_size, config.field_size),
        seed=int(ss.generate_state(1, np.uint32)[0]),
        pixel_size_um=_log_uniform(rng, config.pixel_size_um),
        numerical_aperture=_uniform(rng, config.numerical_aperture),
        emission_wavelength_nm=_uniform(rng, config.wavelength_nm),
        nucleus_diameter_um=(d_lo, d_hi),
        density_per_mm2=_log_uniform(rng, config.density_per_mm2),
        clump_fraction=_uniform(rng, config.clump_fraction),
        dim_fraction=_uniform(rng, config.dim_fraction),
        brightness_e=_log_uniform(rng, config.brightness_e),
        texture=_uniform(rng, config.texture),
        background_e=_log_uniform(rng, config.background_e),
        vignetting=_uniform(rng, config.vignetting),
        read_noise_e=_uniform(rng, config.read_noise_e),
    )


def detect_field(sim_config: MicroscopySimConfig, sim: SimulatedMicroscopy | None = None, *,
                 estimated_background: bool = True) -> tuple[Table, NucleusExpertConfig, float, SimulatedMicroscopy]:
    """Simulate a field (unless given) and run the nucleus expert on it as one tile.

    With ``estimated_background`` (the default) the tile takes the background
    and noise the pipeline would estimate
    (:func:`moe_imaging.experts.nucleus.microscopy_background`, the same two
    passes as ``pipelines.detect_image``), so the triage learns, and is
    calibrated on, the detections the pipeline makes, including the faint
    fragments a misestimated background leaves.  Otherwise it takes the
    simulator's true (vignetted) background and the noise
    ``sqrt(background + read_noise^2) / gain`` per pixel.

    Returns
    -------
    (candidates, expert configuration, PSF FWHM in pixels, simulation)
    """
    cfg = sim_config
    if sim is None:
        sim = simulate_microscopy(cfg)
    ny, nx = cfg.shape
    yc, xc = 0.5 * (ny - 1), 0.5 * (nx - 1)
    r2 = ((np.arange(nx) - xc) ** 2)[None, :] + ((np.arange(ny) - yc) ** 2)[:, None]
    vig = 1.0 - cfg.vignetting * r2 / (xc * xc + yc * yc)
    bkg = cfg.background_e * vig / cfg.gain
    noise = np.sqrt(cfg.background_e * vig + cfg.read_noise_e**2) / cfg.gain
    psf = airy_psf(numerical_aperture=cfg.numerical_aperture, wavelength_nm=cfg.emission_wavelength_nm,
                   pixel_size_um=cfg.pixel_size_um)
    expert = NucleusExpertConfig.from_optics(diameter_um=tuple(cfg.nucleus_diameter_um),
                                             pixel_size_um=cfg.pixel_size_um)
    image = np.asarray(sim.image, np.float64)
    if estimated_background:
        bkg, noise = microscopy_background(image, expert, psf).evaluate(0, ny, 0, nx)
    tile = Tile.from_image(image, psf, noise=noise, background=bkg, gain=cfg.gain)
    return find_nuclei(tile, config=expert), expert, float(psf.fwhm), sim


@dataclasses.dataclass
class NucleusSamples:
    """Features, outcomes and per-row context of nucleus detections on simulated fields."""

    features: np.ndarray
    outcome: np.ndarray
    strata: np.ndarray
    snr: np.ndarray
    diameter_low_px: np.ndarray
    psf_fwhm: np.ndarray
    field: np.ndarray

    def __len__(self) -> int:
        return len(self.outcome)

    @property
    def labels(self) -> np.ndarray:
        """Class index per row: 0 ``nucleus``, 1 ``artifact``."""
        return (self.outcome != "nucleus").astype(np.int64)

    @staticmethod
    def concat(parts: list[NucleusSamples]) -> NucleusSamples:
        """One sample set from several."""
        if not parts:
            return NucleusSamples(np.zeros((0, len(FEATURES)), np.float32), np.zeros(0, "U8"), np.zeros(0, "U40"),
                                  np.zeros(0), np.zeros(0), np.zeros(0), np.zeros(0, np.int64))
        return NucleusSamples(*(np.concatenate([getattr(p, f.name) for p in parts])
                                for f in dataclasses.fields(NucleusSamples)))


def simulate_samples(
    config: NucleusTriageConfig,
    split: int,
    n_fields: int,
    *,
    start: int = 0,
    log: Callable[[str], None] | None = None,
    field_override: Callable[[MicroscopySimConfig], MicroscopySimConfig] | None = None,
) -> NucleusSamples:
    """Labelled detections from fields ``start .. start + n_fields - 1`` of ``split``.

    ``field_override`` may change each field's simulation configuration (e.g.
    an out-of-range pixel size for a benchmark).  Strata carry no range check
    here (the model's range is fitted from these samples).
    """
    check_int("split", split)
    check_int("n_fields", n_fields)
    parts = []
    t0 = time.perf_counter()
    for i in range(start, start + n_fields):
        cfg = field_config(config, split, i)
        if field_override is not None:
            cfg = field_override(cfg)
        cand, expert, fwhm, sim = detect_field(cfg, estimated_background=config.estimated_background)
        feats = nucleus_features(cand, diameter_px=expert.diameter_px, psf_fwhm=fwhm)
        n = len(cand)
        parts.append(NucleusSamples(
            features=feats,
            outcome=label_detections(cand, sim.labels, sim.truth),
            strata=nucleus_stratum(cand, diameter_px=expert.diameter_px, psf_fwhm=fwhm),
            snr=np.nan_to_num(_col(cand, "snr"), nan=0.0),
            diameter_low_px=np.full(n, expert.diameter_px[0]),
            psf_fwhm=np.full(n, fwhm),
            field=np.full(n, i, np.int64),
        ))
        if log is not None and ((i - start + 1) % 10 == 0 or i == start + n_fields - 1):
            log(f"split {split}: {i - start + 1}/{n_fields} fields, {sum(len(p) for p in parts)} detections, "
                f"{time.perf_counter() - t0:.0f} s")
    return NucleusSamples.concat(parts)


# --------------------------------------------------------------------------- the model


class NucleusTriageNet(nn.Module):
    """A small MLP: standardised :data:`FEATURES` in, logits over :data:`NUCLEUS_CLASSES` out."""

    def __init__(self, n_features: int = len(FEATURES), hidden: int = 32) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Linear(n_features, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(),
            nn.Linear(hidden, len(NUCLEUS_CLASSES)),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits, shape ``(n, 2)``."""
        return self.body(x)


@dataclasses.dataclass
class NucleusTriageModel:
    """A trained nucleus triage: network, feature scaling, temperature, range and calibration split.

    Attributes
    ----------
    net : NucleusTriageNet
    mean, std : numpy.ndarray
        Feature standardisation (from the training split).
    temperature : float
        Fitted on the calibration split.
    diameter_range : (float, float)
        Smallest expected nucleus diameter (pixels) covered by calibration.
    psf_range : (float, float)
        PSF FWHM (pixels) covered by calibration.
    calibration : dict
        ``scores``, ``errors`` and ``strata`` of the calibration split (rows
        outside ``feature_range`` have the stratum ``microscopy:outside-training-range``).
    feature_range : dict
        ``(low, high)`` of each of :data:`RANGE_FEATURES` (training split quantiles).
    metadata : dict
        Configuration, metrics, versions.
    """

    net: NucleusTriageNet
    mean: np.ndarray
    std: np.ndarray
    temperature: float
    diameter_range: tuple[float, float]
    psf_range: tuple[float, float]
    calibration: dict[str, list]
    feature_range: dict[str, tuple[float, float]] = dataclasses.field(default_factory=dict)
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)

    def save(self, path: str | Path) -> Path:
        """Write the model (a small ``.pt`` file)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({
            "kind": "nucleus_triage",
            "features": list(FEATURES),
            "hidden": int(self.net.body[0].out_features),
            "state_dict": self.net.state_dict(),
            "mean": [float(v) for v in self.mean],
            "std": [float(v) for v in self.std],
            "temperature": float(self.temperature),
            "diameter_range": [float(v) for v in self.diameter_range],
            "psf_range": [float(v) for v in self.psf_range],
            "calibration": _pack_calibration(self.calibration),
            "feature_range": {k: [float(v[0]), float(v[1])] for k, v in self.feature_range.items()},
            "metadata": json.loads(json.dumps(self.metadata, default=float)),
        }, path)
        return path


def _pack_calibration(cal: dict[str, Any]) -> dict[str, Any]:
    """Compact storage: float64 scores, uint8 errors, stratum codes and names."""
    names, codes = np.unique(np.asarray(cal["strata"], dtype=str), return_inverse=True)
    return {"scores": torch.from_numpy(np.asarray(cal["scores"], np.float64).copy()),
            "errors": torch.from_numpy(np.asarray(cal["errors"], np.uint8).copy()),
            "strata_names": [str(v) for v in names],
            "strata_codes": torch.from_numpy(codes.astype(np.int16))}


def _unpack_calibration(blob: dict[str, Any]) -> dict[str, list]:
    names = np.asarray(blob["strata_names"], dtype=object)
    return {"scores": blob["scores"].numpy().astype(np.float64).tolist(),
            "errors": blob["errors"].numpy().astype(np.int64).tolist(),
            "strata": [str(v) for v in names[blob["strata_codes"].numpy().astype(np.int64)]]}


@functools.lru_cache(maxsize=4)
def _load(path: str) -> NucleusTriageModel:
    blob = torch.load(path, map_location="cpu", weights_only=False)
    if blob.get("kind") != "nucleus_triage" or list(blob.get("features", [])) != list(FEATURES):
        raise ValueError(f"{path}: not a nucleus triage model for features {FEATURES}")
    net = NucleusTriageNet(len(FEATURES), int(blob["hidden"]))
    net.load_state_dict(blob["state_dict"])
    net.eval()
    return NucleusTriageModel(net, np.asarray(blob["mean"], np.float32), np.asarray(blob["std"], np.float32),
                              float(blob["temperature"]), tuple(blob["diameter_range"]), tuple(blob["psf_range"]),
                              _unpack_calibration(blob["calibration"]),
                              {k: (float(v[0]), float(v[1])) for k, v in blob["feature_range"].items()},
                              dict(blob["metadata"]))


def load_nucleus_triage(path: str | Path | None = None) -> NucleusTriageModel:
    """The model at ``path`` (default: the shipped one), loaded once per process.

    Raises
    ------
    FileNotFoundError
        When the file does not exist (``moe-imaging train nucleus-triage`` makes it).
    """
    path = Path(path) if path is not None else DEFAULT_NUCLEUS_TRIAGE_WEIGHTS
    if not path.exists():
        raise FileNotFoundError(f"{path}: no nucleus triage weights (run `moe-imaging train nucleus-triage`)")
    return _load(str(path.resolve()))


def open_nucleus_triage(path: str | Path | None = None) -> NucleusTriageModel:
    """:func:`load_nucleus_triage` for a file a user named: a missing or unreadable one is an input error.

    Raises
    ------
    InputError
        Naming the file: it does not exist, or it is not a nucleus triage
        model (torch cannot read it, or it holds another model).
    """
    name = str(path) if path is not None else str(DEFAULT_NUCLEUS_TRIAGE_WEIGHTS)
    try:
        return load_nucleus_triage(path)
    except FileNotFoundError:
        raise InputError(name, "no such nucleus triage weights file ('moe-imaging train nucleus-triage' or "
                               "'moe-imaging calibrate --model nucleus-triage' makes one)") from None
    except Exception:  # torch cannot read it, or it holds another model
        raise InputError(name, "not a nucleus triage model") from None


def _logits(model: NucleusTriageModel, features: np.ndarray) -> np.ndarray:
    x = (np.asarray(features, np.float32) - model.mean) / model.std
    with torch.no_grad():
        return model.net(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).numpy().astype(np.float64)


def predict_nucleus(model: NucleusTriageModel, features: np.ndarray, *, calibrated: bool = True) -> np.ndarray:
    """Class probabilities ``(n, 2)`` over :data:`NUCLEUS_CLASSES` (temperature-scaled when ``calibrated``)."""
    f = np.asarray(features)
    if f.ndim != 2 or f.shape[1] != len(FEATURES):
        raise ValueError(f"features: expected shape (n, {len(FEATURES)}), got {f.shape}")
    if len(f) == 0:
        return np.zeros((0, len(NUCLEUS_CLASSES)))
    z = _logits(model, f) / (model.temperature if calibrated else 1.0)
    z = z - z.max(axis=1, keepdims=True)
    p = np.exp(z)
    return p / p.sum(axis=1, keepdims=True)


# --------------------------------------------------------------------------- training


def _fit_net(config: NucleusTriageConfig, x: np.ndarray, y: np.ndarray) -> NucleusTriageNet:
    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        torch.manual_seed(config.seed)
        net = NucleusTriageNet(x.shape[1], config.hidden)
        opt = torch.optim.Adam(net.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
        xt = torch.from_numpy(np.ascontiguousarray(x, np.float32))
        yt = torch.from_numpy(y.astype(np.int64))
        loss_fn = nn.CrossEntropyLoss()
        net.train()
        for _ in range(config.epochs):
            opt.zero_grad()
            loss = loss_fn(net(xt), yt)
            loss.backward()
            opt.step()
        net.eval()
    finally:
        torch.set_num_threads(threads)
    return net


def _model_card(model: NucleusTriageModel, path: Path) -> str:
    m = model.metadata
    met = m["metrics"]
    cfg = m["config"]
    rows = "\n".join(f"| {k} | {v} |" for k, v in sorted(met["calibration_strata"].items()))
    out_rows = "\n".join(f"| {k} | {v} |" for k, v in sorted(met["outcomes_calibration"].items()))
    background = ("the background and noise the pipeline estimates (two passes, `microscopy_background`)"
                  if cfg.get("estimated_background", False) else "the simulator's true background and noise")
    return f"""# Model card: the nucleus triage `{path.stem}`

A small MLP (`moe_imaging.nucleus_triage.NucleusTriageNet`, {m['n_parameters']} parameters) that
turns the nucleus expert's measurements of a detection into `p_nucleus` (exactly one real
nucleus) and `p_artifact` (an error: spurious, a piece of a split nucleus, or a merge of
two), followed by the certified triage of `moe_imaging.calibrate.fit_stratified_triage`.

## Reproduce

```
moe-imaging train nucleus-triage --seed {cfg['seed']}
```

torch {m['torch']}, {cfg['threads']} threads, full-batch Adam; the same seed gives the same
weights on the same machine and library versions (checked: two runs bit-identical);
another CPU's kernels move the weights by ~1e-3 and the temperature in the 4th digit. Total time {met['time_total_s']:.0f} s.

## Data recipe

- {cfg['n_train_fields']} training, {cfg['n_calibration_fields']} calibration and {cfg['n_test_fields']} test fields
  of {cfg['field_size']}^2 px (`moe_imaging.simulate_microscopy`; disjoint seeds
  `SeedSequence([seed, split, i])`).
- Per field: pixel size log-uniform in {cfg['pixel_size_um']} um, NA {cfg['numerical_aperture']},
  emission {cfg['wavelength_nm']} nm, smallest nucleus diameter {cfg['diameter_low_um']} um times
  {cfg['diameter_spread']} for the largest (the expert is told that range), density
  {cfg['density_per_mm2']} per mm^2, clumps {cfg['clump_fraction']}, dim {cfg['dim_fraction']},
  brightness {cfg['brightness_e']} e-, background {cfg['background_e']} e-, read noise
  {cfg['read_noise_e']} e-, vignetting {cfg['vignetting']}.
- The nucleus expert runs on each whole field as one tile, with {background}.
- Labels from the label mask: `nucleus`, else `artifact` (spurious / split / merge).
- Training rows: {met['n_train']} ({met['train_error_fraction']:.3f} errors); calibration rows: {met['n_calibration']}.

## Calibration (never used for training)

Temperature {model.temperature:.3f}; accuracy {met['calibration_accuracy']:.4f}; ECE {met['calibration_ece']:.4f}.
Calibrated range (anything outside goes to review): smallest expected diameter
{model.diameter_range[0]:.1f}-{model.diameter_range[1]:.1f} px, PSF FWHM {model.psf_range[0]:.2f}-{model.psf_range[1]:.2f} px.
Single detections outside the training split's 0.1-99.9 % quantiles of
{', '.join(RANGE_FEATURES)} are out of range too (their calibration rows are left out):
{', '.join(f"{k} [{v[0]:.2f}, {v[1]:.2f}]" for k, v in model.feature_range.items())}.
The split's confidences, errors and strata are stored in the weights file, so the
thresholds are refitted for any risk level.

| stratum | rows |
| --- | ---: |
{rows}

| outcome | rows |
| --- | ---: |
{out_rows}

## Test fields

Accuracy {met['test_accuracy']:.4f} (the expert alone, everything a nucleus: {met['test_expert_accuracy']:.4f});
at alpha=1 %, delta=5 %: error among automatic decisions {met['test_error_auto_1pct']:.4f},
{met['test_coverage_1pct']:.3f} decided automatically.

## Limits

Simulated widefield fluorescence only; the guarantee assumes new detections are exchangeable
with the calibration ones within a stratum. Real images need their own calibration labels.
"""


def train_nucleus_triage(
    config: NucleusTriageConfig = NucleusTriageConfig(),
    *,
    out: str | Path | None = None,
    log: Callable[[str], None] | None = None,
) -> NucleusTriageModel:
    """Simulate, train, calibrate and (with ``out``) save the nucleus triage and its model card.

    Parameters
    ----------
    config : NucleusTriageConfig
        The recipe (and the seed).
    out : str or path-like, optional
        Weights file to write (``.pt``); the model card ``NUCLEUS_TRIAGE_MODEL_CARD.md``
        is written beside it.
    log : callable, optional
        Receives progress lines.

    Returns
    -------
    NucleusTriageModel
    """
    t0 = time.perf_counter()
    train = simulate_samples(config, 0, config.n_train_fields, log=log)
    cal = simulate_samples(config, 1, config.n_calibration_fields, log=log)
    test = simulate_samples(config, 2, config.n_test_fields, log=log)
    if len(train) == 0 or len(cal) == 0:
        raise ValueError("no detections on the simulated training or calibration fields")
    mean = train.features.mean(axis=0)
    std = train.features.std(axis=0)
    std = np.where(std > 1e-6, std, 1.0).astype(np.float32)
    x = ((train.features - mean) / std).astype(np.float32)
    t_sim = time.perf_counter() - t0
    net = _fit_net(config, x, train.labels)
    lo_q, hi_q = _RANGE_QUANTILES
    feature_range = {name: (float(np.quantile(train.features[:, FEATURES.index(name)], lo_q)),
                            float(np.quantile(train.features[:, FEATURES.index(name)], hi_q)))
                     for name in RANGE_FEATURES}
    model = NucleusTriageModel(net, mean.astype(np.float32), std, 1.0, (0.0, 0.0), (0.0, 0.0), {}, feature_range)
    cal.strata = np.where(outside_feature_range(cal.features, feature_range) != "", OUT_OF_RANGE_STRATUM, cal.strata)
    test.strata = np.where(outside_feature_range(test.features, feature_range) != "", OUT_OF_RANGE_STRATUM,
                           test.strata)
    temperature = fit_temperature(_logits(model, cal.features), cal.labels)
    model.temperature = temperature
    p_cal = predict_nucleus(model, cal.features)
    conf = p_cal.max(axis=1)
    errors = (p_cal.argmax(axis=1) != cal.labels).astype(np.int64)
    model.calibration = {"scores": conf.tolist(), "errors": errors.tolist(), "strata": cal.strata.tolist()}
    model.diameter_range = (float(cal.diameter_low_px.min()), float(cal.diameter_low_px.max()))
    model.psf_range = (float(cal.psf_fwhm.min()), float(cal.psf_fwhm.max()))
    metrics: dict[str, Any] = {
        "n_train": len(train),
        "n_calibration": len(cal),
        "n_test": len(test),
        "train_error_fraction": float(train.labels.mean()),
        "calibration_accuracy": float(1 - errors.mean()),
        "calibration_ece": float(expected_calibration_error(conf, errors == 0)),
        "calibration_strata": {k: int(v) for k, v in zip(*np.unique(cal.strata, return_counts=True))},
        "outcomes_calibration": {k: int(v) for k, v in zip(*np.unique(cal.outcome, return_counts=True))},
        "time_simulation_s": t_sim,
    }
    if len(test):
        p_test = predict_nucleus(model, test.features)
        err_test = p_test.argmax(axis=1) != test.labels
        keep = cal.strata != OUT_OF_RANGE_STRATUM
        triage = fit_stratified_triage(conf[keep], errors[keep], cal.strata[keep], alpha=0.01, delta=0.05)
        auto, _ = triage.decide(p_test.max(axis=1), test.strata)
        metrics.update({
            "test_accuracy": float(1 - err_test.mean()),
            "test_expert_accuracy": float((test.labels == 0).mean()),
            "test_error_auto_1pct": float(err_test[auto].mean()) if auto.any() else float("nan"),
            "test_coverage_1pct": float(auto.mean()),
        })
    else:
        metrics.update({"test_accuracy": float("nan"), "test_expert_accuracy": float("nan"),
                        "test_error_auto_1pct": float("nan"), "test_coverage_1pct": float("nan")})
    metrics["time_total_s"] = time.perf_counter() - t0
    model.metadata = {
        "config": config.to_dict(),
        "metrics": metrics,
        "n_parameters": int(sum(p.numel() for p in net.parameters())),
        "torch": torch.__version__,
    }
    if out is not None:
        path = model.save(out)
        path.with_name("NUCLEUS_TRIAGE_MODEL_CARD.md").write_text(_model_card(model, path), encoding="utf-8")
        _load.cache_clear()
        _triage.cache_clear()
    if log is not None:
        log(f"calibration accuracy {metrics['calibration_accuracy']:.4f}, ECE {metrics['calibration_ece']:.4f}, "
            f"test accuracy {metrics['test_accuracy']:.4f}; {metrics['time_total_s']:.0f} s")
    return model


# --------------------------------------------------------------------------- decisions


def fit_nucleus_triage(model: NucleusTriageModel, *, alpha: float = 0.01, delta: float = 0.05,
                       min_count: int = 50) -> StratifiedTriage:
    """The certified triage thresholds of ``model`` for risk ``alpha`` and confidence ``1 - delta``.

    Fitted per stratum on the calibration split stored with the weights; the
    split's rows outside the training range (:data:`OUT_OF_RANGE_STRATUM`)
    are left out, so that stratum is never calibrated and its detections
    always go to review.
    """
    cal = model.calibration
    strata = np.asarray(cal["strata"], dtype=str)
    keep = strata != OUT_OF_RANGE_STRATUM
    return fit_stratified_triage(np.asarray(cal["scores"], float)[keep], np.asarray(cal["errors"])[keep],
                                 strata[keep], alpha=alpha, delta=delta, min_count=min_count)


@functools.lru_cache(maxsize=16)
def _triage(path_key: str, alpha: float, delta: float, min_count: int) -> StratifiedTriage:
    return fit_nucleus_triage(_load(path_key), alpha=alpha, delta=delta, min_count=min_count)


def _explain(table: Table, probs: np.ndarray, diameter_px: tuple[float, float]) -> list[str]:
    d_mid = math.sqrt(diameter_px[0] * diameter_px[1])
    snr = _col(table, "snr")
    diam = _col(table, "diameter")
    flags = np.nan_to_num(_col(table, "flags", 0.0), nan=0.0).astype(np.int64)
    out = []
    for i in range(len(table)):
        parts = [f"p_nucleus {probs[i, 0]:.2f}"]
        if np.isfinite(snr[i]):
            parts.append(f"S/N {snr[i]:.0f}")
        if np.isfinite(diam[i]):
            parts.append(f"diameter {diam[i] / d_mid:.2f}x expected")
        if flags[i] & int(SourceFlag.BLENDED):
            parts.append("touching another nucleus")
        if flags[i] & int(SourceFlag.EDGE):
            parts.append("at the image edge")
        out.append(", ".join(parts))
    return out


def apply_nucleus_triage(
    table: Table,
    *,
    diameter_px: tuple[float, float],
    psf_fwhm: float,
    alpha: float = 0.01,
    delta: float = 0.05,
    min_count: int = 50,
    weights: str | Path | None = None,
) -> Table:
    """Add the triage's decision columns to a nucleus expert table (a new table).

    Parameters
    ----------
    table : astropy.table.Table
        The nucleus expert's detections on a whole image (crowding is
        measured among them).
    diameter_px : (float, float)
        The expert's expected nucleus diameter range, pixels.
    psf_fwhm : float
        PSF FWHM, pixels.
    alpha, delta : float
        Risk and confidence of the certified triage.
    min_count : int
        Strata with fewer calibration items go to review.
    weights : str or path-like, optional
        Model file (default: the shipped ``nucleus_triage_v1.pt``).

    Returns
    -------
    astropy.table.Table
        With ``kind`` (``nucleus`` or ``artifact``), ``p_nucleus``,
        ``p_artifact``, ``confidence``, ``decision`` (``accepted``,
        ``rejected`` or ``review``), ``review_reason`` (ASCII; empty when
        decided), ``gate_reason`` and ``triage_stratum``; ``meta["gate"]``
        records the model and risk.
    """
    path = Path(weights) if weights is not None else DEFAULT_NUCLEUS_TRIAGE_WEIGHTS
    model = load_nucleus_triage(path)
    out = Table(table, copy=True)
    n = len(out)
    feats = nucleus_features(out, diameter_px=diameter_px, psf_fwhm=psf_fwhm)
    probs = predict_nucleus(model, feats)
    strata = nucleus_stratum(out, diameter_px=diameter_px, psf_fwhm=psf_fwhm,
                             diameter_range=model.diameter_range, psf_range=model.psf_range)
    beyond = outside_feature_range(feats, model.feature_range) if n else np.zeros(0, str)
    strata = np.where(beyond != "", OUT_OF_RANGE_STRATUM, strata)
    triage = _triage(str(path.resolve()), float(alpha), float(delta), int(min_count))
    conf = probs.max(axis=1) if n else np.zeros(0)
    auto, reasons = triage.decide(conf, strata) if n else (np.zeros(0, bool), [])
    kind = np.where(probs.argmax(axis=1) == 0, "nucleus", "artifact") if n else np.zeros(0, "U16")
    why = _explain(out, probs, diameter_px) if n else []
    why = [f"{w}; outside the calibrated range: {b}" if b else w for w, b in zip(why, beyond)]
    out["kind"] = np.asarray(kind, dtype="U16")
    out["p_nucleus"] = probs[:, 0] if n else np.zeros(0)
    out["p_artifact"] = probs[:, 1] if n else np.zeros(0)
    out["confidence"] = conf
    out["decision"] = np.where(auto, np.where(kind == "artifact", "rejected", "accepted"), "review").astype("U8") \
        if n else np.zeros(0, "U8")
    text = [f"{r}; {g}" if not a else "" for a, r, g in zip(auto, reasons, why)]
    out["review_reason"] = np.asarray([t.encode("ascii", "replace").decode("ascii") for t in text], dtype=str) \
        if n else np.zeros(0, "U1")
    out["gate_reason"] = np.asarray(why, dtype=str) if n else np.zeros(0, "U1")
    out["triage_stratum"] = strata.astype(str) if n else np.zeros(0, "U1")
    out.meta["gate"] = {"weights": path.name, "alpha": alpha, "delta": delta, "temperature": model.temperature,
                        "uncalibrated_strata": dict(triage.uncalibrated)}
    return out

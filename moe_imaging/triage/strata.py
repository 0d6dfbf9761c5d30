"""Triage strata: which calibration a detection's decision is certified by.

The certified thresholds (:mod:`moe_imaging.triage.certify`) hold per
stratum: a set of detections exchangeable with the calibration items of the
same name.  Survey strata split by PSF size and crowding (in beams, detections
per FWHM^2); a PSF outside the trained range or a field denser than every
calibration field gets a stratum of its own that the simulated calibration
never holds, so its detections go to review.  Microscopy strata live with the
microscopy head (:mod:`moe_imaging.triage.microscopy`).

Pure numpy; no torch.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.spatial import cKDTree

__all__ = [
    "FWHM_STRATA",
    "CROWDED_BEAM_DENSITY",
    "beam_density",
    "field_density",
    "fwhm_stratum",
    "outside_calibration_strata",
    "triage_stratum",
]


FWHM_STRATA: tuple[float, ...] = (2.5, 4.0)
"""Edges (px) of the PSF-size strata of the triage thresholds."""

CROWDED_BEAM_DENSITY = 0.01
"""Detections per PSF beam (per FWHM^2) above which a detection is ``crowded``.

Confusion is a matter of beams, not pixels: at 0.01 detections per FWHM^2 about
3 % of objects have a neighbour within one FWHM, and blends of two stars, or
segments merging several objects, dominate the gate's errors.  Crowded and
sparse detections are separate triage strata, so the easy sparse regime does
not hide the hard crowded one (nor the other way round)."""


def _unit_disc_points(n: int = 256) -> np.ndarray:
    """``n`` points spread evenly over the unit disc (a Fibonacci lattice), shape ``(n, 2)``."""
    k = np.arange(n) + 0.5
    r = np.sqrt(k / n)
    phi = k * np.pi * (3.0 - np.sqrt(5.0))
    return np.column_stack([r * np.cos(phi), r * np.sin(phi)])


def beam_density(x: np.ndarray, y: np.ndarray, fwhm: np.ndarray | float,
                 shape: tuple[int, int] | None = None) -> np.ndarray:
    """Local density of detections, in detections per FWHM^2, around each detection.

    Counts the *other* detections within ``R = max(50, 15 FWHM)`` px (a
    scale over which a field's crowding is smooth but still local, e.g. a
    cluster in an otherwise empty field) and divides by the disc's area in
    units of ``FWHM^2``.  With the image ``shape`` ``(ny, nx)`` only the part
    of the disc inside the image counts, so detections near an edge are not
    taken for sparse ones.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    n = len(x)
    f = np.broadcast_to(np.asarray(fwhm, dtype=float), (n,))
    out = np.zeros(n)
    ok = np.isfinite(x) & np.isfinite(y) & np.isfinite(f) & (f > 0)
    if ok.sum() < 2:
        return out
    radius = np.maximum(50.0, 15.0 * f[ok])
    xy = np.column_stack([x[ok], y[ok]])
    counts = np.array([len(v) - 1 for v in cKDTree(xy).query_ball_point(xy, radius)])
    inside = np.ones(len(xy))
    if shape is not None:
        ny, nx = shape
        px = xy[:, :1] + radius[:, None] * _unit_disc_points()[None, :, 0]
        py = xy[:, 1:] + radius[:, None] * _unit_disc_points()[None, :, 1]
        inside = np.clip(np.mean((px >= -0.5) & (px < nx - 0.5) & (py >= -0.5) & (py < ny - 0.5), axis=1), 0.1, 1.0)
    out[ok] = counts / (np.pi * radius**2 * inside) * f[ok] ** 2
    return out


def fwhm_stratum(fwhm: np.ndarray | float, mode: str = "survey", density: np.ndarray | float | None = None) -> np.ndarray:
    """The triage stratum of each detection, e.g. ``"survey:fwhm<2.5:sparse"`` or ``"survey:crowded"``.

    Sparse detections are split by PSF size (mode, FWHM bin); crowded ones
    (``density`` above :data:`CROWDED_BEAM_DENSITY`) form one stratum per
    mode: crowding is already measured in beams, so it is one regime whatever
    the PSF, and splitting its few calibration items by FWHM as well would
    leave each bin too small to certify anything.  ``density`` is
    :func:`beam_density`; without it the crowding part is left out.
    """
    f = np.atleast_1d(np.asarray(fwhm, dtype=float))
    lo, hi = FWHM_STRATA
    names = np.where(f < lo, f"fwhm<{lo:g}", np.where(f < hi, f"fwhm{lo:g}-{hi:g}", f"fwhm>={hi:g}")).astype(str)
    names = np.char.add(f"{mode}:", names)
    if density is None:
        return names
    crowded = np.broadcast_to(np.asarray(density, dtype=float), f.shape) > CROWDED_BEAM_DENSITY
    return np.where(crowded, f"{mode}:crowded", np.char.add(names, ":sparse")).astype(str)


def field_density(n_detections: int, fwhm: np.ndarray | float, shape: tuple[int, int]) -> float:
    """Detections per PSF beam (per FWHM^2) over a whole exposure: how crowded the field is as a whole.

    ``fwhm`` may be one value or one per detection (their median is used).
    """
    ny, nx = shape
    f = np.asarray(fwhm, dtype=float)
    f = f[np.isfinite(f)] if f.ndim else f
    beam = float(np.median(f)) ** 2 if np.size(f) else math.nan
    return float(n_detections) * beam / float(ny * nx) if ny * nx else math.nan


def outside_calibration_strata(mode: str = "survey") -> tuple[str, str]:
    """The strata the simulated calibration split never holds: a PSF outside the trained range, and an
    exposure denser than every calibration field (:func:`triage_stratum`).

    Their detections go to review until reviewers' labels calibrate them
    (:func:`moe_imaging.triage.recalibrate.recalibrate_with_labels`).
    """
    return f"{mode}:fwhm-outside-training-range", f"{mode}:field-denser-than-calibration"


def triage_stratum(psf_fwhm: np.ndarray, fwhm_range: tuple[float, float], mode: str = "survey",
                   density: np.ndarray | None = None, *, exposure_density: float | np.ndarray | None = None,
                   exposure_density_max: float | None = None) -> np.ndarray:
    """The stratum of each detection; outside the calibrated range a detection gets its own, never certified, stratum.

    A PSF outside the trained FWHM range gives ``"<mode>:fwhm-outside-training-range"``;
    an exposure whose :func:`field_density` ``exposure_density`` exceeds
    ``exposure_density_max`` (the densest calibration field) gives ``"<mode>:field-denser-than-calibration"``
    to all its detections (``exposure_density`` may also be given per
    detection, e.g. for rows pooled from many fields).  A sparser field than any
    in calibration is not refused: fewer neighbours make blends rarer, not more
    common.  A PSF outside the trained range takes precedence.
    """
    f = np.asarray(psf_fwhm, dtype=float)
    psf_outside, too_dense = outside_calibration_strata(mode)
    strata = fwhm_stratum(f, mode, density)
    if exposure_density is not None and exposure_density_max is not None:
        with np.errstate(invalid="ignore"):
            denser = np.broadcast_to(np.asarray(exposure_density, dtype=float) > exposure_density_max, f.shape)
        strata = np.where(denser, too_dense, strata)
    outside = ~((f >= fwhm_range[0]) & (f <= fwhm_range[1]))
    return np.where(outside, psf_outside, strata)

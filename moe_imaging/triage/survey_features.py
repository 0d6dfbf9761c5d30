"""The survey gate's inputs: every expert's evidence and the physics of each detection.

Pure numpy (no torch): the pipeline's scoring pass (every expert scores every
fused detection, :func:`score_candidates`) needs only this module; the network
that reads these features is :mod:`moe_imaging.triage.survey`.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from astropy.table import Table
from scipy.spatial import cKDTree

from ..tile import Tile

__all__ = ["EVIDENCE", "PHYSICS_FEATURES", "score_candidates", "physics_features", "evidence_features"]

EVIDENCE: dict[str, tuple[str, ...]] = {
    "point": ("point_snr", "point_sharpness"),
    "extended": ("extended_snr",),
    "artifact": ("artifact_sharp_sigma",),
    "streak": ("streak_line_snr", "streak_line_over_point"),
    "learned": ("p_star", "p_galaxy", "p_streak", "p_artifact", "learned_stability", "learned_in_range"),
}
"""The ``score`` columns of each expert the gate reads (in this order: :data:`contracts.vocabulary.SURVEY_EXPERTS`)."""

PHYSICS_FEATURES: tuple[str, ...] = (
    "log_snr",
    "size_over_psf",
    "sharpness",
    "elongation",
    "log_noise",
    "log_background_over_noise",
    "crowding",
    "log_fwhm",
    "rate_tracked",
    "near_threshold",
)
"""The physics features the gating network (and every head) sees."""


def score_candidates(tile: Tile, candidates: Table, experts: Sequence[object]) -> Table:
    """Every expert's evidence for every candidate of a tile (one row each, in order).

    Calls each expert's ``score``; the columns of :data:`EVIDENCE` an expert
    does not provide (or experts not given) are NaN.
    """
    n = len(candidates)
    out = Table()
    by_name = {getattr(e, "name", ""): e for e in experts}
    for name, cols in EVIDENCE.items():
        scored = by_name[name].score(tile, candidates) if name in by_name and n else None
        for col in cols:
            if scored is not None and col in scored.colnames:
                out[col] = np.asarray(scored[col], dtype=np.float64)
            else:
                out[col] = np.full(n, np.nan)
    return out


def _col(table: Table, name: str, default: float = np.nan) -> np.ndarray:
    if name in table.colnames:
        return np.asarray(table[name], dtype=np.float64)
    return np.full(len(table), default)


def physics_features(
    candidates: Table, *, psf_fwhm: float | np.ndarray, threshold: float = 5.0, rate_tracked: bool = False
) -> np.ndarray:
    """The :data:`PHYSICS_FEATURES` of each candidate, shape ``(n, len(PHYSICS_FEATURES))``.

    Missing measurements are replaced by neutral values (S/N 0, size 1,
    sharpness 1, elongation 0), so every expert's rows can be gated.
    """
    n = len(candidates)
    fwhm = np.broadcast_to(np.asarray(psf_fwhm, dtype=np.float64), (n,))
    if "psf_fwhm" in candidates.colnames:
        own = _col(candidates, "psf_fwhm")
        fwhm = np.where(np.isfinite(own) & (own > 0), own, fwhm)
    snr = np.nan_to_num(_col(candidates, "snr"), nan=0.0)
    sigma_psf = fwhm / 2.3548
    a = _col(candidates, "a")
    b = _col(candidates, "b")
    size = np.where(np.isfinite(a) & (a > 0), a / sigma_psf, 1.0)
    if "length" in candidates.colnames:  # a trail's size is its length
        length = _col(candidates, "length")
        size = np.where(np.isfinite(length) & (length > 0), np.maximum(size, length / fwhm), size)
    sharp = np.nan_to_num(_col(candidates, "sharpness"), nan=1.0)
    elong = np.where(np.isfinite(a) & np.isfinite(b) & (a > 0), 1.0 - np.clip(b / np.where(a > 0, a, 1.0), 0, 1), 0.0)
    noise = _col(candidates, "noise")
    noise = np.where(np.isfinite(noise) & (noise > 0), noise, 1.0)
    bkg = np.nan_to_num(_col(candidates, "background"), nan=0.0)
    if n:
        xy = np.column_stack([_col(candidates, "x"), _col(candidates, "y")])
        ok = np.all(np.isfinite(xy), axis=1)
        crowd = np.zeros(n)
        if ok.sum() > 1:
            tree = cKDTree(xy[ok])
            counts = np.array([len(v) - 1 for v in tree.query_ball_point(xy[ok], 5.0 * float(np.median(fwhm)))])
            crowd[ok] = counts
    else:
        crowd = np.zeros(0)
    feats = np.column_stack(
        [
            np.log10(np.clip(snr, 0.1, 1e6)),
            np.log(np.clip(size, 0.1, 1e3)),
            np.log(np.clip(sharp, 0.05, 50.0)),
            elong,
            np.log10(noise),
            np.arcsinh(bkg / noise / 100.0),
            np.log1p(crowd),
            np.log(fwhm / 3.0),
            np.full(n, 1.0 if rate_tracked else 0.0),
            np.exp(-0.5 * ((snr - threshold) / 1.5) ** 2),
        ]
    ) if n else np.zeros((0, len(PHYSICS_FEATURES)))
    return feats.astype(np.float32)


def evidence_features(evidence: Table) -> dict[str, np.ndarray]:
    """Each expert's evidence as a ``(n, k_e + 1)`` array: transformed values and a "said nothing" flag."""
    out = {}
    for name, cols in EVIDENCE.items():
        values = []
        missing = np.zeros(len(evidence), bool)
        for col in cols:
            v = _col(evidence, col)
            missing |= ~np.isfinite(v)
            if col.endswith("_snr") or col == "artifact_sharp_sigma":
                v = np.arcsinh(np.nan_to_num(v, nan=0.0) / 3.0)
            elif col in ("point_sharpness", "streak_line_over_point"):
                v = np.log(np.clip(np.nan_to_num(v, nan=1.0, posinf=50.0), 0.05, 50.0))
            else:
                v = np.nan_to_num(v, nan=0.25 if col.startswith("p_") else 0.0)
            values.append(v)
        values.append(missing.astype(np.float64))
        out[name] = np.column_stack(values).astype(np.float32)
    return out

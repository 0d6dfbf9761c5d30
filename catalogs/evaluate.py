"""Scoring a catalog against the truth table of a simulated exposure.

Each detection is assigned to at most one truth object:

* point-like truths (``star``, ``saturated_star``, ``galaxy``, ``cosmic_ray``,
  ``hot_pixel``) by nearest position within a kind-dependent radius (stars:
  ``max(1.5, 0.5 FWHM)`` px; galaxies: also within their half-light radius;
  saturated stars: ``2 FWHM``);
* ``streak`` when within ``2 FWHM`` of the streak's segment (the point
  expert may split a streak in pieces: all pieces count as the streak);
* ``bleed`` when on a saturated star's bleed column (within 2 px in x, inside
  its saturated rows);
* otherwise ``spurious``.

A second detection of the same star or galaxy is a ``duplicate``.
*Purity* is computed among non-artifact detections (everything but cosmic
rays, hot pixels and bleed trails, which the artifact expert is for):
``(real) / (real + spurious + duplicate)``.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from astropy.table import Table
from scipy.spatial import cKDTree

__all__ = ["TruthMatch", "match_to_truth", "completeness_by_snr", "purity", "astrometric_rms", "ARTIFACT_CLASSES"]

ARTIFACT_CLASSES = ("cosmic_ray", "hot_pixel", "bleed")
_POINT_KINDS = ("star", "saturated_star", "galaxy", "cosmic_ray", "hot_pixel")


@dataclasses.dataclass(frozen=True, eq=False)
class TruthMatch:
    """Result of :func:`match_to_truth`.

    Attributes
    ----------
    det_class : numpy.ndarray
        Per detection: the truth kind matched, ``'bleed'``, ``'duplicate'`` or ``'spurious'``.
    det_truth : numpy.ndarray
        Per detection: index of the matched truth row, or -1.
    truth_det : numpy.ndarray
        Per truth row: index of its (first, closest) detection, or -1.
    """

    det_class: np.ndarray
    det_truth: np.ndarray
    truth_det: np.ndarray


def _segment_distance(px, py, x0, y0, x1, y1):
    dx, dy = x1 - x0, y1 - y0
    L2 = dx * dx + dy * dy
    t = np.clip(((px - x0) * dx + (py - y0) * dy) / np.where(L2 > 0, L2, 1.0), 0.0, 1.0)
    return np.hypot(px - (x0 + t * dx), py - (y0 + t * dy))


def match_to_truth(catalog: Table, truth: Table, *, fwhm: float) -> TruthMatch:
    """Assign detections to truth objects (see module docs)."""
    n = len(catalog)
    det_class = np.full(n, "spurious", dtype="U16")
    det_truth = np.full(n, -1, dtype=np.int64)
    truth_det = np.full(len(truth), -1, dtype=np.int64)
    if n == 0:
        return TruthMatch(det_class, det_truth, truth_det)
    x = np.asarray(catalog["x"], float)
    y = np.asarray(catalog["y"], float)
    kind = np.asarray(truth["kind"]).astype(str)
    tx = np.asarray(truth["x"], float)
    ty = np.asarray(truth["y"], float)
    hlr = np.nan_to_num(np.asarray(truth["hlr"], float)) if "hlr" in truth.colnames else np.zeros(len(truth))
    r_star = max(1.5, 0.5 * fwhm)
    radius = np.where(kind == "galaxy", np.maximum(r_star, hlr), r_star)
    radius = np.where(kind == "saturated_star", 2.0 * fwhm, radius)
    npix = np.asarray(truth["npix"], float) if "npix" in truth.colnames else np.ones(len(truth))
    # a cosmic-ray track is a random walk of npix pixels: its peak can sit
    # up to ~npix/2 from the centroid
    radius = np.where(np.isin(kind, ("cosmic_ray", "hot_pixel")), 1.5 + 0.5 * npix, radius)
    pts = np.isin(kind, _POINT_KINDS)
    idx_pts = np.flatnonzero(pts)
    best_d = np.full(n, np.inf)
    if len(idx_pts):
        tree = cKDTree(np.column_stack([ty[idx_pts], tx[idx_pts]]))
        rmax = float(radius[idx_pts].max())
        for i, cands in enumerate(tree.query_ball_point(np.column_stack([y, x]), rmax)):
            for c in cands:
                t = idx_pts[c]
                d = float(np.hypot(x[i] - tx[t], y[i] - ty[t]))
                # normalised distance: prefer the object whose radius holds it best
                if d <= radius[t] and d / radius[t] < best_d[i]:
                    best_d[i] = d / radius[t]
                    det_truth[i] = t
    matched = det_truth >= 0
    det_class[matched] = kind[det_truth[matched]]
    # streaks
    for t in np.flatnonzero(kind == "streak"):
        row = truth[t]
        d = _segment_distance(x, y, float(row["x0"]), float(row["y0"]), float(row["x1"]), float(row["y1"]))
        on = (d <= 2 * fwhm) & ~matched
        det_class[on] = "streak"
        det_truth[on] = t
        matched |= on
    # bleed trails of saturated stars
    if "bleed_y0" in truth.colnames:
        for t in np.flatnonzero(kind == "saturated_star"):
            y0, y1 = int(truth["bleed_y0"][t]), int(truth["bleed_y1"][t])
            if y0 < 0:
                continue
            on = (np.abs(x - tx[t]) <= 2.0) & (y >= y0 - 2) & (y <= y1 + 2) & ~matched
            det_class[on] = "bleed"
            det_truth[on] = t
            matched |= on
    # one detection per star / galaxy: further ones are duplicates
    order = np.argsort(best_d, kind="stable")
    for i in order:
        t = det_truth[i]
        if t < 0:
            continue
        if truth_det[t] < 0:
            truth_det[t] = i
        elif kind[t] in ("star", "galaxy", "saturated_star"):
            det_class[i] = "duplicate"
    return TruthMatch(det_class, det_truth, truth_det)


def completeness_by_snr(
    match: TruthMatch,
    truth: Table,
    *,
    bins: tuple[float, ...] = (3, 5, 10, 20, 50, np.inf),
    kind: str = "star",
) -> Table:
    """Fraction of truth objects of ``kind`` detected, in bins of matched-filter S/N."""
    sel = np.asarray(truth["kind"]).astype(str) == kind
    snr = np.asarray(truth["mf_snr"], float)
    found = match.truth_det >= 0
    rows = []
    for lo, hi in zip(bins[:-1], bins[1:]):
        inbin = sel & (snr >= lo) & (snr < hi)
        n = int(inbin.sum())
        k = int((inbin & found).sum())
        rows.append((f"{lo:g}-{hi:g}" if np.isfinite(hi) else f"{lo:g}+", n, k, k / n if n else np.nan))
    return Table(rows=rows, names=("snr_bin", "n_true", "n_found", "completeness"))


def purity(match: TruthMatch) -> dict[str, float]:
    """Purity among non-artifact detections, with the counts behind it."""
    cls = match.det_class
    artifacts = np.isin(cls, ARTIFACT_CLASSES)
    spurious = int((cls == "spurious").sum())
    dup = int((cls == "duplicate").sum())
    non_art = int((~artifacts).sum())
    real = non_art - spurious - dup
    return {
        "n_detections": int(len(cls)),
        "n_artifact": int(artifacts.sum()),
        "n_cosmic_ray": int((cls == "cosmic_ray").sum()),
        "n_non_artifact": non_art,
        "n_real": real,
        "n_spurious": spurious,
        "n_duplicate": dup,
        "purity": real / non_art if non_art else np.nan,
    }


def astrometric_rms(match: TruthMatch, catalog: Table, truth: Table, *, min_snr: float = 20.0) -> dict[str, float]:
    """Position error of matched stars with truth S/N >= ``min_snr`` (pixels)."""
    kind = np.asarray(truth["kind"]).astype(str)
    snr = np.asarray(truth["mf_snr"], float)
    t = np.flatnonzero((kind == "star") & (snr >= min_snr) & (match.truth_det >= 0))
    d = match.truth_det[t]
    dx = np.asarray(catalog["x"], float)[d] - np.asarray(truth["x"], float)[t]
    dy = np.asarray(catalog["y"], float)[d] - np.asarray(truth["y"], float)[t]
    if len(t) == 0:
        return {"n": 0, "rms_x": np.nan, "rms_y": np.nan, "rms_radial": np.nan, "bias_x": np.nan, "bias_y": np.nan}
    return {
        "n": int(len(t)),
        "rms_x": float(np.sqrt(np.mean(dx**2))),
        "rms_y": float(np.sqrt(np.mean(dy**2))),
        "rms_radial": float(np.sqrt(np.mean(dx**2 + dy**2))),
        "bias_x": float(np.mean(dx)),
        "bias_y": float(np.mean(dy)),
    }

"""Measurements along and across a line: the pixels, and what the acceptance tests read.

The good pixels near a segment in its own frame (:func:`_pixels_near_line`),
point sources in the residuals of a fit (:func:`_compact_residuals`), the
worst part of a trail (:func:`_worst_part`, the ``gap`` test), the stretch of
highest S/N along a line (:func:`_best_segment_along`, the ends), the
amplitude over a local background plane (:func:`_local_contrast`, the
``contrast`` test) and the width across it (:func:`_width_scale`, the
``width`` test).

Package-internal: the names are private to :mod:`moe_imaging.experts.streak`.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from ...psf import PSF
from ...tile import Tile
from .lsf import _Edge

__all__ = [
    "_pixels_near_line", "_compact_residuals", "_worst_part", "_best_segment_along", "_local_contrast", "_width_scale",
]


def _pixels_near_line(
    tile: Tile, bad: np.ndarray, cx: float, cy: float, ux: float, uy: float, s_lo: float, s_hi: float,
    half_width: float,
) -> tuple[np.ndarray, ...]:
    """Pixel (s, t, value, variance, row, column) of good pixels within ``half_width`` of the segment (tile coordinates)."""
    ny, nx = np.shape(tile.image)
    ends = np.array([[cx + s_lo * ux, cy + s_lo * uy], [cx + s_hi * ux, cy + s_hi * uy]])
    x0 = int(max(0, math.floor(ends[:, 0].min() - half_width - 1)))
    x1 = int(min(nx, math.ceil(ends[:, 0].max() + half_width + 2)))
    y0 = int(max(0, math.floor(ends[:, 1].min() - half_width - 1)))
    y1 = int(min(ny, math.ceil(ends[:, 1].max() + half_width + 2)))
    if x1 <= x0 or y1 <= y0:
        return (np.zeros(0),) * 4 + (np.zeros(0, int),) * 2
    yy, xx = np.mgrid[y0:y1, x0:x1]
    dx, dy = xx - cx, yy - cy
    s = dx * ux + dy * uy
    t = -dx * uy + dy * ux
    img = np.asarray(tile.image)[y0:y1, x0:x1]
    var = np.asarray(tile.variance)[y0:y1, x0:x1]
    good = ~bad[y0:y1, x0:x1] & np.isfinite(img) & (np.abs(t) <= half_width) & (s >= s_lo) & (s <= s_hi)
    return (
        s[good].astype(float), t[good].astype(float), img[good].astype(float), var[good].astype(float),
        yy[good], xx[good],
    )


def _compact_residuals(r: np.ndarray, py: np.ndarray, px: np.ndarray, psf: PSF, nsigma: float = 5.0) -> np.ndarray:
    """Pixels belonging to point sources in the normalised residuals ``r`` at ``(py, px)``.

    The residuals are put back on their pixel grid, filtered with the PSF
    (unit-variance matched filter) and thresholded at ``nsigma``; detections
    are grown by the PSF's FWHM.
    """
    y0, x0 = py.min(), px.min()
    grid = np.zeros((py.max() - y0 + 1, px.max() - x0 + 1))
    have = np.zeros(grid.shape, bool)
    grid[py - y0, px - x0] = r
    have[py - y0, px - x0] = True
    k = np.asarray(psf.image)
    filt = ndimage.correlate(grid, k, mode="constant") / math.sqrt(float((k * k).sum()))
    hot = filt < -nsigma  # residual = model - data: a source makes it negative
    if not hot.any():
        return np.zeros(len(r), bool)
    grow = int(math.ceil(psf.fwhm))
    yy, xx = np.mgrid[-grow : grow + 1, -grow : grow + 1]
    hot = ndimage.binary_dilation(hot, structure=(yy * yy + xx * xx) <= grow * grow) & have
    return hot[py - y0, px - x0]


def _worst_part(
    pos: np.ndarray, num: np.ndarray, den: np.ndarray, s0: float, s1: float, amp: float, psf: PSF
) -> float:
    """The most significant shortfall of a part of ``[s0, s1)`` below half the amplitude, in sigma.

    The stretch is cut into up to 8 parts of at least ``2 FWHM``; each part's
    amplitude is ``sum(num) / sum(den)`` over the samples at ``pos`` in it (a
    weighted mean with inverse-variance weights ``den``), its error
    ``1 / sqrt(sum(den))``.  Two stars a segment filter joined leave an empty
    part (very negative); a uniform trail does not.  0 when nothing is inside.
    """
    n_parts = int(max(1, min(8, (s1 - s0) // max(2.0 * psf.fwhm, 4.0))))
    inside = (pos >= s0) & (pos < s1)
    k = np.minimum(((pos[inside] - s0) / (s1 - s0) * n_parts).astype(int), n_parts - 1)
    part_num = np.bincount(k, num[inside], n_parts)
    part_den = np.bincount(k, den[inside], n_parts)
    ok = part_den > 0
    if not ok.any():
        return 0.0
    return float(np.min((part_num[ok] / part_den[ok] - 0.5 * amp) * np.sqrt(part_den[ok])))


def _best_segment_along(
    p: np.ndarray, s: np.ndarray, t: np.ndarray, v: np.ndarray, ivar: np.ndarray, keep: np.ndarray,
    edge: "_Edge", lsf: tuple[np.ndarray, np.ndarray],
) -> tuple[float, float, float] | None:
    """``(A, s0, s1)`` of the contiguous stretch of the profile with the highest S/N.

    The profile along the line ``p = (A, t0, dtheta, ...)`` is binned in
    1-pixel steps (line-spread-function weighted, masked pixels left out);
    over all stretches ``[i, j)`` the S/N of the mean amplitude,
    ``sum(a w) / sqrt(sum w)``, is maximal where a uniform trail begins and
    ends (its half-maximum points), whatever lies beyond.
    """
    lsf_t, lsf_v = lsf
    _, t0, dth = p[0], p[1], p[2]
    c, sn = math.cos(dth), math.sin(dth)
    sr = (s * c + t * sn)[keep]
    tr = (-s * sn + t * c - t0)[keep]
    g = np.interp(tr, lsf_t, lsf_v, left=0.0, right=0.0)
    if len(sr) < 10:
        return None
    lo = math.floor(sr.min())
    k = (np.floor(sr) - lo).astype(int)
    nb = int(k.max()) + 1
    sw = np.bincount(k, v[keep] * g * ivar[keep], nb)  # sum a_k w_k with a_k w_k = sum v g / var
    ww = np.bincount(k, g * g * ivar[keep], nb)
    cs = np.concatenate([[0.0], np.cumsum(sw)])
    cw = np.concatenate([[0.0], np.cumsum(ww)])
    i, j = np.triu_indices(nb + 1, k=1)
    num, den = cs[j] - cs[i], cw[j] - cw[i]
    with np.errstate(divide="ignore", invalid="ignore"):
        score = np.where((den > 0) & (num > 0), num / np.sqrt(den), -np.inf)
    best = int(np.argmax(score))
    if not np.isfinite(score[best]):
        return None
    bi, bj = int(i[best]), int(j[best])
    return float(num[best] / den[best]), float(lo + bi), float(lo + bj)


def _local_contrast(
    tile: Tile, bad: np.ndarray, cx: float, cy: float, ux: float, uy: float, s_lo: float, s_hi: float, psf: PSF,
    lsf: tuple[np.ndarray, np.ndarray], amp: float,
) -> float:
    """The trail's amplitude with a local plane ``b0 + b1 t`` fitted under it, over ``amp``.

    Linear least squares over the pixels within ``4 FWHM`` of the trail's
    body, iteratively clipping pixels more than 4 sigma off (other sources).  About 1 for a trail on flat sky; near 0 (or negative) for a
    "trail" that is the edge of something broader.
    """
    if not (s_hi > s_lo and amp > 0):
        return 1.0
    lsf_t, lsf_v = lsf
    s, t, v, var, _, _ = _pixels_near_line(tile, bad, cx, cy, ux, uy, s_lo, s_hi, 4.0 * psf.fwhm + 2.0)
    if len(s) < 20:
        return 1.0
    w = 1.0 / np.sqrt(var)
    design = np.column_stack([np.interp(t, lsf_t, lsf_v, left=0.0, right=0.0), np.ones_like(t), t]) * w[:, None]
    target = v * w
    use = np.ones(len(t), bool)
    coef = np.zeros(3)
    for _ in range(3):  # clip the pixels of other sources in the band (4 sigma) and refit
        try:
            coef, *_ = np.linalg.lstsq(design[use], target[use], rcond=None)
        except np.linalg.LinAlgError:
            return 1.0
        new_use = np.abs(target - design @ coef) < 4.0
        if new_use.sum() < 20 or np.array_equal(new_use, use):
            break
        use = new_use
    return float(coef[0] / amp)


def _width_scale(t: np.ndarray, v: np.ndarray, ivar: np.ndarray, lsf: tuple[np.ndarray, np.ndarray]) -> float:
    """Scale ``k`` of the line-spread function ``LSF(t / k) / k`` fitting the profile across best.

    Least squares with the amplitude solved for each ``k`` on a grid from
    0.5 to 3 (0.05 steps): cheap and free of local minima.
    """
    lsf_t, lsf_v = lsf
    best, best_k = np.inf, 1.0
    for k in np.arange(0.5, 3.0001, 0.05):
        g = np.interp(t / k, lsf_t, lsf_v, left=0.0, right=0.0) / k
        den = float(np.sum(g * g * ivar))
        if den <= 0:
            continue
        a = float(np.sum(v * g * ivar)) / den
        chi = float(np.sum((v - a * g) ** 2 * ivar))
        if chi < best:
            best, best_k = chi, float(k)
    return best_k

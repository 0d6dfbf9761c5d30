"""The coarse segment-filter search: candidate trails on the binned grid.

The tile is binned, filtered once with the PSF (inverse-variance weighted)
and searched with segment filters of a few lengths at every angle; the
statistic is ``sqrt(n) * min(part significances)`` over ``n`` parts of the
segment (:func:`_coarse_search`).  Seeds above the threshold, and above
``line_over_point`` times the point-source significance, are grouped into
candidate lines within bins of their best angle (:func:`_seed_groups`).

Package-internal: the names are private to :mod:`moe_imaging.experts.streak`.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy import ndimage, signal

from ...detection import threshold_for_false_rate
from ...psf import PSF
from ...tile import Tile
from .config import StreakExpertConfig
from .filters import (
    _angles,
    _bin,
    _bin_factor,
    _binned_psf,
    _kernel_image,
    _kernel_norm,
    _shift_sum,
)
from .geometry import _segment_offsets, _split
from .masks import _unusable

__all__ = ["_Search", "_coarse_search", "_min_part_at", "_full_resolution_maps", "_seed_groups"]


_ANGLE_BINS = 12


@dataclasses.dataclass
class _Search:
    """Result of the coarse search on the binned grid."""

    b: int
    line: np.ndarray  # best sqrt(n) min-part statistic
    point: np.ndarray  # point-source significance
    angle: np.ndarray  # angle (rad) of the best filter
    threshold: float
    num: np.ndarray  # PSF-filtered, inverse-variance weighted image (binned)
    inv_den: np.ndarray  # 1 / its noise
    psf_b: np.ndarray  # binned PSF
    lengths_b: tuple[float, ...]  # filter lengths, binned pixels


def _coarse_search(tile: Tile, config: StreakExpertConfig, bad: np.ndarray | None = None) -> _Search:
    psf = tile.psf
    b = _bin_factor(psf.fwhm, config.max_bin)
    img = np.asarray(tile.image, dtype=np.float32)
    bad = _unusable(tile, config) if bad is None else bad
    var = np.asarray(tile.variance, dtype=np.float32)
    img_b = _bin(np.where(bad, 0.0, img).astype(np.float32), b)
    var_b = _bin(np.where(bad, 0.0, var).astype(np.float32), b)
    bad_b = _bin(bad.astype(np.uint8), b, reduce="max").astype(bool)
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.where(bad_b | ~(var_b > 0), 0.0, 1.0 / var_b).astype(np.float32)
    psf_b = _binned_psf(psf, b)
    fwhm_b = psf.fwhm / b
    kflip = psf_b[::-1, ::-1].astype(np.float32)
    num = signal.fftconvolve(img_b * w, kflip, mode="same").astype(np.float32)
    den2 = signal.fftconvolve(w, (kflip * kflip), mode="same").astype(np.float32)
    cover = signal.fftconvolve((w > 0).astype(np.float32), (kflip * kflip) / float((kflip * kflip).sum()), mode="same")
    valid = (den2 > 0) & (cover > 0.5)
    inv_den = np.where(valid, 1.0 / np.sqrt(np.where(valid, den2, 1.0)), 0.0).astype(np.float32)
    point = num * inv_den
    best = np.zeros_like(point)
    best_angle = np.zeros_like(point)
    n_filters = 0
    thresholds = []
    for length in config.filter_lengths(psf.fwhm):
        length_b = max(2.0, length / b)
        angles = _angles(length_b, fwhm_b)
        n_filters += len(angles)
        for angle in angles:
            stat = None
            for part in _split(_segment_offsets(length_b, angle), config.n_parts):
                a = _shift_sum(num, part)
                a *= inv_den
                a *= 1.0 / _kernel_norm(psf_b, part)
                stat = a if stat is None else np.minimum(stat, a, out=stat)
            stat *= math.sqrt(config.n_parts)
            better = stat > best
            best[better] = stat[better]
            best_angle[better] = angle
        thresholds.append(_kernel_image(psf_b, _segment_offsets(length_b, 0.0)))
    if config.threshold is not None:
        threshold = config.threshold
    else:
        rate = config.false_per_mpix * b * b / max(n_filters, 1)
        threshold = max(threshold_for_false_rate(k, rate) for k in thresholds)
    best[~valid] = 0.0
    lengths_b = tuple(max(2.0, v / b) for v in config.filter_lengths(psf.fwhm))
    return _Search(b=b, line=best, point=point, angle=best_angle, threshold=threshold, num=num, inv_den=inv_den,
                   psf_b=psf_b, lengths_b=lengths_b)


def _min_part_at(search: _Search, iy: np.ndarray, ix: np.ndarray, angle: float, length_b: float, n_parts: int) -> np.ndarray:
    """The min-part segment statistic at a few binned pixels (a gather, not a full map)."""
    ny, nx = search.num.shape
    out = None
    for part in _split(_segment_offsets(length_b, angle), n_parts):
        yy = iy[:, None] + part[None, :, 0]
        xx = ix[:, None] + part[None, :, 1]
        inside = (yy >= 0) & (yy < ny) & (xx >= 0) & (xx < nx)
        total = np.where(inside, search.num[np.clip(yy, 0, ny - 1), np.clip(xx, 0, nx - 1)], 0.0).sum(axis=1)
        value = total * search.inv_den[iy, ix] / _kernel_norm(search.psf_b, part)
        out = value if out is None else np.minimum(out, value)
    return math.sqrt(n_parts) * out


def _full_resolution_maps(tile: Tile, config: StreakExpertConfig) -> tuple[np.ndarray, np.ndarray]:
    """The coarse line and point significance maps, expanded to the tile's pixels."""
    search = _coarse_search(tile, config)
    ny, nx = np.shape(tile.image)
    b = search.b
    iy = np.minimum(np.arange(ny) // b, search.line.shape[0] - 1)
    ix = np.minimum(np.arange(nx) // b, search.line.shape[1] - 1)
    return search.line[np.ix_(iy, ix)], search.point[np.ix_(iy, ix)]


def _seed_groups(search: _Search, config: StreakExpertConfig, psf: PSF) -> list[tuple]:
    """Groups of seeds as lines on the tile grid: ``(cx, cy, angle, s_lo, s_hi, peak, anisotropy)``.

    Seeds are grouped by connectivity *within* overlapping bins of their best
    angle, so a trail is not swallowed by a blob of seeds around a bright
    neighbour; duplicates from overlapping bins are merged afterwards.
    """
    seeds = (search.line > search.threshold) & (search.line > config.line_over_point * search.point)
    if not seeds.any():
        return []
    b = search.b
    angle_bin = np.floor(search.angle / math.pi * _ANGLE_BINS).astype(int) % _ANGLE_BINS
    out = []
    for j in range(_ANGLE_BINS):
        sel = seeds & ((angle_bin == j) | (angle_bin == (j + 1) % _ANGLE_BINS))
        if not sel.any():
            continue
        labels, _ = ndimage.label(sel, structure=np.ones((3, 3), bool))
        for lab, sl in enumerate(ndimage.find_objects(labels), start=1):
            if sl is None:
                continue
            region = labels[sl] == lab
            yy, xx = np.nonzero(region)
            w = search.line[sl][region]
            angles = search.angle[sl][region]
            peak = int(np.argmax(w))
            # the group's angle: weighted median, unwrapped around the bin centre
            centre = (j + 1) * math.pi / _ANGLE_BINS
            unwrapped = (angles - centre + 0.5 * math.pi) % math.pi - 0.5 * math.pi + centre
            order = np.argsort(unwrapped)
            cum = np.cumsum(w[order])
            angle = float(unwrapped[order][np.searchsorted(cum, 0.5 * cum[-1])])
            ys = (yy + sl[0].start) * b + 0.5 * (b - 1)
            xs = (xx + sl[1].start) * b + 0.5 * (b - 1)
            cx, cy = float(np.average(xs, weights=w)), float(np.average(ys, weights=w))
            if len(xs) >= 5:
                # a long, thin group of seeds gives the angle far better than the filters' steps
                evals, evecs = np.linalg.eigh(np.cov(np.vstack([xs - cx, ys - cy]), aweights=w))
                if evals[1] > 25.0 * max(evals[0], 0.25 * b * b):
                    pca = math.atan2(evecs[1, 1], evecs[0, 1]) % math.pi
                    if abs((pca - angle + 0.5 * math.pi) % math.pi - 0.5 * math.pi) < math.radians(10.0):
                        angle = pca
            ux, uy = math.cos(angle), math.sin(angle)
            proj = (xs - cx) * ux + (ys - cy) * uy
            # anisotropy at the peak: the segment across the line must see much less than along it
            # (a blob or a star's wings look the same in every direction)
            piy, pix = np.array([yy[peak] + sl[0].start]), np.array([xx[peak] + sl[1].start])
            k = config.n_parts
            ang_pk = float(angles[peak])
            perp = max(float(_min_part_at(search, piy, pix, ang_pk + 0.5 * math.pi, lb, k)[0]) for lb in search.lengths_b)
            aniso = float(w[peak]) / max(perp, 1.0)
            out.append((cx, cy, angle % math.pi, float(proj.min()), float(proj.max()), float(w[peak]), aniso))
    return out

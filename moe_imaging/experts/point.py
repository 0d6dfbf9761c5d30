"""The point-source expert: PSF matched filtering with the PSF as the prior.

Steps on one :class:`~moe_imaging.tile.Tile`:

1. **Matched filter** (:func:`~moe_imaging.detection.matched_filter`): the
   S/N map ``nu`` and the maximum-likelihood PSF flux at every pixel, with
   inverse-variance weights (masked and saturated pixels carry no weight).
2. **Threshold**: ``nu >= threshold``.  By default the threshold is chosen so
   that pure noise gives ``false_detections_per_mpix`` detections per million
   pixels (:func:`~moe_imaging.detection.threshold_for_false_rate`): about
   4.8 sigma for a FWHM of 3 px at the default 1 per Mpix.  The number depends
   only on the PSF, never on the image or tile size.
3. **Peaks and deblending**: local maxima of ``nu``.  A peak is kept only if it
   is *prominent*: along the straight line to every higher peak within
   ``deblend_radius_fwhm`` FWHM, ``nu`` must dip below the fainter peak by at
   least ``max(deblend_nsigma, deblend_contrast * nu_peak)``.  Noise bumps on
   the wings of bright stars and galaxies fail this test; genuine close pairs
   pass it.  Saturated cores act as peaks of infinite height for the peaks
   around them.
4. **Saturated stars**: peaks with saturated pixels within one FWHM are
   dropped (non-linear pixels); instead the core of each saturated blob (a local maximum of
   the PSF-smoothed saturated-pixel fraction, so one-pixel-wide bleed trails
   are not mistaken for stars) is reported once, flagged ``SATURATED``, with
   an aperture flux that is a lower bound.
5. **Measurement**: sub-pixel centroid from a Gaussian fit to the 3x3 peak of
   ``nu`` (the maximum-likelihood position for a point source), PSF flux
   and error at that position (the error includes the source's Poisson noise
   when the gain is known), sharpness (peak pixel over the PSF's prediction:
   1 for a star, > 1 for cosmic rays and hot pixels, < 1 for galaxies),
   windowed second moments corrected for the Gaussian window (``a``, ``b``,
   ``theta``, roundness), and flags from :class:`~contracts.flags.SourceFlag`.

All positions are 0-based global pixel coordinates.  Only detections whose
integer peak lies in the tile's core are returned, so overlapping tiles never
report a source twice.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from astropy.table import Table
from scipy import ndimage
from scipy.spatial import cKDTree

from contracts.config import Config, check_range
from contracts.flags import MaskBit, SourceFlag

from ..detection import (
    connected_regions,
    find_peaks,
    matched_filter,
    refine_peaks,
    threshold_for_false_rate,
)
from ..psf import PSF
from ..tile import Tile
from .base import CANDIDATE_COLUMNS as BASE_COLUMNS
from .base import register

__all__ = ["PointExpertConfig", "PointExpert", "find_point_sources", "score_point_sources", "CANDIDATE_COLUMNS"]


CANDIDATE_COLUMNS: tuple[tuple[str, str], ...] = BASE_COLUMNS + (
    ("a", "f8"),
    ("b", "f8"),
    ("theta", "f8"),
    ("sharpness", "f8"),
    ("roundness", "f8"),
    ("background", "f8"),
    ("noise", "f8"),
)
"""Columns (name, numpy dtype) of the point expert's table: the contract's
columns (:data:`moe_imaging.experts.base.CANDIDATE_COLUMNS`) plus its shape
and sharpness measurements."""


@dataclasses.dataclass(frozen=True)
class PointExpertConfig(Config):
    """Options of the point-source expert.

    Attributes
    ----------
    false_detections_per_mpix : float
        Expected pure-noise detections per 10^6 pixels; sets the threshold.
    threshold : float or None
        Detection threshold in sigma; overrides ``false_detections_per_mpix``.
    kernel_energy : float
        Fraction of the PSF flux kept in the matched-filter kernel.
    min_coverage : float
        Minimum fraction of the PSF's information on good pixels for a detection.
    deblend_radius_fwhm : float
        Peaks closer than this (in FWHM) to a higher peak must pass the dip test.
    deblend_nsigma : float
        Minimum dip (in sigma of ``nu``) between a peak and a higher neighbour.
    deblend_contrast : float
        Minimum dip as a fraction of the fainter peak's ``nu``.
    blend_radius_fwhm : float
        Detections closer than this (in FWHM) are flagged ``BLENDED``.
    saturation_zone_fwhm : float
        Peaks within this distance (in FWHM) of a saturated core are tested
        against it.
    local_baseline : bool
        Require the peak to reach the threshold above the local baseline of
        ``nu`` (median on a ring), so wings of bright objects do not lift
        noise bumps into detections.
    ring_inner_fwhm, ring_outer_fwhm : float
        Radii (in FWHM) of that ring.
    sharp_max : float
        Sharpness above which (and 5 sigma above the PSF prediction) a
        detection is flagged ``TOO_SHARP``.
    """

    false_detections_per_mpix: float = 0.5
    threshold: float | None = None
    kernel_energy: float = 0.99
    min_coverage: float = 0.5
    deblend_radius_fwhm: float = 3.0
    deblend_nsigma: float = 2.0
    deblend_contrast: float = 0.1
    blend_radius_fwhm: float = 2.0
    saturation_zone_fwhm: float = 5.0
    sharp_max: float = 2.0
    local_baseline: bool = True
    ring_inner_fwhm: float = 2.5
    ring_outer_fwhm: float = 4.0

    def __post_init__(self) -> None:
        check_range("point.false_detections_per_mpix", self.false_detections_per_mpix, low=1e-6, high=1e5)
        check_range("point.threshold", self.threshold, low=1.0, high=1000.0, allow_none=True)
        check_range("point.kernel_energy", self.kernel_energy, low=0.5, high=1.0)
        check_range("point.min_coverage", self.min_coverage, low=0.0, high=1.0)
        check_range("point.deblend_radius_fwhm", self.deblend_radius_fwhm, low=0.5, high=20.0)
        check_range("point.deblend_nsigma", self.deblend_nsigma, low=0.0, high=100.0)
        check_range("point.deblend_contrast", self.deblend_contrast, low=0.0, high=1.0)
        check_range("point.blend_radius_fwhm", self.blend_radius_fwhm, low=0.0, high=20.0)
        check_range("point.saturation_zone_fwhm", self.saturation_zone_fwhm, low=0.0, high=50.0)
        check_range("point.sharp_max", self.sharp_max, low=1.0, high=100.0)
        check_range("point.ring_inner_fwhm", self.ring_inner_fwhm, low=1.0, high=20.0)
        check_range("point.ring_outer_fwhm", self.ring_outer_fwhm, low=self.ring_inner_fwhm + 0.5, high=30.0)

    def detection_threshold(self, psf: PSF) -> float:
        """The threshold in sigma for this PSF."""
        if self.threshold is not None:
            return float(self.threshold)
        return threshold_for_false_rate(psf.kernel(self.kernel_energy), self.false_detections_per_mpix)


def _window_radius(psf: PSF) -> int:
    return max(2, int(math.ceil(3.0 * psf.sigma)))


@register
class PointExpert:
    """Point sources (stars, unresolved galaxies) by PSF matched filtering.

    Parameters
    ----------
    config : PointExpertConfig
        The expert's options.
    """

    name = "point"
    kinds = ("star",)

    def __init__(self, config: PointExpertConfig = PointExpertConfig()) -> None:
        self.config = config

    def footprint(self, psf: PSF) -> int:
        """Halo (pixels) a tile needs so results do not depend on the tiling.

        A pixel's ``nu`` depends on pixels within the kernel radius; whether a
        peak is kept depends on ``nu`` within the deblending, blending and
        saturation-zone radii; its moments on the window radius.
        """
        cfg = self.config
        reach = max(
            cfg.deblend_radius_fwhm * psf.fwhm,
            cfg.blend_radius_fwhm * psf.fwhm,
            cfg.saturation_zone_fwhm * psf.fwhm + 2 * psf.fwhm,
            cfg.ring_outer_fwhm * psf.fwhm + 1,
            8 * max(1.0, psf.fwhm),  # saturated-core smoothing and trail test
            _window_radius(psf),
        )
        return int(psf.kernel_radius(cfg.kernel_energy) + math.ceil(reach) + 3)

    def propose(self, tile: Tile) -> Table:
        """Detect and measure point sources owned by ``tile`` (see module docs)."""
        return find_point_sources(tile, config=self.config)

    def score(self, tile: Tile, candidates: Table) -> Table:
        """Point-source evidence at each candidate's position.

        Columns: ``point_snr`` (the matched-filter significance, interpolated
        at the candidate's nearest pixel peak) and ``point_sharpness`` (peak
        pixel over the PSF's prediction: ~1 for a point source).  NaN for
        candidates outside the tile or where the filter is undefined.
        """
        return score_point_sources(tile, candidates, config=self.config)


def _empty() -> Table:
    return Table({name: np.zeros(0, dtype=dt) for name, dt in CANDIDATE_COLUMNS})


def find_point_sources(tile: Tile, *, config: PointExpertConfig = PointExpertConfig()) -> Table:
    """Detect and measure point sources on a tile (pure function).

    Parameters
    ----------
    tile : Tile
        Background-subtracted pixels, variance, mask and PSF.
    config : PointExpertConfig
        Options.

    Returns
    -------
    astropy.table.Table
        One row per detection owned by the tile's core, columns
        :data:`CANDIDATE_COLUMNS`, sorted by ``(y_peak, x_peak)``; an empty
        table with the same columns when nothing is found.
    """
    psf = tile.psf
    img = np.asarray(tile.image)
    if img.dtype.kind != "f":
        img = img.astype(np.float64)
    if img.size == 0:
        return _empty()
    mask = np.asarray(tile.mask)
    good = ~tile.bad
    if not good.any():
        return _empty()
    kernel = psf.kernel(config.kernel_energy)
    threshold = config.detection_threshold(psf)
    snr, _, ferr_map = matched_filter(
        img, tile.inverse_variance, kernel, good=good, smooth_weight=tile.smooth_variance,
        min_coverage=config.min_coverage, with_flux=False,
    )

    oy, ox = tile.origin
    ny_img, nx_img = tile.image_shape
    cy0, cy1, cx0, cx1 = tile.core

    # --- saturated cores ---------------------------------------------------
    # Saturated pixels are evidence of a bright star, unless the input's own
    # mask says the pixel is bad (a hot column reads "saturated" too).
    saturated = ((mask & np.uint16(MaskBit.SATURATED)) != 0) & ((mask & np.uint16(MaskBit.BAD)) == 0)
    ny_tile, nx_tile = img.shape
    open_edges = (oy > 0, oy + ny_tile < ny_img, ox > 0, ox + nx_tile < nx_img)
    sat_y, sat_x = _saturated_cores(saturated, psf, open_edges=open_edges)

    # --- peaks and the prominence (dip) test --------------------------------
    py, px = find_peaks(snr, threshold=threshold)
    keep = _prominent(snr, py, px, sat_y, sat_x, psf, config)
    # Significance above the local baseline of nu: the faint wings of bright
    # stars and galaxies lift the noise field, so a noise bump there can pass
    # the plain threshold.  The baseline is the median of nu on a ring of
    # radius [ring_inner_fwhm, ring_outer_fwhm] FWHM (robust to neighbours).
    if config.local_baseline and len(py):
        base = _ring_median(snr, py, px, psf, config)
        keep &= (snr[py, px] - np.clip(base, 0.0, None)) >= threshold
    # A peak with saturated pixels inside its PSF core is part of the saturated
    # star (non-linear pixels, charge spill, a matched filter fitting a masked
    # core): the saturated object is reported once, by its core, below.
    if saturated.any():
        near_sat = _footprint_flags(mask, py, px, 0, 0, mask.shape, psf, 0) & int(SourceFlag.SATURATED)
        keep &= near_sat == 0
    py, px = py[keep], px[keep]

    # --- ownership (before measuring: cheaper) ------------------------------
    gy_all = np.concatenate([py, sat_y]) + oy
    gx_all = np.concatenate([px, sat_x]) + ox
    is_sat = np.concatenate([np.zeros(len(py), bool), np.ones(len(sat_y), bool)])
    owned = (gy_all >= cy0) & (gy_all < cy1) & (gx_all >= cx0) & (gx_all < cx1)
    if not owned.any():
        return _empty()

    # --- measurements for point peaks ---------------------------------------
    dy, dx, height = refine_peaks(snr, py, px)
    ferr = ferr_map[py, px]
    flux = height * ferr
    kernel_sum2 = float(np.sum(kernel**2))
    if tile.gain is not None and tile.gain > 0:
        poisson = np.clip(flux, 0.0, None) * float(np.sum(kernel**3)) / kernel_sum2**2 / tile.gain
        flux_err = np.sqrt(ferr**2 + poisson)
    else:
        flux_err = ferr
    det_snr = height
    yc = py + dy
    xc = px + dx

    # --- saturated stars: aperture flux (lower bound: clipped pixels) --------
    s_flux, s_err, s_yc, s_xc = _saturated_photometry(img, np.asarray(tile.variance), saturated, sat_y, sat_x, psf)

    yc = np.concatenate([yc, s_yc])
    xc = np.concatenate([xc, s_xc])
    flux = np.concatenate([flux, s_flux])
    flux_err = np.concatenate([flux_err, s_err])
    det_snr = np.concatenate([det_snr, s_flux / s_err])
    iy = np.concatenate([py, sat_y])
    ix = np.concatenate([px, sat_x])

    # Blending is judged among all kept detections, owned or not.
    flags = np.zeros(len(iy), dtype=np.int32)
    if config.blend_radius_fwhm > 0 and len(iy) > 1:
        tree = cKDTree(np.column_stack([iy, ix]))
        pairs = tree.query_pairs(config.blend_radius_fwhm * psf.fwhm, output_type="ndarray")
        if len(pairs):
            flags[np.unique(pairs.ravel())] |= int(SourceFlag.BLENDED)

    sel = np.flatnonzero(owned)
    iy, ix, yc, xc = iy[sel], ix[sel], yc[sel], xc[sel]
    flux, flux_err, det_snr, flags, is_sat = flux[sel], flux_err[sel], det_snr[sel], flags[sel], is_sat[sel]

    a, b, theta = _windowed_shape(img, ~good, yc, xc, psf)
    sharp, excess = _sharpness(img, yc, xc, flux, psf)
    var_peak = np.asarray(tile.variance, dtype=np.float64)[iy, ix]
    noise = np.sqrt(np.clip(var_peak, 0, None))
    sharp_flag = (sharp > config.sharp_max) & (excess > 5.0 * noise) & ~is_sat
    flags[sharp_flag] |= int(SourceFlag.TOO_SHARP)

    flags |= _footprint_flags(mask, iy, ix, oy, ox, (ny_img, nx_img), psf, kernel.shape[0] // 2)

    with np.errstate(divide="ignore", invalid="ignore"):
        snr_out = flux / flux_err
        roundness = np.where(a > 0, 1.0 - b / a, np.nan)
    order = np.lexsort((ix, iy))
    cols = {
        "x": xc + ox,
        "y": yc + oy,
        "x_peak": (ix + ox).astype(np.int64),
        "y_peak": (iy + oy).astype(np.int64),
        "flux": flux,
        "flux_err": flux_err,
        "snr": snr_out,
        "det_snr": det_snr,
        "a": a,
        "b": b,
        "theta": theta,
        "sharpness": sharp,
        "roundness": roundness,
        "background": np.asarray(tile.background, dtype=np.float64)[iy, ix],
        "noise": noise,
        "kind": np.full(len(iy), "star", dtype="U16"),
        "expert": np.full(len(iy), "point", dtype="U16"),
        "flags": flags,
    }
    table = Table({name: np.asarray(cols[name], dtype=dt)[order] for name, dt in CANDIDATE_COLUMNS})
    table.meta["threshold"] = threshold
    return table


def score_point_sources(
    tile: Tile, candidates: Table, *, config: PointExpertConfig = PointExpertConfig()
) -> Table:
    """Point-source evidence (``point_snr``, ``point_sharpness``) at given positions.

    Parameters
    ----------
    tile : Tile
        The tile the candidates lie on.
    candidates : astropy.table.Table
        Rows with global 0-based ``x`` and ``y``.
    config : PointExpertConfig
        Options (kernel energy, coverage).
    """
    n = len(candidates)
    point_snr = np.full(n, np.nan)
    point_sharp = np.full(n, np.nan)
    img = np.asarray(tile.image)
    if n == 0 or img.size == 0:
        return Table({"point_snr": point_snr, "point_sharpness": point_sharp})
    good = ~tile.bad
    kernel = tile.psf.kernel(config.kernel_energy)
    snr, _, ferr = matched_filter(
        img, tile.inverse_variance, kernel, good=good, smooth_weight=tile.smooth_variance,
        min_coverage=config.min_coverage, with_flux=False,
    )
    oy, ox = tile.origin
    yl = np.asarray(candidates["y"], dtype=np.float64) - oy
    xl = np.asarray(candidates["x"], dtype=np.float64) - ox
    inside = np.isfinite(yl) & np.isfinite(xl) & (yl > -0.5) & (xl > -0.5) & (yl < img.shape[0] - 0.5) & (xl < img.shape[1] - 0.5)
    if inside.any():
        iy = _round_half_up(yl[inside])
        ix = _round_half_up(xl[inside])
        _, _, height = refine_peaks(snr, iy, ix)
        valid = snr[iy, ix] != 0
        point_snr[inside] = np.where(valid, height, np.nan)
        flux = height * ferr[iy, ix]
        sharp, _ = _sharpness(img, yl[inside], xl[inside], flux, tile.psf)
        point_sharp[inside] = np.where(valid, sharp, np.nan)
    return Table({"point_snr": point_snr, "point_sharpness": point_sharp})


def _saturated_cores(
    saturated: np.ndarray,
    psf: PSF,
    *,
    open_edges: tuple[bool, bool, bool, bool] = (False, False, False, False),
) -> tuple[np.ndarray, np.ndarray]:
    """One centre per saturated object: the core of each saturated region.

    Each 8-connected saturated region (core plus bleed trails) is one object.
    Its centre is the region pixel with the largest PSF-smoothed saturated
    fraction (the saturated disc of the star, not the thin trail).  A region
    cut by the tile's outer boundary (``open_edges``: top, bottom, left, right
    sides that are inside the image) is kept only if that centre stands clear
    of the cut and clearly above the trail (1.3x the region's median smoothed
    fraction away from the centre): a tile that sees only a trail reports
    nothing, the tile that sees the core reports it.
    """
    if not saturated.any():
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    sigma_s = max(1.0, psf.fwhm)
    ny, nx = saturated.shape
    margin = 4.0 * sigma_s
    pad = int(math.ceil(4 * sigma_s))
    ys, xs = [], []
    for sl, region in connected_regions(saturated):
        # smoothed saturated fraction on the region's padded box only
        by0, by1 = max(0, sl[0].start - pad), min(ny, sl[0].stop + pad)
        bx0, bx1 = max(0, sl[1].start - pad), min(nx, sl[1].stop + pad)
        box = ndimage.gaussian_filter(saturated[by0:by1, bx0:bx1].astype(np.float64), sigma_s, mode="constant")
        smooth_sl = box[sl[0].start - by0 : sl[0].stop - by0, sl[1].start - bx0 : sl[1].stop - bx0]
        vals = np.where(region, smooth_sl, -1.0)
        iy, ix = np.unravel_index(int(np.argmax(vals)), vals.shape)  # first max in row-major order
        cy, cx = iy + sl[0].start, ix + sl[1].start
        top, bottom, left, right = open_edges
        cut = (
            (top and sl[0].start == 0) or (bottom and sl[0].stop == ny)
            or (left and sl[1].start == 0) or (right and sl[1].stop == nx)
        )
        if cut:
            if (top and cy < margin) or (bottom and cy >= ny - margin) or (left and cx < margin) or (right and cx >= nx - margin):
                continue
            ry, rx = np.nonzero(region)
            far = np.hypot(ry + sl[0].start - cy, rx + sl[1].start - cx) > 3 * psf.fwhm
            if far.any() and smooth_sl[iy, ix] < 1.3 * np.median(smooth_sl[region][far]):
                continue
        ys.append(cy)
        xs.append(cx)
    order = np.lexsort((xs, ys))
    return np.asarray(ys, np.int64)[order], np.asarray(xs, np.int64)[order]


def _line_minimum(snr: np.ndarray, y0, x0, y1, x1, *, stop_at_invalid: bool) -> np.ndarray:
    """Minimum of ``snr`` along straight segments (bilinear samples, ~2 per pixel)."""
    if len(y0) == 0:
        return np.zeros(0)
    dist = np.hypot(y1 - y0, x1 - x0)
    n = int(max(3, math.ceil(2 * dist.max()) + 1))
    t = np.linspace(0.0, 1.0, n)[None, :]
    ys = y0[:, None] + (y1 - y0)[:, None] * t
    xs = x0[:, None] + (x1 - x0)[:, None] * t
    vals = ndimage.map_coordinates(snr, [ys.ravel(), xs.ravel()], order=1, mode="nearest").reshape(ys.shape)
    if stop_at_invalid:
        # stop the walk where the matched filter is undefined (saturated core)
        invalid = ndimage.map_coordinates((snr == 0).astype(float), [ys.ravel(), xs.ravel()], order=0, mode="nearest").reshape(ys.shape) > 0
        blocked = np.cumsum(invalid, axis=1) > 0
        vals = np.where(blocked, np.inf, vals)
        vals[:, 0] = snr[y0.astype(int), x0.astype(int)]
    return vals.min(axis=1)


def _prominent(
    snr: np.ndarray,
    py: np.ndarray,
    px: np.ndarray,
    sat_y: np.ndarray,
    sat_x: np.ndarray,
    psf: PSF,
    config: PointExpertConfig,
) -> np.ndarray:
    """Boolean mask of peaks that pass the dip test against higher neighbours."""
    keep = np.ones(len(py), bool)
    if len(py) == 0:
        return keep
    val = snr[py, px]
    need = np.maximum(config.deblend_nsigma, config.deblend_contrast * val)
    if len(py) > 1:
        tree = cKDTree(np.column_stack([py, px]))
        pairs = tree.query_pairs(config.deblend_radius_fwhm * psf.fwhm, output_type="ndarray")
        if len(pairs):
            i, j = pairs[:, 0], pairs[:, 1]
            # order each pair as (fainter, brighter); ties: later in row-major order is fainter
            rank = np.lexsort((px, py))  # row-major order index
            pos = np.empty_like(rank)
            pos[rank] = np.arange(len(rank))
            j_higher = (val[j] > val[i]) | ((val[j] == val[i]) & (pos[j] < pos[i]))
            faint = np.where(j_higher, i, j)
            bright = np.where(j_higher, j, i)
            saddle = _line_minimum(
                snr, py[faint].astype(float), px[faint].astype(float), py[bright].astype(float), px[bright].astype(float),
                stop_at_invalid=False,
            )
            fails = (val[faint] - saddle) < need[faint]
            keep[faint[fails]] = False
    if len(sat_y) and config.saturation_zone_fwhm > 0:
        tree = cKDTree(np.column_stack([sat_y, sat_x]))
        d, k = tree.query(np.column_stack([py, px]), distance_upper_bound=config.saturation_zone_fwhm * psf.fwhm + 2 * psf.fwhm)
        near = np.isfinite(d)
        if near.any():
            idx = np.flatnonzero(near)
            saddle = _line_minimum(
                snr, py[idx].astype(float), px[idx].astype(float), sat_y[k[idx]].astype(float), sat_x[k[idx]].astype(float),
                stop_at_invalid=True,
            )
            fails = (val[idx] - saddle) < need[idx]
            keep[idx[fails]] = False
    return keep


def _ring_median(snr: np.ndarray, py: np.ndarray, px: np.ndarray, psf: PSF, config: PointExpertConfig) -> np.ndarray:
    """Median of ``snr`` on a ring around each peak (pixels off the array ignored)."""
    r_in = config.ring_inner_fwhm * psf.fwhm
    r_out = config.ring_outer_fwhm * psf.fwhm
    r = int(math.ceil(r_out))
    off = np.arange(-r, r + 1)
    dy, dx = np.meshgrid(off, off, indexing="ij")
    rr = np.hypot(dy, dx)
    ring = (rr >= r_in) & (rr <= r_out)
    ry, rx = dy[ring], dx[ring]
    yy = py[:, None] + ry[None, :]
    xx = px[:, None] + rx[None, :]
    inside = (yy >= 0) & (yy < snr.shape[0]) & (xx >= 0) & (xx < snr.shape[1])
    vals = np.where(inside, snr[np.clip(yy, 0, snr.shape[0] - 1), np.clip(xx, 0, snr.shape[1] - 1)], np.nan)
    with np.errstate(all="ignore"):
        out = np.nanmedian(vals, axis=1)
    return np.nan_to_num(out, nan=0.0)


def _saturated_photometry(
    img: np.ndarray,
    variance: np.ndarray,
    saturated: np.ndarray,
    sy: np.ndarray,
    sx: np.ndarray,
    psf: PSF,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Aperture flux of saturated stars (a lower bound) and the saturated-core centroid."""
    n = len(sy)
    flux = np.full(n, np.nan)
    err = np.full(n, np.nan)
    yc = sy.astype(np.float64)
    xc = sx.astype(np.float64)
    ny, nx = img.shape
    for k in range(n):
        r_core = 2 * psf.fwhm
        y0, y1 = max(0, int(sy[k] - r_core)), min(ny, int(sy[k] + r_core) + 1)
        x0, x1 = max(0, int(sx[k] - r_core)), min(nx, int(sx[k] + r_core) + 1)
        core = saturated[y0:y1, x0:x1]
        if core.any():
            cy, cx = ndimage.center_of_mass(core)
            yc[k], xc[k] = cy + y0, cx + x0
        r_ap = 4.0 * psf.fwhm
        y0, y1 = max(0, int(yc[k] - r_ap)), min(ny, int(yc[k] + r_ap) + 2)
        x0, x1 = max(0, int(xc[k] - r_ap)), min(nx, int(xc[k] + r_ap) + 2)
        yy, xx = np.mgrid[y0:y1, x0:x1]
        inside = (yy - yc[k]) ** 2 + (xx - xc[k]) ** 2 <= r_ap**2
        flux[k] = float(np.sum(img[y0:y1, x0:x1][inside]))
        err[k] = float(np.sqrt(np.sum(np.clip(variance[y0:y1, x0:x1][inside], 0, None))))
    return flux, err, yc, xc


def _round_half_up(v: np.ndarray) -> np.ndarray:
    """Nearest integer with halves rounded up (``np.rint`` rounds halves to even,
    which depends on the tile origin's parity)."""
    return np.floor(v + 0.5).astype(int)


def _gather(arr: np.ndarray, iy: np.ndarray, ix: np.ndarray, r: int, fill: float) -> np.ndarray:
    """Stamps ``arr[iy-r:iy+r+1, ix-r:ix+r+1]`` for many centres, padded with ``fill``."""
    padded = np.pad(arr, r, mode="constant", constant_values=fill)
    off = np.arange(-r, r + 1)
    yy = iy[:, None, None] + r + off[None, :, None]
    xx = ix[:, None, None] + r + off[None, None, :]
    return padded[yy, xx]


def _windowed_shape(
    img: np.ndarray, bad: np.ndarray, yc: np.ndarray, xc: np.ndarray, psf: PSF
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Second moments in a Gaussian window of the PSF's sigma, corrected for the window.

    For a Gaussian source of covariance ``C`` the window ``exp(-r^2 / 2 s^2)``
    yields measured moments ``M = (C^-1 + I/s^2)^-1``, so ``C = (M^-1 - I/s^2)^-1``.
    Returns ``a``, ``b`` (RMS along the major/minor axes, pixels; the PSF
    included) and ``theta`` (degrees counter-clockwise from +x, in (-90, 90]).
    """
    n = len(yc)
    if n == 0:
        return np.zeros(0), np.zeros(0), np.zeros(0)
    r = _window_radius(psf)
    s2 = psf.sigma**2
    iy = np.clip(_round_half_up(yc), 0, img.shape[0] - 1)
    ix = np.clip(_round_half_up(xc), 0, img.shape[1] - 1)
    stamps = _gather(img, iy, ix, r, 0.0)
    good = ~_gather(bad, iy, ix, r, True)
    off = np.arange(-r, r + 1, dtype=np.float64)
    dy = off[None, :, None] + (iy - yc)[:, None, None]
    dx = off[None, None, :] + (ix - xc)[:, None, None]
    win = np.exp(-0.5 * (dy**2 + dx**2) / s2) * good
    wd = win * stamps
    m0 = wd.sum(axis=(1, 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        myy = (wd * dy**2).sum(axis=(1, 2)) / m0
        mxx = (wd * dx**2).sum(axis=(1, 2)) / m0
        mxy = (wd * dx * dy).sum(axis=(1, 2)) / m0
    m = np.stack([np.stack([mxx, mxy], -1), np.stack([mxy, myy], -1)], -2)
    a = np.full(n, np.nan)
    b = np.full(n, np.nan)
    theta = np.full(n, np.nan)
    finite = np.isfinite(m).all(axis=(1, 2)) & (m0 > 0)
    if finite.any():
        mm = m[finite]
        det = np.linalg.det(mm)
        ok = det > 0
        cov = mm.copy()
        inv = np.linalg.inv(np.where(ok[:, None, None], mm, np.eye(2)))
        corr = inv - np.eye(2) / s2
        cdet = np.linalg.det(corr)
        pd = ok & (cdet > 0) & (corr[:, 0, 0] > 0)
        cov[pd] = np.linalg.inv(corr[pd])
        vals, vecs = np.linalg.eigh(cov)
        lam_min = np.clip(vals[:, 0], 0, None)
        lam_max = np.clip(vals[:, 1], 0, None)
        ang = np.degrees(np.arctan2(vecs[:, 1, 1], vecs[:, 0, 1]))
        ang = np.where(ang <= -90, ang + 180, np.where(ang > 90, ang - 180, ang))
        a[finite] = np.sqrt(lam_max)
        b[finite] = np.sqrt(lam_min)
        theta[finite] = ang
    return a, b, theta


def _sharpness(
    img: np.ndarray, yc: np.ndarray, xc: np.ndarray, flux: np.ndarray, psf: PSF
) -> tuple[np.ndarray, np.ndarray]:
    """Peak pixel over the PSF's prediction for it, and the excess in data units."""
    if len(yc) == 0:
        return np.zeros(0), np.zeros(0)
    iy = np.clip(_round_half_up(yc), 0, img.shape[0] - 1)
    ix = np.clip(_round_half_up(xc), 0, img.shape[1] - 1)
    c = psf.half_size
    frac = ndimage.map_coordinates(psf.image, [c + (iy - yc), c + (ix - xc)], order=1, mode="constant")
    predicted = flux * frac
    data = img[iy, ix]
    with np.errstate(divide="ignore", invalid="ignore"):
        sharp = np.where(predicted > 0, data / predicted, np.nan)
    return sharp, data - predicted


def _footprint_flags(
    mask: np.ndarray,
    iy: np.ndarray,
    ix: np.ndarray,
    oy: int,
    ox: int,
    image_shape: tuple[int, int],
    psf: PSF,
    kernel_radius: int,
) -> np.ndarray:
    """EDGE, SATURATED and MASKED flags from the mask around each peak."""
    flags = np.zeros(len(iy), dtype=np.int32)
    if len(iy) == 0:
        return flags
    gy, gx = iy + oy, ix + ox
    ny, nx = image_shape
    edge = (gy < kernel_radius) | (gx < kernel_radius) | (gy >= ny - kernel_radius) | (gx >= nx - kernel_radius)
    flags[edge] |= int(SourceFlag.EDGE)
    r = max(1, int(math.ceil(psf.fwhm)))
    stamps = _gather(mask.astype(np.uint16), iy, ix, r, 0)
    off = np.arange(-r, r + 1)
    disk = (off[:, None] ** 2 + off[None, :] ** 2) <= r * r
    stamps = np.where(disk[None], stamps, 0)
    sat = (stamps & int(MaskBit.SATURATED)).any(axis=(1, 2))
    masked = (stamps & int(MaskBit.BAD | MaskBit.NONFINITE)).any(axis=(1, 2))
    flags[sat] |= int(SourceFlag.SATURATED)
    flags[masked] |= int(SourceFlag.MASKED)
    return flags

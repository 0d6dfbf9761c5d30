"""Trails in one tile (:func:`find_streaks`): search, look, fit, accept, report.

Candidate lines from the coarse search are screened by the cheap profile
test, fitted (the window growing while an end runs into it), accepted on
length, significance, ``fill``, ``gap``, ``width`` and ``contrast``, and
reported as the piece of each trail that crosses the tile's core.
"""

from __future__ import annotations

import math

import numpy as np
from astropy.table import Table

from contracts.flags import SourceFlag

from ...tile import Tile
from .columns import STREAK_COLUMNS, _empty
from .config import StreakExpertConfig
from .fit import _as_line, _fit_trail, _profile_test, _to_frame
from .geometry import _clip_to_box, _collinear, _merge_lines, _on_line, _window
from .lsf import line_spread_function
from .masks import _unusable
from .search import _coarse_search, _seed_groups

__all__ = ["find_streaks"]


def find_streaks(tile: Tile, *, config: StreakExpertConfig = StreakExpertConfig()) -> Table:
    """Trails crossing the tile's core, with end points, length, angle and flux.

    Parameters
    ----------
    tile : Tile
        Background-subtracted pixels with noise, mask and PSF.
    config : StreakExpertConfig
        Search and acceptance options.

    Returns
    -------
    astropy.table.Table
        One row per trail piece owned by the core (:data:`STREAK_COLUMNS`),
        global pixel coordinates; ``x, y`` is the middle of the owned part.
    """
    img = np.asarray(tile.image)
    if img.size == 0 or min(img.shape) < 4 or not np.any(~tile.bad):
        return _empty()
    psf = tile.psf
    bad = _unusable(tile, config)
    search = _coarse_search(tile, config, bad)
    lines = _seed_groups(search, config, psf)
    if not lines:
        return _empty()
    lines = _merge_lines(lines, gap=config.max_gap_fwhm * psf.fwhm, width=1.5 * psf.fwhm + search.b)
    lsf = line_spread_function(psf)
    oy, ox = tile.origin
    cy0, cy1, cx0, cx1 = tile.core
    min_len = config.min_length(psf.fwhm)
    longest = max(config.filter_lengths(psf.fwhm))
    rows = []
    width = psf.fwhm + search.b
    accepted: list[tuple] = []  # fitted trails as lines (tile coordinates)
    for cx, cy, angle, s_lo, s_hi, peak, aniso in sorted(lines, key=lambda r: -r[5]):
        if aniso < config.min_anisotropy:  # a blob, not a line: no need to fit
            continue
        # seeds lying on a trail already fitted are explained by it (whatever their angle: a
        # segment filter crossing a bright trail responds to it)
        if any(_on_line(a, cx, cy, 2.0 * width) for a in accepted):
            continue
        ux, uy = math.cos(angle), math.sin(angle)
        margin = 0.5 * longest + 4.0 * psf.fwhm
        lo, hi, lo_img, hi_img = _window(tile, cx, cy, ux, uy, s_lo, s_hi, margin)
        if hi - lo < 5:
            continue
        if not _profile_test(tile, bad, cx, cy, angle, s_lo, s_hi, lo, hi, psf, lsf, config, search.threshold):
            continue
        fit = _fit_trail(tile, bad, cx, cy, angle, s_lo, s_hi, lo, hi, psf, lsf, peak)
        # A faint trail's seeds may cover only part of it: while a fitted end runs into the
        # window's limit (not the tile's edge), grow the window there and fit again.
        for _ in range(3):
            if fit is None:
                break
            w_lo, w_hi = _to_frame(fit, cx, cy, ux, uy, lo, hi)
            near_lo = fit.s0 - w_lo < 3.0 * psf.fwhm
            near_hi = w_hi - fit.s1 < 3.0 * psf.fwhm
            if not (near_lo or near_hi):
                break
            extra = max(2.0 * margin, fit.s1 - fit.s0)
            lo2, hi2, _, _ = _window(tile, fit.cx, fit.cy, fit.ux, fit.uy, fit.s0 - (extra if near_lo else 0.0),
                                     fit.s1 + (extra if near_hi else 0.0), margin)
            if hi2 - lo2 <= (w_hi - w_lo) + 1.0:
                break  # the tile's edge: nothing more to see here (stitching joins the rest)
            refit = _fit_trail(tile, bad, fit.cx, fit.cy, math.atan2(fit.uy, fit.ux), fit.s0, fit.s1, lo2, hi2,
                               psf, lsf, peak)
            if refit is None:
                break
            cx, cy, ux, uy, lo, hi = fit.cx, fit.cy, fit.ux, fit.uy, lo2, hi2
            fit = refit
        if fit is None:
            continue
        # the window in the fit's own frame, and whether each of its limits is a tile's edge
        lo, hi = _to_frame(fit, cx, cy, ux, uy, lo, hi)
        _, _, lo_img, hi_img = _window(tile, fit.cx, fit.cy, fit.ux, fit.uy, lo - 1.0, hi + 1.0, 0.0)
        length = fit.s1 - fit.s0
        snr_total = fit.amp / fit.amp_err if fit.amp_err > 0 else 0.0
        if length < min_len or not snr_total >= search.threshold:
            continue
        if (
            abs(fit.fill - 1.0) > config.max_fill_deviation
            or fit.gap < -config.gap_sigma
            or fit.width > config.max_width
            or fit.contrast < config.min_contrast
        ):
            continue
        fitted = _as_line(fit)
        mid = fit.point(0.5 * (fit.s0 + fit.s1))
        if any(_collinear(a, fitted, 0.0, width) or _collinear(fitted, a, 0.0, width) for a in accepted) or any(
            _on_line(a, mid[0], mid[1], 2.0 * width) for a in accepted
        ):
            continue
        accepted.append(fitted)
        trunc0 = (not lo_img) and fit.s0 <= lo + 2.0 * psf.sigma + 1.0
        trunc1 = (not hi_img) and fit.s1 >= hi - 2.0 * psf.sigma - 1.0
        gx0, gy0 = fit.point(fit.s0)
        gx1, gy1 = fit.point(fit.s1)
        gx0, gx1, gy0, gy1 = gx0 + ox, gx1 + ox, gy0 + oy, gy1 + oy
        if math.atan2(gy1 - gy0, gx1 - gx0) < 0 or math.atan2(gy1 - gy0, gx1 - gx0) >= math.pi - 1e-12:
            gx0, gy0, gx1, gy1, trunc0, trunc1 = gx1, gy1, gx0, gy0, trunc1, trunc0
        clip = _clip_to_box(gx0, gy0, gx1, gy1, (cy0 - 0.5, cy1 - 0.5, cx0 - 0.5, cx1 - 0.5))
        if clip is None:
            continue
        u0, u1 = clip
        owned = (u1 - u0) * length
        mx = gx0 + 0.5 * (u0 + u1) * (gx1 - gx0)
        my = gy0 + 0.5 * (u0 + u1) * (gy1 - gy0)
        px = int(np.clip(math.floor(mx + 0.5), cx0, cx1 - 1))
        py = int(np.clip(math.floor(my + 0.5), cy0, cy1 - 1))
        flux = fit.amp * owned
        flux_err = fit.amp_err * owned
        flags = _flags(tile, gx0, gy0, gx1, gy1)
        rows.append(
            dict(
                x=mx, y=my, x_peak=px, y_peak=py, flux=flux, flux_err=flux_err,
                snr=flux / flux_err if flux_err > 0 else np.nan, det_snr=peak, kind="streak",
                expert="streak", flags=flags, x0=gx0, y0=gy0, x1=gx1, y1=gy1, length=length,
                angle_deg=math.degrees(math.atan2(gy1 - gy0, gx1 - gx0)) % 180.0,
                line_flux=fit.amp, owned_length=owned, anisotropy=aniso, fill=fit.fill, chi2=fit.chi2, gap=fit.gap, width=fit.width, contrast=fit.contrast, trunc0=trunc0, trunc1=trunc1, n_pieces=1,
            )
        )
    if not rows:
        return _empty()
    out = Table({name: np.array([r[name] for r in rows], dtype=dt) for name, dt in STREAK_COLUMNS})
    out.sort(["y_peak", "x_peak"])
    return out


def _flags(tile: Tile, x0: float, y0: float, x1: float, y1: float) -> int:
    """``SourceFlag.EDGE`` when an end point is within 2 pixels of the image's edge, else 0."""
    flags = 0
    ny, nx = tile.image_shape
    margin = 2.0
    for x, y in ((x0, y0), (x1, y1)):
        if x < margin or y < margin or x > nx - 1 - margin or y > ny - 1 - margin:
            flags |= int(SourceFlag.EDGE)
    return flags

"""Joining the pieces of a trail cut by tiles (:func:`stitch_streaks`).

Collinear, overlapping pieces become one trail whose end points are the
non-truncated ends, whose flux is the sum of the owned parts and whose
length and angle follow from the end points.
"""

from __future__ import annotations

import math

import numpy as np
from astropy.table import Table

from contracts.flags import SourceFlag

from ...psf import PSF
from .config import StreakExpertConfig
from .geometry import _collinear, _components

__all__ = ["stitch_streaks"]


def stitch_streaks(
    table: Table,
    *,
    psf: PSF,
    config: StreakExpertConfig = StreakExpertConfig(),
    image_shape: tuple[int, int] | None = None,
) -> Table:
    """Join the per-tile pieces of each trail into one object.

    Pieces are joined when they are collinear (each one's end points within
    ``1.5 FWHM`` of the other's line) and their fitted extents overlap or
    nearly touch.  The joined trail's end points are the non-truncated ends
    of its pieces (the median where several tiles saw the same end), its flux
    the sum of the pieces' owned fluxes (each pixel of the trail is owned by
    one core), its flux error their quadrature sum.

    Parameters
    ----------
    table : Table
        The streak expert's rows from every tile (:data:`STREAK_COLUMNS`).
    psf : PSF
        The PSF (tolerances scale with its FWHM).
    config : StreakExpertConfig
        ``max_gap_fwhm`` bounds the gap between joined pieces.
    image_shape : tuple of int, optional
        For the edge flag of joined trails.

    Returns
    -------
    Table
        One row per trail, sorted by ``(y_peak, x_peak)``.
    """
    n = len(table)
    if n <= 1:
        return table
    x0, y0 = np.asarray(table["x0"], float), np.asarray(table["y0"], float)
    x1, y1 = np.asarray(table["x1"], float), np.asarray(table["y1"], float)
    width = 1.5 * psf.fwhm
    gap = config.max_gap_fwhm * psf.fwhm
    lines = []
    for i in range(n):
        ang = math.atan2(y1[i] - y0[i], x1[i] - x0[i])
        length = math.hypot(x1[i] - x0[i], y1[i] - y0[i])
        lines.append((x0[i], y0[i], ang, 0.0, length, 0.0, 0.0))
    pairs = [
        (i, j)
        for i in range(n)
        for j in range(i + 1, n)
        if _collinear(lines[i], lines[j], gap, width) and _collinear(lines[j], lines[i], gap, width)
    ]
    groups = _components(n, pairs)
    if len(groups) == n:
        return table
    keep_rows = []
    for members in groups:
        if len(members) == 1:
            keep_rows.append({c: table[c][members[0]] for c in table.colnames})
            continue
        keep_rows.append(_join(table, members, image_shape))
    out = Table({c: np.array([r[c] for r in keep_rows], dtype=table[c].dtype) for c in table.colnames})
    out.sort(["y_peak", "x_peak"])
    return out


def _join(table: Table, members: list[int], image_shape: tuple[int, int] | None) -> dict:
    """One trail from its pieces (see :func:`stitch_streaks`)."""
    sub = table[members]
    # axis of the longest piece
    k = int(np.argmax(np.asarray(sub["length"])))
    ax0, ay0 = float(sub["x0"][k]), float(sub["y0"][k])
    ang = math.atan2(float(sub["y1"][k]) - ay0, float(sub["x1"][k]) - ax0)
    ux, uy = math.cos(ang), math.sin(ang)

    def s_of(x, y):
        return (np.asarray(x, float) - ax0) * ux + (np.asarray(y, float) - ay0) * uy

    s0, s1 = s_of(sub["x0"], sub["y0"]), s_of(sub["x1"], sub["y1"])
    lo_ok = ~np.asarray(sub["trunc0"], bool)
    hi_ok = ~np.asarray(sub["trunc1"], bool)
    lo = float(np.median(s0[lo_ok])) if lo_ok.any() else float(s0.min())
    hi = float(np.median(s1[hi_ok])) if hi_ok.any() else float(s1.max())
    # the perpendicular offset: flux-weighted mean of the pieces' mid-lines
    t_mid = -(0.5 * (np.asarray(sub["x0"]) + np.asarray(sub["x1"])) - ax0) * uy + (
        0.5 * (np.asarray(sub["y0"]) + np.asarray(sub["y1"])) - ay0
    ) * ux
    wts = np.maximum(np.asarray(sub["owned_length"], float), 1e-6)
    t = float(np.average(t_mid, weights=wts))
    bx, by = ax0 - t * uy, ay0 + t * ux
    gx0, gy0, gx1, gy1 = bx + lo * ux, by + lo * uy, bx + hi * ux, by + hi * uy
    if math.atan2(gy1 - gy0, gx1 - gx0) < 0:
        gx0, gy0, gx1, gy1 = gx1, gy1, gx0, gy0
    flux = float(np.sum(sub["flux"]))
    flux_err = float(np.sqrt(np.sum(np.asarray(sub["flux_err"], float) ** 2)))
    owned = float(np.sum(sub["owned_length"]))
    mx, my = 0.5 * (gx0 + gx1), 0.5 * (gy0 + gy1)
    row = {c: sub[c][0] for c in sub.colnames}
    flags = int(np.bitwise_or.reduce(np.asarray(sub["flags"], np.int64)))
    if image_shape is not None:
        ny, nx = image_shape
        flags &= ~int(SourceFlag.EDGE)
        for x, y in ((gx0, gy0), (gx1, gy1)):
            if x < 2 or y < 2 or x > nx - 3 or y > ny - 3:
                flags |= int(SourceFlag.EDGE)
    row.update(
        x=mx, y=my, x_peak=int(math.floor(mx + 0.5)), y_peak=int(math.floor(my + 0.5)), flux=flux,
        flux_err=flux_err, snr=flux / flux_err if flux_err > 0 else np.nan,
        det_snr=float(np.max(sub["det_snr"])), flags=flags, x0=gx0, y0=gy0, x1=gx1, y1=gy1,
        length=math.hypot(gx1 - gx0, gy1 - gy0), angle_deg=math.degrees(math.atan2(gy1 - gy0, gx1 - gx0)) % 180.0,
        line_flux=flux / owned if owned > 0 else float(np.median(sub["line_flux"])), owned_length=owned,
        trunc0=bool(not lo_ok.any()), trunc1=bool(not hi_ok.any()), n_pieces=int(np.sum(sub["n_pieces"])),
    )
    return row

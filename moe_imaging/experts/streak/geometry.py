"""Segment and line geometry of the streak expert.

Integer samples of a segment (and their split into parts), the window of a
line inside a tile (Liang-Barsky against the pixel box), a segment clipped
to a box, and the tests and unions of *lines*: tuples
``(cx, cy, angle, s_lo, s_hi, ...)``, a centre, a direction in [0, pi) and
the extent along it -- collinearity, a point on a line, the connected
groups of joined lines and the merging of collinear seed groups.

Package-internal: the names are private to :mod:`moe_imaging.experts.streak`.
"""

from __future__ import annotations

import math

import numpy as np

from ...tile import Tile

__all__ = [
    # segments and their windows
    "_segment_offsets", "_split", "_window", "_clip_to_box",
    # lines (cx, cy, angle, s_lo, s_hi, ...)
    "_ends", "_collinear", "_on_line", "_union", "_components", "_merge_lines",
]


def _segment_offsets(length: float, angle: float) -> np.ndarray:
    """Integer ``(dy, dx)`` samples of a centred segment (Bresenham: one per step of the major axis)."""
    c, s = math.cos(angle), math.sin(angle)
    major = max(abs(c), abs(s))
    n = max(1, int(round(length * major)))
    t = (np.arange(n) - 0.5 * (n - 1)) / major  # distance along the segment
    return np.column_stack([np.rint(t * s), np.rint(t * c)]).astype(int)


def _split(offsets: np.ndarray, n_parts: int) -> list[np.ndarray]:
    """The segment's samples in ``n_parts`` equal consecutive parts (a middle remainder is dropped)."""
    size = max(1, len(offsets) // n_parts)
    return [offsets[i * size : (i + 1) * size] for i in range(n_parts - 1)] + [offsets[len(offsets) - size :]]


def _window(
    tile: Tile, cx: float, cy: float, ux: float, uy: float, s_lo: float, s_hi: float, margin: float
) -> tuple[float, float, bool, bool]:
    """The fit window along the line, limited by the tile's pixels; whether each limit is the image's edge."""
    ny, nx = np.shape(tile.image)
    lo, hi = s_lo - margin, s_hi + margin
    lo_img = hi_img = False
    lo_edge = hi_edge = False
    # Liang-Barsky against the tile's pixel box [-0.5, n - 0.5]
    for p, q_lo, q_hi, at_lo, at_hi in (
        (ux, -0.5 - cx, nx - 0.5 - cx, tile.origin[1] == 0, tile.origin[1] + nx >= tile.image_shape[1]),
        (uy, -0.5 - cy, ny - 0.5 - cy, tile.origin[0] == 0, tile.origin[0] + ny >= tile.image_shape[0]),
    ):
        if abs(p) < 1e-12:
            continue
        a, c = q_lo / p, q_hi / p
        if p > 0:  # increasing s moves towards the high side
            if a > lo:
                lo, lo_edge, lo_img = a, True, at_lo
            if c < hi:
                hi, hi_edge, hi_img = c, True, at_hi
        else:
            if c > lo:
                lo, lo_edge, lo_img = c, True, at_hi
            if a < hi:
                hi, hi_edge, hi_img = a, True, at_lo
    return lo, hi, (lo_edge and lo_img) or not lo_edge, (hi_edge and hi_img) or not hi_edge


def _clip_to_box(
    x0: float, y0: float, x1: float, y1: float, box: tuple[float, float, float, float]
) -> tuple[float, float] | None:
    """Parameter interval ``[u0, u1]`` of the segment inside ``box = (ymin, ymax, xmin, xmax)``."""
    ymin, ymax, xmin, xmax = box
    u0, u1 = 0.0, 1.0
    dx, dy = x1 - x0, y1 - y0
    for p, q in ((-dx, x0 - xmin), (dx, xmax - x0), (-dy, y0 - ymin), (dy, ymax - y0)):
        if abs(p) < 1e-12:
            if q < 0:
                return None
            continue
        r = q / p
        if p < 0:
            u0 = max(u0, r)
        else:
            u1 = min(u1, r)
    return (u0, u1) if u1 > u0 else None


def _ends(line: tuple) -> np.ndarray:
    """The end points ``[[x_lo, y_lo], [x_hi, y_hi]]`` of ``line = (cx, cy, angle, s_lo, s_hi, ...)``."""
    cx, cy, a, lo, hi = line[:5]
    ux, uy = math.cos(a), math.sin(a)
    return np.array([[cx + lo * ux, cy + lo * uy], [cx + hi * ux, cy + hi * uy]])


def _collinear(a: tuple, b: tuple, gap: float, width: float, angle_tol: float = math.radians(10.0)) -> bool:
    """``b``'s ends lie within ``width`` of ``a``'s line and the two overlap or nearly touch."""
    cx, cy, ang, lo, hi = a[:5]
    dang = abs((ang - b[2] + 0.5 * math.pi) % math.pi - 0.5 * math.pi)
    if dang > angle_tol:
        return False
    ux, uy = math.cos(ang), math.sin(ang)
    eb = _ends(b)
    s = (eb[:, 0] - cx) * ux + (eb[:, 1] - cy) * uy
    t = -(eb[:, 0] - cx) * uy + (eb[:, 1] - cy) * ux
    length_b = hi - lo
    tol = width + 0.02 * max(abs(s).max(), length_b)
    if np.any(np.abs(t) > tol):
        return False
    return bool(s.max() >= lo - gap and s.min() <= hi + gap)


def _on_line(line: tuple, x: float, y: float, width: float) -> bool:
    """The point lies within ``width`` of the segment ``line``."""
    cx, cy, ang, lo, hi = line[:5]
    ux, uy = math.cos(ang), math.sin(ang)
    s = (x - cx) * ux + (y - cy) * uy
    t = -(x - cx) * uy + (y - cy) * ux
    return bool(abs(t) <= width and lo - width <= s <= hi + width)


def _union(a: tuple, b: tuple) -> tuple:
    """``a`` extended along its axis over ``b``'s ends; the peak and anisotropy of the brighter."""
    cx, cy, ang, lo, hi, peak, aniso = a
    ux, uy = math.cos(ang), math.sin(ang)
    eb = _ends(b)
    s = (eb[:, 0] - cx) * ux + (eb[:, 1] - cy) * uy
    return (cx, cy, ang, min(lo, s.min()), max(hi, s.max()), max(peak, b[5]), aniso if peak >= b[5] else b[6])


def _components(n: int, pairs: list[tuple[int, int]]) -> list[list[int]]:
    """Connected components of ``range(n)`` linked by ``pairs``, each sorted, ordered by first member."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    if not pairs:
        return [[i] for i in range(n)]
    i, j = np.asarray(pairs, dtype=np.int64).T
    graph = coo_matrix((np.ones(len(i)), (i, j)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    groups: dict[int, list[int]] = {}
    for k, lab in enumerate(labels):
        groups.setdefault(int(lab), []).append(k)
    return sorted(groups.values(), key=lambda g: g[0])


def _merge_lines(lines: list, gap: float, width: float, angle_tol: float = math.radians(10.0)) -> list:
    """Join collinear seed groups (one trail seen in two angle bins, or cut by a masked star).

    Two groups are joined when their angles agree within ``angle_tol``, the
    ends of each lie within ``width`` (plus 2 % of the distance) of the
    other's line, and they overlap or are at most ``gap`` apart along it.
    """
    n = len(lines)
    if n <= 1:
        return lines
    arr = np.array([line[:5] for line in lines], dtype=float)
    cx, cy, ang, lo, hi = arr.T
    ux, uy = np.cos(ang), np.sin(ang)
    ex = np.stack([cx + lo * ux, cx + hi * ux], axis=1)  # (n, 2) end x
    ey = np.stack([cy + lo * uy, cy + hi * uy], axis=1)
    pairs = []
    for i in range(n):
        dang = np.abs((ang - ang[i] + 0.5 * math.pi) % math.pi - 0.5 * math.pi)
        dx, dy = ex - cx[i], ey - cy[i]
        s = dx * ux[i] + dy * uy[i]
        t = -dx * uy[i] + dy * ux[i]
        tol = width + 0.02 * np.maximum(np.abs(s).max(axis=1), hi[i] - lo[i])
        ok = (dang <= angle_tol) & np.all(np.abs(t) <= tol[:, None], axis=1)
        ok &= (s.max(axis=1) >= lo[i] - gap) & (s.min(axis=1) <= hi[i] + gap)
        ok[: i + 1] = False
        pairs.extend((i, int(j)) for j in np.nonzero(ok)[0])
    groups = _components(n, pairs)
    merged = []
    for members in groups:
        # the axis of the longest member; the others extend it
        members.sort(key=lambda m: -(lines[m][4] - lines[m][3]))
        line = lines[members[0]]
        for m in members[1:]:
            line = _union(line, lines[m])
        merged.append(line)
    return merged

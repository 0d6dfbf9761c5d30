"""Candidate fusion: one row per object, whichever experts proposed it.

Several experts may propose the same object (the point expert sees a cosmic
ray as a peak, the artifact expert as a too-sharp pixel; a galaxy is a peak to
one and a segment to the other).  :func:`fuse` groups candidates of different
experts lying within ``radius`` of each other (transitively, deterministic)
and returns one row per group that keeps every member expert's evidence in
``<expert>_snr`` columns and lists the members in ``experts``.

Until the learned gate (which weighs all the evidence) exists, the row's
``kind`` and measurements come from one member chosen by physics-based
precedence, documented in :func:`fuse`:

0. a trail (``streak`` expert) absorbs the point and extended candidates
   lying along it (its light triggers them all the way), except sources much
   brighter than the trail that it merely crosses; trails join nothing by
   distance alone;
1. an ``artifact`` member wins: nothing the optics delivered can be sharper
   than the PSF, and saturated pixels are not a measurement;
2. otherwise an ``extended`` member that is resolved (``extent`` >=
   ``resolved_extent``) makes it a galaxy, with its Kron flux and shape;
3. otherwise the ``point`` member: a star (or an unresolved galaxy).

Fusion never loses what the point expert finds with confidence: a point
candidate of S/N >= ``keep_snr`` that the group's chosen member lies more than
``2 radius`` from (a star next to a cosmic ray or on a galaxy's segment,
joined to it only through a third expert's candidate) is split off as an
object of its own.  Every row keeps its point member's PSF-fit position and
flux (``point_x``, ``point_y``, ``point_flux``, ``point_flux_err``; NaN
without one), so a row the gate calls a star can take them
(:func:`psf_fit_measurements`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
from astropy.table import Table
from scipy.spatial import cKDTree

from .experts.base import CANDIDATE_COLUMNS

__all__ = ["fuse", "psf_fit_measurements", "POINT_COLUMNS"]

POINT_COLUMNS: tuple[str, ...] = ("point_x", "point_y", "point_flux", "point_flux_err")
"""The point member's PSF-fit measurements each fused row keeps (NaN without a point member)."""


def _evidence(name: str, table: Table) -> np.ndarray:
    col = "det_snr" if "det_snr" in table.colnames else "snr"
    return np.asarray(table[col], dtype=np.float64)


def _on_trail(candidates, names, rows, xs, ys, radius: float):
    """Pairs ``(streak row, other row)`` for point/extended candidates lying on a trail.

    A trail's light also triggers the point and extended experts all along
    it.  A candidate within ``radius`` of the segment (and of its ends; plus
    twice its semi-minor axis for a segment of the extended expert, whose
    centroid a blend can pull off the line) is the trail, unless it is more than 3 times brighter than the trail's own
    light over the candidate would be (``line_flux`` times the ``1.5 radius``
    a point filter integrates along a line, plus ``4 a`` for a segment of the
    extended expert): then it is a source the trail happens to cross -- unless
    it is a segment elongated along the trail (``b < a / 2``, axis within
    15 deg), which is a piece of the trail however bright.  Artifacts never
    join a trail.
    """
    streak = candidates["streak"]
    base = next(k for k, (e, _) in enumerate(rows) if names[e] == "streak")  # rows are grouped by expert
    others = np.array([k for k, (e, _) in enumerate(rows) if names[e] not in ("streak", "artifact")], dtype=int)
    if len(others) == 0:
        return []
    tree = cKDTree(np.column_stack([ys[others], xs[others]]))
    flux = np.full(len(rows), np.nan)
    size = np.zeros(len(rows))  # extent along the trail, beyond the PSF's
    across = np.zeros(len(rows))  # half-width across it, beyond the PSF's
    theta = np.full(len(rows), np.nan)  # major-axis angle of elongated segments (deg)
    for k, (e, i) in enumerate(rows):
        if names[e] not in ("streak", "artifact"):
            table = candidates[names[e]]
            flux[k] = float(table["flux"][i])
            if "a" in table.colnames and np.isfinite(table["a"][i]):
                size[k] = 4.0 * float(table["a"][i])
            if "b" in table.colnames and np.isfinite(table["b"][i]):
                across[k] = 2.0 * float(table["b"][i])
                a_k = float(table["a"][i]) if "a" in table.colnames else np.nan
                if "theta" in table.colnames and a_k > 0 and table["b"][i] < 0.5 * a_k:
                    theta[k] = float(table["theta"][i])
    pairs = []
    for i in range(len(streak)):
        x0, y0, x1, y1 = (float(streak[c][i]) for c in ("x0", "y0", "x1", "y1"))
        length = math.hypot(x1 - x0, y1 - y0)
        if not length > 0:
            continue
        ux, uy = (x1 - x0) / length, (y1 - y0) / length
        near = others[tree.query_ball_point([0.5 * (y0 + y1), 0.5 * (x0 + x1)], 0.5 * length + radius)]
        if len(near) == 0:
            continue
        dx, dy = xs[near] - x0, ys[near] - y0
        s = dx * ux + dy * uy
        t = np.abs(-dx * uy + dy * ux)
        line_flux = float(streak["line_flux"][i]) if "line_flux" in streak.colnames else np.inf
        bright = flux[near] > 3.0 * (1.5 * radius + size[near]) * line_flux
        # an elongated segment lying along the trail is a piece of it, however bright
        trail_deg = math.degrees(math.atan2(uy, ux))
        aligned = np.abs((theta[near] - trail_deg + 90.0) % 180.0 - 90.0) < 15.0
        bright &= ~aligned
        on = (t <= radius + across[near]) & (s >= -radius) & (s <= length + radius) & ~bright
        pairs.extend((base + i, int(k)) for k in near[on])
    return pairs


def fuse(
    candidates: Mapping[str, Table],
    *,
    radius: float,
    resolved_extent: float = 1.3,
    keep_snr: float = 10.0,
) -> Table:
    """Merge candidate tables of several experts into one row per object.

    Parameters
    ----------
    candidates : mapping of str to Table
        Each expert's candidates (global ``x``, ``y``; :data:`CANDIDATE_COLUMNS`).
    radius : float
        Candidates of different experts closer than this (pixels) are one object.
    resolved_extent : float
        ``extent`` (half-light radius over the PSF's) above which an
        ``extended`` member makes the object a galaxy.
    keep_snr : float
        A point candidate at least this significant, lying more than
        ``2 radius`` from its group's chosen member, is an object of its own.

    Returns
    -------
    astropy.table.Table
        The chosen member's candidate columns plus ``experts`` (comma-separated
        member names), ``n_experts`` and ``<expert>_snr`` for every expert
        (NaN where it did not propose the object); the extra columns of the
        chosen member's table (shape, subtype, ...) are kept where present.
        Sorted by ``(y_peak, x_peak)``.
    """
    names = sorted(candidates)
    rows = []  # (expert index, row index)
    for e, name in enumerate(names):
        rows.extend((e, i) for i in range(len(candidates[name])))
    extra_cols: list[tuple[str, np.dtype]] = []
    for name in names:
        for col in candidates[name].colnames:
            if col not in dict(CANDIDATE_COLUMNS) and col not in (c for c, _ in extra_cols):
                extra_cols.append((col, candidates[name][col].dtype))
    out_cols = [c for c, _ in CANDIDATE_COLUMNS] + [c for c, _ in extra_cols] + ["experts", "n_experts"] + [
        f"{n}_snr" for n in names
    ] + list(POINT_COLUMNS)
    if not rows:
        data = {c: np.zeros(0, dtype=dt) for c, dt in CANDIDATE_COLUMNS}
        data.update({c: np.zeros(0, dtype=dt) for c, dt in extra_cols})
        data["experts"] = np.zeros(0, dtype="U64")
        data["n_experts"] = np.zeros(0, dtype=np.int32)
        data.update({f"{n}_snr": np.zeros(0) for n in names})
        data.update({c: np.zeros(0) for c in POINT_COLUMNS})
        return Table(data)[out_cols]
    xs = np.concatenate([np.asarray(candidates[n]["x"], float) for n in names])
    ys = np.concatenate([np.asarray(candidates[n]["y"], float) for n in names])
    owner = np.array([e for e, _ in rows])
    # union-find over pairs of different experts within the radius
    parent = np.arange(len(rows))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    is_streak = np.array([names[e] == "streak" for e, _ in rows])
    pairs = cKDTree(np.column_stack([ys, xs])).query_pairs(radius, output_type="ndarray")
    for i, j in sorted(map(tuple, pairs)):
        # a trail is not a point: it joins others only through _on_trail below
        if owner[i] != owner[j] and not (is_streak[i] or is_streak[j]):
            ri, rj = root(int(i)), root(int(j))
            if ri != rj:
                parent[max(ri, rj)] = min(ri, rj)
    if "streak" in candidates and len(candidates["streak"]):
        for k, other in _on_trail(candidates, names, rows, xs, ys, radius):
            rk, ro = root(k), root(other)
            if rk != ro:
                parent[max(rk, ro)] = min(rk, ro)
    groups: dict[int, list[int]] = {}
    for k in range(len(rows)):
        groups.setdefault(root(k), []).append(k)

    def precedence(k: int) -> tuple[int, float]:
        e, i = rows[k]
        name, table = names[e], candidates[names[e]]
        if name == "streak":  # its group holds only what lies on the trail
            return (0, 0.0)
        if name == "artifact":
            return (1, 0.0)
        if name == "extended" and "extent" in table.colnames and table["extent"][i] >= resolved_extent:
            return (2, 0.0)
        if name == "point":
            return (3, 0.0)
        return (4, -float(_evidence(name, table)[i]))

    def chosen_of(members: list[int]) -> int:
        return min(members, key=lambda k: (precedence(k), k))

    for members in list(groups.values()):
        for k in _split_off(members, chosen_of(members), rows, names, candidates, xs, ys, radius, keep_snr):
            members.remove(k)
            groups[-1 - k] = [k]

    records = []
    for members in groups.values():
        chosen = chosen_of(members)
        e, i = rows[chosen]
        table = candidates[names[e]]
        rec = {c: table[c][i] for c, _ in CANDIDATE_COLUMNS}
        for c, dt in extra_cols:
            rec[c] = table[c][i] if c in table.colnames else (np.nan if np.dtype(dt).kind == "f" else np.zeros((), dt)[()])
        member_names = sorted({names[rows[k][0]] for k in members})
        rec["experts"] = ",".join(member_names)
        rec["n_experts"] = len(member_names)
        for n in names:
            rec[f"{n}_snr"] = np.nan
        for k in members:
            ek, ik = rows[k]
            val = _evidence(names[ek], candidates[names[ek]])[ik]
            key = f"{names[ek]}_snr"
            rec[key] = val if not np.isfinite(rec[key]) else max(rec[key], val)
        rec.update(_point_member(members, chosen, rows, names, candidates, xs, ys))
        records.append(rec)
    data = {c: np.asarray([r[c] for r in records]) for c in out_cols}
    for c, dt in CANDIDATE_COLUMNS:
        data[c] = data[c].astype(dt)
    result = Table(data)[out_cols]
    order = np.lexsort((np.asarray(result["x_peak"]), np.asarray(result["y_peak"])))
    return result[order]


def _split_off(members: list[int], chosen: int, rows, names, candidates, xs, ys, radius: float,
               keep_snr: float) -> list[int]:
    """Point candidates of a group that must stay objects of their own (see the module docs)."""
    if names[rows[chosen][0]] == "streak":  # a trail's group holds only what lies on it
        return []
    out = []
    for k in members:
        e, i = rows[k]
        if k == chosen or names[e] != "point":
            continue
        far = math.hypot(xs[k] - xs[chosen], ys[k] - ys[chosen]) > 2.0 * radius
        if far and _evidence("point", candidates["point"])[i] >= keep_snr:
            out.append(k)
    return out


def _point_member(members: list[int], chosen: int, rows, names, candidates, xs, ys) -> dict[str, float]:
    """The PSF-fit measurements of the group's point member nearest the chosen one (NaN without one)."""
    points = [k for k in members if names[rows[k][0]] == "point"]
    if not points:
        return {c: np.nan for c in POINT_COLUMNS}
    k = min(points, key=lambda m: (math.hypot(xs[m] - xs[chosen], ys[m] - ys[chosen]), m))
    table, i = candidates["point"], rows[k][1]
    return {"point_x": float(table["x"][i]), "point_y": float(table["y"][i]), "point_flux": float(table["flux"][i]),
            "point_flux_err": float(table["flux_err"][i])}


def psf_fit_measurements(table: Table) -> Table:
    """Rows whose ``kind`` is ``star`` take their point member's PSF-fit position and flux (a new table).

    The extended expert's centroid and Kron flux suit a galaxy; for a star the
    PSF fit is the maximum-likelihood position and flux.  ``point_*`` columns
    are dropped afterwards.
    """
    out = Table(table, copy=True)
    if not all(c in out.colnames for c in POINT_COLUMNS) or len(out) == 0:
        return out[[c for c in out.colnames if c not in POINT_COLUMNS]]
    star = (np.asarray(out["kind"]).astype(str) == "star") & np.isfinite(np.asarray(out["point_x"], float))
    for col, src in (("x", "point_x"), ("y", "point_y"), ("flux", "point_flux"), ("flux_err", "point_flux_err")):
        if col in out.colnames:
            values = np.asarray(out[col], float).copy()
            values[star] = np.asarray(out[src], float)[star]
            out[col] = values
    out.remove_columns(list(POINT_COLUMNS))
    return out

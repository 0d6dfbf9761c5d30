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

1. an ``artifact`` member wins: nothing the optics delivered can be sharper
   than the PSF, and saturated pixels are not a measurement;
2. otherwise an ``extended`` member that is resolved (``extent`` >=
   ``resolved_extent``) makes it a galaxy, with its Kron flux and shape;
3. otherwise the ``point`` member: a star (or an unresolved galaxy).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from astropy.table import Table
from scipy.spatial import cKDTree

from .experts.base import CANDIDATE_COLUMNS

__all__ = ["fuse"]


def _evidence(name: str, table: Table) -> np.ndarray:
    col = "det_snr" if "det_snr" in table.colnames else "snr"
    return np.asarray(table[col], dtype=np.float64)


def fuse(
    candidates: Mapping[str, Table],
    *,
    radius: float,
    resolved_extent: float = 1.3,
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
    ]
    if not rows:
        data = {c: np.zeros(0, dtype=dt) for c, dt in CANDIDATE_COLUMNS}
        data.update({c: np.zeros(0, dtype=dt) for c, dt in extra_cols})
        data["experts"] = np.zeros(0, dtype="U64")
        data["n_experts"] = np.zeros(0, dtype=np.int32)
        data.update({f"{n}_snr": np.zeros(0) for n in names})
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

    pairs = cKDTree(np.column_stack([ys, xs])).query_pairs(radius, output_type="ndarray")
    for i, j in sorted(map(tuple, pairs)):
        if owner[i] != owner[j]:
            ri, rj = root(int(i)), root(int(j))
            if ri != rj:
                parent[max(ri, rj)] = min(ri, rj)
    groups: dict[int, list[int]] = {}
    for k in range(len(rows)):
        groups.setdefault(root(k), []).append(k)

    def precedence(k: int) -> tuple[int, float]:
        e, i = rows[k]
        name, table = names[e], candidates[names[e]]
        if name == "artifact":
            return (0, 0.0)
        if name == "extended" and "extent" in table.colnames and table["extent"][i] >= resolved_extent:
            return (1, 0.0)
        if name == "point":
            return (2, 0.0)
        return (3, -float(_evidence(name, table)[i]))

    records = []
    for members in groups.values():
        chosen = min(members, key=lambda k: (precedence(k), k))
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
        records.append(rec)
    data = {c: np.asarray([r[c] for r in records]) for c in out_cols}
    for c, dt in CANDIDATE_COLUMNS:
        data[c] = data[c].astype(dt)
    result = Table(data)[out_cols]
    order = np.lexsort((np.asarray(result["x_peak"]), np.asarray(result["y_peak"])))
    return result[order]

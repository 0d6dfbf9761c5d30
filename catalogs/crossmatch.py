"""Cross-matching catalogs: against a reference catalog and between exposures.

Matching is on the sky (:class:`astropy.coordinates.SkyCoord`, radius an
angle) or in pixels (a k-d tree on ``x``/``y``, radius in ``pix``), chosen by
the unit of the radius.  The result is always a :class:`pandas.DataFrame` of
matched pairs: the row positions ``index_1`` / ``index_2`` in the two inputs,
the separation (``separation_arcsec`` or ``separation_px``) and the requested
columns of each side with the suffixes ``_1`` and ``_2`` (TOPCAT's
convention).  Rows without finite coordinates never match.

Three ways of pairing:

``"nearest"``
    each row of the first catalog with its nearest row of the second within the
    radius (a reference row may be used more than once);
``"mutual"``
    only pairs that are each other's nearest (one-to-one);
``"all"``
    every pair within the radius.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import astropy.units as u
import numpy as np
import pandas as pd
from astropy.coordinates import SkyCoord, search_around_sky
from astropy.table import Table
from scipy.spatial import cKDTree

from contracts.errors import InputError

from .schema import SCHEMA_VERSION, CatalogSchemaError

__all__ = ["HOW", "crossmatch", "crossmatch_exposures", "match_summary", "exposure_match_summary"]

HOW: tuple[str, ...] = ("nearest", "mutual", "all")
"""The ways :func:`crossmatch` pairs rows."""


def _frame(table: Any, what: str) -> pd.DataFrame:
    """Return ``table`` as a DataFrame (astropy tables converted, units dropped to values)."""
    if isinstance(table, pd.DataFrame):
        return table
    if isinstance(table, Table):
        flat = [n for n in table.colnames if len(table[n].shape) <= 1]
        out = {}
        for name in flat:
            col = table[name]
            values = col.value if isinstance(col, u.Quantity) else np.ma.filled(np.ma.asarray(col), _fill(col))
            out[name] = np.asarray(values)
        return pd.DataFrame(out)
    raise InputError(what, f"expected a pandas DataFrame or an astropy Table, got {type(table).__name__}")


def _fill(col: Any) -> Any:
    kind = np.asarray(col).dtype.kind
    return np.nan if kind == "f" else ("" if kind in "US" else 0)


def _coords(table: Any, df: pd.DataFrame, names: tuple[str, str], unit: u.UnitBase, what: str) -> np.ndarray:
    """The two coordinate columns as float arrays in ``unit`` (shape (n, 2))."""
    out = []
    for name in names:
        if name not in df.columns:
            raise CatalogSchemaError(
                f"{what}: missing column {name!r} needed for cross-matching "
                f"(catalog schema {SCHEMA_VERSION})"
            )
        try:
            values = np.asarray(df[name], dtype=np.float64)
        except (TypeError, ValueError):
            raise CatalogSchemaError(
                f"{what}: column {name!r} is not numeric (catalog schema {SCHEMA_VERSION})"
            ) from None
        have = getattr(table[name], "unit", None) if isinstance(table, Table) else None
        if have is not None and have != u.dimensionless_unscaled:
            try:
                values = (values * have).to_value(unit)
            except u.UnitsError:
                raise CatalogSchemaError(
                    f"{what}: column {name!r} is in '{have}', not convertible to '{unit}' "
                    f"(catalog schema {SCHEMA_VERSION})"
                ) from None
        out.append(values)
    return np.column_stack(out) if out[0].size else np.zeros((0, 2))


def _radius(radius: float | u.Quantity, unit: str | u.UnitBase) -> tuple[float, bool]:
    """``(value, on_sky)``: the radius in arcsec (sky) or pixels."""
    q = radius if isinstance(radius, u.Quantity) else float(radius) * u.Unit(unit)
    if not q.isscalar:
        raise InputError("radius", "must be one number")
    if q.unit.is_equivalent(u.arcsec):
        value, sky = float(q.to_value(u.arcsec)), True
    elif q.unit.is_equivalent(u.pix):
        value, sky = float(q.to_value(u.pix)), False
    else:
        raise InputError("radius", f"unit '{q.unit}' is neither an angle nor pixels")
    if not np.isfinite(value) or value <= 0:
        raise InputError("radius", f"must be positive, got {q}")
    return value, sky


def _pairs_all(p1: np.ndarray, p2: np.ndarray, r: float, sky: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if sky:
        c1 = SkyCoord(p1[:, 0] * u.deg, p1[:, 1] * u.deg)
        c2 = SkyCoord(p2[:, 0] * u.deg, p2[:, 1] * u.deg)
        i, j, sep, _ = search_around_sky(c1, c2, r * u.arcsec)
        return np.asarray(i), np.asarray(j), sep.to_value(u.arcsec)
    tree = cKDTree(p2)
    lists = tree.query_ball_point(p1, r)
    i = np.repeat(np.arange(len(p1)), [len(x) for x in lists])
    j = np.fromiter(itertools.chain.from_iterable(lists), dtype=np.int64, count=len(i))
    d = np.hypot(*(p1[i] - p2[j]).T) if len(i) else np.zeros(0)
    return i, j, d


def _nearest(p1: np.ndarray, p2: np.ndarray, sky: bool) -> tuple[np.ndarray, np.ndarray]:
    """For each row of ``p1``: index of and separation to the nearest row of ``p2``."""
    if sky:
        c1 = SkyCoord(p1[:, 0] * u.deg, p1[:, 1] * u.deg)
        c2 = SkyCoord(p2[:, 0] * u.deg, p2[:, 1] * u.deg)
        j, sep, _ = c1.match_to_catalog_sky(c2)
        return np.asarray(j), sep.to_value(u.arcsec)
    d, j = cKDTree(p2).query(p1)
    return np.asarray(j), np.asarray(d)


def _pairs(p1: np.ndarray, p2: np.ndarray, r: float, sky: bool, how: str):
    ok1 = np.flatnonzero(np.isfinite(p1).all(axis=1))
    ok2 = np.flatnonzero(np.isfinite(p2).all(axis=1))
    empty = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0))
    if len(ok1) == 0 or len(ok2) == 0:
        return empty
    a, b = p1[ok1], p2[ok2]
    if how == "all":
        i, j, d = _pairs_all(a, b, r, sky)
        order = np.lexsort((d, i))
        i, j, d = i[order], j[order], d[order]
    else:
        j, d = _nearest(a, b, sky)
        i = np.arange(len(a))
        keep = d <= r
        if how == "mutual":
            back, _ = _nearest(b, a, sky)
            keep &= back[j] == i
        i, j, d = i[keep], j[keep], d[keep]
    return ok1[i].astype(np.int64), ok2[j].astype(np.int64), np.asarray(d, dtype=np.float64)


def crossmatch(
    table1: Any,
    table2: Any,
    *,
    radius: float | u.Quantity = 1.0,
    unit: str = "arcsec",
    how: str = "nearest",
    columns1: Sequence[str] | None = None,
    columns2: Sequence[str] | None = None,
    sky_columns1: tuple[str, str] = ("ra", "dec"),
    sky_columns2: tuple[str, str] = ("ra", "dec"),
    pixel_columns1: tuple[str, str] = ("x", "y"),
    pixel_columns2: tuple[str, str] = ("x", "y"),
) -> pd.DataFrame:
    """Match the rows of ``table1`` to those of ``table2`` within ``radius``.

    Parameters
    ----------
    table1, table2 : pandas.DataFrame or astropy Table / QTable
        The catalogs (e.g. from :func:`catalogs.open_catalog`) or a reference
        catalog.  Sky columns are degrees unless they are Quantities.
    radius : float or astropy.units.Quantity
        Match radius: an angle (sky match on ``sky_columns``) or pixels
        (planar match on ``pixel_columns``; the two tables must share a pixel
        grid).  A plain number is in ``unit``.
    unit : str
        Unit of a plain-number radius: ``"arcsec"`` (default), ``"deg"``,
        ``"pix"``, ...
    how : {"nearest", "mutual", "all"}
        See the module documentation.
    columns1, columns2 : sequence of str, optional
        Columns of each table to carry into the result (default: all).
    sky_columns1, sky_columns2 : (str, str)
        Right ascension and declination columns (ICRS degrees).
    pixel_columns1, pixel_columns2 : (str, str)
        Pixel coordinate columns.

    Returns
    -------
    pandas.DataFrame
        One row per pair: ``index_1``, ``index_2`` (row positions in the
        inputs), ``separation_arcsec`` or ``separation_px``, then the carried
        columns suffixed ``_1`` and ``_2``.  Sorted by ``index_1``, then
        separation.  ``attrs`` holds ``radius``, ``unit``, ``how``,
        ``n_1``, ``n_2``.

    Raises
    ------
    InputError
        A bad radius, unit or ``how``, or an input that is not a table.
    CatalogSchemaError
        A coordinate column or a carried column is missing (named).
    """
    if how not in HOW:
        raise InputError("how", f"must be one of {list(HOW)}, got {how!r}")
    r, sky = _radius(radius, unit)
    df1, df2 = _frame(table1, "table1"), _frame(table2, "table2")
    unit_ = u.deg if sky else u.pix
    p1 = _coords(table1, df1, sky_columns1 if sky else pixel_columns1, unit_, "table1")
    p2 = _coords(table2, df2, sky_columns2 if sky else pixel_columns2, unit_, "table2")
    i, j, d = _pairs(p1, p2, r, sky, how)
    out = {"index_1": i, "index_2": j, "separation_arcsec" if sky else "separation_px": d}
    frame = pd.DataFrame(out)
    parts = [frame]
    for df, cols, suffix, idx, what in ((df1, columns1, "_1", i, "table1"), (df2, columns2, "_2", j, "table2")):
        cols = list(df.columns) if cols is None else list(cols)
        for c in cols:
            if c not in df.columns:
                raise CatalogSchemaError(f"{what}: no column {c!r} to carry (catalog schema {SCHEMA_VERSION})")
        part = df[cols].iloc[idx].reset_index(drop=True)
        part.columns = [f"{c}{suffix}" for c in cols]
        parts.append(part)
    result = pd.concat(parts, axis=1)
    result.attrs = {"radius": r, "unit": "arcsec" if sky else "pix", "how": how,
                    "n_1": len(df1), "n_2": len(df2)}
    return result


def crossmatch_exposures(
    catalog: Any,
    *,
    radius: float | u.Quantity = 1.0,
    unit: str = "arcsec",
    how: str = "mutual",
    by: str = "exposure",
    reference: str | None = None,
    columns: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Match the detections of different exposures of one dataset against each other.

    Parameters
    ----------
    catalog : pandas.DataFrame or astropy Table
        Rows of several exposures with a ``by`` column (as
        :func:`catalogs.open_catalog` returns).
    radius, unit, how
        As for :func:`crossmatch` (default one-to-one, ``"mutual"``).
    by : str
        The column naming the exposure.
    reference : str, optional
        Match every other exposure against this one only; default: every pair
        of exposures ``(a, b)`` with ``a < b``.
    columns : sequence of str, optional
        Columns to carry from each side (default: ``source_id``, ``kind``,
        ``snr``, ``mag`` and the coordinates, where present).

    Returns
    -------
    pandas.DataFrame
        The pairs of every exposure pair, with ``exposure_1`` / ``exposure_2``
        (the ``by`` values) and ``index_1`` / ``index_2`` as positions in
        ``catalog``.
    """
    df = _frame(catalog, "catalog")
    if by not in df.columns:
        raise CatalogSchemaError(f"catalog: missing column {by!r} naming the exposure (catalog schema {SCHEMA_VERSION})")
    names = sorted(pd.unique(df[by].astype(str)))
    if reference is not None and reference not in names:
        raise InputError("reference", f"exposure {reference!r} is not in the catalog ({len(names)} exposures)")
    r, sky = _radius(radius, unit)
    coord_cols = ["ra", "dec"] if sky else ["x", "y"]
    if columns is None:
        columns = [c for c in ("source_id", "kind", "snr", "mag", *coord_cols) if c in df.columns]
    pairs = ([(reference, n) for n in names if n != reference] if reference is not None
             else list(itertools.combinations(names, 2)))
    groups = {n: np.flatnonzero(df[by].astype(str).to_numpy() == n) for n in names}
    frames = []
    table = catalog if isinstance(catalog, Table) else df
    for a, b in pairs:
        ia, ib = groups[a], groups[b]
        sub_a = table[ia] if isinstance(table, Table) else df.iloc[ia]
        sub_b = table[ib] if isinstance(table, Table) else df.iloc[ib]
        m = crossmatch(sub_a, sub_b, radius=radius, unit=unit, how=how, columns1=columns, columns2=columns)
        m["index_1"] = ia[m["index_1"].to_numpy()]
        m["index_2"] = ib[m["index_2"].to_numpy()]
        m.insert(0, "exposure_2", b)
        m.insert(0, "exposure_1", a)
        frames.append(m)
    sep = "separation_arcsec" if sky else "separation_px"
    if frames:
        result = pd.concat(frames, ignore_index=True)
    else:
        result = pd.DataFrame({"exposure_1": [], "exposure_2": [], "index_1": np.zeros(0, np.int64),
                               "index_2": np.zeros(0, np.int64), sep: np.zeros(0)})
    result.attrs = {"radius": r, "unit": "arcsec" if sky else "pix", "how": how, "exposures": names,
                    "pairs": [list(p) for p in pairs]}
    return result


def match_summary(matches: pd.DataFrame, *, n_1: int | None = None, n_2: int | None = None) -> Mapping[str, float]:
    """Counts and separations of a :func:`crossmatch` result.

    Returns
    -------
    dict
        ``n_pairs``, ``n_matched_1`` / ``n_matched_2`` (distinct rows matched),
        ``fraction_1`` / ``fraction_2`` (of the inputs' rows; NaN when the size
        is unknown), ``median_sep`` and ``p90_sep`` (in ``unit``) and ``unit``.
    """
    sep_col = "separation_arcsec" if "separation_arcsec" in matches.columns else "separation_px"
    sep = matches[sep_col].to_numpy(dtype=float)
    n_1 = matches.attrs.get("n_1") if n_1 is None else n_1
    n_2 = matches.attrs.get("n_2") if n_2 is None else n_2
    m1 = int(matches["index_1"].nunique())
    m2 = int(matches["index_2"].nunique())
    return {
        "n_pairs": int(len(matches)),
        "n_matched_1": m1,
        "n_matched_2": m2,
        "fraction_1": m1 / n_1 if n_1 else float("nan"),
        "fraction_2": m2 / n_2 if n_2 else float("nan"),
        "median_sep": float(np.median(sep)) if len(sep) else float("nan"),
        "p90_sep": float(np.percentile(sep, 90)) if len(sep) else float("nan"),
        "unit": "arcsec" if sep_col == "separation_arcsec" else "pix",
    }


def exposure_match_summary(matches: pd.DataFrame, catalog: Any, *, by: str = "exposure") -> pd.DataFrame:
    """:func:`match_summary` for each exposure pair of a :func:`crossmatch_exposures` result.

    Parameters
    ----------
    matches : pandas.DataFrame
        The pairs.
    catalog : DataFrame or Table
        The catalog that was matched (for the number of rows per exposure).
    by : str
        Its exposure column.

    Returns
    -------
    pandas.DataFrame
        ``exposure_1``, ``exposure_2``, then the :func:`match_summary` fields,
        one row per pair of exposures that was matched (a pair without any
        match has ``n_pairs`` 0).
    """
    df = _frame(catalog, "catalog")
    if by not in df.columns:
        raise CatalogSchemaError(f"catalog: missing column {by!r} naming the exposure (catalog schema {SCHEMA_VERSION})")
    sizes = df[by].astype(str).value_counts()
    pairs = [tuple(p) for p in matches.attrs.get("pairs") or
             sorted(set(zip(matches["exposure_1"].astype(str), matches["exposure_2"].astype(str))))]
    rows = []
    for a, b in pairs:
        sel = matches[(matches["exposure_1"] == a) & (matches["exposure_2"] == b)]
        summary = dict(match_summary(sel, n_1=int(sizes.get(a, 0)), n_2=int(sizes.get(b, 0))))
        if not len(sel):
            summary["unit"] = matches.attrs.get("unit", summary["unit"])
        rows.append({"exposure_1": a, "exposure_2": b, **summary})
    return pd.DataFrame(rows)

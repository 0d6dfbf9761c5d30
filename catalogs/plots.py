"""Plots of catalogs for notebooks (matplotlib).

Every function draws on a given :class:`matplotlib.axes.Axes` (``ax=``) or on
a new figure, and returns the figure; nothing is saved or shown (call
``fig.savefig`` or let the notebook display it).  Inputs are what
:func:`catalogs.open_catalog` and :mod:`catalogs.analysis` return.

* :func:`cutout_gallery` - image stamps of detections, one row per kind,
  ordered by confidence;
* :func:`sky_map` - positions of detections on the sky (or in pixels);
* :func:`snr_histogram`, :func:`magnitude_histogram` - per kind;
* :func:`reliability_diagram` - calibration (one or several tables);
* :func:`risk_coverage_plot` - empirical curve and certified points;
* :func:`expert_usage_plot` - stacked expert usage per stratum;
* :func:`review_load_plot` - decisions per group;
* :func:`completeness_plot` - completeness and purity per S/N bin.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from astropy.table import Table
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from contracts.errors import InputError

from .schema import SCHEMA_VERSION, CatalogSchemaError

__all__ = [
    "KIND_COLORS",
    "load_image",
    "cutout_gallery",
    "sky_map",
    "snr_histogram",
    "magnitude_histogram",
    "reliability_diagram",
    "risk_coverage_plot",
    "expert_usage_plot",
    "review_load_plot",
    "completeness_plot",
]

KIND_COLORS: dict[str, str] = {
    "star": "tab:green", "galaxy": "tab:blue", "streak": "tab:purple", "artifact": "tab:red",
    "nucleus": "tab:orange", "": "tab:gray",
}
"""Colour of each ``kind`` in every plot."""


def _frame(table: Any, what: str = "catalog") -> pd.DataFrame:
    if isinstance(table, pd.DataFrame):
        return table
    if isinstance(table, Table):
        flat = [n for n in table.colnames if len(table[n].shape) <= 1]
        return pd.DataFrame({n: np.asarray(getattr(table[n], "value", table[n])) for n in flat})
    raise InputError(what, f"expected a pandas DataFrame or an astropy Table, got {type(table).__name__}")


def _need(df: pd.DataFrame, names: Sequence[str], what: str = "catalog") -> None:
    for name in names:
        if name not in df.columns:
            raise CatalogSchemaError(f"{what}: missing column {name!r} for this plot (catalog schema {SCHEMA_VERSION})")


def _axes(ax: Axes | None, figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    if ax is not None:
        return ax.figure, ax
    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.add_subplot()


def _kinds(df: pd.DataFrame, by: str) -> list[str]:
    values = df[by].astype(str)
    order = list(KIND_COLORS)
    return sorted(pd.unique(values), key=lambda k: (order.index(k) if k in order else len(order), k))


def load_image(path: str | os.PathLike[str], *, hdu: int | str | None = None) -> np.ndarray:
    """The pixels of a FITS image (memory-mapped): ``hdu`` or the first 2-D image HDU.

    Raises
    ------
    InputError
        If the file is missing or has no 2-D image.
    """
    from astropy.io import fits

    path = Path(path)
    if not path.is_file():
        raise InputError(str(path), "image not found")
    try:
        with fits.open(path, memmap=True) as hdul:
            if hdu is not None:
                data = hdul[hdu].data
            else:
                data = next((h.data for h in hdul if h.data is not None and getattr(h.data, "ndim", 0) == 2
                             and h.is_image), None)
            if data is None or data.ndim != 2:
                raise InputError(str(path), "no 2-D image HDU")
            return np.array(data, dtype=np.float32)
    except (OSError, KeyError, IndexError) as exc:
        raise InputError(str(path), f"cannot read the image: {exc}") from None


def _stamp(image: np.ndarray, x: float, y: float, half: int) -> np.ndarray:
    out = np.full((2 * half + 1, 2 * half + 1), np.nan, dtype=np.float32)
    xi, yi = int(round(x)), int(round(y))
    ny, nx = image.shape
    y0, y1, x0, x1 = yi - half, yi + half + 1, xi - half, xi + half + 1
    sy0, sy1, sx0, sx1 = max(y0, 0), min(y1, ny), max(x0, 0), min(x1, nx)
    if sy0 < sy1 and sx0 < sx1:
        out[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = image[sy0:sy1, sx0:sx1]
    return out


def cutout_gallery(
    catalog: Any,
    images: np.ndarray | str | os.PathLike[str] | Mapping[str, np.ndarray | str | os.PathLike[str]],
    *,
    by: str = "kind",
    n_per_kind: int = 6,
    size: int = 25,
    kinds: Sequence[str] | None = None,
    exposure_column: str = "exposure",
) -> Figure:
    """Image stamps of detections: one row per kind, columns spread over the confidence range.

    In each row the detections are sorted by ``confidence`` (or ``snr`` without
    the gate) and ``n_per_kind`` are picked at evenly spaced ranks, lowest
    first, so a row shows the least and the most confident of that kind.
    Stamps are scaled per stamp (1st-99.5th percentile, asinh-like) and titled
    with the confidence.

    Parameters
    ----------
    catalog : DataFrame or Table
        With ``x``, ``y``, ``by``, and ``exposure_column`` when ``images`` is a
        mapping.
    images : array, FITS path, or mapping
        The image, or ``{exposure: image or path}`` for a multi-exposure
        catalog.
    by : str
        Row grouping (``kind``, ``decision``, ``label``).
    n_per_kind : int
        Stamps per row.
    size : int
        Stamp side, pixels (odd sizes are centred on the detection).
    kinds : sequence of str, optional
        Rows to show, in order (default: all values of ``by``).
    """
    df = _frame(catalog)
    _need(df, ("x", "y", by))
    if n_per_kind < 1 or size < 3:
        raise InputError("cutout_gallery", "n_per_kind must be >= 1 and size >= 3")
    multi = isinstance(images, Mapping)
    if multi:
        _need(df, (exposure_column,))
    cache: dict[str, np.ndarray] = {}

    def image_for(key: str) -> np.ndarray:
        if key not in cache:
            src = images[key] if multi else images  # type: ignore[index]
            if src is None:
                raise InputError("images", f"no image for exposure {key!r}")
            cache[key] = load_image(src) if isinstance(src, (str, os.PathLike)) else np.asarray(src, dtype=np.float32)
        return cache[key]

    if multi:
        missing = sorted(set(df[exposure_column].astype(str)) - set(map(str, images)))  # type: ignore[arg-type]
        if missing:
            df = df[~df[exposure_column].astype(str).isin(missing)]
    rows = list(kinds) if kinds is not None else _kinds(df, by)
    rows = rows or [""]
    score = "confidence" if "confidence" in df.columns and np.isfinite(df["confidence"].to_numpy(dtype=float)).any() else "snr"
    half = size // 2
    fig = Figure(figsize=(1.3 * n_per_kind + 0.8, 1.45 * len(rows) + 0.3), layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(rows), n_per_kind, squeeze=False))
    for r, kind in enumerate(rows):
        sel = df[df[by].astype(str) == kind]
        if score in sel.columns:
            sel = sel.iloc[np.argsort(sel[score].to_numpy(dtype=float), kind="stable")]
        pick = np.unique(np.linspace(0, len(sel) - 1, n_per_kind).round().astype(int)) if len(sel) else []
        for c in range(n_per_kind):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(f"{kind or '(none)'}\n({len(sel)})", color=KIND_COLORS.get(kind, "k"), fontsize=9)
            if c >= len(pick):
                ax.set_frame_on(False)
                continue
            row = sel.iloc[pick[c]]
            key = str(row[exposure_column]) if multi else ""
            stamp = _stamp(image_for(key), float(row["x"]), float(row["y"]), half)
            finite = stamp[np.isfinite(stamp)]
            lo, hi = (np.percentile(finite, [1, 99.5]) if finite.size else (0.0, 1.0))
            scaled = np.arcsinh((stamp - lo) / max((hi - lo) / 10.0, 1e-12))
            ax.imshow(scaled, origin="lower", cmap="gray", interpolation="nearest")
            value = float(row[score]) if score in row.index else np.nan
            ax.set_title(f"{score[:4]} {value:.2f}" if np.isfinite(value) else "", fontsize=7)
    fig.suptitle(f"detections by {by}, ordered by {score}", fontsize=10)
    return fig


def sky_map(
    catalog: Any,
    *,
    color_by: str = "kind",
    ax: Axes | None = None,
    size: float = 6.0,
    max_points: int | None = 200_000,
    seed: int = 0,
) -> Figure:
    """Positions of detections: ``ra``/``dec`` (RA increasing to the left), else ``x``/``y``.

    ``max_points`` draws a random subset of a larger catalog (the legend
    counts all rows).
    """
    df = _frame(catalog)
    sky = {"ra", "dec"} <= set(df.columns) and np.isfinite(df["ra"].to_numpy(dtype=float)).any()
    xc, yc = ("ra", "dec") if sky else ("x", "y")
    _need(df, (xc, yc))
    fig, ax = _axes(ax, (6.0, 5.0))
    groups = _kinds(df, color_by) if color_by in df.columns else [None]
    rng = np.random.default_rng(seed)
    frac = 1.0 if not max_points or len(df) <= max_points else max_points / len(df)
    for kind in groups:
        sel = df if kind is None else df[df[color_by].astype(str) == kind]
        if frac < 1.0:
            sel = sel[rng.random(len(sel)) < frac]
        n = int((df[color_by].astype(str) == kind).sum()) if kind is not None else len(df)
        ax.scatter(sel[xc], sel[yc], s=size, color=KIND_COLORS.get(kind, None) if kind is not None else "k",
                   label=f"{kind or '(none)'} ({n})" if kind is not None else None, alpha=0.7, linewidths=0)
    if sky:
        ax.set_xlabel("RA (deg)")
        ax.set_ylabel("Dec (deg)")
        ax.ticklabel_format(useOffset=False)
        dec = df["dec"].to_numpy(dtype=float)
        mid = float(np.nanmedian(dec)) if np.isfinite(dec).any() else 0.0
        ax.set_aspect(1.0 / max(np.cos(np.radians(mid)), 0.05), adjustable="datalim")
        if not ax.xaxis_inverted():
            ax.invert_xaxis()
    else:
        ax.set_xlabel("x (pix)")
        ax.set_ylabel("y (pix)")
        ax.set_aspect("equal")
    if groups != [None]:
        ax.legend(fontsize=8, markerscale=2, loc="best")
    ax.set_title(f"{len(df)} detections" + ("" if frac == 1.0 else f" ({max_points} drawn)"))
    return fig


def _histogram(df: pd.DataFrame, column: str, by: str, bins: np.ndarray, ax: Axes | None, xlabel: str,
               log_x: bool) -> Figure:
    fig, ax = _axes(ax, (6.0, 4.0))
    groups = _kinds(df, by) if by in df.columns else [None]
    for kind in groups:
        sel = df if kind is None else df[df[by].astype(str) == kind]
        values = sel[column].to_numpy(dtype=float)
        values = values[np.isfinite(values)]
        ax.hist(values, bins=bins, histtype="step", lw=1.5,
                color=KIND_COLORS.get(kind, None) if kind is not None else "k",
                label=f"{kind or '(none)'} ({len(values)})" if kind is not None else None)
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("detections")
    if groups != [None]:
        ax.legend(fontsize=8)
    return fig


def snr_histogram(catalog: Any, *, by: str = "kind", bins: int = 40, ax: Axes | None = None) -> Figure:
    """Histogram of ``snr`` per ``by`` value, logarithmic bins."""
    df = _frame(catalog)
    _need(df, ("snr",))
    snr = df["snr"].to_numpy(dtype=float)
    pos = snr[np.isfinite(snr) & (snr > 0)]
    lo, hi = (pos.min(), pos.max()) if pos.size else (1.0, 10.0)
    edges = np.geomspace(max(lo, 1e-3), max(hi, lo * 1.01), bins + 1)
    return _histogram(df, "snr", by, edges, ax, "S/N (PSF flux / error)", log_x=True)


def magnitude_histogram(catalog: Any, *, by: str = "kind", bin_width: float = 0.25, ax: Axes | None = None) -> Figure:
    """Histogram of ``mag`` per ``by`` value."""
    df = _frame(catalog)
    _need(df, ("mag",))
    mag = df["mag"].to_numpy(dtype=float)
    mag = mag[np.isfinite(mag)]
    lo, hi = (np.floor(mag.min()), np.ceil(mag.max())) if mag.size else (20.0, 25.0)
    edges = np.arange(lo, hi + bin_width, bin_width)
    if len(edges) < 2:
        edges = np.array([lo, lo + bin_width])
    fig = _histogram(df, "mag", by, edges, ax, "magnitude", log_x=False)
    return fig


def reliability_diagram(
    tables: Table | Mapping[str, Table],
    *,
    ax: Axes | None = None,
    title: str | None = None,
) -> Figure:
    """Reliability diagram(s) of :func:`catalogs.analysis.calibration_table` output.

    Parameters
    ----------
    tables : Table or mapping of label -> Table
        Reliability tables (``mean_confidence``, ``accuracy``, ``count``,
        ``meta["ece"]``); several are drawn on one axes (e.g. before and after
        recalibration).
    """
    if isinstance(tables, Table):
        tables = {"": tables}
    fig, ax = _axes(ax, (4.8, 4.5))
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
    for i, (label, table) in enumerate(tables.items()):
        for name in ("mean_confidence", "accuracy", "count"):
            if name not in table.colnames:
                raise CatalogSchemaError(f"reliability table: missing column {name!r}")
        conf = np.asarray(table["mean_confidence"], float)
        acc = np.asarray(table["accuracy"], float)
        count = np.asarray(table["count"], float)
        full = count > 0
        ece = (table.meta or {}).get("ece")
        text = " ".join(t for t in (label, f"ECE {ece:.3f}" if ece is not None else "") if t)
        sizes = 15 + 120 * count[full] / max(count.max(), 1)
        ax.plot(conf[full], acc[full], "-", color=f"C{i}", lw=1)
        ax.scatter(conf[full], acc[full], s=sizes, color=f"C{i}", label=text or None, zorder=3)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("confidence")
    ax.set_ylabel("fraction correct")
    ax.legend(fontsize=8, loc="upper left")
    if title:
        ax.set_title(title)
    return fig


def risk_coverage_plot(
    curve: pd.DataFrame,
    *,
    certified: Table | None = None,
    ax: Axes | None = None,
) -> Figure:
    """Risk against coverage: the empirical curve and, if given, the certified points.

    Parameters
    ----------
    curve : pandas.DataFrame
        :func:`catalogs.analysis.risk_coverage_curve` output.
    certified : astropy Table, optional
        :func:`catalogs.analysis.certified_risk_coverage` output: each row is
        drawn at its test coverage and error rate with the Clopper-Pearson
        interval, and the risk level ``alpha`` as a tick.
    """
    for name in ("coverage", "risk"):
        if name not in curve.columns:
            raise CatalogSchemaError(f"risk-coverage curve: missing column {name!r}")
    fig, ax = _axes(ax, (5.5, 4.0))
    ax.step(curve["coverage"], curve["risk"], where="post", color="C0", label="empirical (decide most confident first)")
    if certified is not None and len(certified):
        cov = np.asarray(certified["coverage"], float)
        err = np.asarray(certified["error_rate_auto"], float)
        lo = np.asarray(certified["ci_low"], float)
        hi = np.asarray(certified["ci_high"], float)
        ok = np.isfinite(err)
        ax.errorbar(cov[ok], err[ok], yerr=[err[ok] - lo[ok], hi[ok] - err[ok]], fmt="o", color="C3",
                    capsize=3, label="certified threshold (test half)")
        for a, c in zip(np.asarray(certified["alpha"], float), cov):
            ax.plot([max(c - 0.03, 0), min(c + 0.03, 1)], [a, a], color="C3", lw=1, alpha=0.6)
    ax.set_xlim(0, 1.0)
    ax.set_ylim(0, max(0.05, float(np.nanmax(curve["risk"])) * 1.05 if len(curve) else 0.05))
    ax.set_xlabel("coverage (fraction decided automatically)")
    ax.set_ylabel("risk (error rate among those)")
    ax.legend(fontsize=8, loc="upper left")
    return fig


def expert_usage_plot(usage: pd.DataFrame, *, ax: Axes | None = None) -> Figure:
    """Stacked bars of :func:`catalogs.analysis.expert_usage` (one bar per stratum)."""
    experts = [c for c in usage.columns if c != "n"]
    if not experts:
        raise CatalogSchemaError("expert usage: no expert columns")
    fig, ax = _axes(ax, (max(5.5, 1.2 * len(usage) + 3.5), 4.0))
    labels = [" / ".join(map(str, i)) if isinstance(i, tuple) else str(i) for i in usage.index]
    bottom = np.zeros(len(usage))
    for i, name in enumerate(experts):
        values = usage[name].to_numpy(dtype=float)
        ax.bar(labels, values, bottom=bottom, color=f"C{i}", label=name)
        bottom += np.nan_to_num(values)
    if "n" in usage.columns:
        for x, (b, n) in enumerate(zip(bottom, usage["n"])):
            ax.text(x, b, f"n={int(n)}", ha="center", va="bottom", fontsize=8)
    ax.set_ylabel(usage.attrs.get("quantity", "usage"))
    ax.set_ylim(0, max(1.1, float(bottom.max()) * 1.12 if len(bottom) else 1.1))
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), title="expert", title_fontsize=8)
    ax.tick_params(axis="x", labelrotation=20, labelsize=8)
    return fig


def review_load_plot(load: pd.DataFrame, *, by: str | None = None, ax: Axes | None = None) -> Figure:
    """Stacked bars of :func:`catalogs.analysis.review_load` (the ``all`` row left out)."""
    by = by or load.columns[0]
    rows = load[load[by].astype(str) != "all"]
    fig, ax = _axes(ax, (max(4.0, 0.9 * len(rows) + 2.5), 4.0))
    bottom = np.zeros(len(rows))
    colors = {"accepted": "tab:green", "rejected": "tab:red", "review": "tab:orange", "undecided": "tab:gray"}
    labels = rows[by].astype(str).to_numpy()
    for name, color in colors.items():
        if name in rows.columns and rows[name].sum() > 0:
            values = rows[name].to_numpy(dtype=float)
            ax.bar(labels, values, bottom=bottom, color=color, label=name)
            bottom += values
    ax.set_ylabel("detections")
    ax.legend(fontsize=8)
    ax.tick_params(axis="x", labelrotation=20, labelsize=8)
    return fig


def completeness_plot(completeness: pd.DataFrame, purity: pd.DataFrame | None = None, *,
                      ax: Axes | None = None) -> Figure:
    """Completeness per S/N bin and kind (and purity per S/N bin) from :func:`catalogs.analysis.evaluate_truth`."""
    for name in ("kind", "snr_bin", "completeness"):
        if name not in completeness.columns:
            raise CatalogSchemaError(f"completeness table: missing column {name!r}")
    fig, ax = _axes(ax, (6.0, 4.0))
    for kind, g in completeness.groupby("kind", sort=False):
        ax.plot(g["snr_bin"], g["completeness"], "o-", color=KIND_COLORS.get(str(kind), None),
                label=f"completeness: {kind} ({int(g['n_true'].sum())} true)")
    if purity is not None:
        p = purity[purity["snr_bin"] != "all"]
        ax.plot(p["snr_bin"], p["purity"], "s--", color="k", label="purity (non-artifact detections)")
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("S/N bin")
    ax.set_ylabel("fraction")
    ax.legend(fontsize=8, loc="lower right")
    return fig

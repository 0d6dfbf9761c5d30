"""Evaluation helpers for catalogs: truth, review load, labels and expert usage.

For simulated exposures (whose truth table is known):

* :func:`evaluate_truth` assigns every detection to a truth object
  (:func:`catalogs.evaluate.match_to_truth`) and returns completeness by truth
  S/N bin and kind (:func:`catalogs.evaluate.completeness_by_snr`) and purity
  by detection S/N bin (:func:`catalogs.evaluate.purity`), summed over
  exposures, with a per-detection table holding the true kind and whether
  the catalog's ``kind`` is right.

Calibrated confidences (reliability, risk-coverage, recalibration) are
evaluated by :mod:`moe_imaging.triage.evaluate`; label files are read by
:func:`catalogs.labels.read_labels`.

For the review queue: :func:`review_load`, :func:`reviewer_agreement`,
:func:`label_confusion`, :func:`label_correctness` (labels as truth), and :func:`expert_usage` (mean gate weight of each
expert per stratum).

Tables come back as :class:`pandas.DataFrame`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from astropy.table import Table

from contracts.errors import InputError
from contracts.vocabulary import UNCERTAIN

from .evaluate import TruthMatch, completeness_by_snr, match_to_truth, purity
from .schema import SCHEMA_VERSION, CatalogSchemaError

__all__ = [
    "DEFAULT_SNR_BINS",
    "TruthEvaluation",
    "read_truth",
    "exposure_files",
    "truth_reference",
    "with_catalog_columns",
    "true_kind",
    "evaluate_truth",
    "review_load",
    "reviewer_agreement",
    "label_correctness",
    "label_confusion",
    "expert_usage",
]

DEFAULT_SNR_BINS: tuple[float, ...] = (3.0, 5.0, 10.0, 20.0, 50.0, float("inf"))
"""S/N bin edges of completeness and purity."""

_TRUE_KIND = {
    "star": "star", "saturated_star": "star", "galaxy": "galaxy", "streak": "streak",
    "cosmic_ray": "artifact", "hot_pixel": "artifact", "bleed": "artifact", "spurious": "artifact",
}


def _frame(table: Any, what: str) -> pd.DataFrame:
    if isinstance(table, pd.DataFrame):
        return table
    if isinstance(table, Table):
        flat = [n for n in table.colnames if len(table[n].shape) <= 1]
        return pd.DataFrame({n: np.asarray(getattr(table[n], "value", table[n])) for n in flat})
    raise InputError(what, f"expected a pandas DataFrame or an astropy Table, got {type(table).__name__}")


def _need(df: pd.DataFrame, names: Sequence[str], what: str) -> None:
    for name in names:
        if name not in df.columns:
            raise CatalogSchemaError(f"{what}: missing column {name!r} (catalog schema {SCHEMA_VERSION})")


def read_truth(path: str | os.PathLike[str]) -> Table:
    """Read a simulation's truth table (ECSV, as ``moe-imaging simulate`` writes it).

    Raises
    ------
    InputError
        If the file is missing or not a table with ``kind``, ``x``, ``y`` and ``mf_snr``.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(str(path), "truth table not found")
    try:
        truth = Table.read(path, format="ascii.ecsv")
    except (OSError, ValueError) as exc:
        raise InputError(str(path), f"not a readable ECSV truth table: {exc}") from None
    for name in ("kind", "x", "y", "mf_snr"):
        if name not in truth.colnames:
            raise InputError(str(path), f"truth table has no column {name!r}")
    return truth


def exposure_files(
    catalog_dir: str | os.PathLike[str],
    *,
    search: Sequence[str | os.PathLike[str]] = (),
    run: str | Sequence[str] | None = None,
) -> pd.DataFrame:
    """The input image and (for simulations) the truth table of each exposure of a dataset.

    The image is the provenance's ``input_path`` when that file exists, else a
    file of the same name in one of the ``search`` folders; the truth table is
    ``<image stem>_truth.ecsv`` next to the image (as ``moe-imaging simulate``
    writes it).

    Returns
    -------
    pandas.DataFrame
        ``run``, ``exposure``, ``image`` and ``truth`` (paths as text, ``None``
        where not found), one row per catalog file.
    """
    from .dataset import catalog_provenance

    prov = catalog_provenance(catalog_dir, run=run)
    rows = []
    for r in prov.itertuples(index=False):
        given = Path(r.input_path) if r.input_path else None
        candidates = ([given] if given is not None else []) + (
            [Path(d) / given.name for d in search] if given is not None else [])
        image = next((p for p in candidates if p.is_file()), None)
        truth = None
        if image is not None:
            stem = image.name.split(".")[0]
            t = image.with_name(f"{stem}_truth.ecsv")
            truth = str(t) if t.is_file() else None
        rows.append({"run": r.run, "exposure": r.exposure, "image": str(image) if image else None, "truth": truth})
    return pd.DataFrame(rows, columns=["run", "exposure", "image", "truth"])


def truth_reference(truth: Table | str | os.PathLike[str], image: str | os.PathLike[str]) -> pd.DataFrame:
    """A simulation's truth table as a reference catalog with ICRS ``ra``/``dec``.

    The positions come from the truth's ``x``/``y`` through the image's WCS
    (:func:`catalogs.sky.pixel_to_icrs`), so the truth can be cross-matched
    on the sky like any reference catalog.
    """
    from astropy.io import fits
    from astropy.wcs import WCS

    from .sky import pixel_to_icrs

    t = truth if isinstance(truth, Table) else read_truth(truth)
    try:
        header = fits.getheader(image)
    except (OSError, IndexError) as exc:
        raise InputError(str(image), f"cannot read the image header: {exc}") from None
    ra, dec = pixel_to_icrs(np.asarray(t["x"], float), np.asarray(t["y"], float), WCS(header))
    flat = [n for n in t.colnames if len(t[n].shape) <= 1]
    out = pd.DataFrame({n: np.asarray(t[n]) for n in flat})
    out["ra"], out["dec"] = ra, dec
    return out


def with_catalog_columns(
    labels: Any,
    catalog: Any,
    columns: Sequence[str] = ("triage_stratum",),
    *,
    on: Sequence[str] = ("exposure", "source_id"),
) -> pd.DataFrame:
    """The label export with ``columns`` of each item's catalog row added (e.g. its triage stratum).

    Rows are matched on ``on`` (the exposure and the source id, which is unique
    within an exposure); items without a catalog row get missing values.  The
    label export's row order and index are kept.

    Raises
    ------
    CatalogSchemaError
        A key or requested column is missing.
    InputError
        The catalog has duplicate keys (the match would be ambiguous).
    """
    lab = _frame(labels, "labels")
    cat = _frame(catalog, "catalog")
    keys = list(on)
    _need(lab, keys, "labels")
    _need(cat, keys + list(columns), "catalog")
    right = cat[keys + [c for c in columns if c not in keys]]
    if right.duplicated(subset=keys).any():
        raise InputError("catalog", f"rows are not unique by {keys}; cannot attach catalog columns to labels")
    merged = lab.drop(columns=[c for c in columns if c in lab.columns and c not in keys]).merge(
        right, on=keys, how="left", validate="many_to_one")
    merged.index = lab.index
    return merged


def true_kind(match: TruthMatch, truth: Table) -> np.ndarray:
    """The catalog ``kind`` each detection should have, from a truth match.

    Stars and saturated stars are ``star``; galaxies ``galaxy``; streak pieces
    ``streak``; cosmic rays, hot pixels, bleed trails and spurious detections
    ``artifact``; a duplicate takes the kind of the object it duplicates (as the
    gate is trained).
    """
    cls = match.det_class.astype(str)
    out = np.array([_TRUE_KIND.get(c, "artifact") for c in cls], dtype="U16")
    dup = np.flatnonzero(cls == "duplicate")
    if len(dup):
        kinds = np.asarray(truth["kind"]).astype(str)
        out[dup] = [_TRUE_KIND.get(k, "artifact") for k in kinds[match.det_truth[dup]]]
    return out


@dataclasses.dataclass(frozen=True, eq=False)
class TruthEvaluation:
    """Result of :func:`evaluate_truth`.

    Attributes
    ----------
    detections : pandas.DataFrame
        One row per detection, aligned with the input catalog: ``exposure``,
        ``det_class`` (the truth kind matched, ``duplicate`` or ``spurious``),
        ``truth_index``, ``true_kind``, ``kind`` (the catalog's), ``snr``,
        ``confidence`` (NaN without the gate) and ``correct``
        (``kind == true_kind``).
    completeness : pandas.DataFrame
        ``kind``, ``snr_bin`` (of the truth's matched-filter S/N), ``n_true``,
        ``n_found``, ``completeness``; summed over exposures.
    purity : pandas.DataFrame
        ``snr_bin`` (of the detection's ``snr``; last row ``all``),
        ``n_detections``, ``n_artifact``, ``n_real``, ``n_spurious``,
        ``n_duplicate``, ``purity`` (among non-artifact detections, see
        :mod:`catalogs.evaluate`); summed over exposures.
    """

    detections: pd.DataFrame
    completeness: pd.DataFrame
    purity: pd.DataFrame


def _bin_labels(bins: Sequence[float]) -> list[str]:
    return [f"{lo:g}-{hi:g}" if np.isfinite(hi) else f"{lo:g}+" for lo, hi in zip(bins[:-1], bins[1:])]


def _purity_rows(match: TruthMatch, snr: np.ndarray, bins: Sequence[float]) -> list[dict[str, Any]]:
    rows = []
    for label, lo, hi in zip(_bin_labels(bins) + ["all"], list(bins[:-1]) + [-np.inf], list(bins[1:]) + [np.inf]):
        sel = (snr >= lo) & (snr < hi) if label != "all" else np.ones(len(snr), bool)
        sub = TruthMatch(match.det_class[sel], match.det_truth[sel], match.truth_det)
        p = purity(sub)
        rows.append({"snr_bin": label, "n_detections": p["n_detections"], "n_artifact": p["n_artifact"],
                     "n_real": p["n_real"], "n_spurious": p["n_spurious"], "n_duplicate": p["n_duplicate"]})
    return rows


def evaluate_truth(
    catalog: Any,
    truth: Table | str | os.PathLike[str] | Mapping[str, Table | str | os.PathLike[str]],
    *,
    fwhm: float | Mapping[str, float] | None = None,
    bins: Sequence[float] = DEFAULT_SNR_BINS,
    kinds: Sequence[str] = ("star", "galaxy"),
    by: str = "exposure",
) -> TruthEvaluation:
    """Score a catalog (one or many exposures) against simulation truth tables.

    Parameters
    ----------
    catalog : pandas.DataFrame or astropy Table
        Detections with at least ``x``, ``y``, ``snr``, ``kind`` (and ``by``
        when ``truth`` is a mapping).
    truth : Table, path or mapping
        One truth table (or its ECSV file) for a single-exposure catalog, or
        ``{exposure: truth}`` for a catalog of several exposures (every
        exposure of the catalog must have one).
    fwhm : float or mapping, optional
        PSF FWHM in pixels (per exposure for a mapping) for the match radii;
        default: the median ``psf_fwhm`` of the exposure's detections.
    bins : sequence of float
        S/N bin edges.
    kinds : sequence of str
        Truth kinds to compute the completeness of.
    by : str
        Column naming the exposure.

    Raises
    ------
    InputError
        An exposure without a truth table, or a truth file that cannot be read.
    CatalogSchemaError
        A required column is missing.
    """
    df = _frame(catalog, "catalog")
    _need(df, ("x", "y", "snr", "kind"), "catalog")
    if isinstance(truth, Mapping):
        _need(df, (by,), "catalog")
        names = df[by].astype(str).to_numpy()
        groups = {n: np.flatnonzero(names == n) for n in pd.unique(names)}
        missing = sorted(set(groups) - set(map(str, truth)))
        if missing:
            raise InputError("truth", f"no truth table for exposure(s) {missing}")
        truths = {str(k): v for k, v in truth.items() if str(k) in groups}
    else:
        groups = {"": np.arange(len(df))}
        truths = {"": truth}
    det_frames, comp_rows, pur_rows = [], [], []
    for name, rows in groups.items():
        t = truths[name]
        t = t if isinstance(t, Table) else read_truth(t)
        sub = Table({c: np.asarray(df[c].to_numpy()[rows]) for c in ("x", "y")})
        if isinstance(fwhm, Mapping):
            f = float(fwhm[name])
        elif fwhm is not None:
            f = float(fwhm)
        elif "psf_fwhm" in df.columns and len(rows) and np.isfinite(df["psf_fwhm"].to_numpy()[rows]).any():
            f = float(np.nanmedian(df["psf_fwhm"].to_numpy(dtype=float)[rows]))
        else:
            raise InputError("fwhm", f"no PSF FWHM for exposure {name or '(catalog)'}: pass fwhm=")
        match = match_to_truth(sub, t, fwhm=f)
        snr = df["snr"].to_numpy(dtype=float)[rows]
        tk = true_kind(match, t)
        kind = df["kind"].astype(str).to_numpy()[rows]
        conf = df["confidence"].to_numpy(dtype=float)[rows] if "confidence" in df.columns else np.full(len(rows), np.nan)
        det_frames.append(pd.DataFrame({
            "row": rows, "exposure": name, "det_class": match.det_class.astype(str),
            "truth_index": match.det_truth, "true_kind": tk, "kind": kind, "snr": snr,
            "confidence": conf, "correct": kind == tk,
        }))
        for k in kinds:
            table = completeness_by_snr(match, t, bins=tuple(bins), kind=k)
            for r in table:
                comp_rows.append({"kind": k, "snr_bin": str(r["snr_bin"]), "n_true": int(r["n_true"]),
                                  "n_found": int(r["n_found"])})
        pur_rows += _purity_rows(match, snr, bins)
    detections = pd.concat(det_frames, ignore_index=True).sort_values("row").set_index("row")
    detections.index.name = None
    comp = pd.DataFrame(comp_rows).groupby(["kind", "snr_bin"], sort=False, as_index=False).sum()
    comp["completeness"] = np.where(comp["n_true"] > 0, comp["n_found"] / comp["n_true"].where(comp["n_true"] > 0), np.nan)
    pur = pd.DataFrame(pur_rows).groupby("snr_bin", sort=False, as_index=False).sum()
    non_art = pur["n_detections"] - pur["n_artifact"]
    pur["purity"] = np.where(non_art > 0, pur["n_real"] / non_art.where(non_art > 0), np.nan)
    return TruthEvaluation(detections=detections, completeness=comp, purity=pur)


def _group_keys(df: pd.DataFrame, by: str | Sequence[str]) -> tuple[pd.DataFrame, list[str]]:
    keys = [by] if isinstance(by, str) else list(by)
    if "stratum" in keys and "stratum" not in df.columns and "triage_stratum" in df.columns:
        df = df.assign(stratum=df["triage_stratum"].astype(str))
    _need(df, keys, "catalog")
    return df, keys


def review_load(catalog: Any, *, by: str | Sequence[str] = "exposure") -> pd.DataFrame:
    """Decisions per group: how many detections were accepted, rejected or sent to review.

    Parameters
    ----------
    catalog : pandas.DataFrame or astropy Table
        With a ``decision`` column (and the ``by`` columns; ``"stratum"`` is
        computed with :func:`strata` when absent).
    by : str or sequence of str
        Grouping columns.

    Returns
    -------
    pandas.DataFrame
        The ``by`` columns, then ``n``, ``accepted``, ``rejected``, ``review``,
        ``undecided`` (no gate) and ``review_fraction``; a last row ``all``.
    """
    df, keys = _group_keys(_frame(catalog, "catalog"), by)
    _need(df, ("decision",), "catalog")
    dec = df["decision"].astype(str).where(df["decision"].astype(str) != "", "undecided")
    counts = pd.crosstab([df[k] for k in keys], dec)
    for col in ("accepted", "rejected", "review", "undecided"):
        if col not in counts.columns:
            counts[col] = 0
    counts = counts[["accepted", "rejected", "review", "undecided"]]
    counts.insert(0, "n", counts.sum(axis=1))
    total = counts.sum(axis=0).to_frame().T
    total.index = pd.MultiIndex.from_tuples([("all",) * len(keys)], names=keys) if len(keys) > 1 else pd.Index(["all"], name=keys[0])
    out = pd.concat([counts, total])
    out["review_fraction"] = out["review"] / out["n"].where(out["n"] > 0)
    out.columns.name = None
    return out.reset_index()


def reviewer_agreement(labels: Any, *, by: str = "kind") -> pd.DataFrame:
    """Agreement of reviewers, and of the model with them, from a label export.

    Parameters
    ----------
    labels : pandas.DataFrame or astropy Table
        The review queue's label export: ``kind`` (the model's), ``label``
        (the reviewers' consensus), ``n_decisions`` and ``agreement``
        (fraction of reviewers who chose ``label``).
    by : str
        Grouping column (``"kind"``, ``"mode"``, ``"exposure"``, ``"stratum"``).

    Returns
    -------
    pandas.DataFrame
        Per group and overall (``all``): ``n_items``, ``mean_decisions``,
        ``mean_agreement``, ``unanimous`` (fraction with agreement 1 and at
        least two decisions), ``multi_reviewed`` (fraction with two or more
        decisions), ``model_agrees`` (fraction with ``kind == label``) and
        ``disputed`` (fraction whose reviewers did not agree: label
        ``uncertain``).
    """
    df = _frame(labels, "labels")
    df, keys = _group_keys(df, by)
    _need(df, ("kind", "label", "n_decisions", "agreement"), "labels")
    work = pd.DataFrame({
        "group": df[keys[0]].astype(str),
        "n_decisions": df["n_decisions"].to_numpy(dtype=float),
        "agreement": df["agreement"].to_numpy(dtype=float),
        "unanimous": (df["agreement"].to_numpy(dtype=float) >= 1.0) & (df["n_decisions"].to_numpy() >= 2),
        "multi": df["n_decisions"].to_numpy() >= 2,
        "model_agrees": df["kind"].astype(str).to_numpy() == df["label"].astype(str).to_numpy(),
        "disputed": df["label"].astype(str).to_numpy() == UNCERTAIN,
    })
    parts = []
    for name, g in list(work.groupby("group", sort=True)) + [("all", work)]:
        parts.append({
            by: name, "n_items": len(g), "mean_decisions": g["n_decisions"].mean(),
            "mean_agreement": g["agreement"].mean(),
            "unanimous": g["unanimous"].mean(), "multi_reviewed": g["multi"].mean(),
            "model_agrees": g["model_agrees"].mean(), "disputed": g["disputed"].mean(),
        })
    return pd.DataFrame(parts)


def label_correctness(labels: Any) -> pd.DataFrame:
    """The labelled items usable as truth: ``confidence`` and ``correct`` (``kind == label``).

    Items whose reviewers disagreed (label ``uncertain``) or that have no
    confidence are left out; the index is the label export's row.
    """
    df = _frame(labels, "labels")
    _need(df, ("kind", "label", "confidence"), "labels")
    label = df["label"].astype(str)
    keep = (label != UNCERTAIN) & (label != "") & np.isfinite(df["confidence"].to_numpy(dtype=float))
    sub = df.loc[keep]
    return pd.DataFrame({"confidence": sub["confidence"].to_numpy(dtype=float),
                         "correct": (sub["kind"].astype(str) == sub["label"].astype(str)).to_numpy(),
                         "kind": sub["kind"].astype(str).to_numpy(), "label": label[keep].to_numpy()},
                        index=sub.index)


def label_confusion(labels: Any, *, normalize: bool = False) -> pd.DataFrame:
    """Cross-table of the model's ``kind`` (rows) against the reviewers' ``label`` (columns).

    With ``normalize=True`` each row is divided by its total (what reviewers
    said about the items the model called that kind).
    """
    df = _frame(labels, "labels")
    _need(df, ("kind", "label"), "labels")
    table = pd.crosstab(df["kind"].astype(str).rename("kind"), df["label"].astype(str).rename("label"),
                        normalize="index" if normalize else False)
    table.columns.name = "label"
    return table


def expert_usage(catalog: Any, *, by: str | Sequence[str] = "stratum") -> pd.DataFrame:
    """How much each expert is used per group.

    The gate writes one weight column per expert (``w_<expert>``); their mean
    per group says which experts the gate listened to.  Without weight
    columns, the fraction of detections each expert proposed (``expert``) is
    given instead.

    Returns
    -------
    pandas.DataFrame
        Index: the groups; columns: one per expert (mean weight, or fraction
        proposed), plus ``n``.  ``attrs["quantity"]`` says which.
    """
    df, keys = _group_keys(_frame(catalog, "catalog"), by)
    weights = [c for c in df.columns if c.startswith("w_") and pd.api.types.is_numeric_dtype(df[c])]
    if weights:
        out = df.groupby(keys, sort=True)[weights].mean()
        out.columns = [c[2:] for c in weights]
        quantity = "mean gate weight"
    else:
        _need(df, ("expert",), "catalog")
        out = pd.crosstab([df[k] for k in keys], df["expert"].astype(str), normalize="index")
        quantity = "fraction of detections proposed"
    out.columns.name = "expert"
    out["n"] = df.groupby(keys, sort=True).size()
    out.attrs = {"quantity": quantity}
    return out


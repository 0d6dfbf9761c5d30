"""Review labels as Parquet: what the reviewers decided, for calibration and training.

One row per item that reached its required number of decisions (status
``decided`` or ``disputed``).  Columns (:data:`contracts.vocabulary.LABEL_COLUMNS`): the source
(``catalog_id``, ``source_id``, ``exposure``, ``x``, ``y``, ``ra``, ``dec``,
``mode``), the gate's ``kind`` and probabilities ``p_<class>`` (NaN where the
gate gave none; ``p_nucleus`` for microscopy), its ``confidence``, the
``psf_fwhm``, the ``review_reason`` and ``triage_stratum`` (the gate's
certified-triage stratum, which ``moe-imaging calibrate --labels`` needs), and
the outcome: ``label`` (the consensus
kind, or ``"uncertain"`` when the reviewers did not agree), ``n_decisions``,
``agreement`` (share of decisions giving the most common label) and
``decided_at`` (UTC).

:func:`read_labels` checks a file before anything uses it and raises a
:class:`~review.errors.ReviewError` naming the file and the missing column or
bad value.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from contracts.vocabulary import LABEL_COLUMNS, LABEL_VALUES, MODES, PROB_COLUMNS
from .errors import ReviewError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from .store import ReviewStore

__all__ = ["LABELS_VERSION", "read_labels", "write_labels"]

LABELS_VERSION = "1.1"
"""Version of the label-file layout (stored in the Parquet metadata)."""

_OPTIONAL = {"p_nucleus", "ra", "dec", "psf_fwhm", "confidence", "review_reason", "triage_stratum", "decided_at"}
"""Columns :func:`read_labels` fills (NaN / empty) when a file lacks them."""

_META_KEY = b"moe_imaging.review_labels"


def _arrow_schema():
    import pyarrow as pa

    types = {"string": pa.string(), "int64": pa.int64(), "float64": pa.float64(),
             "timestamp": pa.timestamp("us", tz="UTC")}
    return pa.schema([(name, types[t]) for name, t in LABEL_COLUMNS])


def _nan(v: Any) -> float:
    return float("nan") if v is None else float(v)


def write_labels(store: ReviewStore, path: str | os.PathLike) -> Path:
    """Write the store's consensus labels to a Parquet file.

    Parameters
    ----------
    store : ReviewStore
        The queue.
    path : str or path-like
        Output file; must end in ``.parquet``.  Written atomically (a
        temporary file renamed into place), so a failed export leaves nothing.

    Returns
    -------
    Path
        The file written (zero rows with the full schema when nothing is decided).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = Path(path)
    if out.suffix.lower() != ".parquet":
        raise ReviewError(f"{out}: the label file must end in .parquet")
    if not out.parent.is_dir():
        raise ReviewError(f"{out}: the folder {out.parent} does not exist")
    schema = _arrow_schema()
    batches = []
    n = 0
    for chunk in store.iter_labels():
        cols: dict[str, list] = {name: [] for name, _ in LABEL_COLUMNS}
        for r in chunk:
            probs = r["probs"] or {}
            cols["catalog_id"].append(r["catalog_id"])
            cols["source_id"].append(int(r["source_id"]))
            cols["exposure"].append(r["exposure"])
            for k in ("x", "y", "ra", "dec", "agreement", "confidence", "psf_fwhm"):
                cols[k].append(_nan(r[k]))
            cols["mode"].append(r["mode"])
            cols["kind"].append(r["kind"])
            cols["label"].append(r["label"])
            cols["n_decisions"].append(int(r["n_decisions"]))
            for p in PROB_COLUMNS:
                cols[p].append(_nan(probs.get(p[2:])))
            cols["review_reason"].append(r["reason"])
            cols["triage_stratum"].append(r["triage_stratum"] or "")
            cols["decided_at"].append(r["decided_at"])
        batches.append(pa.record_batch([pa.array(cols[name], type=schema.field(name).type)
                                        for name, _ in LABEL_COLUMNS], schema=schema))
        n += len(chunk)
    table = pa.Table.from_batches(batches, schema=schema)
    meta = {
        "version": LABELS_VERSION,
        "rows": n,
        "required_reviews": store.config.required_reviews,
        "consensus": store.config.consensus,
        "exported_at": dt.datetime.now(dt.UTC).isoformat(),
        "store": store.url,
    }
    table = table.replace_schema_metadata({_META_KEY: json.dumps(meta).encode()})
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, out)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ReviewError(f"{out}: cannot write the label file: {exc.strerror or exc}") from None
    return out


def read_labels(path: str | os.PathLike) -> pd.DataFrame:
    """Read and validate a label file written by :func:`write_labels`.

    Returns
    -------
    pandas.DataFrame
        The columns of :data:`contracts.vocabulary.LABEL_COLUMNS`, in order (optional ones a file
        lacks are filled: NaN, empty text, NaT).

    Raises
    ------
    ReviewError
        ``"<file>: <cause>"``: the file is missing or not Parquet, a required
        column is missing or has the wrong type, or a value is out of range
        (an unknown label or mode, a probability outside [0, 1], agreement
        outside (0, 1], fewer than one decision, a non-finite position); the
        cause names the column and the first bad row.
    """
    import numpy as np
    import pandas as pd
    import pyarrow.parquet as pq

    src = Path(path)
    if not src.is_file():
        raise ReviewError(f"{src}: no such label file")
    try:
        table = pq.read_table(src)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a corrupt file
        raise ReviewError(f"{src}: not a readable Parquet file ({' '.join(str(exc).split())[:200]})") from None
    df = table.to_pandas()
    where = f"{src}"
    for name, kind in LABEL_COLUMNS:
        if name not in df.columns:
            if name in _OPTIONAL:
                df[name] = {"float64": np.nan, "string": "", "timestamp": pd.NaT}[kind]
                continue
            raise ReviewError(f"{where}: missing column {name!r} (review labels {LABELS_VERSION})")
    df = df[[name for name, _ in LABEL_COLUMNS]].copy()

    def bad(column: str, mask, what: str) -> None:
        mask = np.asarray(mask, bool)
        if mask.any():
            row = int(np.flatnonzero(mask)[0])
            raise ReviewError(f"{where}: column {column!r}: {what} (row {row}: {df[column].iloc[row]!r})")

    for name, kind in LABEL_COLUMNS:
        col = df[name]
        if kind == "float64":
            try:
                df[name] = col.astype("float64")
            except (TypeError, ValueError):
                raise ReviewError(f"{where}: column {name!r} must be numeric") from None
        elif kind == "int64":
            if not pd.api.types.is_integer_dtype(col):
                raise ReviewError(f"{where}: column {name!r} must hold integers, not {col.dtype}")
        elif kind == "string":
            if not (pd.api.types.is_string_dtype(col) or pd.api.types.is_object_dtype(col)):
                raise ReviewError(f"{where}: column {name!r} must hold text, not {col.dtype}")
            bad(name, ~col.map(lambda v: isinstance(v, str) or v is None), "must hold text")
            df[name] = col.fillna("")
    bad("label", ~df["label"].isin(LABEL_VALUES), f"unknown label (allowed: {list(LABEL_VALUES)})")
    bad("mode", ~df["mode"].isin(MODES), f"unknown mode (allowed: {list(MODES)})")
    bad("catalog_id", df["catalog_id"] == "", "empty catalog id")
    bad("n_decisions", df["n_decisions"] < 1, "must be at least 1")
    agreement = df["agreement"].to_numpy()
    bad("agreement", ~((agreement > 0) & (agreement <= 1)), "must lie in (0, 1]")
    for p in (*PROB_COLUMNS, "confidence"):
        v = df[p].to_numpy()
        bad(p, np.isfinite(v) & ((v < 0) | (v > 1)) | np.isinf(v), "a probability must lie in [0, 1] (or be NaN)")
    for c in ("x", "y"):
        bad(c, ~np.isfinite(df[c].to_numpy()), "must be finite")
    dup = df.duplicated(["catalog_id", "source_id"]).to_numpy()
    bad("source_id", dup, "the same (catalog_id, source_id) appears twice")
    return df.reset_index(drop=True)

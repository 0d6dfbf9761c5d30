"""The review queue's label file: its layout, and the one reader every consumer uses.

One row per reviewed item (written by ``moe-imaging review export``,
``review.labels.write_labels``).  Columns
(:data:`contracts.vocabulary.LABEL_COLUMNS`): the source (``catalog_id``,
``source_id``, ``exposure``, ``x``, ``y``, ``ra``, ``dec``, ``mode``), the
triage's ``kind`` and probabilities ``p_<class>`` (NaN where none; ``p_nucleus``
for microscopy), its ``confidence``, the ``psf_fwhm``, the ``review_reason`` and
``triage_stratum`` (the certified-triage stratum, which ``moe-imaging calibrate
--labels`` needs), and the outcome: ``label`` (the consensus kind, or
``"uncertain"`` when the reviewers did not agree), ``n_decisions``,
``agreement`` (share of decisions giving the most common label) and
``decided_at`` (UTC).

:func:`read_labels` checks a file before anything uses it (the review queue,
``moe-imaging calibrate``, the notebooks) and raises an
:class:`~contracts.errors.InputError` naming the file and the missing column or
bad value.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from contracts.errors import InputError
from contracts.vocabulary import LABEL_COLUMNS, LABEL_VALUES, MODES, PROB_COLUMNS

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    import pyarrow as pa

__all__ = ["LABELS_VERSION", "LABELS_META_KEY", "label_schema", "read_labels"]

LABELS_VERSION = "1.1"
"""Version of the label-file layout (stored in the Parquet metadata)."""

LABELS_META_KEY = b"moe_imaging.review_labels"
"""The Parquet metadata key of the export's facts (version, rows, consensus rule, store)."""

_OPTIONAL = {"p_nucleus", "ra", "dec", "psf_fwhm", "confidence", "review_reason", "triage_stratum", "decided_at"}
"""Columns :func:`read_labels` fills (NaN / empty) when a file lacks them."""


def label_schema() -> pa.Schema:
    """The Arrow schema of a label file (:data:`contracts.vocabulary.LABEL_COLUMNS`)."""
    import pyarrow as pa

    types = {"string": pa.string(), "int64": pa.int64(), "float64": pa.float64(),
             "timestamp": pa.timestamp("us", tz="UTC")}
    return pa.schema([(name, types[t]) for name, t in LABEL_COLUMNS])


def read_labels(path: str | os.PathLike) -> pd.DataFrame:
    """Read and validate a label file written by ``moe-imaging review export`` (``review.labels.write_labels``).

    Returns
    -------
    pandas.DataFrame
        The columns of :data:`contracts.vocabulary.LABEL_COLUMNS`, in order (optional ones a file
        lacks are filled: NaN, empty text, NaT).

    Raises
    ------
    contracts.errors.InputError
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
        raise InputError(str(src), "no such label file")
    try:
        table = pq.read_table(src)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a corrupt file
        raise InputError(str(src), f"not a readable Parquet file ({' '.join(str(exc).split())[:200]})") from None
    df = table.to_pandas()
    where = f"{src}"
    for name, kind in LABEL_COLUMNS:
        if name not in df.columns:
            if name in _OPTIONAL:
                df[name] = {"float64": np.nan, "string": "", "timestamp": pd.NaT}[kind]
                continue
            raise InputError(where, f"missing column {name!r} (review labels {LABELS_VERSION})")
    df = df[[name for name, _ in LABEL_COLUMNS]].copy()

    def bad(column: str, mask, what: str) -> None:
        mask = np.asarray(mask, bool)
        if mask.any():
            row = int(np.flatnonzero(mask)[0])
            raise InputError(where, f"column {column!r}: {what} (row {row}: {df[column].iloc[row]!r})")

    for name, kind in LABEL_COLUMNS:
        col = df[name]
        if kind == "float64":
            try:
                df[name] = col.astype("float64")
            except (TypeError, ValueError):
                raise InputError(where, f"column {name!r} must be numeric") from None
        elif kind == "int64":
            if not pd.api.types.is_integer_dtype(col):
                raise InputError(where, f"column {name!r} must hold integers, not {col.dtype}")
        elif kind == "string":
            if not (pd.api.types.is_string_dtype(col) or pd.api.types.is_object_dtype(col)):
                raise InputError(where, f"column {name!r} must hold text, not {col.dtype}")
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

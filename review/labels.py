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

The layout and its one reader (:func:`catalogs.labels.read_labels`, re-exported
here) live in :mod:`catalogs.labels`, so ``moe-imaging calibrate`` and the
notebooks read label files without the review queue.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from catalogs.labels import LABELS_META_KEY, LABELS_VERSION, label_schema, read_labels
from contracts.files import atomic_write
from contracts.vocabulary import LABEL_COLUMNS, PROB_COLUMNS

from .errors import ReviewError

if TYPE_CHECKING:  # pragma: no cover
    from .store import ReviewStore

__all__ = ["LABELS_VERSION", "read_labels", "write_labels"]


def _nan(v: Any) -> float:
    return float("nan") if v is None else float(v)


def write_labels(store: ReviewStore, path: str | os.PathLike) -> Path:
    """Write the store's consensus labels to a Parquet file.

    Parameters
    ----------
    store : ReviewStore
        The queue.
    path : str or path-like
        Output file; must end in ``.parquet``.  Written atomically
        (:func:`contracts.files.atomic_write`: a temporary file moved into
        place), so a failed export leaves nothing.

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
    schema = label_schema()
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
    table = table.replace_schema_metadata({LABELS_META_KEY: json.dumps(meta).encode()})
    try:
        atomic_write(out, lambda tmp: pq.write_table(table, tmp))
    except OSError as exc:
        raise ReviewError(f"{out}: cannot write the label file: {exc.strerror or exc}") from None
    return out

"""Reviewers' labels back into the triage's calibration: ``moe-imaging calibrate --labels FILE``.

Survey labels refit the gate's triage (:func:`recalibrate_with_labels`);
microscopy labels (``nucleus`` / ``artifact``) refit the nucleus triage's
(:func:`recalibrate_nucleus_triage_with_labels`, ``--model nucleus-triage``).

The certified triage (:mod:`moe_imaging.calibrate`) chooses, per stratum, the
lowest confidence threshold whose error rate on the *calibration pool* is
certified ``<= alpha`` with probability ``>= 1 - delta``.  The shipped pool is
the gate's simulated calibration split.  Human labels from the review queue
(``moe-imaging review export``) are real detections with known answers; this
module adds them to the pool, so the thresholds are refitted on simulation
*and* reality.

What is assumed, and why it is safe
-----------------------------------
* A reviewer's label is the truth (items with label ``uncertain``, or a class
  the gate does not know, are left out).
* The reviewed items were selected *by their confidence* (and stratum): they
  went to review because the gate was unsure.  Selection on the score alone
  leaves the error rate *at a given score* unchanged, so pooled with the
  calibration split they over-represent low scores; the pooled error rate
  among scores ``>= t`` then weighs the scores just above ``t`` (the least
  reliable of them) more than future data will.  Adding reviewed items can
  therefore only make the estimated risk above a threshold larger, i.e. the
  refitted thresholds are conservative, *provided* the reviewed items are
  otherwise like future detections of their stratum (same instrument,
  same kind of field).  Labels of one unusual exposure make the pool
  unrepresentative; export labels from the runs you will process.
* Survey strata the simulated split never had (a PSF outside the training
  range, a field denser than any calibration field) can be calibrated by
  labels alone: every detection there goes to review, so the labelled ones
  are an unselected sample of that regime, and once a stratum holds
  ``min_count`` labels whose error rate the triage can certify, its
  detections are decided automatically too.  (Items the reviewers could not
  agree on carry the label ``uncertain`` and are left out; they are the
  hard ones, so many disputed items make the sample, and the threshold,
  optimistic: check ``moe-imaging review stats`` first.)  The microscopy out-of-range
  stratum stays uncalibrated (single detections there lie outside the
  physics the classifier was trained on).
* The temperature (the calibration of the probabilities themselves) is not
  refitted: the labels carry calibrated probabilities, not the network's
  logits.  The expected calibration error on the labels is reported so a
  drift is visible.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from .calibrate import expected_calibration_error, fit_stratified_triage
from contracts.errors import InputError
from .gate import DEFAULT_GATE_WEIGHTS, GATE_CLASSES, GateModel, load_gate, outside_calibration_strata
from .nucleus_triage import (
    DEFAULT_NUCLEUS_TRIAGE_WEIGHTS,
    NUCLEUS_CLASSES,
    OUT_OF_RANGE_STRATUM,
    NucleusTriageModel,
    open_nucleus_triage,
)

__all__ = [
    "LABEL_COLUMNS",
    "LabelSummary",
    "read_label_file",
    "recalibrate_with_labels",
    "recalibrate_nucleus_triage_with_labels",
    "summary_lines",
]

LABEL_COLUMNS: tuple[str, ...] = ("kind", "label", "confidence", "triage_stratum")
"""Columns a label file must have (``moe-imaging review export`` writes them, and more)."""


@dataclasses.dataclass(frozen=True)
class LabelSummary:
    """What the labels did to the calibration pool and the thresholds.

    Attributes
    ----------
    n_labels, n_used : int
        Rows in the label file, and rows used (a known class, a calibrated stratum).
    per_stratum : dict
        For each stratum: calibration items before and after, labelled items,
        the gate's error rate on them, and the certified threshold before
        and after (``inf``: nothing decided automatically) at ``alpha``.
    ece_labels : float
        Expected calibration error of the gate's confidence on the labels.
    out : pathlib.Path
        The weights file written (the same network, a larger calibration pool).
    setting : str
        The ``[gate]`` configuration key that selects ``out`` (``weights`` for
        the survey gate, ``nucleus_weights`` for the nucleus triage).
    """

    n_labels: int
    n_used: int
    per_stratum: dict[str, dict[str, float]]
    ece_labels: float
    alpha: float
    delta: float
    out: Path
    setting: str = "weights"


def read_label_file(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read and check a label file (Parquet); errors name the file and the cause.

    Raises
    ------
    InputError
        Missing or unreadable file, not Parquet, a missing column, or a
        non-numeric / out-of-range confidence.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(str(path), "no such label file")
    try:
        df = pq.read_table(path).to_pandas()
    except Exception as exc:  # pyarrow raises several types for a bad file
        raise InputError(str(path), f"not a readable Parquet label file ({type(exc).__name__}: {exc})") from None
    missing = [c for c in LABEL_COLUMNS if c not in df.columns]
    if missing:
        raise InputError(str(path), f"label file lacks column {missing[0]!r} (needs {', '.join(LABEL_COLUMNS)}; "
                                    "write it with 'moe-imaging review export')")
    conf = pd.to_numeric(df["confidence"], errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(conf) | (conf < 0) | (conf > 1)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise InputError(str(path), f"row {row}: confidence {df['confidence'].iloc[row]} is not a probability in [0, 1]")
    return df


def recalibrate_with_labels(
    labels: pd.DataFrame,
    *,
    out: str | os.PathLike[str],
    weights: str | os.PathLike[str] | None = None,
    alpha: float = 0.01,
    delta: float = 0.05,
    min_count: int = 50,
    source: str = "labels",
) -> LabelSummary:
    """Add reviewed items to the gate's calibration pool and save the result as new weights.

    Parameters
    ----------
    labels : pandas.DataFrame
        Label rows (:func:`read_label_file`): the gate's ``kind`` and
        ``confidence`` when the item was queued, the reviewers' ``label``
        and the item's ``triage_stratum``.
    out : path-like
        Weights file to write (the network is unchanged; its calibration
        pool grows).  Point ``[gate] weights`` at it.
    weights : path-like, optional
        The gate to start from (default: the shipped one).
    alpha, delta, min_count
        Used only to report the thresholds before and after; at run time the
        thresholds are fitted from the pool for the configured risk.
    source : str
        Name of the label file, recorded in the weights' metadata.
    """
    base_path = Path(weights) if weights is not None else DEFAULT_GATE_WEIGHTS
    model: GateModel = load_gate(base_path)
    cal = model.metadata["calibration"]
    pool = _pool_labels(cal, labels, GATE_CLASSES, alpha=alpha, delta=delta, min_count=min_count,
                        new=outside_calibration_strata("survey"))
    meta = dict(model.metadata)
    # per-row arrays of the simulated split (fwhm, density, ...) no longer line up with the pool;
    # everything else (e.g. field_density_max, the calibrated range) is kept
    per_row = {"scores", "errors", "strata", "fwhm", "density", "exposure_density"}
    meta["calibration"] = {**{k: v for k, v in cal.items() if k not in per_row}, **pool.calibration(decimals=6),
                           "label_sets": _history(cal, labels, pool, source, base_path)}
    new = dataclasses.replace(model, metadata=meta)
    out = _check_out(out, base_path, "gate")
    new.save(out)
    return pool.summary(len(labels), alpha, delta, out, "weights")


def recalibrate_nucleus_triage_with_labels(
    labels: pd.DataFrame,
    *,
    out: str | os.PathLike[str],
    weights: str | os.PathLike[str] | None = None,
    alpha: float = 0.01,
    delta: float = 0.05,
    min_count: int = 50,
    source: str = "labels",
) -> LabelSummary:
    """Add reviewed microscopy items to the nucleus triage's calibration pool; save new weights.

    The same procedure and assumptions as :func:`recalibrate_with_labels`,
    for the nucleus triage (:mod:`moe_imaging.nucleus_triage`): rows whose
    ``kind`` and ``label`` are ``nucleus`` or ``artifact`` and whose stratum
    is a calibrated microscopy stratum join the pool (survey rows, label
    ``uncertain`` and the never-calibrated out-of-range stratum are left
    out).  Point ``[gate] nucleus_weights`` at ``out``.
    """
    base_path = Path(weights) if weights is not None else DEFAULT_NUCLEUS_TRIAGE_WEIGHTS
    model: NucleusTriageModel = open_nucleus_triage(base_path)
    cal = model.calibration
    pool = _pool_labels(cal, labels, NUCLEUS_CLASSES, alpha=alpha, delta=delta, min_count=min_count,
                        never=(OUT_OF_RANGE_STRATUM,))
    meta = dict(model.metadata)
    meta["label_sets"] = _history(meta, labels, pool, source, base_path)
    new = dataclasses.replace(model, calibration=pool.calibration(), metadata=meta)
    out = _check_out(out, base_path, "nucleus triage")
    new.save(out)
    return pool.summary(len(labels), alpha, delta, out, "nucleus_weights")


@dataclasses.dataclass(frozen=True)
class _Pool:
    """The calibration pool with the usable label rows added, and the per-stratum report."""

    use: np.ndarray
    scores: np.ndarray
    errors: np.ndarray
    strata: np.ndarray
    label_scores: np.ndarray
    label_errors: np.ndarray
    per_stratum: dict[str, dict[str, float]]

    def calibration(self, decimals: int | None = None) -> dict[str, list]:
        scores = self.scores.round(decimals) if decimals is not None else self.scores
        return {"scores": scores.tolist(), "errors": self.errors.astype(int).tolist(), "strata": self.strata.tolist()}

    def summary(self, n_labels: int, alpha: float, delta: float, out: Path, setting: str) -> LabelSummary:
        s1, e1 = self.label_scores, self.label_errors
        ece = float(expected_calibration_error(s1, ~e1)) if len(s1) else float("nan")
        return LabelSummary(int(n_labels), int(self.use.sum()), self.per_stratum, ece, alpha, delta, out, setting)


def _pool_labels(cal: dict, labels: pd.DataFrame, classes: tuple[str, ...], *, alpha: float, delta: float,
                 min_count: int, never: tuple[str, ...] = (), new: tuple[str, ...] = ()) -> _Pool:
    """Pool the usable labels with the calibration split.

    Usable: a known class, and a stratum of the split or one of ``new`` (the
    strata labels alone may calibrate); never one of ``never``.
    """
    s0 = np.asarray(cal["scores"], float)
    e0 = np.asarray(cal["errors"], bool)
    k0 = np.asarray(cal["strata"]).astype(str)

    label = labels["label"].astype(str).str.strip().str.lower().to_numpy()
    kind = labels["kind"].astype(str).str.strip().str.lower().to_numpy()
    strata = labels["triage_stratum"].astype(str).to_numpy()
    conf = labels["confidence"].to_numpy(dtype=float)
    known = (set(k0.tolist()) | set(new)) - set(never)
    use = np.isin(label, classes) & np.isin(kind, classes) & np.isin(strata, list(known))
    s1, e1, k1 = conf[use], kind[use] != label[use], strata[use]

    scores = np.concatenate([s0, s1])
    errors = np.concatenate([e0, e1])
    pooled = np.concatenate([k0, k1])
    fit = [~np.isin(k, list(never)) for k in (k0, pooled)]  # a never-calibrated stratum stays so
    before = fit_stratified_triage(s0[fit[0]], e0[fit[0]], k0[fit[0]], alpha=alpha, delta=delta, min_count=min_count)
    after = fit_stratified_triage(scores[fit[1]], errors[fit[1]], pooled[fit[1]], alpha=alpha, delta=delta,
                                  min_count=min_count)
    per: dict[str, dict[str, float]] = {}
    for name in sorted((set(k1.tolist()) | set(k0.tolist())) - set(never)):
        sel = k1 == name
        per[name] = {
            "calibration_before": int((k0 == name).sum()),
            "labels": int(sel.sum()),
            "calibration_after": int((pooled == name).sum()),
            "gate_error_on_labels": float(e1[sel].mean()) if sel.any() else float("nan"),
            "threshold_before": float(before.thresholds[name].tau) if name in before.thresholds else float("inf"),
            "threshold_after": float(after.thresholds[name].tau) if name in after.thresholds else float("inf"),
        }
    return _Pool(use, scores, errors, pooled, s1, e1, per)


def _history(holder: dict, labels: pd.DataFrame, pool: _Pool, source: str, base_path: Path) -> list[dict]:
    history = list(holder.get("label_sets", []))
    history.append({"source": source, "rows": int(len(labels)), "used": int(pool.use.sum()),
                    "added_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                    "base_weights": base_path.name})
    return history


def _check_out(out: str | os.PathLike[str], base_path: Path, what: str) -> Path:
    out = Path(out)
    if out.resolve() == base_path.resolve():
        raise InputError(str(out), f"would overwrite the {what} it starts from; choose another --out")
    return out


def summary_lines(summary: LabelSummary) -> list[str]:
    """The summary as printable lines (used by the CLI)."""
    lines = [f"{summary.n_used} of {summary.n_labels} labels used (known class, calibrated stratum); "
             f"ECE of the gate on them {summary.ece_labels:.3f}",
             f"thresholds at alpha {summary.alpha:g}, delta {summary.delta:g} (inf: everything to review):",
             f"  {'stratum':34s} {'calib':>6s} {'labels':>6s} {'gate err':>8s} {'before':>7s} {'after':>7s}"]
    for name, r in summary.per_stratum.items():
        lines.append(f"  {name:34s} {r['calibration_before']:6d} {r['labels']:6d} {r['gate_error_on_labels']:8.3f} "
                     f"{r['threshold_before']:7.3f} {r['threshold_after']:7.3f}")
    lines.append(f"wrote {summary.out}; use it with [gate] {summary.setting} = \"{summary.out}\"")
    return lines


"""Reviewers' labels back into a triage head's calibration (``moe-imaging calibrate --labels FILE``).

:func:`recalibrate_with_labels` adds the usable label rows to any head's
calibration split and returns the new head: survey labels refit the gate,
microscopy labels (``nucleus`` / ``artifact``) the nucleus triage.  Reading
the label file and writing the new weights is ``training.recalibrate``'s job.

The certified triage (:mod:`moe_imaging.triage.certify`) chooses, per stratum, the
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

import numpy as np
import pandas as pd

from .calibration import expected_calibration_error
from .certify import fit_stratified_triage
from .protocol import CalibrationSplit, TriageModel

__all__ = ["LabelSummary", "recalibrate_with_labels"]


@dataclasses.dataclass(frozen=True)
class LabelSummary:
    """What the labels did to the calibration pool and the thresholds.

    Attributes
    ----------
    n_labels, n_used : int
        Rows in the label table, and rows used (a known class, a calibrated stratum).
    per_stratum : dict
        For each stratum: calibration items before and after, labelled items,
        the head's error rate on them, and the certified threshold before
        and after (``inf``: nothing decided automatically) at ``alpha``.
    ece_labels : float
        Expected calibration error of the head's confidence on the labels.
    alpha, delta : float
        The risk and confidence the thresholds are reported for.
    """

    n_labels: int
    n_used: int
    per_stratum: dict[str, dict[str, float]]
    ece_labels: float
    alpha: float
    delta: float


def recalibrate_with_labels(
    model: TriageModel,
    labels: pd.DataFrame,
    *,
    alpha: float = 0.01,
    delta: float = 0.05,
    min_count: int = 50,
    source: str = "labels",
) -> tuple[TriageModel, LabelSummary]:
    """Add reviewed items to a head's calibration split; return the new head and what changed.

    Parameters
    ----------
    model : TriageModel
        The head to start from (the survey gate or the nucleus triage); it is not changed.
    labels : pandas.DataFrame
        Label rows (``catalogs.labels.read_labels``): the head's ``kind`` and
        ``confidence`` when the item was queued, the reviewers' ``label``
        and the item's ``triage_stratum``.  Rows whose class the head does
        not know (other modality, ``uncertain``) or whose stratum is not
        calibrated are left out.
    alpha, delta, min_count
        Used only to report the thresholds before and after; at run time the
        thresholds are fitted from the pool for the configured risk.
    source : str
        Name of the label file, recorded in the new head's label history.

    Returns
    -------
    (TriageModel, LabelSummary)
        The same network with a larger calibration split, and the report.
    """
    pool = _pool_labels(model.calibration_split(), labels, model.classes, alpha=alpha, delta=delta,
                        min_count=min_count, new=model.label_strata())
    history = model.label_history()
    history.append({"source": source, "rows": int(len(labels)), "used": int(pool.use.sum()),
                    "added_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                    "base_weights": model.source})
    new = model.with_calibration(pool.split, history)
    return new, pool.summary(len(labels), alpha, delta)


@dataclasses.dataclass(frozen=True)
class _Pool:
    """The calibration split with the usable label rows added, and the per-stratum report."""

    use: np.ndarray
    split: CalibrationSplit
    label_scores: np.ndarray
    label_errors: np.ndarray
    per_stratum: dict[str, dict[str, float]]

    def summary(self, n_labels: int, alpha: float, delta: float) -> LabelSummary:
        s1, e1 = self.label_scores, self.label_errors
        ece = float(expected_calibration_error(s1, ~e1)) if len(s1) else float("nan")
        return LabelSummary(int(n_labels), int(self.use.sum()), self.per_stratum, ece, alpha, delta)


def _pool_labels(cal: CalibrationSplit, labels: pd.DataFrame, classes: tuple[str, ...], *, alpha: float,
                 delta: float, min_count: int, new: tuple[str, ...] = ()) -> _Pool:
    """Pool the usable labels with the calibration split.

    Usable: a known class, and a stratum of the split or one of ``new`` (the
    strata labels alone may calibrate); never one of the split's ``never`` strata.
    """
    s0, e0, k0, never = cal.scores, cal.errors, cal.strata, cal.never

    label = labels["label"].astype(str).str.strip().str.lower().to_numpy()
    kind = labels["kind"].astype(str).str.strip().str.lower().to_numpy()
    strata = labels["triage_stratum"].astype(str).to_numpy()
    conf = labels["confidence"].to_numpy(dtype=float)
    known = (set(k0.tolist()) | set(new)) - set(never)
    use = np.isin(label, classes) & np.isin(kind, classes) & np.isin(strata, list(known))
    s1, e1, k1 = conf[use], kind[use] != label[use], strata[use]

    pooled = CalibrationSplit(np.concatenate([s0, s1]), np.concatenate([e0, e1]), np.concatenate([k0, k1]), never)
    before = fit_stratified_triage(*cal.fitted(), alpha=alpha, delta=delta, min_count=min_count)
    after = fit_stratified_triage(*pooled.fitted(), alpha=alpha, delta=delta, min_count=min_count)
    per: dict[str, dict[str, float]] = {}
    for name in sorted((set(k1.tolist()) | set(k0.tolist())) - set(never)):
        sel = k1 == name
        per[name] = {
            "calibration_before": int((k0 == name).sum()),
            "labels": int(sel.sum()),
            "calibration_after": int((pooled.strata == name).sum()),
            "gate_error_on_labels": float(e1[sel].mean()) if sel.any() else float("nan"),
            "threshold_before": float(before.thresholds[name].tau) if name in before.thresholds else float("inf"),
            "threshold_after": float(after.thresholds[name].tau) if name in after.thresholds else float("inf"),
        }
    return _Pool(use, pooled, s1, e1, per)

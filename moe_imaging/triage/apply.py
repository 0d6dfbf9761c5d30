"""One apply for every triage head: probabilities in, certified decisions and reasons out.

:func:`apply_triage` asks a head (:class:`~moe_imaging.triage.protocol.TriageModel`)
for its calibrated probabilities, fits the certified thresholds of its
calibration split for the risk ``alpha`` (cached on the split's content, not on
a file path) and writes the decision columns every catalog shares.
"""

from __future__ import annotations

import functools

import numpy as np
from astropy.table import Table

from .certify import StratifiedTriage, fit_stratified_triage
from .protocol import CalibrationSplit, TriageContext, TriageModel

__all__ = ["apply_triage", "certified_thresholds", "decision_reason"]


@functools.lru_cache(maxsize=32)
def _thresholds(split: CalibrationSplit, alpha: float, delta: float, min_count: int) -> StratifiedTriage:
    scores, errors, strata = split.fitted()
    return fit_stratified_triage(scores, errors, strata, alpha=alpha, delta=delta, min_count=min_count)


def certified_thresholds(model: TriageModel, *, alpha: float = 0.01, delta: float = 0.05,
                         min_count: int = 50) -> StratifiedTriage:
    """The certified per-stratum thresholds of ``model`` for risk ``alpha`` and confidence ``1 - delta``.

    Fitted on the model's calibration split (rows of never-calibrated strata
    left out); cached on the split's content (:meth:`CalibrationSplit.fingerprint`),
    so a refitted model is never served the thresholds of the one it replaced.
    """
    return _thresholds(model.calibration_split(), float(alpha), float(delta), int(min_count))


def decision_reason(auto: np.ndarray, threshold_reasons: list[str], evidence: list[str]) -> list[str]:
    """The catalog's ``review_reason``: empty when decided, else why not and the evidence (ASCII)."""
    text = [f"{r}; {g}" if not a else "" for a, r, g in zip(auto, threshold_reasons, evidence)]
    return [t.encode("ascii", "replace").decode("ascii") for t in text]


def apply_triage(
    model: TriageModel,
    table: Table,
    *,
    context: TriageContext,
    alpha: float = 0.01,
    delta: float = 0.05,
    min_count: int = 50,
) -> Table:
    """Add the triage's decision columns to a detection table (a new table).

    Parameters
    ----------
    model : TriageModel
        The head: the survey gate or the nucleus triage.
    table : astropy.table.Table
        The whole exposure's detections (crowding is measured among them).
    context : TriageContext
        PSF, threshold, image shape, expert evidence, nucleus size.
    alpha, delta : float
        Risk and confidence of the certified triage.
    min_count : int
        Strata with fewer calibration items go to review.

    Returns
    -------
    astropy.table.Table
        With ``kind`` (the head's class), ``p_<class>`` for each class,
        ``confidence`` (the calibrated top probability), the head's extra
        columns (e.g. ``w_<expert>``), ``decision`` (``accepted``,
        ``rejected`` for an automatic ``artifact``, or ``review``),
        ``review_reason`` (ASCII; empty when decided), ``gate_reason`` (the
        evidence in words, always) and ``triage_stratum``; ``meta["gate"]``
        records the model, the risk and the uncalibrated strata.
    """
    out = Table(table, copy=True)
    n = len(out)
    pred = model.predict(out, context)
    triage = certified_thresholds(model, alpha=alpha, delta=delta, min_count=min_count)
    conf = pred.probs.max(axis=1) if n else np.zeros(0)
    auto, reasons = triage.decide(conf, pred.strata) if n else (np.zeros(0, bool), [])
    classes = np.asarray(model.classes, dtype="U16")
    kind = classes[pred.probs.argmax(axis=1)] if n else np.zeros(0, "U16")
    out["kind"] = kind
    for k, c in enumerate(model.classes):
        out[f"p_{c}"] = pred.probs[:, k] if n else np.zeros(0)
    out["confidence"] = conf
    for name, values in pred.columns.items():
        out[name] = values
    out["decision"] = np.where(auto, np.where(kind == "artifact", "rejected", "accepted"), "review").astype("U8") \
        if n else np.zeros(0, "U8")
    out["review_reason"] = np.asarray(decision_reason(auto, reasons, pred.reasons), dtype=str) \
        if n else np.zeros(0, "U1")
    out["gate_reason"] = np.asarray(pred.reasons, dtype=str) if n else np.zeros(0, "U1")
    out["triage_stratum"] = np.asarray(pred.strata).astype(str) if n else np.zeros(0, "U1")
    out.meta["gate"] = {"weights": model.source, "alpha": alpha, "delta": delta, "temperature": model.temperature,
                        "uncalibrated_strata": dict(triage.uncalibrated), **pred.meta}
    return out

"""``moe-imaging calibrate --labels FILE``: reviewers' labels into a triage head's weights file.

Reads the label file (:func:`catalogs.labels.read_labels`), loads the head to
start from (the survey gate or the nucleus triage), adds the usable labels to
its calibration split (:func:`moe_imaging.triage.recalibrate.recalibrate_with_labels`,
whose docstring states what is assumed and why it is safe) and writes the new
weights.  Point ``[gate] weights`` (survey) or ``[gate] nucleus_weights``
(microscopy) at the file written.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pandas as pd

from contracts.errors import InputError
from moe_imaging.triage.recalibrate import LabelSummary, recalibrate_with_labels
from pipelines.models import (
    DEFAULT_GATE_WEIGHTS,
    DEFAULT_NUCLEUS_TRIAGE_WEIGHTS,
    open_triage,
    save_model,
)

__all__ = ["HEADS", "Recalibration", "recalibrate_weights", "summary_lines"]

HEADS: dict[str, tuple[str, Path, str]] = {
    "gate": ("gate", DEFAULT_GATE_WEIGHTS, "weights"),
    "nucleus-triage": ("nucleus_triage", DEFAULT_NUCLEUS_TRIAGE_WEIGHTS, "nucleus_weights"),
}
"""``--model`` name -> (model kind, shipped weights, the ``[gate]`` key that selects a refitted file)."""


@dataclasses.dataclass(frozen=True)
class Recalibration:
    """What ``moe-imaging calibrate`` did: the report, the file written and the setting that selects it."""

    summary: LabelSummary
    out: Path
    setting: str


def recalibrate_weights(
    labels: pd.DataFrame,
    *,
    out: str | os.PathLike[str],
    model: str = "gate",
    weights: str | os.PathLike[str] | None = None,
    alpha: float = 0.01,
    delta: float = 0.05,
    min_count: int = 50,
    source: str = "labels",
) -> Recalibration:
    """Add reviewed items to a head's calibration split and save the result as new weights.

    Parameters
    ----------
    labels : pandas.DataFrame
        Label rows (:func:`catalogs.labels.read_labels`).
    out : path-like
        Weights file to write (the network is unchanged; its calibration split grows).
    model : {"gate", "nucleus-triage"}
        Which head to refit.
    weights : path-like, optional
        The head to start from (default: the shipped one).
    alpha, delta, min_count
        Used only to report the thresholds before and after.
    source : str
        Name of the label file, recorded in the new weights' label history.

    Raises
    ------
    contracts.errors.InputError
        An unknown ``model``, a missing or wrong ``weights`` file, or an
        ``out`` that would overwrite the file it starts from.
    """
    if model not in HEADS:
        raise InputError(str(model), f"unknown model; choose one of {sorted(HEADS)}")
    kind, default, setting = HEADS[model]
    base = Path(weights) if weights is not None else default
    out = Path(out)
    if out.resolve() == base.resolve():
        raise InputError(str(out), f"would overwrite the {kind.replace('_', ' ')} it starts from; choose another --out")
    head = open_triage(kind, base)
    new, summary = recalibrate_with_labels(head, labels, alpha=alpha, delta=delta, min_count=min_count,
                                           source=source)
    save_model(new, out)
    return Recalibration(summary, out, setting)


def summary_lines(result: Recalibration) -> list[str]:
    """The report as printable lines (used by the command line)."""
    summary = result.summary
    lines = [f"{summary.n_used} of {summary.n_labels} labels used (known class, calibrated stratum); "
             f"ECE of the gate on them {summary.ece_labels:.3f}",
             f"thresholds at alpha {summary.alpha:g}, delta {summary.delta:g} (inf: everything to review):",
             f"  {'stratum':34s} {'calib':>6s} {'labels':>6s} {'gate err':>8s} {'before':>7s} {'after':>7s}"]
    for name, r in summary.per_stratum.items():
        lines.append(f"  {name:34s} {r['calibration_before']:6d} {r['labels']:6d} {r['gate_error_on_labels']:8.3f} "
                     f"{r['threshold_before']:7.3f} {r['threshold_after']:7.3f}")
    lines.append(f"wrote {result.out}; use it with [gate] {result.setting} = \"{result.out}\"")
    return lines

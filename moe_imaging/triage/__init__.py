"""Triage: calibrated class probabilities and certified decisions, one lifecycle for every modality.

==================  =====================================================================
module              what it holds
==================  =====================================================================
``protocol``        the model protocol (:class:`TriageModel`), its context, prediction and
                    calibration split
``apply``           :func:`apply_triage`: decisions, reasons and the catalog's triage columns
``certify``         certified thresholds per stratum (Learn then Test), risk-coverage
``calibration``     temperature scaling, isotonic maps, ECE, reliability, Clopper-Pearson
``strata``          survey strata: PSF size, crowding, out-of-range regimes
``recalibrate``     reviewers' labels into a head's calibration split
``survey_features`` the gate's inputs (every expert's evidence, physics features)
``survey``          the survey head: the gate over the experts (torch)
``microscopy``      the microscopy head: the nucleus triage (torch)
==================  =====================================================================

This package's ``__init__`` imports no torch: the heads load only where used.
Weights are read and written by ``pipelines.models``, never here.
"""

from __future__ import annotations

from .apply import apply_triage, certified_thresholds
from .protocol import CalibrationSplit, TriageContext, TriageModel, TriagePrediction
from .recalibrate import LabelSummary, recalibrate_with_labels

__all__ = [
    "apply_triage",
    "certified_thresholds",
    "CalibrationSplit",
    "TriageContext",
    "TriageModel",
    "TriagePrediction",
    "LabelSummary",
    "recalibrate_with_labels",
]

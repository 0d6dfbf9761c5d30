"""The words every package shares: object kinds, sub-types, decisions, modes, expert names, label columns.

Declared once, here; every other module imports them.  A catalog, a review
item, a label file and a trained model all speak this vocabulary, so a change
here is a change of the catalog schema (bump its version) and of the models
(retrain them).
"""

from __future__ import annotations

__all__ = [
    "KINDS",
    "SURVEY_CLASSES",
    "MICROSCOPY_CLASSES",
    "CLASSES_BY_MODE",
    "PROB_COLUMNS",
    "ARTIFACT_SUBTYPES",
    "DECISIONS",
    "MODES",
    "UNCERTAIN",
    "LABEL_VALUES",
    "LABEL_COLUMNS",
    "LABEL_COLUMN_NAMES",
    "SURVEY_EXPERTS",
    "MICROSCOPY_EXPERTS",
    "EXPERT_NAMES",
]

KINDS: tuple[str, ...] = ("star", "galaxy", "streak", "artifact", "nucleus")
"""The catalog's ``kind`` vocabulary (``''`` where nothing was decided)."""

SURVEY_CLASSES: tuple[str, ...] = ("star", "galaxy", "streak", "artifact")
"""What a survey detection is classified as (the gate's and the learned expert's classes, in this
order).  ``artifact`` also covers detections that match no real object (noise peaks, pieces of a halo)."""

MICROSCOPY_CLASSES: tuple[str, ...] = ("nucleus", "artifact")
"""What a microscopy detection is classified as: exactly one real nucleus, or an error (spurious, a
piece of a split nucleus, a merge of two)."""

CLASSES_BY_MODE: dict[str, tuple[str, ...]] = {"survey": SURVEY_CLASSES, "microscopy": MICROSCOPY_CLASSES}
"""The classes of each mode, in order (the number keys of the review app follow it)."""

PROB_COLUMNS: tuple[str, ...] = tuple(f"p_{k}" for k in KINDS)
"""One calibrated probability column per kind (``p_<kind>``)."""

ARTIFACT_SUBTYPES: tuple[str, ...] = ("cosmic_ray", "hot_pixel", "saturation", "bleed")
"""The ``subtype`` of an ``artifact`` (``''`` for other kinds)."""

DECISIONS: tuple[str, ...] = ("accepted", "rejected", "review")
"""``accepted``: a real source decided automatically; ``rejected``: an artifact decided automatically;
``review``: a human decides."""

MODES: tuple[str, ...] = ("survey", "microscopy")
"""Observing modalities: a sky survey exposure or a fluorescence microscopy image."""

UNCERTAIN = "uncertain"
"""The label a reviewer gives when the cutout does not settle the class."""

LABEL_VALUES: tuple[str, ...] = (*KINDS, UNCERTAIN)
"""Allowed values of a label file's ``label`` column."""

LABEL_COLUMNS: tuple[tuple[str, str], ...] = (
    ("catalog_id", "string"),
    ("source_id", "int64"),
    ("exposure", "string"),
    ("x", "float64"),
    ("y", "float64"),
    ("ra", "float64"),
    ("dec", "float64"),
    ("mode", "string"),
    ("kind", "string"),
    ("label", "string"),
    ("n_decisions", "int64"),
    ("agreement", "float64"),
    *((p, "float64") for p in PROB_COLUMNS),
    ("confidence", "float64"),
    ("psf_fwhm", "float64"),
    ("review_reason", "string"),
    ("triage_stratum", "string"),
    ("decided_at", "timestamp"),
)
"""``(name, type)`` of every column of the review queue's label file, in order."""

LABEL_COLUMN_NAMES: tuple[str, ...] = tuple(name for name, _ in LABEL_COLUMNS)
"""The names of :data:`LABEL_COLUMNS`."""

SURVEY_EXPERTS: tuple[str, ...] = ("point", "extended", "artifact", "streak", "learned")
"""The survey experts, in the order the gate reads their evidence."""

MICROSCOPY_EXPERTS: tuple[str, ...] = ("nucleus",)
"""The microscopy experts."""

EXPERT_NAMES: tuple[str, ...] = (*SURVEY_EXPERTS, *MICROSCOPY_EXPERTS)
"""Every registered expert's name."""

"""The learned expert's model (torch): pure functions and a thin network.

:mod:`.model` holds the pure functions (stamps, classification with D4
test-time augmentation, tempering out of the PSF range) and the thin
:class:`~.model.StampNet` module.  ``training.learned`` reproduces the shipped
weights from a seed; ``pipelines.models`` reads and writes them.  The expert
itself is :class:`moe_imaging.experts.learned.LearnedExpert`.
"""

from __future__ import annotations

from .model import (
    STAMP_SIZE,
    LearnedModel,
    StampNet,
    classify_stamps,
    extract_stamps,
    learned_from_state,
    learned_to_state,
    psf_channel,
    temper_probabilities,
)

__all__ = [
    "STAMP_SIZE",
    "LearnedModel",
    "StampNet",
    "classify_stamps",
    "extract_stamps",
    "learned_from_state",
    "learned_to_state",
    "psf_channel",
    "temper_probabilities",
]

"""The learned expert's model and training (torch).

:mod:`.model` holds the pure functions (stamps, classification with D4
test-time augmentation, tempering out of the PSF range) and the thin
:class:`~.model.StampNet` module; :mod:`.train` reproduces the shipped weights
from a seed.  The expert itself is :class:`moe_imaging.experts.learned.LearnedExpert`.
"""

from __future__ import annotations

from .model import (
    CLASSES,
    DEFAULT_WEIGHTS,
    STAMP_SIZE,
    LearnedModel,
    StampNet,
    classify_stamps,
    extract_stamps,
    load_model,
    psf_channel,
    save_model,
    temper_probabilities,
)

__all__ = [
    "CLASSES",
    "DEFAULT_WEIGHTS",
    "STAMP_SIZE",
    "LearnedModel",
    "StampNet",
    "classify_stamps",
    "extract_stamps",
    "load_model",
    "psf_channel",
    "save_model",
    "temper_probabilities",
]

"""Detector experts: each strong on one kind of object, with the PSF as prior.

Experts follow the protocol in :mod:`.base`, are registered by name in
:data:`REGISTRY` and built from configuration with :func:`make_expert`.
"""

from __future__ import annotations

from .artifact import ArtifactExpert, ArtifactExpertConfig, find_artifacts
from .base import (
    CANDIDATE_COLUMNS,
    REGISTRY,
    Expert,
    empty_candidates,
    make_expert,
    register,
)
from .extended import ExtendedExpert, ExtendedExpertConfig, find_extended
from .learned import (
    LEARNED_COLUMNS,
    LearnedExpert,
    LearnedExpertConfig,
    learned_evidence,
)
from .nucleus import NucleusExpert, NucleusExpertConfig, find_nuclei
from .point import (
    PointExpert,
    PointExpertConfig,
    find_point_sources,
    score_point_sources,
)
from .streak import StreakExpert, StreakExpertConfig, find_streaks, stitch_streaks

__all__ = [
    "ExtendedExpert",
    "ExtendedExpertConfig",
    "find_extended",
    "ArtifactExpert",
    "ArtifactExpertConfig",
    "find_artifacts",
    "CANDIDATE_COLUMNS",
    "REGISTRY",
    "Expert",
    "empty_candidates",
    "make_expert",
    "register",
    "LEARNED_COLUMNS",
    "LearnedExpert",
    "LearnedExpertConfig",
    "learned_evidence",
    "NucleusExpert",
    "NucleusExpertConfig",
    "find_nuclei",
    "PointExpert",
    "PointExpertConfig",
    "find_point_sources",
    "score_point_sources",
    "StreakExpert",
    "StreakExpertConfig",
    "find_streaks",
    "stitch_streaks",
]

"""Detector experts: each strong on one kind of object, with the PSF as prior.

Experts are registered by name in :data:`REGISTRY` and chosen by configuration.
"""

from __future__ import annotations

from .point import PointExpert, PointExpertConfig, find_point_sources

__all__ = ["PointExpert", "PointExpertConfig", "find_point_sources", "REGISTRY"]

REGISTRY: dict[str, type] = {PointExpert.name: PointExpert}
"""Expert classes by name."""

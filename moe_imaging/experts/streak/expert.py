"""The streak expert (:class:`StreakExpert`): the protocol of :mod:`..base` wired to the package.

``propose`` is :func:`~.find.find_streaks`, ``score`` samples the coarse
line and point significance maps at the candidates, ``stitch`` is
:func:`~.stitch.stitch_streaks`.
"""

from __future__ import annotations

import math

import numpy as np
from astropy.table import Table

from ...psf import PSF
from ...tile import Tile
from ..base import register, sample_at_candidates
from .config import StreakExpertConfig
from .find import find_streaks
from .search import _full_resolution_maps
from .stitch import stitch_streaks

__all__ = ["StreakExpert"]


@register
class StreakExpert:
    """Trails of fast-moving objects (see module docs)."""

    name = "streak"
    kinds = ("streak",)

    def __init__(self, config: StreakExpertConfig = StreakExpertConfig()) -> None:
        self.config = config

    def footprint(self, psf: PSF) -> int:
        """Half the longest segment filter, the fit's margins and the PSF.

        Trails longer than this are cut into pieces by the tiles and joined
        by :meth:`stitch`.
        """
        longest = max(self.config.filter_lengths(psf.fwhm))
        return int(math.ceil(0.5 * longest + 4.0 * psf.fwhm + 4))

    def propose(self, tile: Tile) -> Table:
        """The pieces of trails crossing the tile's core."""
        return find_streaks(tile, config=self.config)

    def score(self, tile: Tile, candidates: Table) -> Table:
        """``streak_line_snr`` and ``streak_line_over_point`` at each candidate's pixel."""
        maps: dict[str, np.ndarray] = {}

        def build(t: Tile) -> dict[str, np.ndarray]:
            if not maps:
                line, point = _full_resolution_maps(t, self.config)
                maps["line"], maps["ratio"] = line, np.where(point > 0, line / np.maximum(point, 1e-6), np.inf)
            return maps

        line = sample_at_candidates(tile, candidates, lambda t: build(t)["line"])
        ratio = sample_at_candidates(tile, candidates, lambda t: build(t)["ratio"])
        return Table({"streak_line_snr": line, "streak_line_over_point": ratio})

    def stitch(self, table: Table, image_shape: tuple[int, int], psf: PSF) -> Table:
        """Join the pieces of trails cut by tiles (:func:`stitch_streaks`)."""
        return stitch_streaks(table, psf=psf, config=self.config, image_shape=image_shape)

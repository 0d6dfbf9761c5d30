"""The columns of the streak expert's table and its empty table.

A trail row carries the candidate contract's columns plus its end points,
length, angle, flux per pixel of length, the length it owns in the tile's
core, whether each end is cut by a tile's edge, and the acceptance measures
of its fit (see :data:`STREAK_COLUMNS`).
"""

from __future__ import annotations

import numpy as np
from astropy.table import Table

from ..base import CANDIDATE_COLUMNS

__all__ = ["STREAK_COLUMNS", "_empty"]


STREAK_COLUMNS: tuple[tuple[str, str], ...] = CANDIDATE_COLUMNS + (
    ("x0", "f8"),
    ("y0", "f8"),
    ("x1", "f8"),
    ("y1", "f8"),
    ("length", "f8"),
    ("angle_deg", "f8"),
    ("line_flux", "f8"),
    ("owned_length", "f8"),
    ("trunc0", "bool"),
    ("trunc1", "bool"),
    ("n_pieces", "i4"),
    ("anisotropy", "f8"),
    ("fill", "f8"),
    ("chi2", "f8"),
    ("gap", "f8"),
    ("width", "f8"),
    ("contrast", "f8"),
)
"""Columns of the streak expert's table.  ``x0, y0, x1, y1``: end points
(global pixels), ordered so ``angle_deg`` (from +x towards +y) is in [0, 180);
``line_flux``: flux per pixel of length; ``owned_length``: the length whose
flux is in ``flux`` (the part in the tile's core before stitching, the whole
trail after); ``trunc0/trunc1``: an end cut by a tile edge (not the image's);
``n_pieces``: tiles (or fragments) joined."""


def _empty() -> Table:
    """A zero-row table with :data:`STREAK_COLUMNS`."""
    return Table({name: np.zeros(0, dtype=dt) for name, dt in STREAK_COLUMNS})

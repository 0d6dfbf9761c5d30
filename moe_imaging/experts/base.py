"""The expert protocol, the candidate-table contract and the registry.

An expert is strong on one kind of object and knows how that object looks
through the instrument's PSF.  Every expert offers:

* ``name`` -- its registry key;
* ``kinds`` -- the object classes it speaks for (a subset of :data:`contracts.vocabulary.KINDS`);
* ``footprint(psf)`` -- the halo (pixels) a tile needs so its results do not
  depend on the tiling;
* ``propose(tile)`` -- candidates owned by the tile's core, as a table with at
  least the :data:`CANDIDATE_COLUMNS` (an empty table with those columns when
  nothing is found, never ``None``);
* ``score(tile, candidates)`` -- its evidence for candidates found by anyone
  (one row per candidate, in order), which the gate combines.

Experts are registered by name (:func:`register`) and built from
configuration (:func:`make_expert`); the pipeline never imports a concrete
expert class.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
from astropy.table import Table

from contracts.vocabulary import KINDS

from ..psf import PSF
from ..tile import Tile

__all__ = [
    "CANDIDATE_COLUMNS",
    "Expert",
    "REGISTRY",
    "register",
    "make_expert",
    "empty_candidates",
    "sample_at_candidates",
]


CANDIDATE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("x", "f8"),
    ("y", "f8"),
    ("x_peak", "i8"),
    ("y_peak", "i8"),
    ("flux", "f8"),
    ("flux_err", "f8"),
    ("snr", "f8"),
    ("det_snr", "f8"),
    ("kind", "U16"),
    ("expert", "U16"),
    ("flags", "i4"),
)
"""Columns (name, numpy dtype) every expert's candidate table carries; global
0-based pixel coordinates.  Experts add their own measurement columns."""


@runtime_checkable
class Expert(Protocol):
    """What the pipeline needs from an expert (see module docs)."""

    name: str
    kinds: tuple[str, ...]

    def footprint(self, psf: PSF) -> int:
        """Halo in pixels needed with this PSF."""
        ...

    def propose(self, tile: Tile) -> Table:
        """Candidates owned by the tile's core."""
        ...

    def score(self, tile: Tile, candidates: Table) -> Table:
        """Evidence for each candidate (one row per candidate, same order)."""
        ...


REGISTRY: dict[str, type] = {}
"""Expert classes by name, filled by :func:`register` at import."""


def register(cls: type) -> type:
    """Class decorator adding an expert class to :data:`REGISTRY` under ``cls.name``."""
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise TypeError(f"{cls.__name__} needs a non-empty string `name` to be registered")
    unknown = set(getattr(cls, "kinds", ())) - set(KINDS)
    if unknown:
        raise TypeError(f"{cls.__name__} speaks for unknown kinds {sorted(unknown)}; known: {list(KINDS)}")
    if name in REGISTRY and REGISTRY[name] is not cls:
        raise TypeError(f"an expert named {name!r} is already registered ({REGISTRY[name].__name__})")
    REGISTRY[name] = cls
    return cls


def make_expert(name: str, config: object | None = None, *, model: object | None = None) -> Expert:
    """Build the registered expert ``name`` with its configuration (or its defaults).

    ``model`` is handed to an expert that runs a trained network (the learned
    expert); the science core never reads weights itself (``pipelines.models`` does).
    """
    try:
        cls = REGISTRY[name]
    except KeyError:
        raise KeyError(f"no expert named {name!r}; registered: {sorted(REGISTRY)}") from None
    args = () if config is None else (config,)
    return cls(*args, model=model) if model is not None else cls(*args)


def empty_candidates(extra: tuple[tuple[str, str], ...] = ()) -> Table:
    """A zero-row candidate table with the contract columns (plus ``extra``)."""
    return Table({name: np.zeros(0, dtype=dt) for name, dt in CANDIDATE_COLUMNS + tuple(extra)})


def sample_at_candidates(tile: Tile, candidates: Table, values) -> np.ndarray:
    """Values of a tile-sized map at each candidate's nearest pixel (NaN off the tile).

    ``values`` is the map itself or a callable building it from the tile; it
    is only built when some candidate lies on the tile.
    """
    n = len(candidates)
    out = np.full(n, np.nan)
    shape = np.shape(tile.image)
    if n == 0 or 0 in shape:
        return out
    oy, ox = tile.origin
    iy = np.floor(np.asarray(candidates["y"], float) - oy + 0.5)
    ix = np.floor(np.asarray(candidates["x"], float) - ox + 0.5)
    inside = np.isfinite(iy) & np.isfinite(ix) & (iy >= 0) & (ix >= 0) & (iy < shape[0]) & (ix < shape[1])
    if inside.any():
        grid = values(tile) if callable(values) else values
        out[inside] = np.asarray(grid)[iy[inside].astype(int), ix[inside].astype(int)]
    return out

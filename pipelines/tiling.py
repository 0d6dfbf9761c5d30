"""Cutting an image into overlapping tiles.

Every tile has a *core* (the pixels it owns) and an *outer* region (core plus a
halo on every side, clipped at the image edges).  Cores partition the image
exactly, so a detection whose integer peak lies in a core belongs to that tile
alone (Rubin's ``setPrimaryFlags``).  The halo is derived from the PSF and the
experts' footprints (:func:`halo_for`), never a literal: with a halo at least
that wide, every value an expert computes for a core pixel is the same as on
the whole image, so the catalog does not depend on the tile size.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable

from moe_imaging.psf import PSF

__all__ = ["TileSpec", "make_tiles", "halo_for"]


@dataclasses.dataclass(frozen=True)
class TileSpec:
    """One tile: its position in the tile grid, its core and its outer region.

    Attributes
    ----------
    index : int
        Row-major tile number.
    row, col : int
        Position in the tile grid.
    core : tuple of int
        ``(y0, y1, x0, x1)`` of the owned pixels (global, half-open).
    outer : tuple of int
        ``(y0, y1, x0, x1)`` of the pixels read: the core plus the halo,
        clipped to the image.
    """

    index: int
    row: int
    col: int
    core: tuple[int, int, int, int]
    outer: tuple[int, int, int, int]

    @property
    def outer_shape(self) -> tuple[int, int]:
        """Shape of the outer region."""
        y0, y1, x0, x1 = self.outer
        return (y1 - y0, x1 - x0)


def _edges(n: int, size: int) -> list[int]:
    count = max(1, math.ceil(n / size))
    return [min(n, i * size) for i in range(count)] + [n]


def make_tiles(shape: tuple[int, int], tile_size: int | None, halo: int) -> list[TileSpec]:
    """Tile an image of ``shape`` with cores of ``tile_size`` and the given halo.

    Parameters
    ----------
    shape : tuple of int
        ``(ny, nx)`` of the image.
    tile_size : int or None
        Side of a core in pixels; ``None`` (or a size covering the image)
        gives a single tile.  The last row/column of tiles may be smaller.
    halo : int
        Width of the halo in pixels (>= 0).

    Returns
    -------
    list of TileSpec
        Row-major; their cores partition the image.
    """
    ny, nx = (int(v) for v in shape)
    if ny <= 0 or nx <= 0:
        raise ValueError(f"cannot tile an empty image of shape {shape}")
    if halo < 0:
        raise ValueError(f"halo must be >= 0, got {halo}")
    size = max(ny, nx) if tile_size is None else int(tile_size)
    if size <= 0:
        raise ValueError(f"tile size must be positive, got {tile_size}")
    ey, ex = _edges(ny, size), _edges(nx, size)
    tiles = []
    for r, (y0, y1) in enumerate(zip(ey[:-1], ey[1:])):
        for c, (x0, x1) in enumerate(zip(ex[:-1], ex[1:])):
            outer = (max(0, y0 - halo), min(ny, y1 + halo), max(0, x0 - halo), min(nx, x1 + halo))
            tiles.append(TileSpec(index=len(tiles), row=r, col=c, core=(y0, y1, x0, x1), outer=outer))
    return tiles


def halo_for(psf: PSF, experts: Iterable[object]) -> int:
    """The halo the given experts need with this PSF: the largest footprint."""
    return max((int(e.footprint(psf)) for e in experts), default=0)

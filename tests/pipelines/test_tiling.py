"""Property tests of ``pipelines.tiling``: cores partition the image, halos are clipped."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from moe_imaging.experts.point import PointExpert
from moe_imaging.psf import moffat_psf
from pipelines.tiling import TileSpec, halo_for, make_tiles

shapes = st.tuples(st.integers(1, 300), st.integers(1, 300))
tile_sizes = st.one_of(st.none(), st.integers(1, 320))
halos = st.integers(0, 80)

PROPERTY = settings(max_examples=150, deadline=None, derandomize=True)


def _ceil_div(n: int, d: int) -> int:
    return -(-n // d)


@PROPERTY
@given(shape=shapes, tile_size=tile_sizes, halo=halos)
def test_cores_partition_the_image(shape: tuple[int, int], tile_size: int | None, halo: int) -> None:
    ny, nx = shape
    tiles = make_tiles(shape, tile_size, halo)
    cover = np.zeros(shape, dtype=np.int32)
    for t in tiles:
        y0, y1, x0, x1 = t.core
        assert 0 <= y0 < y1 <= ny and 0 <= x0 < x1 <= nx, t  # non-empty, inside
        cover[y0:y1, x0:x1] += 1
    np.testing.assert_array_equal(cover, 1)  # every pixel in exactly one core


@PROPERTY
@given(shape=shapes, tile_size=tile_sizes, halo=halos)
def test_outer_is_core_plus_clipped_halo(shape: tuple[int, int], tile_size: int | None, halo: int) -> None:
    ny, nx = shape
    for t in make_tiles(shape, tile_size, halo):
        y0, y1, x0, x1 = t.core
        assert t.outer == (max(0, y0 - halo), min(ny, y1 + halo), max(0, x0 - halo), min(nx, x1 + halo))
        oy0, oy1, ox0, ox1 = t.outer
        assert oy0 <= y0 and y1 <= oy1 and ox0 <= x0 and x1 <= ox1  # contains its core
        assert t.outer_shape == (oy1 - oy0, ox1 - ox0)
        if halo == 0:
            assert t.outer == t.core


@PROPERTY
@given(shape=shapes, tile_size=tile_sizes, halo=halos)
def test_tiles_are_row_major_on_a_regular_grid(shape: tuple[int, int], tile_size: int | None, halo: int) -> None:
    ny, nx = shape
    tiles = make_tiles(shape, tile_size, halo)
    size = max(ny, nx) if tile_size is None else tile_size
    nrows, ncols = _ceil_div(ny, size), _ceil_div(nx, size)
    assert len(tiles) == nrows * ncols
    assert [t.index for t in tiles] == list(range(len(tiles)))
    assert [(t.row, t.col) for t in tiles] == [(r, c) for r in range(nrows) for c in range(ncols)]
    for t in tiles:
        y0, y1, x0, x1 = t.core
        assert (y0, x0) == (t.row * size, t.col * size)
        assert y1 - y0 == min(size, ny - y0) and x1 - x0 == min(size, nx - x0)
        assert isinstance(t, TileSpec)


@PROPERTY
@given(shape=shapes, halo=halos, extra=st.integers(0, 50))
def test_none_or_large_tile_gives_one_tile(shape: tuple[int, int], halo: int, extra: int) -> None:
    ny, nx = shape
    for size in (None, max(ny, nx) + extra):
        (tile,) = make_tiles(shape, size, halo)
        assert tile.core == (0, ny, 0, nx) == tile.outer
        assert (tile.index, tile.row, tile.col) == (0, 0, 0)


@PROPERTY
@given(shape=shapes, tile_size=st.integers(1, 320), halo=halos, data=st.data())
def test_every_pixel_owned_by_the_tile_computed_from_its_position(
    shape: tuple[int, int], tile_size: int, halo: int, data: st.DataObject
) -> None:
    """The owner of pixel (y, x) is tile (y // size, x // size), and its outer region holds
    the pixel's whole halo neighbourhood (clipped to the image)."""
    ny, nx = shape
    tiles = make_tiles(shape, tile_size, halo)
    ncols = _ceil_div(nx, tile_size)
    y = data.draw(st.integers(0, ny - 1), label="y")
    x = data.draw(st.integers(0, nx - 1), label="x")
    owner = tiles[(y // tile_size) * ncols + x // tile_size]
    y0, y1, x0, x1 = owner.core
    assert y0 <= y < y1 and x0 <= x < x1
    oy0, oy1, ox0, ox1 = owner.outer
    assert oy0 <= max(0, y - halo) and min(ny, y + halo + 1) <= oy1
    assert ox0 <= max(0, x - halo) and min(nx, x + halo + 1) <= ox1


def test_small_example_by_hand() -> None:
    tiles = make_tiles((5, 7), 4, 1)
    assert [t.core for t in tiles] == [(0, 4, 0, 4), (0, 4, 4, 7), (4, 5, 0, 4), (4, 5, 4, 7)]
    assert [t.outer for t in tiles] == [(0, 5, 0, 5), (0, 5, 3, 7), (3, 5, 0, 5), (3, 5, 3, 7)]


@pytest.mark.parametrize("shape", [(0, 10), (10, 0), (0, 0), (-3, 5)])
def test_empty_shape_is_an_error(shape: tuple[int, int]) -> None:
    with pytest.raises(ValueError, match="empty"):
        make_tiles(shape, 4, 0)


@pytest.mark.parametrize("halo", [-1, -100])
def test_negative_halo_is_an_error(halo: int) -> None:
    with pytest.raises(ValueError, match="halo"):
        make_tiles((10, 10), 4, halo)


@pytest.mark.parametrize("size", [0, -5])
def test_non_positive_tile_size_is_an_error(size: int) -> None:
    with pytest.raises(ValueError, match="tile size"):
        make_tiles((10, 10), size, 0)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(fwhm=st.floats(1.0, 12.0), beta=st.floats(2.0, 6.0))
def test_halo_for_point_expert_is_its_footprint(fwhm: float, beta: float) -> None:
    psf = moffat_psf(fwhm, beta=beta)
    expert = PointExpert()
    halo = halo_for(psf, [expert])
    assert halo == expert.footprint(psf)
    assert isinstance(halo, int) and halo > 0
    # the halo covers at least the matched-filter kernel plus a few FWHM
    assert halo >= psf.kernel_radius(expert.config.kernel_energy) + 2 * fwhm


def test_halo_for_takes_the_largest_footprint_and_zero_without_experts() -> None:
    class Fixed:
        def __init__(self, n: int) -> None:
            self.n = n

        def footprint(self, psf: object) -> int:
            return self.n

    psf = moffat_psf(3.0)
    assert halo_for(psf, []) == 0
    assert halo_for(psf, [Fixed(3), Fixed(17), Fixed(5)]) == 17
    point = PointExpert().footprint(psf)
    assert halo_for(psf, [Fixed(1), PointExpert()]) == point
    assert halo_for(psf, [PointExpert(), Fixed(point + 9)]) == point + 9


def test_halo_grows_with_fwhm() -> None:
    fwhms = [1.0, 1.5, 2.0, 3.0, 4.5, 6.0, 9.0, 12.0]
    halos = [halo_for(moffat_psf(f), [PointExpert()]) for f in fwhms]
    assert all(b >= a for a, b in zip(halos, halos[1:])), halos
    assert halos[-1] > 3 * halos[2], halos  # grows roughly in proportion, not a constant


@settings(max_examples=40, deadline=None, derandomize=True)
@given(f1=st.floats(1.0, 12.0), f2=st.floats(1.0, 12.0))
def test_halo_is_monotonic_in_fwhm(f1: float, f2: float) -> None:
    lo, hi = sorted((f1, f2))
    assert halo_for(moffat_psf(lo), [PointExpert()]) <= halo_for(moffat_psf(hi), [PointExpert()])

"""Tests of moe_imaging.background: the global mesh background and noise model."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.errors import ConfigError
from moe_imaging.background import (
    BackgroundConfig,
    BackgroundModel,
    assemble_background,
    estimate_background,
    mesh_block_edges,
    mesh_statistics,
)
from moe_imaging.psf import moffat_psf

SKY0, GX, GY, SIGMA = 1000.0, 0.03, -0.02, 10.0


def _sky(ny: int, nx: int) -> np.ndarray:
    """A tilted plane: 1000 ADU, +1.5 % across x and -1 % across y of a 512 field."""
    yy, xx = np.mgrid[0:ny, 0:nx]
    return SKY0 + GX * xx + GY * yy


def _add_stars(img: np.ndarray, rng: np.random.Generator, n: int, lo: float = 2.5, hi: float = 4.5) -> None:
    psf = moffat_psf(3.0)
    h = psf.half_size
    ny, nx = img.shape
    for _ in range(n):
        y, x = rng.integers(h, ny - h), rng.integers(h, nx - h)
        img[y - h : y + h + 1, x - h : x + h + 1] += 10 ** rng.uniform(lo, hi) * psf.image


@pytest.fixture(scope="module")
def field():
    """512 x 512: tilted sky, unit-variance noise scaled to SIGMA, 150 stars (peak S/N up to ~150)."""
    rng = np.random.default_rng(42)
    sky = _sky(512, 512)
    img = sky + rng.normal(0.0, SIGMA, sky.shape)
    _add_stars(img, rng, 150)
    return img, sky


# --------------------------------------------------------------------------- configuration


def test_default_config_is_valid_and_frozen() -> None:
    cfg = BackgroundConfig()
    assert cfg.mesh_size == 64 and cfg.filter_size == 3 and cfg.estimator == "sextractor"
    with pytest.raises(Exception):
        cfg.mesh_size = 32  # type: ignore[misc]


@pytest.mark.parametrize(
    "kwargs,field_name",
    [
        (dict(mesh_size=4), "mesh_size"),
        (dict(mesh_size=5000), "mesh_size"),
        (dict(filter_size=4), "filter_size"),
        (dict(filter_size=0), "filter_size"),
        (dict(filter_size=17), "filter_size"),
        (dict(sigma=0.5), "sigma"),
        (dict(maxiters=0), "maxiters"),
        (dict(min_good_fraction=0.0), "min_good_fraction"),
        (dict(min_good_fraction=1.5), "min_good_fraction"),
        (dict(estimator="mean"), "estimator"),
        (dict(mesh_size=None), "mesh_size"),
        (dict(mesh_size="64"), "mesh_size"),
        (dict(sigma=float("nan")), "sigma"),
    ],
)
def test_config_rejects_bad_values_naming_the_field(kwargs, field_name: str) -> None:
    with pytest.raises(ConfigError, match=f"background.{field_name}"):
        BackgroundConfig(**kwargs)


def test_config_accepts_edge_values() -> None:
    BackgroundConfig(mesh_size=8, filter_size=1, min_good_fraction=1.0, estimator="median")
    BackgroundConfig(mesh_size=4096, filter_size=15)


@pytest.mark.parametrize("kwargs", [dict(mesh_size=64.5), dict(filter_size=3.5), dict(maxiters=2.5)])
def test_config_rejects_non_integer_sizes(kwargs) -> None:
    with pytest.raises(ConfigError):
        BackgroundConfig(**kwargs)


# --------------------------------------------------------------------------- accuracy


def test_background_recovers_tilted_sky_and_noise_inside_the_mesh_grid(field) -> None:
    img, sky = field
    bkg = estimate_background(img)
    assert bkg.level.shape == (8, 8) and bkg.shape == (512, 512)
    level, rms = bkg.evaluate(0, 512, 0, 512)
    assert level.dtype.kind == "f" and level.shape == rms.shape == (512, 512)
    # inside the convex hull of the mesh centres (31.5 .. 479.5)
    inner = (slice(32, 480), slice(32, 480))
    rel = np.abs(level[inner] / sky[inner] - 1.0)
    assert rel.max() < 0.005
    assert np.abs(rms[inner] / SIGMA - 1.0).max() < 0.05
    # and the plane's slope is followed (not just its mean)
    fit = np.polyfit(np.arange(32, 480), level[inner].mean(axis=0), 1)
    assert fit[0] == pytest.approx(GX, rel=0.05)
    assert bkg.global_level == pytest.approx(np.median(sky), rel=0.002)
    assert bkg.global_rms == pytest.approx(SIGMA, rel=0.05)


def test_background_recovers_tilted_sky_and_noise_everywhere(field) -> None:
    img, sky = field
    level, rms = estimate_background(img).evaluate(0, 512, 0, 512)
    assert np.abs(level / sky - 1.0).max() < 0.005
    assert np.abs(rms / SIGMA - 1.0).max() < 0.05


def test_spline_interpolates_the_mesh_values() -> None:
    cfg = BackgroundConfig(filter_size=1)
    level = np.full((8, 8), 100.0)
    level[3, 4] = 101.0
    model = assemble_background(level, np.ones((8, 8)), np.ones((8, 8)), (512, 512), config=cfg)
    # mesh (3, 4) is centred on pixel (223.5, 287.5): the model there is 101
    vals, _ = model.evaluate(223, 225, 287, 289)
    assert vals.min() > 100.95 and vals.max() < 101.0 + 1e-9
    # other mesh centres keep their values (an interpolating spline)
    for iy, ix in [(0, 0), (3, 6), (7, 7)]:
        cy, cx = 32 + 64 * iy, 32 + 64 * ix  # pixels next to the centre (cy - 0.5, cx - 0.5)
        vals, _ = model.evaluate(cy - 1, cy + 1, cx - 1, cx + 1)
        assert vals.mean() == pytest.approx(100.0, abs=0.02)


def test_a_single_mesh_perturbation_is_amplified_at_most_linearly_at_the_corner() -> None:
    """Flat grid except the corner mesh raised by 1.  Beyond the outermost mesh
    centres the model continues the sky linearly (ghost meshes by odd
    reflection, so planes are exact to the edge): at the corner pixel, half a
    mesh beyond the corner centre in x and y, a bilinear continuation gives
    1 + 0.5 + 0.5 + 0.25 = 2.25 times the perturbation.  The free not-a-knot
    cubic used before gave ~5 times."""
    cfg = BackgroundConfig(filter_size=1)
    level = np.full((8, 8), 100.0)
    level[7, 7] = 101.0
    model = assemble_background(level, np.ones((8, 8)), np.ones((8, 8)), (512, 512), config=cfg)
    corner, _ = model.evaluate(511, 512, 511, 512)
    assert 100.0 <= corner[0, 0] <= 102.6


def test_evaluate_reproduces_an_exact_plane_without_filtering() -> None:
    """Noise-free plane, no median filter: the cubic spline reproduces it
    everywhere (the mesh statistics may be single precision: ~1e-4 ADU)."""
    data = _sky(512, 600)
    bkg = estimate_background(data, config=BackgroundConfig(filter_size=1))
    level, rms = bkg.evaluate(0, 512, 0, 600)
    np.testing.assert_allclose(level, data, rtol=0, atol=0.01)
    # the rms of a plane inside a 64 px mesh is that of the ramp it spans
    # (the last mesh column is 88 px wide: 600 = 8 x 64 + 88 merged)
    ramp = np.sqrt((GX**2 + GY**2) * (64**2 - 1) / 12.0)
    assert bkg.rms[:, :8] == pytest.approx(np.full((8, 8), ramp), rel=0.01)


def test_evaluate_reproduces_an_exact_plane_with_the_default_filter() -> None:
    data = _sky(512, 600)
    level, _ = estimate_background(data).evaluate(0, 512, 0, 600)
    np.testing.assert_allclose(level, data, rtol=0, atol=0.05)


def test_sextractor_mode_is_below_the_median_in_crowded_fields() -> None:
    """Faint sources skew the pixel distribution; 2.5 med - 1.5 mean < median."""
    rng = np.random.default_rng(7)
    img = rng.normal(1000.0, SIGMA, (256, 256))
    _add_stars(img, rng, 750, lo=1.7, hi=2.6)
    mode = estimate_background(img, config=BackgroundConfig(estimator="sextractor")).global_level
    median = estimate_background(img, config=BackgroundConfig(estimator="median")).global_level
    assert 1000.0 < mode < median


def test_non_square_mesh_grids_work() -> None:
    """A strip two meshes high and eight wide (spline orders differ per axis)."""
    rng = np.random.default_rng(3)
    sky = _sky(96, 512)
    bkg = estimate_background(sky + rng.normal(0, SIGMA, sky.shape))
    assert bkg.level.shape == (2, 8)
    level, rms = bkg.evaluate(0, 96, 0, 512)
    assert np.abs(level[:, 32:480] / sky[:, 32:480] - 1).max() < 0.005
    assert np.abs(np.median(rms) / SIGMA - 1) < 0.05


def test_single_mesh_image() -> None:
    rng = np.random.default_rng(4)
    img = rng.normal(50.0, 2.0, (40, 40))
    bkg = estimate_background(img)
    assert bkg.level.shape == (1, 1)
    level, rms = bkg.evaluate(0, 40, 0, 40)
    assert np.ptp(level) <= 1e-6 * 50.0 and level[0, 0] == pytest.approx(50.0, abs=0.3)
    assert rms[0, 0] == pytest.approx(2.0, rel=0.1)


# --------------------------------------------------------------------------- masks


def test_masked_pixels_are_ignored_exactly(field) -> None:
    img, sky = field
    mask = np.zeros(img.shape, np.uint16)
    mask[100:200, 150:260] = 1
    polluted = img.copy()
    polluted[100:200, 150:260] = 1e6
    a = estimate_background(polluted, mask)
    b = estimate_background(img, mask)
    np.testing.assert_array_equal(a.level, b.level)
    np.testing.assert_array_equal(a.rms, b.rms)
    # and the model still follows the sky under and around the block
    level, rms = a.evaluate(0, 512, 0, 512)
    inner = (slice(32, 480), slice(32, 480))
    assert np.abs(level[inner] / sky[inner] - 1).max() < 0.005
    assert np.abs(rms[inner] / SIGMA - 1).max() < 0.05


def test_unmasked_huge_block_would_spoil_the_background(field) -> None:
    """Control for the test above: without the mask the block is not ignored."""
    img, _ = field
    polluted = img.copy()
    polluted[100:200, 150:260] = 1e6
    a = estimate_background(polluted)
    b = estimate_background(img)
    assert not np.array_equal(a.level, b.level)


def test_nonfinite_pixels_are_masked_automatically(field) -> None:
    img, _ = field
    mask = np.zeros(img.shape, np.uint16)
    mask[300:340, 10:90] = 1
    nan_img = img.copy()
    nan_img[300:340, 10:90] = np.nan
    nan_img[300, 10] = np.inf
    a = estimate_background(nan_img)
    b = estimate_background(img, mask)
    np.testing.assert_array_equal(a.level, b.level)
    np.testing.assert_array_equal(a.rms, b.rms)


def test_poor_meshes_are_interpolated_from_good_meshes() -> None:
    rng = np.random.default_rng(5)
    img = rng.normal(0.0, 1.0, (256, 256)) + np.repeat(np.arange(4) * 100.0, 64)[None, :]
    mask = np.zeros(img.shape, np.uint8)
    mask[64:128, 192:256] = 1  # mesh (1, 3): fully masked
    mask[0:64, 0:40] = 1  # mesh (0, 0): 62.5 % masked, below min_good_fraction=0.7
    cfg = BackgroundConfig(filter_size=1, min_good_fraction=0.7)
    level, rms, good = mesh_statistics(img, mask, config=cfg)
    assert good[1, 3] == 0.0 and np.isnan(level[1, 3])
    assert good[0, 0] == pytest.approx(1 - 40 / 64)
    model = assemble_background(level, rms, good, img.shape, config=cfg)
    # inside the good meshes' hull: linear interpolation keeps the ramp
    # (nearest-mesh copying would leave steps); outside it: the nearest mesh
    assert model.level[1, 3] == pytest.approx(0.5 * (level[0, 3] + level[2, 3]), abs=0.05)
    assert model.level[1, 3] == pytest.approx(300.0, abs=0.2)
    assert model.level[0, 0] in (level[1, 0], level[0, 1])
    assert model.rms[1, 3] == pytest.approx(0.5 * (rms[0, 3] + rms[2, 3]), abs=0.05)
    # good meshes are left alone (no median filter here)
    np.testing.assert_array_equal(model.level[2:, :], level[2:, :])


@pytest.mark.parametrize("how", ["mask", "nan"])
def test_all_masked_input_raises(how: str) -> None:
    img = np.ones((128, 128))
    if how == "mask":
        level, rms, good = mesh_statistics(img, np.ones(img.shape, np.uint8))
    else:
        level, rms, good = mesh_statistics(np.full(img.shape, np.nan))
    assert np.all(good == 0) and np.all(np.isnan(level))
    with pytest.raises(ValueError, match="no background mesh"):
        assemble_background(level, rms, good, img.shape)
    with pytest.raises(ValueError):
        estimate_background(img, np.ones(img.shape, np.uint8))


# --------------------------------------------------------------------------- tiling invariance


@settings(max_examples=25, deadline=None, derandomize=True, database=None)
@given(
    ny=st.integers(20, 300),
    nx=st.integers(20, 300),
    mesh=st.sampled_from([16, 24, 32, 64]),
    by=st.integers(1, 200),
    bx=st.integers(1, 200),
    seed=st.integers(0, 2**16),
)
def test_mesh_statistics_on_blocks_equal_whole_image(ny, nx, mesh, by, bx, seed) -> None:
    """Blocks cut with mesh_block_edges give exactly the whole-image mesh grid."""
    rng = np.random.default_rng(seed)
    img = rng.normal(100.0, 5.0, (ny, nx))
    img[rng.random((ny, nx)) < 0.01] += 500.0  # outliers for the clipping
    mask = (rng.random((ny, nx)) < 0.05).astype(np.uint8)
    cfg = BackgroundConfig(mesh_size=mesh)
    whole = mesh_statistics(img, mask, config=cfg)
    ys = mesh_block_edges(ny, by, mesh)
    xs = mesh_block_edges(nx, bx, mesh)
    assert ys[0][0] == 0 and ys[-1][1] == ny and all(a[1] == b[0] for a, b in zip(ys, ys[1:]))
    assert xs[0][0] == 0 and xs[-1][1] == nx and all(a[1] == b[0] for a, b in zip(xs, xs[1:]))
    parts = [
        [mesh_statistics(img[y0:y1, x0:x1], mask[y0:y1, x0:x1], config=cfg) for (x0, x1) in xs]
        for (y0, y1) in ys
    ]
    for k in range(3):
        stitched = np.block([[p[k] for p in row] for row in parts])
        np.testing.assert_array_equal(stitched, whole[k])


def test_mesh_block_edges_fall_on_mesh_edges() -> None:
    # 520 = 8 meshes of 64 + 8 px, merged into the last mesh
    assert mesh_block_edges(520, 128, 64) == [(0, 128), (128, 256), (256, 384), (384, 520)]
    assert mesh_block_edges(520, 100, 64) == [(0, 128), (128, 256), (256, 384), (384, 520)]
    assert mesh_block_edges(200, 64, 64) == [(0, 64), (64, 128), (128, 200)]
    assert mesh_block_edges(40, 64, 64) == [(0, 40)]


@settings(max_examples=40, deadline=None, derandomize=True, database=None)
@given(
    y0=st.integers(0, 299), x0=st.integers(0, 399), h=st.integers(1, 120), w=st.integers(1, 120)
)
def test_evaluate_on_a_section_equals_the_whole_image_section(y0, x0, h, w) -> None:
    """The foundation of tiling invariance: every tile sees the same background
    values as the whole image (to 1e-10), whatever the section's shape."""
    y1, x1 = min(300, y0 + h), min(400, x0 + w)
    lvl, rms = _MODEL.evaluate(y0, y1, x0, x1)
    np.testing.assert_allclose(lvl, _WHOLE[0][y0:y1, x0:x1], rtol=0, atol=1e-10)
    np.testing.assert_allclose(rms, _WHOLE[1][y0:y1, x0:x1], rtol=0, atol=1e-10)


def _make_model() -> BackgroundModel:
    rng = np.random.default_rng(11)
    yy, xx = np.mgrid[0:300, 0:400]
    img = 200 + 0.1 * xx + 20 * np.sin(yy / 50.0) + rng.normal(0, 3, (300, 400))
    return estimate_background(img, config=BackgroundConfig(mesh_size=32))


_MODEL = _make_model()
_WHOLE = _MODEL.evaluate(0, 300, 0, 400)


def test_rms_is_floored_positive() -> None:
    model = BackgroundModel(
        level=np.zeros((3, 3)),
        rms=np.array([[1.0, 1.0, 1.0], [1.0, 0.0, 1.0], [1.0, 1.0, 1.0]]) * 1e-3,
        centers_y=np.array([10.0, 30.0, 50.0]),
        centers_x=np.array([10.0, 30.0, 50.0]),
        shape=(60, 60),
    )
    _, rms = model.evaluate(0, 60, 0, 60)
    assert np.all(rms > 0)


# --------------------------------------------------------------------------- clipped statistics


def _contaminated_rows(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rows = rng.normal(500.0, 16.0, size=(48, 4096))
    rows[:, :300] += rng.exponential(100.0, (48, 300))  # faint sources in the mesh
    rows[:, 300:310] += 5e4  # a bright star's core
    rows[3] = np.nan  # a fully masked mesh
    rows[5, :4000] = np.nan  # a nearly masked mesh
    return rows


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_clipped_stats_equals_astropy(seed: int) -> None:
    from astropy.stats import sigma_clipped_stats

    from moe_imaging.background import clipped_stats

    rows = _contaminated_rows(seed)
    with np.errstate(all="ignore"), pytest.warns(Warning):
        ref = sigma_clipped_stats(rows, axis=1, sigma=3.0, maxiters=10)
    got = clipped_stats(rows, sigma=3.0, maxiters=10)
    for r, g in zip(ref, got):
        np.testing.assert_allclose(g, np.asarray(r), rtol=1e-5, equal_nan=True)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_histogram_clipped_stats_agrees_with_exact_to_a_few_percent_of_sigma(seed: int) -> None:
    from moe_imaging.background import clipped_stats, histogram_clipped_stats

    rows = _contaminated_rows(seed)
    exact = clipped_stats(rows)
    fast = histogram_clipped_stats(rows)
    for e, f in zip(exact, fast):
        assert np.array_equal(np.isnan(e), np.isnan(f))
        assert np.nanmax(np.abs(e - f)) < 0.03 * 16.0


def test_histogram_clipped_stats_falls_back_for_constant_rows() -> None:
    from moe_imaging.background import histogram_clipped_stats

    rows = np.full((4, 1000), 7.0)
    mean, median, std = histogram_clipped_stats(rows)
    np.testing.assert_allclose(mean, 7.0)
    np.testing.assert_allclose(median, 7.0)
    np.testing.assert_allclose(std, 0.0, atol=1e-6)

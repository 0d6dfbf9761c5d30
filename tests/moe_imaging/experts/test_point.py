"""Tests of moe_imaging.experts.point: the PSF matched-filter point-source expert.

Stars are rendered as Moffat profiles integrated over pixels at their exact
sub-pixel positions (astropy ``discretize_model``), i.e. the same family as the
expert's PSF prior but not the prior's image shifted by interpolation.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from astropy.convolution import discretize_model
from astropy.modeling.models import Gaussian2D, Moffat2D
from astropy.table import Table, vstack
from scipy.spatial import cKDTree

from contracts.errors import ConfigError
from contracts.flags import MaskBit, SourceFlag
from moe_imaging.experts import REGISTRY
from moe_imaging.experts.point import (
    CANDIDATE_COLUMNS,
    PointExpert,
    PointExpertConfig,
    find_point_sources,
)
from moe_imaging.psf import PSF, gaussian_psf, moffat_psf
from moe_imaging.simulate import SurveySimConfig, simulate_survey
from moe_imaging.tile import Tile

FWHM = 3.0
PSF3 = moffat_psf(FWHM)
# flux of a star with matched-filter S/N = 1 in unit noise: 1 / sqrt(sum P^2)
UNIT_SNR_FLUX = 1.0 / math.sqrt(float(np.sum(PSF3.image**2)))


def _stamp(x: float, y: float, half: int, fwhm: float = FWHM, beta: float = PSF3.beta) -> tuple[np.ndarray, int, int]:
    """Pixel-integrated unit-flux Moffat centred at (x, y), on the stamp around round(x, y)."""
    alpha = fwhm / (2 * math.sqrt(2 ** (1 / beta) - 1))
    ix, iy = int(round(x)), int(round(y))
    model = Moffat2D(1.0, x - ix, y - iy, alpha, beta)
    st = discretize_model(model, (-half, half + 1), (-half, half + 1), mode="oversample", factor=10)
    return st * (beta - 1) / (math.pi * alpha**2), ix, iy


def render(shape, xs, ys, fluxes, *, fwhm: float = FWHM, noise: float = 1.0, seed: int = 0) -> np.ndarray:
    """Stars at sub-pixel positions plus Gaussian noise of RMS ``noise``."""
    img = np.zeros(shape)
    half = int(math.ceil(5 * fwhm))
    for x, y, f in zip(xs, ys, fluxes):
        st, ix, iy = _stamp(x, y, half, fwhm)
        y0, x0 = iy - half, ix - half
        ya, xa = max(0, y0), max(0, x0)
        yb, xb = min(shape[0], iy + half + 1), min(shape[1], ix + half + 1)
        img[ya:yb, xa:xb] += f * st[ya - y0 : yb - y0, xa - x0 : xb - x0]
    if noise > 0:
        img += np.random.default_rng(seed).normal(0.0, noise, shape)
    return img


def _match(table: Table, xs, ys, radius: float = 1.5) -> tuple[np.ndarray, np.ndarray]:
    """Index of the nearest detection for each true position and the distance."""
    tree = cKDTree(np.column_stack([table["x"], table["y"]]))
    d, i = tree.query(np.column_stack([xs, ys]), distance_upper_bound=radius)
    return d, i


@pytest.fixture(scope="module")
def star_grid():
    """81 isolated stars, S/N 20-200 (log-uniform), random sub-pixel offsets, unit noise."""
    rng = np.random.default_rng(1)
    g = np.stack(np.meshgrid(np.arange(30, 480, 55), np.arange(30, 480, 55)), -1).reshape(-1, 2)
    xs = g[:, 0] + rng.uniform(-0.5, 0.5, len(g))
    ys = g[:, 1] + rng.uniform(-0.5, 0.5, len(g))
    snr = 10 ** rng.uniform(math.log10(20), math.log10(200), len(g))
    flux = snr * UNIT_SNR_FLUX
    img = render((512, 512), xs, ys, flux, seed=3)
    return img, xs, ys, flux, snr


@pytest.fixture(scope="module")
def star_grid_table(star_grid):
    img = star_grid[0]
    return find_point_sources(Tile.from_image(img, PSF3, noise=1.0))


def _assert_schema(table: Table) -> None:
    assert table.colnames == [name for name, _ in CANDIDATE_COLUMNS]
    for name, dtype in CANDIDATE_COLUMNS:
        assert table[name].dtype == np.dtype(dtype), name


# --------------------------------------------------------------------------- measurement


def test_star_grid_positions_fluxes_and_errors(star_grid, star_grid_table) -> None:
    img, xs, ys, flux, snr = star_grid
    t = star_grid_table
    _assert_schema(t)
    d, i = _match(t, xs, ys)
    assert np.all(np.isfinite(d)), "every star is detected"
    assert len(t) == len(xs), "and nothing else"
    # centroids: RMS radial error < 0.1 px at S/N > 20
    assert math.sqrt(float(np.mean(d**2))) < 0.1
    # flux: median ratio within 2 %, and the errors describe the scatter
    ratio = np.asarray(t["flux"])[i] / flux
    assert abs(float(np.median(ratio)) - 1.0) < 0.02
    pull = (np.asarray(t["flux"])[i] - flux) / np.asarray(t["flux_err"])[i]
    assert 0.7 < float(np.std(pull)) < 1.3
    assert abs(float(np.mean(pull))) < 0.4
    # snr is flux / flux_err, and matches the injected matched-filter S/N
    np.testing.assert_allclose(t["snr"], t["flux"] / t["flux_err"], rtol=1e-12)
    np.testing.assert_allclose(np.asarray(t["snr"])[i], snr, rtol=0.15)
    assert float(np.median(np.asarray(t["snr"])[i] / snr)) == pytest.approx(1.0, abs=0.03)
    # point sources: round, PSF-sized, sharpness ~1, no flags
    assert np.all(t["flags"] == 0)
    assert np.all(np.abs(t["sharpness"] - 1.0) < 0.3)
    assert float(np.median(t["a"])) == pytest.approx(PSF3.sigma, rel=0.15)
    assert float(np.median(t["roundness"])) < 0.15
    assert np.all(t["kind"] == "star") and np.all(t["expert"] == "point")
    assert np.all(t["noise"] == 1.0) and np.all(t["background"] == 0.0)
    # sorted by (y_peak, x_peak), peaks are the integer pixels next to the centroids
    key = np.asarray(t["y_peak"]) * 10_000 + np.asarray(t["x_peak"])
    assert np.all(np.diff(key) > 0)
    assert np.all(np.abs(t["x"] - t["x_peak"]) <= 0.5) and np.all(np.abs(t["y"] - t["y_peak"]) <= 0.5)
    assert t.meta["threshold"] == pytest.approx(PointExpertConfig().detection_threshold(PSF3))


def test_noiseless_stars_are_measured_without_bias(star_grid) -> None:
    _, xs, ys, flux, _ = star_grid
    img = render((512, 512), xs, ys, flux, noise=0.0)
    t = find_point_sources(Tile.from_image(img, PSF3, noise=1.0))
    d, i = _match(t, xs, ys)
    assert len(t) == len(xs)
    assert float(d.max()) < 0.01
    np.testing.assert_allclose(np.asarray(t["flux"])[i], flux, rtol=0.005)


def test_source_poisson_noise_enters_flux_err_with_a_gain() -> None:
    img = render((101, 101), [50.2], [49.7], [200 * UNIT_SNR_FLUX], seed=1)
    no_gain = find_point_sources(Tile.from_image(img, PSF3, noise=1.0))
    with_gain = find_point_sources(Tile.from_image(img, PSF3, noise=1.0, gain=1.0))
    assert len(no_gain) == len(with_gain) == 1
    assert with_gain["flux"][0] == no_gain["flux"][0]
    assert with_gain["flux_err"][0] > no_gain["flux_err"][0]
    # var = sigma_F^2 + F sum P^3 / (sum P^2)^2 / gain, with the kernel's P
    k = PSF3.kernel()
    f = no_gain["flux"][0]
    expected = math.sqrt(no_gain["flux_err"][0] ** 2 + f * np.sum(k**3) / np.sum(k**2) ** 2)
    assert with_gain["flux_err"][0] == pytest.approx(expected, rel=1e-6)


# --------------------------------------------------------------------------- empty and degenerate tiles


def test_pure_noise_gives_an_empty_table_with_all_columns() -> None:
    noise = np.random.default_rng(5).normal(size=(256, 256))
    t = find_point_sources(Tile.from_image(noise, PSF3, noise=1.0))
    assert len(t) == 0
    _assert_schema(t)


def test_blank_image_gives_an_empty_table() -> None:
    t = find_point_sources(Tile.from_image(np.zeros((64, 64)), PSF3, noise=1.0))
    assert len(t) == 0
    _assert_schema(t)


def test_zero_size_tile_gives_an_empty_table() -> None:
    z = np.zeros((0, 0))
    t = find_point_sources(Tile(image=z, variance=z, mask=z.astype(np.uint16), background=z, psf=PSF3))
    assert len(t) == 0
    _assert_schema(t)


def test_all_masked_tile_gives_an_empty_table() -> None:
    img = render((64, 64), [30.0], [30.0], [100 * UNIT_SNR_FLUX])
    mask = np.full(img.shape, int(MaskBit.BAD), np.uint16)
    t = find_point_sources(Tile.from_image(img, PSF3, noise=1.0, mask=mask))
    assert len(t) == 0
    _assert_schema(t)
    # zero variance everywhere is "no information" too
    tile = Tile(image=img, variance=np.zeros(img.shape), mask=np.zeros(img.shape, np.uint16),
                background=np.zeros(img.shape), psf=PSF3)
    assert len(find_point_sources(tile)) == 0


def test_nan_pixels_are_tolerated() -> None:
    xs, ys = [40.3, 120.6, 70.0], [50.2, 100.4, 20.0]
    img = render((160, 160), xs, ys, [80 * UNIT_SNR_FLUX] * 3, seed=2)
    ref = find_point_sources(Tile.from_image(img, PSF3, noise=1.0))
    bad = img.copy()
    bad[100:130, 20:60] = np.nan  # a block far from the stars
    bad[::17, ::23] = np.nan  # scattered pixels, some inside stars
    bad[5, 5] = np.inf
    bad[50, 41] = np.nan  # one pixel in the core of the first star
    tile = Tile.from_image(bad, PSF3, noise=1.0)
    assert np.all(tile.mask[np.isnan(bad)] & MaskBit.NONFINITE)
    t = find_point_sources(tile)
    _assert_schema(t)
    assert len(t) == len(ref) == 3
    for name in ("x", "y", "flux", "flux_err", "snr"):
        assert np.all(np.isfinite(t[name])), name
    np.testing.assert_allclose(t["x"], ref["x"], atol=0.1)
    np.testing.assert_allclose(t["y"], ref["y"], atol=0.1)
    np.testing.assert_allclose(t["flux"], ref["flux"], rtol=0.05)
    # stars with a NaN pixel in the core are flagged MASKED
    hit = [bool(np.isnan(bad[int(round(y)) - 3 : int(round(y)) + 4, int(round(x)) - 3 : int(round(x)) + 4]).any())
           for x, y in zip(t["x"], t["y"])]
    masked = [(int(f) & SourceFlag.MASKED) != 0 for f in t["flags"]]
    assert any(masked)
    assert all(h for h, m in zip(hit, masked) if m)


def test_float32_and_float64_inputs_give_the_same_detections(star_grid) -> None:
    img = star_grid[0]
    t64 = find_point_sources(Tile.from_image(img, PSF3, noise=1.0))
    t32 = find_point_sources(Tile.from_image(img.astype(np.float32), PSF3, noise=1.0))
    # and a Tile built directly from float32 planes (no conversion by from_image)
    f32 = img.astype(np.float32)
    direct = find_point_sources(
        Tile(image=f32, variance=np.ones(img.shape, np.float32), mask=np.zeros(img.shape, np.uint16),
             background=np.zeros(img.shape, np.float32), psf=PSF3)
    )
    for t in (t32, direct):
        _assert_schema(t)
        np.testing.assert_array_equal(t["x_peak"], t64["x_peak"])
        np.testing.assert_array_equal(t["y_peak"], t64["y_peak"])
        np.testing.assert_array_equal(t["flags"], t64["flags"])
        np.testing.assert_allclose(t["x"], t64["x"], atol=1e-3)
        np.testing.assert_allclose(t["y"], t64["y"], atol=1e-3)
        np.testing.assert_allclose(t["flux"], t64["flux"], rtol=1e-4)


def test_runs_are_deterministic(star_grid) -> None:
    img = star_grid[0]
    a = find_point_sources(Tile.from_image(img, PSF3, noise=1.0))
    b = find_point_sources(Tile.from_image(img.copy(), PSF3, noise=1.0))
    assert len(a) == len(b) > 0
    for name in a.colnames:
        np.testing.assert_array_equal(a[name], b[name])


def test_input_arrays_are_not_modified(star_grid) -> None:
    img = star_grid[0].copy()
    tile = Tile.from_image(img, PSF3, noise=1.0)
    before = [np.array(getattr(tile, n)) for n in ("image", "variance", "mask", "background")]
    find_point_sources(tile)
    for arr, n in zip(before, ("image", "variance", "mask", "background")):
        np.testing.assert_array_equal(getattr(tile, n), arr)


# --------------------------------------------------------------------------- deblending and flags


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_close_pair_at_2_5_fwhm_is_split(seed: int) -> None:
    sep = 2.5 * FWHM
    xs = [50.3, 50.3 + sep * math.cos(0.4)]
    ys = [50.6, 50.6 + sep * math.sin(0.4)]
    img = render((101, 101), xs, ys, [50 * UNIT_SNR_FLUX] * 2, seed=seed)
    t = find_point_sources(Tile.from_image(img, PSF3, noise=1.0))
    assert len(t) == 2
    d, _ = _match(t, xs, ys)
    assert np.all(d < 0.5)
    # 2.5 FWHM apart is beyond the 2 FWHM blend radius
    assert np.all((t["flags"] & SourceFlag.BLENDED) == 0)
    np.testing.assert_allclose(t["flux"], 50 * UNIT_SNR_FLUX, rtol=0.15)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_neighbours_within_2_fwhm_are_split_and_flagged_blended(seed: int) -> None:
    sep = 1.8 * FWHM
    xs = [50.2, 50.2 + sep * math.cos(1.1)]
    ys = [49.9, 49.9 + sep * math.sin(1.1)]
    img = render((101, 101), xs, ys, [100 * UNIT_SNR_FLUX] * 2, seed=seed)
    t = find_point_sources(Tile.from_image(img, PSF3, noise=1.0))
    assert len(t) == 2
    assert np.all((t["flags"] & SourceFlag.BLENDED) != 0)
    # an isolated star is not
    lone = find_point_sources(Tile.from_image(render((101, 101), [50.0], [50.0], [100 * UNIT_SNR_FLUX]), PSF3, noise=1.0))
    assert len(lone) == 1 and lone["flags"][0] == 0


def test_bright_star_wings_do_not_give_spurious_detections() -> None:
    img = render((161, 161), [80.4], [79.7], [20_000 * UNIT_SNR_FLUX], seed=4)
    t = find_point_sources(Tile.from_image(img, PSF3, noise=1.0))
    assert len(t) == 1
    assert t["flags"][0] == 0
    assert t["flux"][0] == pytest.approx(20_000 * UNIT_SNR_FLUX, rel=0.01)


def test_single_hot_pixel_is_flagged_too_sharp() -> None:
    img = np.random.default_rng(0).normal(size=(101, 101))
    img[40, 60] += 200.0
    t = find_point_sources(Tile.from_image(img, PSF3, noise=1.0))
    assert len(t) == 1
    assert (t["y_peak"][0], t["x_peak"][0]) == (40, 60)
    assert t["flags"][0] & SourceFlag.TOO_SHARP
    assert t["sharpness"][0] > PointExpertConfig().sharp_max


def test_bright_star_is_not_too_sharp() -> None:
    img = render((101, 101), [50.2], [49.7], [2000 * UNIT_SNR_FLUX])
    t = find_point_sources(Tile.from_image(img, PSF3, noise=1.0))
    assert len(t) == 1 and not (t["flags"][0] & SourceFlag.TOO_SHARP)
    assert t["sharpness"][0] == pytest.approx(1.0, abs=0.2)


@pytest.mark.parametrize("x", [0.0, 1.0, 3.0])
def test_star_touching_the_edge_is_flagged_edge(x: float) -> None:
    img = render((101, 101), [x], [50.0], [100 * UNIT_SNR_FLUX])
    t = find_point_sources(Tile.from_image(img, PSF3, noise=1.0))
    assert len(t) == 1
    assert t["flags"][0] & SourceFlag.EDGE
    assert t["flux"][0] == pytest.approx(100 * UNIT_SNR_FLUX, rel=0.15)


def test_star_clear_of_the_edge_is_not_flagged_edge() -> None:
    r = PSF3.kernel_radius()
    img = render((101, 101), [float(r) + 1.0, 99.0 - r], [50.0, 20.0], [100 * UNIT_SNR_FLUX] * 2)
    t = find_point_sources(Tile.from_image(img, PSF3, noise=1.0))
    assert len(t) == 2
    assert np.all((t["flags"] & SourceFlag.EDGE) == 0)


@pytest.mark.parametrize("flux", [2e4, 1e5, 1e6])
def test_saturated_star_gives_exactly_one_detection_flagged_saturated(flux: float) -> None:
    img = render((151, 151), [75.3], [74.6], [flux], seed=1)
    level = 1000.0
    mask = np.where(img >= level, int(MaskBit.SATURATED), 0).astype(np.uint16)
    assert mask.any()
    clipped = np.minimum(img, level)
    t = find_point_sources(Tile.from_image(clipped, PSF3, noise=1.0, mask=mask))
    assert len(t) == 1
    assert t["flags"][0] & SourceFlag.SATURATED
    assert not t["flags"][0] & SourceFlag.TOO_SHARP
    assert math.hypot(t["x"][0] - 75.3, t["y"][0] - 74.6) < 1.0
    # the aperture flux of clipped pixels is a lower bound
    assert 0 < t["flux"][0] < flux


def test_saturated_star_next_to_a_normal_star() -> None:
    xs, ys = [60.0, 60.0 + 6 * FWHM], [60.0, 60.0]
    img = render((121, 121), xs, ys, [1e5, 60 * UNIT_SNR_FLUX], seed=2)
    mask = np.where(img >= 1000.0, int(MaskBit.SATURATED), 0).astype(np.uint16)
    t = find_point_sources(Tile.from_image(np.minimum(img, 1000.0), PSF3, noise=1.0, mask=mask))
    assert len(t) == 2
    sat = (t["flags"] & SourceFlag.SATURATED) != 0
    assert sat.sum() == 1
    normal = t[~sat][0]
    assert math.hypot(normal["x"] - xs[1], normal["y"] - ys[1]) < 0.5


# --------------------------------------------------------------------------- ownership and footprint


def test_only_detections_whose_peak_is_in_the_core_are_returned() -> None:
    rng = np.random.default_rng(3)
    xs, ys = rng.uniform(5, 195, 40), rng.uniform(5, 195, 40)
    img = render((200, 200), xs, ys, [60 * UNIT_SNR_FLUX] * 40, seed=1)
    whole_tile = Tile.from_image(img, PSF3, noise=1.0)
    whole = find_point_sources(whole_tile)
    assert len(whole) > 20
    core = (50, 120, 30, 150)
    tile = Tile(image=whole_tile.image, variance=whole_tile.variance, mask=whole_tile.mask,
                background=whole_tile.background, psf=PSF3, core=core)
    t = find_point_sources(tile)
    yp, xp = np.asarray(t["y_peak"]), np.asarray(t["x_peak"])
    assert np.all((yp >= 50) & (yp < 120) & (xp >= 30) & (xp < 150))
    inside = (whole["y_peak"] >= 50) & (whole["y_peak"] < 120) & (whole["x_peak"] >= 30) & (whole["x_peak"] < 150)
    assert 0 < len(t) == int(inside.sum()) < len(whole)
    for name in t.colnames:
        np.testing.assert_array_equal(t[name], whole[inside][name])
    # a core holding no source gives an empty table
    empty = Tile(image=whole_tile.image, variance=whole_tile.variance, mask=whole_tile.mask,
                 background=whole_tile.background, psf=PSF3, core=(0, 0, 0, 0))
    assert len(find_point_sources(empty)) == 0


def test_a_tile_with_halo_reports_what_the_whole_image_reports_in_its_core() -> None:
    """A sub-tile (with the expert's footprint as halo) at a global origin."""
    rng = np.random.default_rng(8)
    xs, ys = rng.uniform(3, 253, 60), rng.uniform(3, 253, 60)
    img = render((256, 256), xs, ys, 10 ** rng.uniform(1.2, 2.5, 60) * UNIT_SNR_FLUX, seed=6)
    whole = find_point_sources(Tile.from_image(img, PSF3, noise=1.0))
    halo = PointExpert().footprint(PSF3)
    cy0, cy1, cx0, cx1 = 64, 160, 100, 256
    oy, ox = max(0, cy0 - halo), max(0, cx0 - halo)
    sub = img[oy : min(256, cy1 + halo), ox : min(256, cx1 + halo)]
    z = np.zeros(sub.shape)
    tile = Tile(image=sub, variance=np.ones(sub.shape), mask=z.astype(np.uint16), background=z, psf=PSF3,
                origin=(oy, ox), core=(cy0, cy1, cx0, cx1), image_shape=(256, 256))
    t = find_point_sources(tile)
    inside = (whole["y_peak"] >= cy0) & (whole["y_peak"] < cy1) & (whole["x_peak"] >= cx0) & (whole["x_peak"] < cx1)
    ref = whole[inside]
    assert len(t) == len(ref) > 5
    for name in ("x_peak", "y_peak", "flags"):
        np.testing.assert_array_equal(t[name], ref[name])
    np.testing.assert_allclose(t["x"], ref["x"], atol=1e-4)
    np.testing.assert_allclose(t["flux"], ref["flux"], rtol=1e-4)


@pytest.fixture(scope="module")
def crowded_field():
    """320 x 320: 120 stars (S/N 6-1000, some touching the edges), three saturated
    stars (one with a 80-pixel bleed trail), a NaN block."""
    rng = np.random.default_rng(5)
    n = 320
    xs, ys = rng.uniform(0, n, 120), rng.uniform(0, n, 120)
    fl = 10 ** rng.uniform(0.8, 3, 120) * UNIT_SNR_FLUX
    xs = np.append(xs, [100.3, 250.0, 3.0])
    ys = np.append(ys, [160.7, 40.0, 200.0])
    fl = np.append(fl, [3e5, 5e4, 8e4])
    img = render((n, n), xs, ys, fl, seed=9)
    level = 1500.0
    mask = np.where(img >= level, int(MaskBit.SATURATED), 0).astype(np.uint16)
    mask[120:200, 100] |= np.uint16(MaskBit.SATURATED)
    img[120:200, 100] = level
    img = np.minimum(img, level)
    img[50:55, 200:230] = np.nan
    return Tile.from_image(img, PSF3, noise=1.0, mask=mask)


@pytest.mark.parametrize("size", [40, 100])
def test_detections_do_not_depend_on_the_tiling(crowded_field, size: int) -> None:
    """Cores of ``size`` pixels with the expert's footprint as halo: the union of
    the tiles' detections is the whole-image table, each source exactly once."""
    full = crowded_field
    n = full.image.shape[0]
    whole = find_point_sources(full)
    assert len(whole) > 80
    assert int(np.sum((whole["flags"] & SourceFlag.SATURATED) != 0)) == 3
    halo = PointExpert().footprint(PSF3)
    parts = []
    for cy0 in range(0, n, size):
        for cx0 in range(0, n, size):
            cy1, cx1 = min(n, cy0 + size), min(n, cx0 + size)
            oy, ox = max(0, cy0 - halo), max(0, cx0 - halo)
            sl = (slice(oy, min(n, cy1 + halo)), slice(ox, min(n, cx1 + halo)))
            tile = Tile(image=full.image[sl], variance=full.variance[sl], mask=full.mask[sl],
                        background=full.background[sl], psf=PSF3, origin=(oy, ox),
                        core=(cy0, cy1, cx0, cx1), image_shape=(n, n))
            parts.append(find_point_sources(tile))
    stitched = vstack(parts)
    stitched.sort(["y_peak", "x_peak"])
    assert len(stitched) == len(whole)
    for name in ("x_peak", "y_peak", "flags"):
        np.testing.assert_array_equal(stitched[name], whole[name])
    for name in ("x", "y"):
        np.testing.assert_allclose(stitched[name], whole[name], atol=1e-4, rtol=0)
    np.testing.assert_allclose(stitched["flux"], whole["flux"], rtol=1e-5)


@pytest.mark.parametrize(
    "sa,sb,theta",
    [(3.0, 1.5, 30.0), (3.0, 1.5, -60.0), (4.0, 2.0, 45.0), (2.2, 1.8, 0.0)],
)
def test_windowed_shape_of_elliptical_sources(sa: float, sb: float, theta: float) -> None:
    """a, b (RMS along the axes, pixel included) and theta (deg CCW from +x)."""
    psf = gaussian_psf(3.0)
    model = Gaussian2D(5000.0, 50.3, 49.8, sa, sb, math.radians(theta))
    img = discretize_model(model, (0, 101), (0, 101), mode="oversample", factor=10)
    t = find_point_sources(Tile.from_image(img, psf, noise=1.0))
    assert len(t) == 1
    assert t["a"][0] == pytest.approx(math.sqrt(sa**2 + 1 / 12), rel=0.02)
    assert t["b"][0] == pytest.approx(math.sqrt(sb**2 + 1 / 12), rel=0.02)
    assert -90.0 < t["theta"][0] <= 90.0
    if sa / sb > 1.1:
        diff = (t["theta"][0] - theta + 90.0) % 180.0 - 90.0
        assert abs(diff) < 1.0
    assert t["roundness"][0] == pytest.approx(1 - t["b"][0] / t["a"][0])


def test_footprint_grows_with_fwhm() -> None:
    expert = PointExpert()
    sizes = [expert.footprint(moffat_psf(f)) for f in (1.5, 2.0, 3.0, 4.5, 6.0, 9.0)]
    assert all(a < b for a, b in zip(sizes, sizes[1:]))
    # at least the matched-filter kernel plus the deblending reach
    for f in (2.0, 6.0):
        psf = moffat_psf(f)
        assert expert.footprint(psf) >= psf.kernel_radius() + PointExpertConfig().deblend_radius_fwhm * f
    # and it grows with the reach of the configuration
    wide = PointExpert(PointExpertConfig(saturation_zone_fwhm=20.0))
    assert wide.footprint(PSF3) > expert.footprint(PSF3)


def test_expert_protocol_and_registry() -> None:
    expert = REGISTRY["point"](PointExpertConfig(threshold=6.0))
    assert isinstance(expert, PointExpert)
    assert expert.name == "point" and "star" in expert.kinds
    img = render((101, 101), [50.0, 20.0], [50.0, 70.0], [100 * UNIT_SNR_FLUX, 5.5 * UNIT_SNR_FLUX], noise=0.0)
    tile = Tile.from_image(img, PSF3, noise=1.0)
    t = expert.propose(tile)
    assert t.meta["threshold"] == 6.0
    assert len(t) == 1  # the S/N 5.5 star is below a 6 sigma threshold
    assert len(find_point_sources(tile, config=PointExpertConfig(threshold=4.0))) == 2


# --------------------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    "kwargs,name",
    [
        (dict(false_detections_per_mpix=0.0), "false_detections_per_mpix"),
        (dict(threshold=0.5), "threshold"),
        (dict(threshold=float("nan")), "threshold"),
        (dict(kernel_energy=0.3), "kernel_energy"),
        (dict(kernel_energy=1.5), "kernel_energy"),
        (dict(min_coverage=-0.1), "min_coverage"),
        (dict(deblend_radius_fwhm=0.1), "deblend_radius_fwhm"),
        (dict(deblend_nsigma=-1.0), "deblend_nsigma"),
        (dict(deblend_contrast=1.5), "deblend_contrast"),
        (dict(blend_radius_fwhm=-1.0), "blend_radius_fwhm"),
        (dict(saturation_zone_fwhm=100.0), "saturation_zone_fwhm"),
        (dict(sharp_max=0.5), "sharp_max"),
        (dict(ring_inner_fwhm=0.5), "ring_inner_fwhm"),
        (dict(ring_inner_fwhm=4.0, ring_outer_fwhm=4.2), "ring_outer_fwhm"),
        (dict(sharp_max="2"), "sharp_max"),
    ],
)
def test_point_config_rejects_bad_values(kwargs, name: str) -> None:
    with pytest.raises(ConfigError, match=f"point.{name}"):
        PointExpertConfig(**kwargs)


def test_point_config_threshold() -> None:
    assert PointExpertConfig(threshold=5.5).detection_threshold(PSF3) == 5.5
    default = PointExpertConfig().detection_threshold(PSF3)
    stricter = PointExpertConfig(false_detections_per_mpix=0.01).detection_threshold(PSF3)
    assert 4.5 < default < stricter < 6.0


def test_false_detection_rate_on_pure_noise_is_low() -> None:
    """Default 0.5 false detections per Mpix: 4 Mpix of noise gives a handful at most."""
    rng = np.random.default_rng(21)
    total = 0
    for _ in range(4):
        noise = rng.normal(size=(1024, 1024))
        total += len(find_point_sources(Tile.from_image(noise, PSF3, noise=1.0)))
    assert total <= 6


# --------------------------------------------------------------------------- realistic field


@pytest.fixture(scope="module")
def sim_field():
    cfg = SurveySimConfig(size=1024, seed=2, galaxy_density=200.0, star_density=150.0, n_streaks=0.0,
                          cosmic_ray_density=0.0, hot_pixel_density=0.0, saturated_star_density=0.0)
    sim = simulate_survey(cfg)
    noise = np.sqrt(sim.sky / cfg.gain + (cfg.rdnoise / cfg.gain) ** 2)
    psf = PSF(image=sim.psf_image, fwhm=cfg.fwhm_px, source="truth", model="empirical")
    tile = Tile.from_image(sim.image.astype(np.float64) - sim.sky, psf, noise=noise, gain=cfg.gain)
    return sim, find_point_sources(tile)


def test_simulated_stars_are_recovered(sim_field) -> None:
    sim, det = sim_field
    truth = sim.truth
    stars = truth[(truth["kind"] == "star") & (truth["mf_snr"] > 20)]
    assert len(stars) > 30
    d, i = _match(det, stars["x"], stars["y"], radius=1.0)
    found = np.isfinite(d)
    assert found.mean() > 0.9  # a few sit on galaxies
    assert math.sqrt(float(np.mean(d[found] ** 2))) < 0.1
    ratio = np.asarray(det["flux"])[i[found]] / np.asarray(stars["flux"])[found]
    assert abs(float(np.median(ratio)) - 1.0) < 0.02


def test_galaxies_are_not_fragmented(sim_field) -> None:
    sim, det = sim_field
    gals = sim.truth[sim.truth["kind"] == "galaxy"]
    assert len(gals) > 100
    tree = cKDTree(np.column_stack([det["x"], det["y"]]))
    counts = np.array(
        [len(tree.query_ball_point([x, y], max(h, FWHM))) for x, y, h in zip(gals["x"], gals["y"], gals["hlr"])]
    )
    assert float(np.mean(counts > 1)) <= 0.10
    assert float(np.mean(counts >= 1)) > 0.8  # but they are detected

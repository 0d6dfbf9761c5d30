"""The streak expert: trails found as one object with end points, stitched across tiles."""

from __future__ import annotations

import math

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from scipy import ndimage

from contracts.errors import ConfigError
from moe_imaging.experts.streak import (
    StreakExpert,
    StreakExpertConfig,
    find_streaks,
    stitch_streaks,
    streak_prior_from_header,
)
from moe_imaging.fusion import fuse
from moe_imaging.psf import moffat_psf
from moe_imaging.simulate import SurveySimConfig, simulate_survey
from moe_imaging.tile import Tile

PSF = moffat_psf(3.0, beta=3.0)


def _trail(shape, x0, y0, x1, y1, snr, psf=PSF) -> np.ndarray:
    """A PSF-convolved segment scaled to matched-filter S/N ``snr`` on unit noise."""
    scene = np.zeros(shape)
    n = int(math.hypot(x1 - x0, y1 - y0) * 4) + 1
    for f in np.linspace(0.0, 1.0, n):
        x, y = x0 + f * (x1 - x0), y0 + f * (y1 - y0)
        ix, iy = int(math.floor(x)), int(math.floor(y))
        fx, fy = x - ix, y - iy  # bilinear splat keeps sub-pixel end points
        for dy, dx, w in ((0, 0, (1 - fx) * (1 - fy)), (0, 1, fx * (1 - fy)), (1, 0, (1 - fx) * fy), (1, 1, fx * fy)):
            scene[iy + dy, ix + dx] += w / n
    scene = ndimage.convolve(scene, psf.image, mode="constant")
    return scene * snr / math.sqrt((scene**2).sum())


def _star(shape, x, y, snr, psf=PSF) -> np.ndarray:
    img = np.zeros(shape)
    h = psf.half_size
    ix, iy = int(round(x)), int(round(y))
    img[iy - h : iy + h + 1, ix - h : ix + h + 1] = ndimage.shift(psf.image, (y - iy, x - ix), order=3)
    return img * snr / math.sqrt((img**2).sum())


def _end_error(row, truth) -> float:
    a = (row["x0"], row["y0"], row["x1"], row["y1"])
    e1 = max(math.hypot(a[0] - truth[0], a[1] - truth[1]), math.hypot(a[2] - truth[2], a[3] - truth[3]))
    e2 = max(math.hypot(a[0] - truth[2], a[1] - truth[3]), math.hypot(a[2] - truth[0], a[3] - truth[1]))
    return min(e1, e2)


@pytest.mark.parametrize("angle", [0.0, 27.0, 90.0, 133.0])
def test_one_trail_end_points_and_flux(angle) -> None:
    rng = np.random.default_rng(int(angle))
    shape = (256, 256)
    length = 120.0
    dx, dy = 0.5 * length * math.cos(math.radians(angle)), 0.5 * length * math.sin(math.radians(angle))
    truth = (128.3 - dx, 127.6 - dy, 128.3 + dx, 127.6 + dy)
    signal = _trail(shape, *truth, snr=60.0)
    out = find_streaks(Tile.from_image(signal + rng.normal(0, 1, shape), PSF, noise=1.0))
    assert len(out) == 1
    row = out[0]
    assert row["kind"] == "streak" and row["expert"] == "streak"
    assert _end_error(row, truth) < 1.5
    assert abs(row["length"] - length) < 2.0
    assert abs((row["angle_deg"] - angle + 90) % 180 - 90) < 1.0
    assert row["flux"] == pytest.approx(signal.sum(), rel=0.1)
    assert 40 < row["snr"] < 80


def test_points_pairs_and_noise_are_not_trails() -> None:
    rng = np.random.default_rng(3)
    shape = (256, 256)
    img = rng.normal(0, 1, shape)
    img += _star(shape, 60, 60, 500.0)  # a bright star alone
    img += _star(shape, 150, 60, 80.0) + _star(shape, 180, 70, 80.0)  # a pair 32 px apart
    for k in range(5):  # a row of faint stars, 12 px apart
        img += _star(shape, 40 + 12 * k, 190, 8.0)
    out = find_streaks(Tile.from_image(img, PSF, noise=1.0))
    assert len(out) == 0


def test_trail_crossing_a_bright_star_is_one_object() -> None:
    rng = np.random.default_rng(4)
    shape = (256, 256)
    truth = (30.0, 100.0, 220.0, 150.0)
    img = _trail(shape, *truth, snr=50.0) + _star(shape, 125.0, 125.0, 400.0) + rng.normal(0, 1, shape)
    out = find_streaks(Tile.from_image(img, PSF, noise=1.0))
    assert len(out) == 1
    assert _end_error(out[0], truth) < 3.0


def test_cosmic_rays_and_saturation_are_ignored() -> None:
    rng = np.random.default_rng(5)
    shape = (200, 200)
    img = rng.normal(0, 1, shape)
    img[50, 40:60] += 200.0  # a long, sharp cosmic-ray track
    mask = np.zeros(shape, np.uint16)
    mask[20:180, 150] = 4  # SATURATED bleed column
    img[20:180, 150] = 5000.0
    tile = Tile.from_image(img, PSF, noise=1.0, mask=mask)
    assert len(find_streaks(tile)) == 0


def test_tiling_stitches_a_long_trail(tmp_path) -> None:
    """A trail crossing several tiles comes out as one object, whatever the tiling."""
    from pipelines import DetectionConfig, detect_image
    from pipelines.io import write_exposure

    rng = np.random.default_rng(6)
    shape = (600, 600)
    truth = (40.3, 70.2, 560.1, 510.4)
    img = 100.0 + _trail(shape, *truth, snr=120.0) * 5.0 + rng.normal(0, 5.0, shape)
    header = fits.Header({"FWHM": 3.0, "PSFMODEL": "moffat", "BETA": 3.0, "GAIN": 1.0})
    path = write_exposure(tmp_path / "trail.fits", img.astype(np.float32), header)
    config = DetectionConfig(experts=("streak",))
    whole = detect_image(path, config=config, tile_size=None, checksum=False).catalog
    tiled = detect_image(path, config=config, tile_size=128, checksum=False).catalog
    for cat in (whole, tiled):
        assert len(cat) == 1
        assert _end_error(cat[0], truth) < 1.5
    assert tiled["n_pieces"][0] >= 4 and whole["n_pieces"][0] == 1
    assert tiled["flux"][0] == pytest.approx(whole["flux"][0], rel=0.03)
    assert tiled["length"][0] == pytest.approx(whole["length"][0], abs=1.0)


def test_stitch_joins_collinear_pieces_only() -> None:
    rows = [  # two pieces of one trail (cut at x = 100) and an unrelated trail
        dict(x0=50.0, y0=50.0, x1=100.0, y1=75.0, trunc0=False, trunc1=True, flux=500.0, flux_err=10.0, owned_length=50.0),
        dict(x0=100.0, y0=75.0, x1=150.0, y1=100.0, trunc0=True, trunc1=False, flux=500.0, flux_err=10.0, owned_length=50.0),
        dict(x0=40.0, y0=200.0, x1=140.0, y1=210.0, trunc0=False, trunc1=False, flux=900.0, flux_err=12.0, owned_length=100.0),
    ]
    table = Table(rows=rows)
    for name, value in dict(x=0.0, y=0.0, x_peak=0, y_peak=0, snr=0.0, det_snr=10.0, kind="streak", expert="streak",
                            flags=0, line_flux=10.0, n_pieces=1).items():
        table[name] = [value] * len(table)
    table["length"] = np.hypot(table["x1"] - table["x0"], table["y1"] - table["y0"])
    table["angle_deg"] = np.degrees(np.arctan2(table["y1"] - table["y0"], table["x1"] - table["x0"]))
    out = stitch_streaks(table, psf=PSF, image_shape=(300, 300))
    assert len(out) == 2
    joined = out[np.argmax(out["n_pieces"])]
    assert joined["n_pieces"] == 2 and joined["flux"] == pytest.approx(1000.0)
    assert joined["flux_err"] == pytest.approx(math.sqrt(200.0))
    assert _end_error(joined, (50.0, 50.0, 150.0, 100.0)) < 0.5
    assert not joined["trunc0"] and not joined["trunc1"]


def test_header_prior() -> None:
    h = fits.Header({"OBSMODE": "rate", "RATE": 0.5, "EXPTIME": 60.0, "PIXSCALE": 0.25})
    assert streak_prior_from_header(h) == pytest.approx(120.0)
    h = fits.Header({"RA_RATE": 0.3, "DEC_RATE": 0.4, "EXPTIME": 10.0})
    assert streak_prior_from_header(h, pixscale=0.5) == pytest.approx(10.0)
    assert streak_prior_from_header(fits.Header({"OBSMODE": "sidereal", "EXPTIME": 60.0})) is None
    cfg = StreakExpertConfig(expected_length=120.0)
    assert max(cfg.filter_lengths(3.0)) == pytest.approx(120.0)
    assert cfg.min_length(3.0) == pytest.approx(15.0)


def test_config_errors_name_the_key() -> None:
    with pytest.raises(ConfigError, match="streak.lengths_fwhm"):
        StreakExpertConfig(lengths_fwhm=(1.0,))
    with pytest.raises(ConfigError, match="streak.n_parts"):
        StreakExpertConfig(n_parts=0)


def test_fusion_absorbs_point_fragments_along_a_trail() -> None:
    """The point expert's peaks along a trail become part of it; a bright star it crosses stays."""
    from moe_imaging.experts import make_expert

    rng = np.random.default_rng(8)
    shape = (256, 256)
    truth = (30.0, 60.0, 220.0, 200.0)
    img = _trail(shape, *truth, snr=150.0) + _star(shape, 125.5, 130.2, 600.0) + rng.normal(0, 1, shape)
    tile = Tile.from_image(img, PSF, noise=1.0)
    point = make_expert("point").propose(tile)
    streak = StreakExpert().propose(tile)
    assert len(point) >= 3 and len(streak) == 1
    fused = fuse({"point": point, "streak": streak}, radius=3.0)
    kinds = sorted(np.asarray(fused["kind"]).astype(str))
    assert kinds == ["star", "streak"]
    star = fused[np.asarray(fused["kind"]) == "star"][0]
    assert math.hypot(star["x"] - 125.5, star["y"] - 130.2) < 1.0


def test_simulated_field_recall() -> None:
    """Trails of a small simulated field (S/N 20-300, 20-200 px, among stars and galaxies)."""
    exp = simulate_survey(SurveySimConfig(size=768, seed=41, n_streaks=10))
    cfg = exp.truth.meta["config"]
    sigma = np.sqrt(exp.sky / cfg["gain"] + (cfg["rdnoise"] / cfg["gain"]) ** 2)
    mask = np.where(exp.image >= cfg["saturate"], np.uint16(4), np.uint16(0))
    tile = Tile(image=exp.image - exp.sky, variance=sigma**2, mask=mask, background=exp.sky,
                psf=moffat_psf(cfg["fwhm_px"], beta=cfg["moffat_beta"]))
    out = find_streaks(tile)
    trails = exp.truth[exp.truth["kind"] == "streak"]
    good = 0
    for t in trails:
        errs = [_end_error(r, (t["x0"], t["y0"], t["x1"], t["y1"])) for r in out]
        good += bool(errs) and min(errs) <= 3.0
    assert good >= len(trails) - 1
    assert len(out) <= len(trails) + 2

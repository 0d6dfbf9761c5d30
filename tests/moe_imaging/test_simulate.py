"""Tests of moe_imaging.simulate: the GalSim survey simulator and its truth table."""

from __future__ import annotations

import math

import galsim
import numpy as np
import pytest
from astropy.wcs import WCS

from contracts.errors import ConfigError
from moe_imaging.simulate import (
    TRUTH_KINDS,
    SimulatedExposure,
    SurveySimConfig,
    _apply_saturation,
    simulate_survey,
)

NOTHING = dict(
    star_density=0.0,
    galaxy_density=0.0,
    n_streaks=0.0,
    cosmic_ray_density=0.0,
    hot_pixel_density=0.0,
    saturated_star_density=0.0,
)


def _only(**kw: object) -> SurveySimConfig:
    """A config with no objects except those given in ``kw``."""
    return SurveySimConfig(**{**NOTHING, **kw})


def _window(img: np.ndarray, ix: int, iy: int, half: int) -> np.ndarray | None:
    """The (2 half + 1)^2 window centred on pixel (ix, iy), or None at the edge."""
    ny, nx = img.shape
    if ix - half < 0 or iy - half < 0 or ix + half >= nx or iy + half >= ny:
        return None
    return img[iy - half : iy + half + 1, ix - half : ix + half + 1]


@pytest.fixture(scope="module")
def default_field() -> SimulatedExposure:
    return simulate_survey(SurveySimConfig())


# --------------------------------------------------------------------------- basics


def test_default_field_kinds_counts_and_types(default_field: SimulatedExposure) -> None:
    exp = default_field
    assert exp.image.shape == (1024, 1024)
    assert exp.image.dtype == np.float32
    assert exp.sky is not None and exp.sky.shape == exp.image.shape
    t = exp.truth
    counts = {k: int(np.sum(t["kind"] == k)) for k in TRUTH_KINDS}
    assert counts == {
        "star": 150,
        "galaxy": 30,
        "streak": 1,
        "cosmic_ray": 20,
        "hot_pixel": 10,
        "saturated_star": 2,
    }
    assert np.array_equal(t["id"], np.arange(len(t)))
    assert t["id"].dtype == np.int64 and t["npix"].dtype == np.int64
    for name in ("x", "y", "flux", "mag", "mf_snr", "hlr", "q", "pa_deg", "bulge_frac",
                 "x0", "y0", "x1", "y1", "length", "angle_deg"):
        assert t[name].dtype == np.float64, name
    assert str(t["x"].unit) == "pix" and str(t["flux"].unit) == "adu"
    assert np.all(np.isfinite(t["flux"])) and np.all(t["flux"] > 0)
    assert np.allclose(t["mag"], 28.0 - 2.5 * np.log10(t["flux"]))
    gal = t["kind"] == "galaxy"
    assert np.all(np.isfinite(t["hlr"][gal])) and np.all(np.isnan(t["hlr"][~gal]))
    assert np.all((t["hlr"][gal] >= 1.5) & (t["hlr"][gal] <= 8.0))
    assert np.all((t["q"][gal] >= 0.3) & (t["q"][gal] <= 1.0))
    streak = t["kind"] == "streak"
    assert np.all(np.isfinite(t["length"][streak])) and np.all(np.isnan(t["x0"][~streak]))
    art = np.isin(t["kind"], ["cosmic_ray", "hot_pixel"])
    assert np.all(t["npix"][art] >= 1) and np.all(t["npix"][~art] == 0)
    assert np.all(t["npix"][t["kind"] == "cosmic_ray"] <= 10)
    stars = t["kind"] == "star"
    assert np.all((t["mf_snr"][stars] >= 3.0) & (t["mf_snr"][stars] <= 1000.0))
    assert t.meta["config"]["seed"] == 1
    sat = t["kind"] == "saturated_star"
    assert np.all(t["bleed_y1"][sat] > t["bleed_y0"][sat])
    assert np.all(t["bleed_y0"][~sat] == -1)


def test_empty_field_has_full_schema() -> None:
    exp = simulate_survey(_only(size=64))
    assert len(exp.truth) == 0
    assert "mf_snr" in exp.truth.colnames and "angle_deg" in exp.truth.colnames
    assert exp.truth["id"].dtype == np.int64


def test_determinism_and_seed() -> None:
    cfg = SurveySimConfig(size=256, seed=7, star_density=400.0, cosmic_ray_density=100.0)
    a, b = simulate_survey(cfg), simulate_survey(cfg)
    assert a.image.tobytes() == b.image.tobytes()
    assert a.truth.colnames == b.truth.colnames
    for name in a.truth.colnames:
        assert np.array_equal(a.truth[name], b.truth[name], equal_nan=name != "kind"), name
    c = simulate_survey(cfg.replace(seed=8))
    assert not np.array_equal(a.image, c.image)
    assert not np.array_equal(a.truth["x"], c.truth["x"])


def test_header_keywords_and_wcs_round_trip() -> None:
    cfg = SurveySimConfig(size=200, shape=(300, 200), rotation_deg=30.0, **NOTHING)
    exp = simulate_survey(cfg)
    h = exp.header
    assert exp.image.shape == (300, 200)
    for key in ("GAIN", "RDNOISE", "SATURATE", "EXPTIME", "FWHM", "SEEING", "PIXSCALE",
                "MAGZP", "PSFMODEL", "BETA", "SKYLEVEL", "OBSMODE", "SIMSEED", "BUNIT",
                "CTYPE1", "CTYPE2", "CRPIX1", "CRPIX2", "CRVAL1", "CRVAL2", "CD1_1"):
        assert key in h, key
        assert h.comments[key], key
    assert h["OBSMODE"] == "sidereal" and h["BUNIT"] == "adu" and h["SIMSEED"] == 1
    assert h["SEEING"] == pytest.approx(cfg.fwhm_px * cfg.pixscale)
    assert h["CRPIX1"] == pytest.approx(100.5) and h["CRPIX2"] == pytest.approx(150.5)
    w = WCS(h)
    assert w.wcs.ctype[0] == "RA---TAN" and w.wcs.ctype[1] == "DEC--TAN"
    # the 0-based image centre is at CRVAL
    ra, dec = w.all_pix2world([[99.5, 149.5]], 0)[0]
    assert ra == pytest.approx(150.0) and dec == pytest.approx(2.0)
    pix = np.array([[0.0, 0.0], [17.3, 250.2], [199.0, 299.0]])
    back = w.all_world2pix(w.all_pix2world(pix, 0), 0)
    assert np.allclose(back, pix, atol=1e-6)
    scales = np.sqrt(np.abs(np.linalg.det(w.pixel_scale_matrix))) * 3600
    assert scales == pytest.approx(cfg.pixscale)


def test_wcs_east_left_at_zero_rotation() -> None:
    exp = simulate_survey(_only(size=64))
    w = WCS(exp.header)
    assert exp.header["CD1_1"] < 0 and exp.header["CD2_2"] > 0
    (ra0, dec0), (ra1, _), (_, dec2) = w.all_pix2world([[10, 10], [20, 10], [10, 20]], 0)
    assert ra1 < ra0  # +x is west
    assert dec2 > dec0  # +y is north


def test_psf_image() -> None:
    exp = simulate_survey(_only(size=64, fwhm_px=3.0))
    psf = exp.psf_image
    assert psf.dtype == np.float64 and psf.shape[0] == psf.shape[1] and psf.shape[0] % 2 == 1
    assert psf.shape[0] >= 51
    assert psf.sum() == pytest.approx(1.0)
    c = psf.shape[0] // 2
    assert np.unravel_index(np.argmax(psf), psf.shape) == (c, c)
    assert np.allclose(psf, psf[::-1, ::-1])
    # FWHM from the area above half maximum (pixel integration widens it a little)
    fwhm = 2 * math.sqrt(np.sum(psf > psf.max() / 2) / math.pi)
    assert 2.8 < fwhm < 3.6


def test_sky_plane_gradient() -> None:
    exp = simulate_survey(_only(size=128, sky_gradient=0.1, sky_adu=400.0))
    sky = exp.sky.astype(np.float64)
    corners = [sky[0, 0], sky[0, -1], sky[-1, 0], sky[-1, -1]]
    assert (max(corners) - min(corners)) / 400.0 == pytest.approx(0.1, rel=1e-4)
    assert sky.mean() == pytest.approx(400.0, rel=1e-6)
    assert exp.header["SKYLEVEL"] == 400.0


# --------------------------------------------------------------------------- physics


@pytest.mark.parametrize("psf_model", ["moffat", "kolmogorov"])
def test_star_centroid_convention_noiseless(psf_model: str) -> None:
    cfg = _only(size=256, seed=3, psf_model=psf_model, star_density=320.0,
                snr_range=(500.0, 500.0), min_separation_px=40.0, add_noise=False)
    exp = simulate_survey(cfg)
    data = exp.image.astype(np.float64) - exp.sky
    checked = 0
    for row in exp.truth:
        ix, iy = int(round(row["x"])), int(round(row["y"]))
        win = _window(data, ix, iy, 15)
        if win is None:
            continue
        yy, xx = np.mgrid[iy - 15 : iy + 16, ix - 15 : ix + 16]
        cx, cy = np.sum(win * xx) / win.sum(), np.sum(win * yy) / win.sum()
        assert abs(cx - row["x"]) < 0.05 and abs(cy - row["y"]) < 0.05
        assert win.sum() == pytest.approx(row["flux"], rel=0.03)
        checked += 1
    assert checked >= 8


def test_mf_snr_matches_matched_filter_measurement() -> None:
    snr = 20.0
    cfg = _only(size=512, seed=11, star_density=256.0, snr_range=(snr, snr),
                min_separation_px=30.0)
    exp = simulate_survey(cfg)
    t = exp.truth
    assert np.allclose(t["mf_snr"], snr)
    sigma = np.sqrt(exp.sky / cfg.gain + (cfg.rdnoise / cfg.gain) ** 2)
    iy, ix = int(t["y"][0] + 0.5), int(t["x"][0] + 0.5)
    sum_p2 = np.sum(exp.psf_image**2)
    assert t["flux"][0] == pytest.approx(snr * sigma[iy, ix] / math.sqrt(sum_p2), rel=1e-5)

    half = 12
    psf = galsim.Moffat(beta=cfg.moffat_beta, fwhm=cfg.fwhm_px * cfg.pixscale)
    data = exp.image.astype(np.float64) - exp.sky
    est = []
    for row in t:
        ix, iy = int(math.floor(row["x"] + 0.5)), int(math.floor(row["y"] + 0.5))
        win = _window(data, ix, iy, half)
        if win is None:
            continue
        p = psf.drawImage(nx=2 * half + 1, ny=2 * half + 1, scale=cfg.pixscale,
                          offset=(row["x"] - ix, row["y"] - iy), dtype=np.float64).array
        est.append(np.sum(win * p) / np.sum(p**2) / row["flux"])
    assert len(est) >= 40
    # pure noise: the same filter on a source-free realisation
    noise = simulate_survey(cfg.replace(star_density=0.0, seed=12))
    ndata = noise.image.astype(np.float64) - noise.sky
    p0 = psf.drawImage(nx=2 * half + 1, ny=2 * half + 1, scale=cfg.pixscale,
                       dtype=np.float64).array
    mean_flux = float(np.mean(t["flux"]))
    nest = [
        np.sum(_window(ndata, ix, iy, half) * p0) / np.sum(p0**2) / mean_flux
        for iy in range(half, 512 - half, 2 * half + 1)
        for ix in range(half, 512 - half, 2 * half + 1)
    ]
    empirical = np.mean(est) / np.std(nest)
    assert empirical == pytest.approx(snr, rel=0.15)


def test_noise_level_in_source_free_region() -> None:
    cfg = _only(size=256, seed=5, sky_adu=300.0, gain=1.5, rdnoise=7.0)
    exp = simulate_survey(cfg)
    resid = exp.image.astype(np.float64) - exp.sky
    expected = np.sqrt(exp.sky / cfg.gain + (cfg.rdnoise / cfg.gain) ** 2)
    assert np.std(resid / expected) == pytest.approx(1.0, abs=0.02)
    assert abs(np.mean(resid)) < 0.02 * expected.mean()


def test_saturation_clip_and_bleed_conserves_charge() -> None:
    cfg = _only(size=256, seed=2, saturated_star_density=16.0, add_noise=False,
                sky_gradient=0.0)
    exp = simulate_survey(cfg)
    t = exp.truth
    assert list(t["kind"]) == ["saturated_star"]
    sat = exp.header["SATURATE"]
    assert exp.image.max() == np.float32(sat)
    clipped = exp.image == np.float32(sat)
    ys, xs = np.nonzero(clipped)
    assert np.ptp(ys) > np.ptp(xs)  # bleeds along the column
    assert t["bleed_y0"][0] == ys.min() and t["bleed_y1"][0] == ys.max()
    assert 0 < ys.min() and ys.max() < 255  # the trail stays on the chip here
    # the charge moved along columns, none was lost
    total = np.sum(exp.image.astype(np.float64) - exp.sky)
    assert total == pytest.approx(t["flux"][0], rel=0.01)


def test_apply_saturation_column_bookkeeping() -> None:
    img = np.full((40, 3), 100.0)
    img[18:21, 1] = [500.0, 900.0, 400.0]  # excess 900 over 300
    img[5, 2] = 320.0  # one pixel, excess 20, near nothing
    img[0, 0] = 1000.0  # at the edge: half of its excess leaves the chip
    before = img.sum(axis=0)
    _apply_saturation(img, 300.0)
    assert img.max() == 300.0
    # column 1: 450 each way = two pixels of 200 room and 50 more
    assert img[:, 1].sum() == pytest.approx(before[1])
    assert np.all(img[16:23, 1] == 300.0)
    assert img[15, 1] == pytest.approx(150.0) and img[23, 1] == pytest.approx(150.0)
    assert img[14, 1] == 100.0 and img[24, 1] == 100.0
    assert img[:, 2].sum() == pytest.approx(before[2])
    assert img[4, 2] == 110.0 and img[6, 2] == 110.0
    assert img[:, 0].sum() == pytest.approx(before[0] - 350.0)


def test_streak_geometry() -> None:
    cfg = _only(size=256, seed=4, n_streaks=16.0, add_noise=False,
                streak_length_range=(80.0, 120.0))
    exp = simulate_survey(cfg)
    t = exp.truth
    assert list(t["kind"]) == ["streak"]
    r = t[0]
    for key in ("x0", "x1"):
        assert 0 <= r[key] <= 255
    for key in ("y0", "y1"):
        assert 0 <= r[key] <= 255
    assert math.hypot(r["x1"] - r["x0"], r["y1"] - r["y0"]) == pytest.approx(r["length"])
    assert (r["x0"] + r["x1"]) / 2 == pytest.approx(r["x"])
    data = exp.image.astype(np.float64) - exp.sky
    yy, xx = np.mgrid[0:256, 0:256]
    f = data.sum()
    assert f == pytest.approx(r["flux"], rel=0.02)
    cx, cy = np.sum(data * xx) / f, np.sum(data * yy) / f
    assert cx == pytest.approx(r["x"], abs=0.1) and cy == pytest.approx(r["y"], abs=0.1)
    mxx = np.sum(data * (xx - cx) ** 2) / f
    myy = np.sum(data * (yy - cy) ** 2) / f
    mxy = np.sum(data * (xx - cx) * (yy - cy)) / f
    angle = math.degrees(0.5 * math.atan2(2 * mxy, mxx - myy)) % 180.0
    diff = (angle - r["angle_deg"] + 90.0) % 180.0 - 90.0
    assert abs(diff) < 1.0
    # variance along a uniform segment is L^2 / 12 (plus the PSF's)
    assert math.sqrt(12 * (mxx + myy)) == pytest.approx(r["length"], rel=0.05)


def test_galaxy_position_angle_convention() -> None:
    cfg = _only(size=512, seed=9, galaxy_density=100.0, add_noise=False,
                min_separation_px=80.0, galaxy_snr_range=(200.0, 200.0))
    exp = simulate_survey(cfg)
    data = exp.image.astype(np.float64) - exp.sky
    checked = 0
    for r in exp.truth:
        if r["q"] > 0.6 or r["hlr"] < 2.5:
            continue
        ix, iy = int(round(r["x"])), int(round(r["y"]))
        win = _window(data, ix, iy, 30)
        if win is None:
            continue
        yy, xx = np.mgrid[-30:31, -30:31]
        f = win.sum()
        cx, cy = np.sum(win * xx) / f, np.sum(win * yy) / f
        assert ix + cx == pytest.approx(r["x"], abs=0.05)
        assert iy + cy == pytest.approx(r["y"], abs=0.05)
        mxx = np.sum(win * (xx - cx) ** 2)
        myy = np.sum(win * (yy - cy) ** 2)
        mxy = np.sum(win * (xx - cx) * (yy - cy))
        angle = math.degrees(0.5 * math.atan2(2 * mxy, mxx - myy)) % 180.0
        assert abs((angle - r["pa_deg"] + 90.0) % 180.0 - 90.0) < 5.0
        checked += 1
    assert checked >= 2


def test_cosmic_rays_and_hot_pixels_are_sharp() -> None:
    cfg = _only(size=256, seed=6, cosmic_ray_density=200.0, hot_pixel_density=100.0,
                add_noise=False)
    exp = simulate_survey(cfg)
    data = exp.image.astype(np.float64) - exp.sky
    sigma = math.sqrt(cfg.sky_adu / cfg.gain + (cfg.rdnoise / cfg.gain) ** 2)
    hot = exp.truth[exp.truth["kind"] == "hot_pixel"]
    assert len(hot) > 0
    for r in hot:
        v = data[int(r["y"]), int(r["x"])]
        assert v >= r["flux"] - 1e-2  # a cosmic ray may land on it too
        assert 10 * sigma * 0.95 <= r["flux"] <= 1000 * sigma * 1.05
        assert r["mf_snr"] == pytest.approx(r["flux"] / sigma, rel=0.05)
    crs = exp.truth[exp.truth["kind"] == "cosmic_ray"]
    assert len(crs) > 0
    assert np.all(crs["mf_snr"] >= 5 * 0.95)
    # CR + hot pixel charge is all there, in few pixels
    assert np.sum(data) == pytest.approx(np.sum(exp.truth["flux"]), rel=1e-4)
    assert np.count_nonzero(np.abs(data) > 1e-3) <= np.sum(exp.truth["npix"])


def test_kolmogorov_option() -> None:
    cfg = SurveySimConfig(size=256, seed=2, psf_model="kolmogorov", fwhm_px=4.0)
    exp = simulate_survey(cfg)
    assert exp.header["PSFMODEL"] == "kolmogorov" and "BETA" not in exp.header
    assert exp.psf_image.sum() == pytest.approx(1.0)
    assert np.sum(exp.truth["kind"] == "star") > 0
    moffat = simulate_survey(cfg.replace(psf_model="moffat"))
    assert not np.allclose(exp.psf_image, moffat.psf_image)


def test_stochastic_counts_scale_with_area() -> None:
    exp = simulate_survey(_only(size=512, seed=1, star_density=150.0, galaxy_density=30.0))
    t = exp.truth
    assert int(np.sum(t["kind"] == "star")) in (37, 38)
    assert int(np.sum(t["kind"] == "galaxy")) in (7, 8)


def test_from_mapping_lists_become_tuples() -> None:
    cfg = SurveySimConfig.from_mapping({"size": 64, "snr_range": [5, 50], "shape": [64, 80]})
    assert cfg.snr_range == (5, 50) and cfg.image_shape == (64, 80)
    with pytest.raises(ConfigError, match="unknown"):
        SurveySimConfig.from_mapping({"sizee": 64})


@pytest.mark.parametrize(
    "changes",
    [
        {"size": 0},
        {"size": 100.5},
        {"shape": (64,)},
        {"shape": (8, 64)},
        {"seed": -1},
        {"seed": 1.5},
        {"psf_model": "gaussian"},
        {"fwhm_px": 0.0},
        {"moffat_beta": 1.2},
        {"fwhm_px": 0.5},
        {"pixscale": 0.0},
        {"gain": -2.0},
        {"rdnoise": -1.0},
        {"sky_adu": -1.0},
        {"sky_adu": 0.0, "rdnoise": 0.0},
        {"sky_gradient": 2.0},
        {"saturate": 100.0},
        {"exptime": 0.0},
        {"star_density": -1.0},
        {"snr_range": (10.0, 3.0)},
        {"snr_range": (0.0, 3.0)},
        {"snr_range": 5.0},
        {"galaxy_snr_range": (1.0, 2.0, 3.0)},
        {"streak_length_range": (0.0, 10.0)},
        {"dec_center": 95.0},
        {"ra_center": float("nan")},
        {"min_separation_px": -1.0},
        {"add_noise": "yes"},
    ],
)
def test_invalid_config_raises(changes: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        SurveySimConfig(**changes)

"""A PSF that varies over the field: each tile uses the PSF of its own stars."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import cKDTree

from moe_imaging.psf import local_psf, moffat_psf
from moe_imaging.simulate import SurveySimConfig, simulate_survey
from pipelines import DetectionConfig, detect_image
from pipelines.io import write_exposure

HALF = 512


@pytest.fixture(scope="module")
def two_seeing_field(tmp_path_factory):
    """Left half FWHM 2.5 px, right half 4.5 px; the header claims 3.5 for the whole field."""
    halves, truths = [], []
    for k, fwhm in enumerate((2.5, 4.5)):
        sim = simulate_survey(SurveySimConfig(shape=(HALF, HALF), seed=70 + k, fwhm_px=fwhm, star_density=300.0,
                                              galaxy_density=0.0, n_streaks=0.0, cosmic_ray_density=0.0,
                                              hot_pixel_density=0.0, saturated_star_density=0.0, sky_gradient=0.0))
        halves.append(sim.image)
        t = sim.truth
        t["x"] = t["x"] + k * HALF
        truths.append(t)
        header = sim.header
    header["FWHM"] = 3.5
    image = np.concatenate(halves, axis=1)
    path = write_exposure(tmp_path_factory.mktemp("vary") / "two_seeing.fits", image, header)
    from astropy.table import vstack

    return path, vstack(truths, metadata_conflicts="silent")


def _flux_ratio(cat, truth, side):
    stars = truth[(truth["kind"] == "star") & (truth["mf_snr"] > 50)]
    stars = stars[(stars["x"] < HALF) if side == 0 else (stars["x"] >= HALF)]
    d, j = cKDTree(np.column_stack([cat["x"], cat["y"]])).query(np.column_stack([stars["x"], stars["y"]]))
    ok = d < 1.5
    return float(np.median(np.asarray(cat["flux"])[j[ok]] / np.asarray(stars["flux"])[ok]))


def test_each_tile_gets_its_own_psf(two_seeing_field) -> None:
    path, truth = two_seeing_field
    fixed = detect_image(path, tile_size=HALF, checksum=False).catalog
    varying = detect_image(path, config=DetectionConfig.from_mapping({"psf": {"vary": True}}), tile_size=HALF,
                           checksum=False).catalog
    assert set(np.round(np.asarray(fixed["psf_fwhm"]), 3)) == {3.5}
    left = np.asarray(varying["psf_fwhm"])[np.asarray(varying["x"]) < HALF]
    right = np.asarray(varying["psf_fwhm"])[np.asarray(varying["x"]) >= HALF]
    assert np.allclose(left, left[0]) and np.allclose(right, right[0])
    assert left[0] == pytest.approx(2.5, rel=0.12) and right[0] == pytest.approx(4.5, rel=0.12)
    # PSF photometry with the right PSF: the flux scale is right on both sides; with one
    # global PSF the sharp side is over- and the blurred side under-estimated
    for side in (0, 1):
        assert _flux_ratio(varying, truth, side) == pytest.approx(1.0, abs=0.05)
    assert abs(_flux_ratio(fixed, truth, 0) - _flux_ratio(fixed, truth, 1)) > 0.08


def test_local_psf_falls_back_without_stars() -> None:
    rng = np.random.default_rng(0)
    fallback = moffat_psf(3.0)
    psf = local_psf(rng.normal(0, 1, (128, 128)), 1.0, fallback)
    assert psf is fallback


def test_vary_config_is_validated() -> None:
    from contracts.errors import ConfigError

    with pytest.raises(ConfigError, match="psf.vary"):
        DetectionConfig.from_mapping({"psf": {"vary": "yes"}})
    with pytest.raises(ConfigError, match="psf.vary_max_ratio"):
        DetectionConfig.from_mapping({"psf": {"vary_max_ratio": 0.5}})

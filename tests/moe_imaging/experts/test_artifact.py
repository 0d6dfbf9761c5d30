"""The artifact expert on a simulated survey field with a truth table."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import cKDTree

from contracts.errors import ConfigError
from contracts.flags import MaskBit
from moe_imaging.experts.artifact import (
    ArtifactExpertConfig,
    find_artifacts,
    psf_peak_ratio,
)
from moe_imaging.psf import gaussian_psf, moffat_psf
from moe_imaging.simulate import SurveySimConfig, simulate_survey
from moe_imaging.tile import Tile


@pytest.fixture(scope="module")
def field():
    sim = simulate_survey(SurveySimConfig(size=1024, seed=41, cosmic_ray_density=60.0, hot_pixel_density=30.0))
    h = sim.header
    sky = sim.sky
    noise = np.sqrt(sky / h["GAIN"] + (h["RDNOISE"] / h["GAIN"]) ** 2)
    mask = np.where(sim.image >= h["SATURATE"], np.uint16(MaskBit.SATURATED), np.uint16(0))
    tile = Tile.from_image(sim.image, moffat_psf(h["FWHM"], beta=h["BETA"]), noise=noise, mask=mask, background=sky)
    return find_artifacts(tile), sim.truth


def _near(table, truth, kind, radius):
    sel = np.asarray(truth["kind"]).astype(str) == kind
    d, _ = cKDTree(np.column_stack([table["x"], table["y"]])).query(
        np.column_stack([truth["x"][sel], truth["y"][sel]])
    )
    return d <= radius(truth[sel]) if callable(radius) else d <= radius


def test_cosmic_rays_are_labelled_artifacts(field) -> None:
    table, truth = field
    found = _near(table, truth, "cosmic_ray", lambda t: 1.5 + 0.5 * np.asarray(t["npix"]))
    assert found.size >= 50 and found.mean() >= 0.95


def test_hot_pixels_are_labelled_artifacts(field) -> None:
    table, truth = field
    found = _near(table, truth, "hot_pixel", 1.5)
    assert found.size >= 20 and found.mean() >= 0.95


def test_stars_and_galaxies_are_not_artifacts(field) -> None:
    table, truth = field
    assert _near(table, truth, "star", 2.0).mean() <= 0.02
    assert _near(table, truth, "galaxy", 3.0).mean() <= 0.02


def test_saturated_stars_are_one_artifact_each(field) -> None:
    table, truth = field
    sat = table[np.asarray(table["subtype"]).astype(str) == "saturation"]
    n_true = int(np.sum(np.asarray(truth["kind"]).astype(str) == "saturated_star"))
    assert len(sat) == n_true
    assert _near(sat, truth, "saturated_star", 6.0).all()


def test_peak_ratio_grows_as_the_psf_gets_sharper() -> None:
    assert psf_peak_ratio(gaussian_psf(1.2)) > psf_peak_ratio(gaussian_psf(2.0)) > psf_peak_ratio(gaussian_psf(4.0)) > 1.0


def test_a_bright_well_sampled_star_is_never_too_sharp() -> None:
    psf = moffat_psf(3.0)
    img = np.random.default_rng(0).normal(0, 1, (64, 64))
    h = psf.half_size
    img[32 - h : 32 + h + 1, 32 - h : 32 + h + 1] += 1e5 * psf.image
    assert len(find_artifacts(Tile.from_image(img, psf, noise=1.0))) == 0


def test_the_end_of_a_bleed_trail_is_bleed_not_a_hot_pixel() -> None:
    psf = moffat_psf(3.0)
    img = np.random.default_rng(1).normal(0, 1, (64, 64))
    mask = np.zeros(img.shape, np.uint16)
    img[30:50, 20] = 6000.0  # a saturated column ...
    mask[30:50, 20] = np.uint16(MaskBit.SATURATED)
    img[29, 20] = 2600.0  # ... whose last pixel holds the remaining charge, below saturation
    img[10, 45] = 300.0  # an ordinary hot pixel, far from any saturation
    table = find_artifacts(Tile.from_image(img, psf, noise=1.0, mask=mask))
    by_pixel = {(int(r["x_peak"]), int(r["y_peak"])): str(r["subtype"]) for r in table}
    assert by_pixel[(20, 29)] == "bleed"
    assert by_pixel[(45, 10)] == "hot_pixel"


def test_config_validation() -> None:
    with pytest.raises(ConfigError):
        ArtifactExpertConfig(sharp_sigma=1.0)
    with pytest.raises(ConfigError):
        ArtifactExpertConfig(sharp_sigma=5.0, grow_sigma=6.0)

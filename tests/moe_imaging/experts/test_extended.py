"""The extended-source expert on a simulated survey field with a truth table."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import cKDTree

from contracts.errors import ConfigError
from contracts.flags import MaskBit
from moe_imaging.experts.extended import (
    ExtendedExpertConfig,
    find_extended,
    galaxy_kernel,
)
from moe_imaging.psf import moffat_psf
from moe_imaging.simulate import SurveySimConfig, simulate_survey
from moe_imaging.tile import Tile


@pytest.fixture(scope="module")
def field():
    sim = simulate_survey(SurveySimConfig(size=1024, seed=43, galaxy_density=80.0))
    h = sim.header
    noise = np.sqrt(sim.sky / h["GAIN"] + (h["RDNOISE"] / h["GAIN"]) ** 2)
    mask = np.where(sim.image >= h["SATURATE"], np.uint16(MaskBit.SATURATED), np.uint16(0))
    tile = Tile.from_image(sim.image, moffat_psf(h["FWHM"], beta=h["BETA"]), noise=noise, mask=mask, background=sim.sky)
    return find_extended(tile), sim.truth


def _matched(table, truth, kind):
    sel = np.asarray(truth["kind"]).astype(str) == kind
    radius = np.maximum(2.0, np.nan_to_num(np.asarray(truth["hlr"], float)[sel])) if kind == "galaxy" else 2.0
    d, j = cKDTree(np.column_stack([table["x"], table["y"]])).query(np.column_stack([truth["x"][sel], truth["y"][sel]]))
    return d <= radius, j


def test_galaxies_are_recalled(field) -> None:
    table, truth = field
    found, _ = _matched(table, truth, "galaxy")
    assert found.size >= 60 and found.mean() >= 0.90


def test_extent_separates_galaxies_from_stars(field) -> None:
    table, truth = field
    gal, jg = _matched(table, truth, "galaxy")
    star, js = _matched(table, truth, "star")
    extent = np.asarray(table["extent"])
    assert np.median(extent[jg[gal]]) > 1.4
    assert np.median(extent[js[star]]) == pytest.approx(1.0, abs=0.15)


def test_kernel_is_normalised_and_wider_than_the_psf() -> None:
    psf = moffat_psf(3.0)
    k = galaxy_kernel(psf, 3.0)
    assert k.sum() == pytest.approx(1.0) and k.shape[0] > psf.image.shape[0]


def test_config_validation() -> None:
    with pytest.raises(ConfigError):
        ExtendedExpertConfig(threshold=1.0)
    with pytest.raises(ConfigError):
        ExtendedExpertConfig(disk_scales_px=(0.1,))

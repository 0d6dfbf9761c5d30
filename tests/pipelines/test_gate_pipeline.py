"""The gate in the pipeline: every detection gets calibrated probabilities and a decision."""

from __future__ import annotations

import numpy as np
import pytest

from contracts.vocabulary import DECISIONS
from contracts.vocabulary import SURVEY_CLASSES as GATE_CLASSES
from moe_imaging.simulate import SurveySimConfig, simulate_survey
from pipelines import DetectionConfig, detect_image
from pipelines.io import write_exposure


@pytest.fixture(scope="module")
def field(tmp_path_factory):
    sim = simulate_survey(SurveySimConfig(size=512, seed=93, n_streaks=6.0, cosmic_ray_density=60.0))
    return write_exposure(tmp_path_factory.mktemp("gate") / "field.fits", sim.image, sim.header)


def test_gate_columns_and_tiling_invariance(field) -> None:
    config = DetectionConfig.from_mapping({"experts": ["point", "artifact"], "gate": {"enabled": True}})
    whole = detect_image(field, config=config, tile_size=None, checksum=False).catalog
    tiled = detect_image(field, config=config, tile_size=192, checksum=False).catalog
    assert len(whole) > 50
    assert set(np.asarray(whole["decision"]).astype(str)) <= set(DECISIONS)
    probs = np.column_stack([np.asarray(whole[f"p_{c}"]) for c in GATE_CLASSES])
    assert np.allclose(probs.sum(1), 1.0, atol=1e-6)
    review = np.asarray(whole["decision"]).astype(str) == "review"
    assert np.all((np.asarray(whole["review_reason"]).astype(str) != "") == review)
    # every expert scores every row in the tile owning it: nearly the same whatever the tiling
    assert np.array_equal(np.asarray(whole["source_id"]), np.asarray(tiled["source_id"]))
    # (the streak search bins pixels from the tile origin, so its evidence moves very slightly)
    assert np.allclose(np.asarray(whole["confidence"]), np.asarray(tiled["confidence"]), atol=1e-3)
    assert np.array_equal(np.asarray(whole["decision"]), np.asarray(tiled["decision"]))


def test_without_the_gate_the_columns_are_empty(field) -> None:
    cat = detect_image(field, tile_size=None, checksum=False).catalog
    assert set(np.asarray(cat["decision"]).astype(str)) == {""}
    assert np.all(np.isnan(np.asarray(cat["confidence"])))


def test_the_psf_is_measured_from_the_stars_and_spread_model_is_measured_against_it(tmp_path) -> None:
    """A winged PSF (Moffat beta 2.5) whose header gives only the FWHM: the provenance records the PSF fitted
    to the stars; ``psf.measure`` detects with it; every detection gets ``spread_model``; the guard's verdict
    is recorded."""
    sim = simulate_survey(SurveySimConfig(size=768, seed=94, psf_model="moffat", moffat_beta=2.5, fwhm_px=3.0))
    header = sim.header.copy()
    for key in ("PSFMODEL", "BETA"):
        header.remove(key, ignore_missing=True)
    path = write_exposure(tmp_path / "winged.fits", sim.image, header)
    config = DetectionConfig.from_mapping({"experts": ["point", "artifact"], "gate": {"enabled": True}})
    result = detect_image(path, config=config, tile_size=None, checksum=False)
    measured = result.provenance.extra["psf_measured"]
    assert measured["model"] == "moffat" and measured["n_stars"] >= 20
    assert measured["fwhm_px"] == pytest.approx(3.0, rel=0.03) and measured["beta"] == pytest.approx(2.5, rel=0.1)
    assert result.psf.source.startswith("header")  # by default the prior detects; the measurement is recorded
    cat = result.catalog
    z = np.asarray(cat["spread_model"]) / np.asarray(cat["spread_model_err"])
    assert np.isfinite(z).mean() > 0.9
    assert cat.meta["gate"]["shift_guard"]["checks"]["psf"]["measured_fwhm"] == pytest.approx(3.0, rel=0.03)
    measuring = DetectionConfig.from_mapping({"experts": ["point", "artifact"], "psf": {"measure": True}})
    own = detect_image(path, config=measuring, tile_size=None, checksum=False)
    assert own.psf.source.startswith("stars:moffat:") and own.psf.beta == pytest.approx(2.5, rel=0.1)

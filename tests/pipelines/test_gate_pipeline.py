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

"""Microscopy mode with the gate enabled: the nucleus triage fills the decision columns."""

from __future__ import annotations

import numpy as np
import pytest

from catalogs import read_catalog
from moe_cli import main
from pipelines import DetectionConfig, detect_image
from pipelines.io import write_ome_tiff
from pipelines.models import DEFAULT_NUCLEUS_TRIAGE_WEIGHTS, load_nucleus_triage

pytestmark = pytest.mark.skipif(not DEFAULT_NUCLEUS_TRIAGE_WEIGHTS.exists(), reason="shipped model missing")


@pytest.fixture(scope="module")
def crowded_tiff(tmp_path_factory):
    from moe_imaging.simulate_microscopy import MicroscopySimConfig, simulate_microscopy

    cfg = MicroscopySimConfig(shape=(768, 768), seed=11, density_per_mm2=2500.0, clump_fraction=0.45)
    sim = simulate_microscopy(cfg)
    return write_ome_tiff(tmp_path_factory.mktemp("mtri") / "crowded.ome.tif", sim.image,
                          pixel_size_um=cfg.pixel_size_um, numerical_aperture=cfg.numerical_aperture,
                          wavelength_nm=cfg.emission_wavelength_nm)


def test_gate_columns_in_microscopy_mode(crowded_tiff) -> None:
    config = DetectionConfig.from_mapping({"gate": {"enabled": True, "alpha": 0.02}})
    cat = detect_image(crowded_tiff, config=config, tile_size=None, checksum=False).catalog
    tiled = detect_image(crowded_tiff, config=config, tile_size=256, checksum=False).catalog
    assert len(cat) > 50
    decision = np.asarray(cat["decision"]).astype(str)
    assert set(decision) <= {"accepted", "rejected", "review"} and "accepted" in decision
    assert set(np.asarray(cat["kind"]).astype(str)) <= {"nucleus", "artifact"}
    assert np.allclose(np.asarray(cat["p_nucleus"]) + np.asarray(cat["p_artifact"]), 1.0)
    assert np.allclose(np.asarray(cat["confidence"]),
                       np.maximum(np.asarray(cat["p_nucleus"]), np.asarray(cat["p_artifact"])))
    review = decision == "review"
    assert np.all((np.asarray(cat["review_reason"]).astype(str) != "") == review)
    assert all(str(s).startswith("microscopy:") for s in cat["triage_stratum"])
    assert all(str(r).isascii() for r in cat["review_reason"])
    # crowding is measured on the stitched catalog: the same decisions whatever the tiling
    assert np.array_equal(np.asarray(cat["source_id"]), np.asarray(tiled["source_id"]))
    assert np.array_equal(decision, np.asarray(tiled["decision"]).astype(str))


def test_without_the_gate_microscopy_decisions_stay_empty(crowded_tiff) -> None:
    cat = detect_image(crowded_tiff, tile_size=None, checksum=False).catalog
    assert set(np.asarray(cat["decision"]).astype(str)) == {""}
    assert np.all(np.isnan(np.asarray(cat["p_nucleus"], dtype=float)))


def test_cli_prints_the_decision_counts(crowded_tiff, tmp_path, capsys) -> None:
    conf = tmp_path / "gate.toml"
    conf.write_text("[gate]\nenabled = true\n")
    out = tmp_path / "nuclei.fits"  # FITS export: every text column must be ASCII
    assert main(["detect", str(crowded_tiff), "--out", str(out), "--config", str(conf)]) == 0
    text = capsys.readouterr().out
    cat = read_catalog(out)
    counts = {k: int(np.sum(np.asarray(cat["decision"]).astype(str) == k)) for k in ("accepted", "rejected", "review")}
    assert sum(counts.values()) == len(cat) > 0
    assert f"gate (risk 1.0%): {counts['accepted']} accepted, {counts['rejected']} rejected, " \
           f"{counts['review']} review" in text


def test_pipeline_fragments_are_never_accepted_as_nuclei(tmp_path) -> None:
    """A small crowded field on which the pipeline's background leaves dozens of faint fragments.

    The triage is trained and calibrated on the pipeline's own background
    estimate, so it knows such fragments: each is rejected or sent to review,
    never accepted as a nucleus (a model trained on the simulator's true
    background accepted 11 of them before the per-detection range check).
    """
    from moe_imaging.simulate_microscopy import MicroscopySimConfig, simulate_microscopy
    from moe_imaging.triage.microscopy import label_detections

    cfg = MicroscopySimConfig(shape=(512, 512), seed=23, clump_fraction=0.5)
    sim = simulate_microscopy(cfg)
    path = write_ome_tiff(tmp_path / "small.ome.tif", sim.image, pixel_size_um=cfg.pixel_size_um,
                          numerical_aperture=cfg.numerical_aperture, wavelength_nm=cfg.emission_wavelength_nm)
    config = DetectionConfig.from_mapping({"gate": {"enabled": True}})
    cat = detect_image(path, config=config, tile_size=256, checksum=False).catalog
    outcome = label_detections(cat, sim.labels, sim.truth)
    decision = np.asarray(cat["decision"]).astype(str)
    spurious = outcome == "spurious"
    assert spurious.sum() >= 20  # the fragments this check is about
    assert not np.any(decision[spurious] == "accepted")
    auto = decision != "review"
    truth_kind = np.where(outcome == "nucleus", "nucleus", "artifact")
    wrong = np.asarray(cat["kind"]).astype(str) != truth_kind
    assert auto.sum() >= 30 and wrong[auto].sum() <= 1


def test_nucleus_weights_refitted_with_labels_are_what_the_pipeline_uses(crowded_tiff, tmp_path) -> None:
    """Reviewers who find the confident calls wrong: with the refitted weights nothing is decided alone."""
    import pandas as pd

    from training.recalibrate import recalibrate_weights

    # as many wrong labels as calibration rows, at the same confidences: above any threshold, half are wrong
    n = 40_000
    conf = np.random.default_rng(2).choice(np.asarray(load_nucleus_triage().calibration["scores"]), 2 * n)
    labels = pd.DataFrame({"kind": "nucleus", "label": "artifact", "confidence": conf,
                           "triage_stratum": ["microscopy:crowded"] * n + ["microscopy:isolated"] * n})
    weights = tmp_path / "nuclei_reviewed.pt"
    recalibrate_weights(labels, out=weights, model="nucleus-triage")
    shipped = detect_image(crowded_tiff, config=DetectionConfig.from_mapping({"gate": {"enabled": True}}),
                           tile_size=None, checksum=False).catalog
    config = DetectionConfig.from_mapping({"gate": {"enabled": True, "nucleus_weights": str(weights)}})
    cat = detect_image(crowded_tiff, config=config, tile_size=None, checksum=False).catalog
    assert "accepted" in set(np.asarray(shipped["decision"]).astype(str))
    assert set(np.asarray(cat["decision"]).astype(str)) == {"review"}
    # the network is the same: only who decides changes
    assert np.allclose(np.asarray(cat["p_nucleus"]), np.asarray(shipped["p_nucleus"]))
    missing = DetectionConfig.from_mapping({"gate": {"enabled": True, "nucleus_weights": str(tmp_path / "no.pt")}})
    from contracts.errors import InputError

    with pytest.raises(InputError, match="no.pt: no such nucleus triage weights file"):
        detect_image(crowded_tiff, config=missing, tile_size=None, checksum=False)

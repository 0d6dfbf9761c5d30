"""The microscopy batch flow: plates of OME-TIFF images, nuclei catalogs and per-image counts."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from catalogs import read_catalog
from flows.config import RunConfig

pytestmark = pytest.mark.usefixtures("harness")


@pytest.fixture(scope="module")
def plates(tmp_path_factory):
    from moe_imaging.simulate_microscopy import MicroscopySimConfig, simulate_microscopy
    from pipelines.io import write_ome_tiff

    root = tmp_path_factory.mktemp("plates")
    truth = {}
    for plate, seed in (("P1", 1), ("P1", 2), ("P2", 3)):
        cfg = MicroscopySimConfig(shape=(384, 384), seed=seed)
        sim = simulate_microscopy(cfg)
        (root / plate).mkdir(exist_ok=True)
        write_ome_tiff(root / plate / f"well_{seed}.ome.tif", sim.image, pixel_size_um=cfg.pixel_size_um,
                       numerical_aperture=cfg.numerical_aperture, wavelength_nm=cfg.emission_wavelength_nm)
        truth[f"well_{seed}"] = len(sim.truth)
    (root / "P2" / "broken.ome.tif").write_bytes(b"II*\x00 not really a tiff")
    return root, truth


def test_plates_give_catalogs_and_counts(plates, tmp_path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    from flows.cli import _choose_flow
    from flows.microscopy import run_microscopy

    root, truth = plates
    config = RunConfig.from_file_mapping({
        "inputs": {"glob": str(root / "*" / "*.ome.tif")},
        "outputs": {"folder": str(tmp_path / "out"), "run": "plates"},
        "detection": {"tiling": {"tile_size": 192}},
        "dask": {"n_workers": 1, "threads_per_worker": 2, "processes": False},
        "flow": {"retries": 0},
    })
    assert _choose_flow(config) == "microscopy"  # `moe-imaging run` picks this flow for TIFF inputs
    summary = run_microscopy(config)
    assert summary.flow == "microscopy-batch"
    statuses = {o.exposure: o.status for o in summary.outcomes}
    assert statuses == {"broken": "failed", "well_1": "done", "well_2": "done", "well_3": "done"}
    assert "TIFF" in summary.failed[0].reason
    for o in summary.done:
        cat = read_catalog(o.catalog)
        # the flow runs the gate: the nucleus triage calls each detection a nucleus or an artifact
        assert set(np.asarray(cat["kind"]).astype(str)) <= {"nucleus", "artifact"}
        assert sum(o.kinds.values()) == len(cat) and set(o.kinds) <= {"nucleus", "artifact"}
        assert o.mode == "microscopy"
        assert 0.5 * truth[o.exposure] <= len(cat) <= 3 * truth[o.exposure]
        assert o.plate == ("P2" if o.exposure == "well_3" else "P1")
    # the rows the triage routes to review are enqueued
    assert summary.enqueued == sum(o.n_review for o in summary.done) == summary.pending_review
    (counts,) = (tmp_path / "out" / "_runs").glob("*_counts.csv")
    rows = {r["image"]: r for r in csv.DictReader(counts.open())}
    assert rows["broken"]["status"] == "failed" and rows["broken"]["nuclei"] == ""
    for o in summary.done:
        assert int(rows[o.exposure]["nuclei"]) == o.kinds.get("nucleus", 0) and rows[o.exposure]["plate"] == o.plate
    (md,) = (tmp_path / "out" / "_runs").glob("*.md")
    text = md.read_text()
    assert "## Nuclei per plate" in text and "| P1 | 2 |" in text
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[summary.flow_run])))
    assert {a.type for a in artifacts} == {"markdown", "table"}


@pytest.mark.skipif(not __import__("pipelines.models", fromlist=["x"]).DEFAULT_NUCLEUS_TRIAGE_WEIGHTS.exists(),
                    reason="shipped nucleus triage missing")
def test_with_the_gate_review_rows_are_enqueued(tmp_path) -> None:
    """Gate enabled: the nucleus triage decides, and its review rows reach the queue (with cutouts)."""
    from flows.microscopy import run_microscopy
    from moe_imaging.simulate_microscopy import MicroscopySimConfig, simulate_microscopy
    from pipelines.io import write_ome_tiff
    from review.store import ReviewStore

    inputs = tmp_path / "in"
    inputs.mkdir()
    for seed in (21, 22):
        cfg = MicroscopySimConfig(shape=(512, 512), seed=seed, clump_fraction=0.5)
        sim = simulate_microscopy(cfg)
        write_ome_tiff(inputs / f"well_{seed}.ome.tif", sim.image, pixel_size_um=cfg.pixel_size_um,
                       numerical_aperture=cfg.numerical_aperture, wavelength_nm=cfg.emission_wavelength_nm)
    config = RunConfig.from_file_mapping({
        "inputs": {"glob": str(inputs / "*.ome.tif")},
        "outputs": {"folder": str(tmp_path / "out"), "run": "gated"},
        "detection": {"tiling": {"tile_size": 256}, "gate": {"enabled": True}},
        "dask": {"n_workers": 1, "threads_per_worker": 2, "processes": False},
        "flow": {"retries": 0},
    })
    summary = run_microscopy(config)
    assert [o.status for o in summary.outcomes] == ["done", "done"]
    n_review = 0
    for o in summary.done:
        cat = read_catalog(o.catalog)
        decision = np.asarray(cat["decision"]).astype(str)
        assert set(decision) <= {"accepted", "rejected", "review"} and "accepted" in decision
        assert o.n_review == int(np.sum(decision == "review"))
        n_review += o.n_review
    assert n_review > 0 and summary.enqueued == n_review == summary.pending_review
    with ReviewStore(config.review_url) as store:
        assert store.pending_count() == n_review
        items = store.list_items(limit=5)
        assert items
        for item in items:
            assert item.mode == "microscopy" and set(item.probs) == {"nucleus", "artifact"} and item.cutouts
            assert item.triage_stratum.startswith("microscopy:") and item.reason

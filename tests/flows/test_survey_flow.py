"""The survey batch flow under ``prefect_test_harness``.

* 3 simulated exposures and 1 corrupt file: 3 catalogs in the dataset, 1
  failure recorded with its reason, the review rows enqueued (a real SQLite
  review store), a Markdown artifact on the flow run; a second run adds no
  catalog rows and no review items;
* a transient fault (the first attempt of one exposure loses its connection)
  is retried and the run completes;
* ``moe-imaging run`` in-process ends with the catalogs' path, the number of
  items waiting for review and the command that opens the review app.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from catalogs import read_catalog
from catalogs.dataset import catalog_path
from flows.config import RunConfig
from flows.state import Ledger
from tests.flows.helpers import SURVEY_SEEDS, small_detection

pytestmark = pytest.mark.usefixtures("harness")


def _config(inputs: Path, out: Path, **sections) -> RunConfig:
    mapping = {
        "inputs": {"glob": str(inputs / "*.fits")},
        "outputs": {"folder": str(out), "run": "night1"},
        "detection": small_detection(),
        # tiles on an in-process Dask cluster (threads): cheap to start in a test
        "dask": {"n_workers": 1, "threads_per_worker": 2, "processes": False},
        "flow": {"max_concurrent": 2, "retries": 2, "retry_delay": 0.2},
    }
    mapping.update(sections)
    return RunConfig.from_file_mapping(mapping)


def _dataset_rows(out: Path) -> int:
    return sum(len(read_catalog(p)) for p in sorted(out.glob("run=*/exposure=*/catalog.parquet")))


@pytest.fixture(scope="module")
def first_run(survey_inputs, tmp_path_factory):
    from flows.survey import run_survey

    out = tmp_path_factory.mktemp("survey_out")
    config = _config(survey_inputs, out)
    return config, run_survey(config)


def test_batch_gives_catalogs_failures_and_review_items(first_run, survey_inputs) -> None:
    from review.store import ReviewStore

    config, summary = first_run
    out = config.output_folder
    assert [o.exposure for o in summary.outcomes] == ["corrupt", *(f"field_{s}" for s in SURVEY_SEEDS)]
    assert len(summary.done) == 3 and len(summary.failed) == 1 and not summary.skipped
    # the failure is recorded with its reason, in the summary and in the ledger
    (bad,) = summary.failed
    assert bad.input_path == str(survey_inputs / "corrupt.fits")
    assert "not a valid FITS file" in bad.reason and bad.attempts == 1  # a bad file is not retried
    assert [f["reason"] for f in Ledger(out).failures("night1")] == [bad.reason]
    # three catalogs in the dataset layout, each complete and with its provenance
    files = sorted(out.glob("run=night1/exposure=*/catalog.parquet"))
    assert [p.parent.name for p in files] == [f"exposure=field_{s}" for s in SURVEY_SEEDS]
    for outcome in summary.done:
        path = catalog_path(out, "night1", outcome.exposure)
        assert outcome.catalog == str(path)
        cat = read_catalog(path)
        assert len(cat) == outcome.n_rows > 20
        prov = cat.meta["provenance"]
        assert prov["input_checksum"] and len(prov["input_checksum"]) == 64
        assert prov["run"] == "night1" and prov["flow_run"] == summary.flow_run
        assert set(np.asarray(cat["decision"]).astype(str)) <= {"accepted", "rejected", "review"}
        assert outcome.n_review == int(np.sum(np.asarray(cat["decision"]).astype(str) == "review"))
        assert outcome.timings["detect"] > 0 and outcome.n_tiles == 4
    assert not list(out.glob("run=night1/exposure=*/.*tmp*"))  # no temporary files left behind
    # the review queue holds exactly the rows the gate routed to review
    n_review = sum(o.n_review for o in summary.done)
    assert n_review > 0 and summary.enqueued == n_review
    with ReviewStore(config.review_url) as store:
        assert store.pending_count() == n_review == summary.pending_review
        for outcome in summary.done:
            assert store.pending_count(exposure=outcome.exposure) == outcome.n_review
        item = store.list_items(limit=1)[0]
        assert item.cutouts  # rendered at enqueue from the exposure's pixels
    # the run summary: a file, a ledger row and a Prefect artifact
    (md,) = sorted((out / "_runs").glob("*.md"))
    text = md.read_text()
    assert "**3 processed**" in text and "**1 failed**" in text and "not a valid FITS file" in text
    assert re.search(r"\| review \| %d \|" % n_review, text)
    assert [r["flow_run"] for r in Ledger(out).runs()] == [summary.flow_run]


def test_the_summary_is_a_prefect_artifact(first_run) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    from flows.report import artifact_key

    _, summary = first_run
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[summary.flow_run])))
        run = client.read_flow_run(summary.flow_run)
    (artifact,) = [a for a in artifacts if a.type == "markdown"]
    assert artifact.key == artifact_key("night1", "survey-batch")
    assert "## Failures" in artifact.data and "corrupt.fits" in artifact.data
    assert run.state.is_completed() and run.parameters["config"]["outputs"]["run"] == "night1"


def test_second_run_adds_no_rows_and_no_items(first_run) -> None:
    from flows.survey import run_survey
    from review.store import ReviewStore

    config, first = first_run
    out = config.output_folder
    rows, stamps = _dataset_rows(out), {p: p.stat().st_mtime_ns for p in out.glob("run=*/exposure=*/catalog.parquet")}
    second = run_survey(config)
    assert [o.status for o in second.outcomes] == ["failed", "skipped", "skipped", "skipped"]
    assert second.rows_written == 0 and second.enqueued == 0
    assert _dataset_rows(out) == rows
    assert {p: p.stat().st_mtime_ns for p in out.glob("run=*/exposure=*/catalog.parquet")} == stamps
    with ReviewStore(config.review_url) as store:
        assert store.pending_count() == first.pending_review == second.pending_review
    assert len(Ledger(out).runs()) == 2


def test_a_transient_fault_is_retried(survey_inputs, tmp_path, monkeypatch) -> None:
    """The first attempt on one exposure loses its connection; the retry (with backoff) succeeds."""
    import pipelines.detect
    from flows.survey import run_survey

    real = pipelines.detect.detect_image
    calls: list[str] = []

    def flaky(path, **kwargs):
        calls.append(Path(path).name)
        if Path(path).name == "field_3.fits" and calls.count("field_3.fits") == 1:
            raise ConnectionResetError("connection to the file server reset")
        return real(path, **kwargs)

    monkeypatch.setattr(pipelines.detect, "detect_image", flaky)
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "field_3.fits").write_bytes((survey_inputs / "field_3.fits").read_bytes())
    summary = run_survey(_config(inputs, tmp_path / "out", review={"enqueue": False}))
    (outcome,) = summary.outcomes
    assert outcome.status == "done" and outcome.attempts == 2 and calls == ["field_3.fits"] * 2
    assert summary.pending_review is None


def test_run_command_prints_where_things_are(survey_inputs, tmp_path, monkeypatch, capsys) -> None:
    from moe_cli import main

    monkeypatch.chdir(tmp_path)
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "field_1.fits").write_bytes((survey_inputs / "field_1.fits").read_bytes())
    code = main(["run", "--input", "in/*.fits", "--output", "out", "--tile", "256", "--workers", "1", "--quiet"])
    out = capsys.readouterr().out.strip().splitlines()
    assert code == 0
    db = tmp_path / "out" / "_review.sqlite"
    assert out[-3] == f"catalogs: {tmp_path / 'out' / 'run=default'}"
    pending = int(out[-2].removeprefix("waiting for review: "))
    assert pending > 0
    assert out[-1] == f"open the review app: moe-imaging review serve --db sqlite:///{db}"
    from review.store import ReviewStore

    with ReviewStore(out[-1].rsplit("--db ", 1)[1]) as store:  # the printed URL opens the run's queue
        assert store.pending_count() == pending
    assert (tmp_path / "out" / "run=default" / "exposure=field_1" / "catalog.parquet").is_file()


def test_a_run_that_cannot_start_says_why(survey_inputs, tmp_path, capsys) -> None:
    """An unreachable scheduler or review database: one line naming it, from the flow and from the command."""
    from flows.errors import FlowError
    from flows.survey import run_survey
    from moe_cli import main
    from review.errors import StoreConnectionError
    from tests.flows.helpers import free_port

    port = free_port()
    with pytest.raises(FlowError, match=rf"^dask scheduler tcp://127.0.0.1:{port}: cannot connect"):
        run_survey(_config(survey_inputs, tmp_path / "a", dask={"address": f"tcp://127.0.0.1:{port}", "timeout": 1}))
    url = f"postgresql+psycopg://moe:hunter2@127.0.0.1:{free_port()}/review"
    with pytest.raises(StoreConnectionError, match=r"cannot connect") as info:
        run_survey(_config(survey_inputs, tmp_path / "b", review={"url": url}))
    assert "hunter2" not in str(info.value)
    # the command checks both before Prefect starts
    assert main(["run", "--input", str(survey_inputs / "*.fits"), "--output", str(tmp_path / "c"),
                 "--review-url", url, "--quiet"]) == 2
    # (under capsys, Prefect's console handler still holds an earlier, closed stderr: its "Logging error"
    # noise lands here too; the command itself writes one line)
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("moe-imaging")]
    assert len(err) == 1 and err[0].startswith("moe-imaging: error: postgresql+psycopg://moe:***@127.0.0.1:")
    assert not (tmp_path / "c").exists()


def test_repeated_source_ids_do_not_block_the_queue(survey_inputs, tmp_path, monkeypatch) -> None:
    """Two rows with one source_id (the queue's key): the first goes to review, the run notes it."""
    from astropy.table import vstack

    import pipelines.detect
    from flows.survey import run_survey
    from review.store import ReviewStore

    real = pipelines.detect.detect_image

    def with_a_twin(path, **kwargs):
        result = real(path, **kwargs)
        cat = result.catalog
        review = np.nonzero(np.asarray(cat["decision"]).astype(str) == "review")[0]
        twin = cat[review[:1]]
        twin["x"] += 2.5  # another detection at the same peak pixel
        cat = vstack([cat, twin], metadata_conflicts="silent")
        cat.meta = result.catalog.meta
        return type(result)(catalog=cat, provenance=result.provenance, psf=result.psf,
                            background=result.background, exposure=result.exposure)

    monkeypatch.setattr(pipelines.detect, "detect_image", with_a_twin)
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "field_1.fits").write_bytes((survey_inputs / "field_1.fits").read_bytes())
    config = _config(inputs, tmp_path / "out")
    (outcome,) = run_survey(config).outcomes
    assert outcome.status == "done" and outcome.n_review >= 2
    assert outcome.enqueued == outcome.n_review - 1
    assert outcome.notes and "repeat another row's source_id" in outcome.notes[0]
    with ReviewStore(config.review_url) as store:
        assert store.pending_count() == outcome.n_review - 1

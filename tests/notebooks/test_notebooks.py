"""The analysis notebooks run top to bottom (nbclient) on the outputs of the demo flow.

The inputs are what ``make demo`` produces, at a smaller size: three simulated
512 x 512 survey exposures (seeds 1 and 2 and a dithered revisit of seed 1) run
through the real batch flow, ``moe-imaging run --input 'DIR/*.fits' --output
OUT`` in a subprocess (Prefect's temporary local API, a local Dask cluster);
the catalogs are the flow's Parquet dataset ``OUT/run=demo/...`` and the labels
are the export of the flow's own review queue (``OUT/_review.sqlite``) after
scripted reviewers decided every item from the truth
(``tests/catalogs/demo_data.build_flow_demo``).  The notebooks take their
inputs from ``MOE_CATALOG_DIR`` (``OUT``), ``MOE_IMAGE_DIR``, ``MOE_LABELS``
and ``MOE_OUT_DIR``.

The kernel is this interpreter (``sys.executable``, i.e. ``.venv/bin/python``
under ``make test``): a kernel spec written to a temporary folder, so an
unrelated ``python3`` kernel installed elsewhere is never used.  Any error in
any cell fails the test (``CellExecutionError``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

from tests.catalogs.demo_data import build_flow_demo

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
KERNEL = "moe-imaging-test"


@pytest.fixture(scope="session")
def demo(tmp_path_factory):
    return build_flow_demo(tmp_path_factory.getbasetemp() / "moe_flow_demo")


@pytest.fixture(scope="session")
def demo_counts(demo) -> dict[str, int]:
    """What the flow wrote and the review produced, read back with the library."""
    from catalogs import open_catalog
    from catalogs.labels import read_labels

    cat = open_catalog(demo.catalogs, columns=["exposure", "source_id", "decision"])
    labels = read_labels(demo.labels)
    # the queue holds one item per (exposure, source_id): a repeated id is queued once
    review = cat.loc[cat["decision"] == "review", ["exposure", "source_id"]].drop_duplicates()
    return {"detections": len(cat), "review": len(review), "labels": len(labels),
            "usable": int((labels["label"] != "uncertain").sum()), "exposures": cat["exposure"].nunique()}


@pytest.fixture(scope="session")
def kernel_specs(tmp_path_factory) -> KernelSpecManager:
    folder = tmp_path_factory.mktemp("kernels")
    spec = folder / KERNEL
    spec.mkdir()
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "moe-imaging tests",
        "language": "python",
    }))
    return KernelSpecManager(kernel_dirs=[str(folder)], ensure_native_kernel=False)


def _run(path: Path, workdir: Path, kernel_specs: KernelSpecManager) -> nbformat.NotebookNode:
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("import sys; print(sys.executable)"))
    km = KernelManager(kernel_name=KERNEL, kernel_spec_manager=kernel_specs)
    client = NotebookClient(nb, km=km, timeout=300, resources={"metadata": {"path": str(workdir)}})
    client.execute()
    return nb


def _outputs(nb: nbformat.NotebookNode) -> tuple[int, str]:
    """Number of PNG images shown, and all text output."""
    images, text = 0, []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            images += "image/png" in data
            text.append(out.get("text", "") + data.get("text/plain", ""))
    return images, "\n".join(text)


def test_flow_demo_outputs(demo, demo_counts):
    """The notebooks' inputs are the flow's: its Hive layout, its review queue, its label export."""
    for stem in demo.exposures:
        assert (demo.catalogs / "run=demo" / f"exposure={stem}" / "catalog.parquet").is_file(), stem
    assert demo.queue == demo.catalogs / "_review.sqlite" and demo.queue.is_file()
    assert demo_counts["exposures"] == 3 and demo_counts["detections"] > 0
    # every item the gate sent to review was decided by the scripted reviewers and exported
    assert demo_counts["labels"] == demo_counts["review"]


@pytest.fixture
def env(demo, tmp_path, monkeypatch):
    out = tmp_path / "out"
    monkeypatch.setenv("MOE_CATALOG_DIR", str(demo.catalogs))
    monkeypatch.setenv("MOE_IMAGE_DIR", str(demo.root / "images"))
    monkeypatch.setenv("MOE_LABELS", str(demo.labels))
    monkeypatch.setenv("MOE_OUT_DIR", str(out))
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    return out


@pytest.mark.parametrize("name", ["survey_run.ipynb", "triage.ipynb"])
def test_notebooks_only_call_the_library(name):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert "parameters" in code[0].metadata.get("tags", [])
    for cell in code:
        assert not cell.get("outputs"), "notebooks are stored without outputs"
        for line in cell.source.splitlines():
            assert not line.lstrip().startswith(("def ", "class ", "for ", "while ")), line


def test_survey_notebook_runs(env, tmp_path, kernel_specs):
    nb = _run(NOTEBOOKS / "survey_run.ipynb", tmp_path, kernel_specs)
    images, text = _outputs(nb)
    assert images >= 8  # sky map, 2 histograms, gallery, completeness, reliability, risk, usage
    assert text.strip().splitlines()[-1].strip() == sys.executable
    assert "galaxies with S/N > 20" in text
    for name in ("bright_galaxies.vot", "catalog.fits", "survey_512_seed1.reg", "catalog_hats"):
        assert (env / name).exists(), name


def test_triage_notebook_runs(env, tmp_path, kernel_specs, demo_counts):
    nb = _run(NOTEBOOKS / "triage.ipynb", tmp_path, kernel_specs)
    images, text = _outputs(nb)
    assert f"{demo_counts['detections']} detections, {demo_counts['labels']} labelled items" in text
    assert f"{demo_counts['usable']} labelled items usable as truth" in text
    if demo_counts["usable"] >= 4:  # the real review gives enough labels for the recalibration
        assert images >= 5  # load, reliability before/after, risk-coverage, usage, gallery
        assert "held-out labelled items" in text
    else:  # a gate that decides (nearly) everything leaves too few labels: the notebook says so
        assert images >= 3  # load, usage, gallery
        assert "too few to fit and test a recalibration" in text
    assert text.strip().splitlines()[-1].strip() == sys.executable

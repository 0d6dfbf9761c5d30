"""The analysis notebooks run top to bottom (nbclient) on a real catalog dataset.

The dataset is the catalogs tests' demo: three simulated 512 x 512 survey
exposures run through ``detect_image`` with the gate and written with
``write_exposure_catalog``, plus a synthetic review label export (see
``tests/catalogs/demo_data.py``).  The notebooks take their inputs from
``MOE_CATALOG_DIR``, ``MOE_IMAGE_DIR``, ``MOE_LABELS`` and ``MOE_OUT_DIR``.

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

from tests.catalogs.demo_data import build_demo

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
KERNEL = "moe-imaging-test"


@pytest.fixture(scope="session")
def demo(tmp_path_factory):
    return build_demo(tmp_path_factory.getbasetemp() / "moe_demo_survey")


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


def test_triage_notebook_runs(env, tmp_path, kernel_specs):
    nb = _run(NOTEBOOKS / "triage.ipynb", tmp_path, kernel_specs)
    images, text = _outputs(nb)
    assert images >= 5  # load, reliability before/after, risk-coverage, usage, gallery
    assert "held-out labelled items" in text and "labelled items" in text
    assert text.strip().splitlines()[-1].strip() == sys.executable

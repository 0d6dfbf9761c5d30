"""The arrows of the layout hold: import-linter's contracts (``[tool.importlinter]`` in pyproject.toml).

The science core imports no ``pipelines``, ``review``, ``flows``, ``catalogs``,
Dask, Prefect or SQLAlchemy; ``catalogs`` and ``review`` import nothing of the
core beyond ``contracts``; only ``flows`` imports Prefect; the packages form
layers from ``moe_cli`` down to ``contracts``.  The second test shows the check
can fail: a copy of the tree with one forbidden import breaks it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("contracts", "moe_imaging", "training", "pipelines", "catalogs", "review", "flows", "moe_cli")
LINT = Path(sys.executable).with_name("lint-imports")


def _lint(tree: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run([str(LINT), "--config", str(tree / "pyproject.toml"), "--no-cache"], cwd=tree, env=env,
                          capture_output=True, text=True, timeout=600)


pytestmark = pytest.mark.skipif(not LINT.exists(), reason="import-linter is a test dependency (pip install -e .[test])")


def test_the_layout_import_rules_hold() -> None:
    done = _lint(ROOT)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


def test_a_forbidden_import_breaks_the_rules(tmp_path) -> None:
    for name in PACKAGES:
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("*.pt", "__pycache__", "*.md"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    psf = tmp_path / "moe_imaging" / "psf.py"
    psf.write_text(psf.read_text() + "\nimport prefect  # deliberately forbidden in the science core\n")
    catalog = tmp_path / "catalogs" / "crossmatch.py"
    catalog.write_text(catalog.read_text() + "\nimport moe_imaging.background  # catalogs must not import the core\n")
    done = _lint(tmp_path)
    assert done.returncode != 0
    assert "moe_imaging.psf -> prefect" in done.stdout
    assert "catalogs.crossmatch -> moe_imaging.background" in done.stdout


def test_the_command_line_starts_without_torch() -> None:
    """``moe-imaging`` imports torch only where a model runs (a served flow or a review app never needs it)."""
    code = "import sys, moe_cli; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.stdout.strip() == "False", done.stderr[-2000:]

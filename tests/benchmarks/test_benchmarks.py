"""The benchmarks as (slow) tests: ``pytest -m slow`` fails when a target is missed.

Excluded from the default run (``make test``); ``make bench`` runs the same
scripts and prints their tables.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.mark.slow
def test_point_source_benchmark_meets_its_targets(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(BENCH / "bench_point.py"), "--size", "4096", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=900,
    )
    print(proc.stdout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


@pytest.mark.slow
def test_memory_benchmark_meets_its_target(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(BENCH / "bench_memory.py"), "--size", "16384", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=1800,
    )
    print(proc.stdout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


@pytest.mark.slow
def test_microscopy_benchmark_meets_its_target(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(BENCH / "bench_microscopy.py"), "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=900,
    )
    print(proc.stdout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

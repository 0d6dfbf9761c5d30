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
@pytest.mark.parametrize(
    "script,args,timeout",
    [
        ("bench_point.py", ["--size", "4096"], 900),
        ("bench_memory.py", ["--size", "16384"], 1800),
        ("bench_microscopy.py", [], 900),
    ],
)
def test_benchmark_meets_its_targets(tmp_path: Path, script: str, args: list[str], timeout: int) -> None:
    proc = subprocess.run(
        [sys.executable, str(BENCH / script), *args, "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=timeout,
    )
    print(proc.stdout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

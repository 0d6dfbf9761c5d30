"""The review benchmark runs end to end at a small size (the full run: benchmarks/bench_review.py)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_review.py"


def test_bench_review_smoke(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("bench_review", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "bench.json"
    assert bench.main(["--items", "3000", "--per-catalog", "1000", "--samples", "20", "--cutouts", "5",
                       "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "enqueue (no cutouts)" in text and "next item: claim(n=1) p95" in text
    res = json.loads(out.read_text())
    assert res["enqueue"]["items"] == 3000 and res["enqueue"]["re_enqueue_added"] == 0
    assert res["next_item"]["claim"]["n"] == 20 and res["next_item"]["pending"] == 3000 - 20
    assert res["cutouts"]["items"] == 5 and res["cutouts"]["render_per_s"] > 0

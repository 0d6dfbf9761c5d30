"""``moe-imaging review ...``: list, stats, export, add-reviewer, enqueue, serve, and one-line errors."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table

from catalogs import COLUMNS, write_catalog
from moe_cli import main
from review import ReviewStore, read_labels
from tests.review._helpers import review_catalog

REPO = Path(__file__).resolve().parents[2]


def _schema_catalog(n: int = 6, n_accepted: int = 2) -> Table:
    """A catalog with every schema column plus the gate's extra columns."""
    t = review_catalog(n, n_accepted=n_accepted)
    for col in COLUMNS:
        if col.name not in t.colnames:
            t[col.name] = np.full(len(t), col.fill, dtype=col.numpy_dtype if col.dtype != "str" else "U16")
    t["x_peak"] = np.round(t["x"]).astype(np.int64)
    t["y_peak"] = np.round(t["y"]).astype(np.int64)
    return t


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _one_line_error(code: int, err: str) -> str:
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("moe-imaging: error: "), err
    assert "Traceback" not in err
    return lines[0]


def test_enqueue_list_stats_export(store_url, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("MOE_REVIEW_DB", raising=False)
    cat = tmp_path / "exp7.parquet"
    write_catalog(_schema_catalog(), cat)
    img = tmp_path / "exp7.fits"
    fits.PrimaryHDU(np.random.default_rng(0).normal(100, 5, (200, 200)).astype(np.float32)).writeto(img)

    code, out, err = _run(capsys, "review", "enqueue", str(cat), "--db", store_url, "--exposure", "exp7.fits",
                          "--image", str(img))
    assert code == 0, err
    assert "6 item(s) added, 0 already queued, 2 not for review" in out
    code, out, _ = _run(capsys, "review", "enqueue", str(cat), "--db", store_url, "--exposure", "exp7.fits")
    assert "0 item(s) added, 6 already queued" in out

    code, out, _ = _run(capsys, "review", "list", "--db", store_url)
    assert code == 0
    lines = out.strip().splitlines()
    assert lines[0].split()[:4] == ["id", "status", "kind", "prio"] and len(lines) == 1 + 6 + 1
    assert "6 item(s) match" in lines[-1] and "exp7.fits" in out
    code, out, _ = _run(capsys, "review", "list", "--db", store_url, "--json", "--kind", "star")
    rows = [json.loads(line) for line in out.strip().splitlines()]
    assert rows and all(r["kind"] == "star" and set(r["cutouts"]) == {"fits", "png_zoom1", "png_zoom4"}
                        for r in rows)

    with ReviewStore(store_url) as store:
        for item in store.claim("alice", n=4):
            store.decide(item.id, "alice", "accept")
    code, out, _ = _run(capsys, "review", "stats", "--db", store_url)
    assert code == 0 and "items: 6  pending 2  decided 4  disputed 0" in out and "by reviewer: alice 4" in out
    code, out, _ = _run(capsys, "review", "stats", "--db", store_url, "--json")
    stats = json.loads(out)
    assert stats["backlog"] == 2 and stats["decisions"] == 4

    labels = tmp_path / "labels.parquet"
    code, out, _ = _run(capsys, "review", "export", str(labels), "--db", store_url)
    assert code == 0 and out.strip() == f"wrote 4 label(s) to {labels}"
    df = read_labels(labels)
    assert len(df) == 4 and set(df.exposure) == {"exp7.fits"} and set(df.catalog_id) == {"exp7.parquet"}


def test_add_reviewer(store_url, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO("a long passphrase\n"))
    code, out, err = _run(capsys, "review", "add-reviewer", "alice", "--admin", "--password-stdin", "--db", store_url)
    assert code == 0, err
    first, token = out.strip().splitlines()
    assert "reviewer 'alice' created (admin, password and token)" in first
    with ReviewStore(store_url) as store:
        assert store.reviewer_by_token(token).name == "alice"
        assert store.authenticate("alice", "a long passphrase").admin
    code, _, err = _run(capsys, "review", "add-reviewer", "alice", "--db", store_url)
    assert "reviewer 'alice' exists" in _one_line_error(code, err)
    monkeypatch.setattr(sys, "stdin", io.StringIO("short\n"))
    code, _, err = _run(capsys, "review", "add-reviewer", "bob", "--password-stdin", "--db", store_url)
    assert "at least 8 characters" in _one_line_error(code, err)
    code, out, _ = _run(capsys, "review", "add-reviewer", "bob", "--db", store_url)
    assert code == 0 and "token only" in out


def test_db_from_environment_and_config(tmp_path, capsys, monkeypatch):
    db = tmp_path / "env.sqlite"
    monkeypatch.setenv("MOE_REVIEW_DB", f"sqlite:///{db}")
    code, out, _ = _run(capsys, "review", "stats")
    assert code == 0 and str(db) in out and db.exists()
    monkeypatch.delenv("MOE_REVIEW_DB")
    cfg = tmp_path / "review.toml"
    cfg.write_text(f'[review]\npath = "{tmp_path / "cfg.sqlite"}"\nrequired_reviews = 3\n')
    code, out, _ = _run(capsys, "review", "stats", "--config", str(cfg))
    assert code == 0 and "new items k = 3" in out and (tmp_path / "cfg.sqlite").exists()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_bad_input_is_one_clear_line(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("MOE_REVIEW_DB", raising=False)
    port = _closed_port()
    url = f"postgresql+psycopg://reviewer:hunter22@127.0.0.1:{port}/review"
    for command in (["list"], ["stats"], ["export", str(tmp_path / "l.parquet")], ["add-reviewer", "x"]):
        code, _, err = _run(capsys, "review", *command, "--db", url)
        line = _one_line_error(code, err)
        assert f"reviewer:***@127.0.0.1:{port}/review: cannot connect:" in line and "hunter22" not in line
    db = f"sqlite:///{tmp_path / 'q.sqlite'}"
    code, _, err = _run(capsys, "review", "export", str(tmp_path / "labels.csv"), "--db", db)
    assert "labels.csv: the label file must end in .parquet" in _one_line_error(code, err)
    code, _, err = _run(capsys, "review", "enqueue", str(tmp_path / "missing.parquet"), "--db", db)
    assert "missing.parquet" in _one_line_error(code, err)
    cfg = tmp_path / "bad.toml"
    cfg.write_text("consensus = 'coin-flip'\n")
    code, _, err = _run(capsys, "review", "stats", "--config", str(cfg), "--db", db)
    assert "bad.toml: review.consensus" in _one_line_error(code, err)
    code, _, err = _run(capsys, "review", "list", "--db", "oracle://u@h/db")
    assert "unsupported database 'oracle'" in _one_line_error(code, err)
    with ReviewStore(db) as store:
        assert store.stats()["items"] == 0 and store.list_reviewers() == []


def test_serve_port_in_use_is_one_line(tmp_path, capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        code, _, err = _run(capsys, "review", "serve", "--db", f"sqlite:///{tmp_path / 'q.sqlite'}",
                            "--port", str(port))
    assert f"127.0.0.1:{port}: cannot listen" in _one_line_error(code, err)


def test_serve_runs_the_web_app(tmp_path):
    db = f"sqlite:///{tmp_path / 'q.sqlite'}"
    port = _closed_port()
    env = {**os.environ, "PYTHONPATH": str(REPO), "MOE_REVIEW_SECRET": "a-test-secret-of-32-characters!!"}
    proc = subprocess.Popen([sys.executable, "-m", "moe_cli", "review", "serve", "--db", db, "--port", str(port),
                             "--log-level", "warning"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        status = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=2) as resp:
                    status = resp.status
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.2)
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert status == 200
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

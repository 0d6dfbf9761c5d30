"""A small real catalog dataset for the catalogs and notebook tests.

Three 512 x 512 survey exposures made with ``moe-imaging simulate survey``:
seeds 1 and 2, and a *revisit* of seed 1 (the same sky, shifted by a dither
of (13, 7) pixels with its WCS, and with fresh noise added), so exposures can
be cross-matched.  Each is run through :func:`pipelines.detect.detect_image`
with the gate enabled and written with
:func:`catalogs.dataset.write_exposure_catalog` (run ``demo``).  A synthetic
review-queue label export (the columns of the review package's export) holds
the items the gate sent to review plus a random audit of automatic decisions,
labelled from the truth with some reviewer noise and disputes.

The result is built once per test session (``build_demo`` reuses a finished
folder) and takes about 10-15 s on two cores.

:func:`build_flow_demo` makes the same three exposures but runs them through
the real batch flow, as ``make demo`` does (``moe-imaging run --input
'DIR/*.fits' --output OUT``, in a subprocess, on Prefect's temporary local API
and a one-worker local Dask cluster), then labels the flow's own review queue
(``OUT/_review.sqlite``) with scripted reviewers who decide every item from the
truth (with a little seeded noise) and exports the labels with
:meth:`review.store.ReviewStore.export_labels`.  About 40 s on two cores (the flow
subprocess, with Prefect's temporary API starting, is most of it).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from astropy.io import fits
from astropy.table import Table

__all__ = ["DITHER", "REVIEWERS", "RUN", "DemoData", "build_demo", "build_flow_demo"]

RUN = "demo"
DITHER = (13, 7)  # (dx, dy) pixels of the revisit
SIZE = 512
REVIEWERS = ("alice", "bob")  # the scripted reviewers of build_flow_demo
REPO = Path(__file__).resolve().parents[2]


@dataclasses.dataclass(frozen=True)
class DemoData:
    root: Path
    catalogs: Path
    images: dict[str, Path]
    truths: dict[str, Path]
    labels: Path
    queue: Path | None = None  # the review queue's SQLite file (build_flow_demo only)

    @property
    def exposures(self) -> list[str]:
        return sorted(self.images)


def _make_revisit(src: Path, truth_src: Path, out: Path, truth_out: Path) -> None:
    dx, dy = DITHER
    with fits.open(src) as hdul:
        data = np.asarray(hdul[0].data, dtype=np.float32)
        header = hdul[0].header.copy()
    rng = np.random.default_rng(99)
    part = data[dy:, dx:]
    part = part + rng.normal(0.0, 6.0, part.shape).astype(np.float32)
    header["CRPIX1"] = header["CRPIX1"] - dx
    header["CRPIX2"] = header["CRPIX2"] - dy
    header["SIMSEED"] = (1, "revisit of seed 1, dithered, fresh noise")
    fits.PrimaryHDU(part.astype(np.float32), header=header).writeto(out, overwrite=True)
    truth = Table.read(truth_src, format="ascii.ecsv")
    for col in ("x", "x0", "x1"):
        if col in truth.colnames:
            truth[col] = truth[col] - dx
    for col in ("y", "y0", "y1"):
        if col in truth.colnames:
            truth[col] = truth[col] - dy
    for col in ("bleed_y0", "bleed_y1"):
        if col in truth.colnames:
            keep = np.asarray(truth[col]) >= 0
            truth[col] = np.where(keep, np.asarray(truth[col]) - dy, np.asarray(truth[col]))
    truth.write(truth_out, format="ascii.ecsv", overwrite=True)


def _labels(dataset: Path, truths: dict[str, Path]) -> pd.DataFrame:
    """A label export as the review queue writes it, from the truth plus reviewer noise."""
    from catalogs import open_catalog
    from catalogs.analysis import evaluate_truth
    from contracts.vocabulary import SURVEY_CLASSES

    cat = open_catalog(dataset)
    ev = evaluate_truth(cat, truths)
    rng = np.random.default_rng(7)
    decision = cat["decision"].astype(str).to_numpy()
    audit = (decision != "review") & (rng.random(len(cat)) < 0.35)
    sel = np.flatnonzero((decision == "review") | audit)
    rows = []
    t0 = pd.Timestamp("2026-11-02T09:00:00Z")
    for k, i in enumerate(sel):
        truth_kind = str(ev.detections["true_kind"].iloc[i])
        n_dec = int(rng.choice([1, 2, 3], p=[0.4, 0.4, 0.2]))
        votes = [truth_kind if rng.random() < 0.88 else str(rng.choice([c for c in SURVEY_CLASSES if c != truth_kind]))
                 for _ in range(n_dec)]
        values, counts = np.unique(votes, return_counts=True)
        top = counts.max()
        winners = values[counts == top]
        label = str(winners[0]) if len(winners) == 1 else "uncertain"
        r = cat.iloc[i]
        rows.append({
            "catalog_id": f"{RUN}/{r['exposure']}", "source_id": int(r["source_id"]), "exposure": str(r["exposure"]),
            "x": float(r["x"]), "y": float(r["y"]), "ra": float(r["ra"]), "dec": float(r["dec"]),
            "mode": "survey", "kind": str(r["kind"]), "label": label, "n_decisions": n_dec,
            "agreement": float(top / n_dec), "p_star": float(r["p_star"]), "p_galaxy": float(r["p_galaxy"]),
            "p_streak": float(r["p_streak"]), "p_artifact": float(r["p_artifact"]),
            "confidence": float(r["confidence"]), "psf_fwhm": float(r["psf_fwhm"]),
            "review_reason": str(r["review_reason"]) if decision[i] == "review" else "random audit of an automatic decision",
            "decided_at": t0 + pd.Timedelta(minutes=3 * k),
        })
    return pd.DataFrame(rows)


def _demo_files(images_dir: Path) -> tuple[dict[str, Path], dict[str, Path]]:
    images: dict[str, Path] = {}
    truths: dict[str, Path] = {}
    for stem in (f"survey_{SIZE}_seed1", f"survey_{SIZE}_seed2", f"survey_{SIZE}_seed1_revisit"):
        images[stem] = images_dir / f"{stem}.fits"
        truths[stem] = images_dir / f"{stem}_truth.ecsv"
    return images, truths


def _simulate(images_dir: Path, images: dict[str, Path], truths: dict[str, Path]) -> None:
    from moe_cli import main as cli_main

    images_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.redirect_stdout(io.StringIO()):
        for seed in (1, 2):
            rc = cli_main(["simulate", "survey", "--size", str(SIZE), "--seed", str(seed), "--out", str(images_dir)])
            assert rc == 0
    revisit = f"survey_{SIZE}_seed1_revisit"
    _make_revisit(images[f"survey_{SIZE}_seed1"], truths[f"survey_{SIZE}_seed1"], images[revisit], truths[revisit])


def _run_flow(root: Path, images_dir: Path, out: Path) -> subprocess.CompletedProcess:
    """``moe-imaging run`` as ``make demo`` runs it, in a subprocess with its own Prefect home."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}  # never a real server
    env.update({
        "PREFECT_HOME": str(root / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
        "PYTHONPATH": os.pathsep.join([str(REPO)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])),
    })
    env.pop("MOE_DASK_ADDRESS", None)  # a local cluster, as with no --dask
    cmd = [sys.executable, "-m", "moe_cli", "run", "--input", f"{images_dir}/*.fits", "--output", str(out),
           "--run", RUN, "--workers", "1", "--quiet"]
    proc = subprocess.run(cmd, check=False, cwd=root, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, (
        f"moe-imaging run exited {proc.returncode} (1: some inputs failed, 2: could not start)\n"
        f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-5000:]}")
    return proc


def _truth_decision(item, truth_kind: str, det_class: str) -> tuple[str, str | None]:
    """What a careful reviewer decides: reject a detection of nothing, accept the right kind, else relabel."""
    if det_class == "spurious":
        return "reject", None
    if item.kind == truth_kind:
        return "accept", None
    return "relabel", truth_kind


def _review_from_truth(queue: Path, dataset: Path, truths: dict[str, Path], labels: Path,
                       *, noise: float = 0.06, seed: int = 7) -> dict[str, Any]:
    """Scripted reviewers decide every pending item of the flow's queue from the truth; export the labels.

    Each item is matched to its catalog row (exposure, source_id, nearest x/y)
    and that row to the truth (:func:`catalogs.analysis.evaluate_truth`).  With
    probability ``noise`` a reviewer instead says ``uncertain`` or relabels to
    a wrong kind, so some items end ``disputed``.

    Returns
    -------
    dict
        ``items`` (in the queue), ``decisions`` made, ``required_per_item``, ``by_reviewer`` and the
        item count of each status after the review.
    """
    from catalogs import open_catalog
    from catalogs.analysis import evaluate_truth
    from review.store import ReviewStore

    cat = open_catalog(dataset)
    ev = evaluate_truth(cat, truths).detections
    rows: dict[tuple[str, int], list[int]] = {}
    for i, (e, s) in enumerate(zip(cat["exposure"].astype(str), cat["source_id"].astype(np.int64))):
        rows.setdefault((e, int(s)), []).append(i)
    x, y = cat["x"].to_numpy(float), cat["y"].to_numpy(float)
    rng = np.random.default_rng(seed)
    n_decisions = 0
    store = ReviewStore("sqlite:///" + str(queue))
    try:
        for name in REVIEWERS:
            if store.get_reviewer(name) is None:
                store.add_reviewer(name)
        # the reviewers take turns claiming small batches until neither gets any: the flow's queue
        # asks for one decision per item (k = 1), so they share the work, and with k > 1 both review all
        idle = 0
        while idle < len(REVIEWERS):
            for reviewer in REVIEWERS:
                batch = store.claim(reviewer, n=25)
                idle = 0 if batch else idle + 1
                for item in batch:
                    cand = rows[(item.exposure, int(item.source_id))]
                    i = min(cand, key=lambda j: (x[j] - item.x) ** 2 + (y[j] - item.y) ** 2)
                    truth_kind = str(ev["true_kind"].iloc[i])
                    action, kind = _truth_decision(item, truth_kind, str(ev["det_class"].iloc[i]))
                    if rng.random() < noise:
                        wrong = [k for k in item.relabel_kinds if k != truth_kind]
                        action, kind = ("uncertain", None) if rng.random() < 0.5 else ("relabel", str(rng.choice(wrong)))
                    store.decide(item.id, reviewer, action, kind=kind)
                    n_decisions += 1
        assert store.pending_count() == 0, "items left undecided in the review queue"
        stats = store.stats()
        store.export_labels(labels)
    finally:
        store.close()
    return {"items": int(stats["items"]), "decisions": n_decisions, "required_per_item": stats["required_per_item"],
            "by_reviewer": stats["by_reviewer"], **{k: int(v) for k, v in stats["by_status"].items()}}


def build_flow_demo(root: Path) -> DemoData:
    """Build (or reuse) the demo under ``root`` with the real batch flow and the real review queue.

    ``root/images``: the three exposures and their truth tables; ``root/out``:
    what ``moe-imaging run`` writes (``run=demo/exposure=<stem>/catalog.parquet``,
    ``_review.sqlite``, ``_runs/``); ``root/labels.parquet``: the queue's label
    export after the scripted review; ``root/review.txt``: the flow's final
    lines and the review counts.
    """
    root = Path(root)
    images_dir = root / "images"
    out = root / "out"
    labels = root / "labels.parquet"
    images, truths = _demo_files(images_dir)
    data = DemoData(root, out, images, truths, labels, queue=out / "_review.sqlite")
    if (root / "DONE").exists():
        return data
    _simulate(images_dir, images, truths)
    proc = _run_flow(root, images_dir, out)
    assert data.queue.is_file(), f"the flow wrote no review queue at {data.queue}:\n{proc.stdout}"
    counts = _review_from_truth(data.queue, out, truths, labels)
    (root / "review.txt").write_text(proc.stdout + "".join(f"{k}: {v}\n" for k, v in counts.items()))
    (root / "DONE").write_text("ok\n")
    return data


def build_demo(root: Path) -> DemoData:
    """Build (or reuse) the demo dataset under ``root``."""
    from catalogs import write_exposure_catalog
    from moe_cli import main as cli_main
    from pipelines.config import DetectionConfig
    from pipelines.detect import detect_image

    root = Path(root)
    images_dir = root / "images"
    dataset = root / "catalogs"
    labels = root / "labels.parquet"
    images: dict[str, Path] = {}
    truths: dict[str, Path] = {}
    for seed in (1, 2):
        stem = f"survey_{SIZE}_seed{seed}"
        images[stem] = images_dir / f"{stem}.fits"
        truths[stem] = images_dir / f"{stem}_truth.ecsv"
    revisit = f"survey_{SIZE}_seed1_revisit"
    images[revisit] = images_dir / f"{revisit}.fits"
    truths[revisit] = images_dir / f"{revisit}_truth.ecsv"
    data = DemoData(root, dataset, images, truths, labels)
    if (root / "DONE").exists():
        return data
    images_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.redirect_stdout(io.StringIO()):
        for seed in (1, 2):
            rc = cli_main(["simulate", "survey", "--size", str(SIZE), "--seed", str(seed), "--out", str(images_dir)])
            assert rc == 0
    _make_revisit(images[f"survey_{SIZE}_seed1"], truths[f"survey_{SIZE}_seed1"], images[revisit], truths[revisit])
    config = DetectionConfig()
    config = config.replace(gate=config.gate.replace(enabled=True), tiling=config.tiling.replace(workers=1))
    for stem, path in images.items():
        result = detect_image(path, config=config, tile_size=None, checksum=True)
        write_exposure_catalog(result.catalog, dataset, run=RUN, exposure=stem, provenance=result.provenance)
    _labels(dataset, truths).to_parquet(labels, index=False)
    (root / "DONE").write_text("ok\n")
    return data

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
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
from pathlib import Path

import numpy as np
import pandas as pd
from astropy.io import fits
from astropy.table import Table

__all__ = ["DemoData", "build_demo", "RUN", "DITHER"]

RUN = "demo"
DITHER = (13, 7)  # (dx, dy) pixels of the revisit
SIZE = 512


@dataclasses.dataclass(frozen=True)
class DemoData:
    root: Path
    catalogs: Path
    images: dict[str, Path]
    truths: dict[str, Path]
    labels: Path

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
    from catalogs.analysis import KINDS, evaluate_truth

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
        votes = [truth_kind if rng.random() < 0.88 else str(rng.choice([c for c in KINDS if c != truth_kind]))
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


def build_demo(root: Path) -> DemoData:
    """Build (or reuse) the demo dataset under ``root``."""
    from catalogs import write_exposure_catalog
    from pipelines.cli import main as cli_main
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

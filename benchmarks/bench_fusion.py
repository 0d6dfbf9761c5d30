"""Does the mixture keep what its experts find?  Star completeness and astrometry, same field, same run.

One fresh survey field (GalSim, header FWHM only) runs through ``detect_image``
three ways, and SEP (Source Extractor's algorithms as a library) runs on the
same pixels:

* the point expert alone (``experts = ["point"]``, no gate);
* the mixture as ``run`` runs it: every survey expert, fusion and the gate;
* SEP: ``sep.Background`` and ``sep.extract`` at 1.5 sigma, 5 pixels.

Per truth S/N bin: the fraction of true stars matched (``catalogs.evaluate.match_to_truth``,
each detection to one truth object), and the rms position error of matched
stars with S/N >= 20::

    python benchmarks/bench_fusion.py                # 4096^2, about 4 min
    python benchmarks/bench_fusion.py --size 2048    # quicker
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from astropy.table import Table

from catalogs.evaluate import astrometric_rms, completeness_by_snr, match_to_truth
from contracts.vocabulary import SURVEY_EXPERTS
from moe_imaging.simulate import SurveySimConfig, simulate_survey
from pipelines import DetectionConfig, detect_image
from pipelines.io import write_exposure

BINS = (5.0, 10.0, 20.0, 50.0, np.inf)


def _sep(image: np.ndarray) -> Table:
    import sep

    data = np.ascontiguousarray(image, dtype=np.float64)
    bkg = sep.Background(data)
    sub = data - bkg.back()
    objs = sep.extract(sub, 1.5, err=bkg.globalrms, minarea=5, deblend_cont=0.005)
    return Table({"x": objs["x"], "y": objs["y"], "flux": objs["flux"]})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--seed", type=int, default=2031)
    parser.add_argument("--fwhm", type=float, default=3.0)
    args = parser.parse_args(argv)
    sim = simulate_survey(SurveySimConfig(size=args.size, seed=args.seed, fwhm_px=args.fwhm))
    header = sim.header.copy()
    for key in ("PSFMODEL", "BETA"):
        header.remove(key, ignore_missing=True)
    runs: dict[str, Table] = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = write_exposure(Path(tmp) / "field.fits", sim.image, header)
        for name, mapping in (("point expert alone", {"experts": ["point"]}),
                              ("mixture (every expert + gate)", {"experts": list(SURVEY_EXPERTS),
                                                                 "gate": {"enabled": True}})):
            t0 = time.perf_counter()
            runs[name] = detect_image(path, config=DetectionConfig.from_mapping(mapping), checksum=False).catalog
            print(f"{name}: {len(runs[name])} rows in {time.perf_counter() - t0:.0f} s", flush=True)
    runs["SEP"] = _sep(sim.image)
    truth = sim.truth
    print(f"\nfield {args.size}^2, seed {args.seed}, FWHM {args.fwhm} px (header FWHM only)\n")
    labels = [f"{lo:g}-{hi:g}" for lo, hi in zip(BINS[:-1], BINS[1:])]
    print("| | " + " | ".join(f"stars S/N {b}" for b in labels) + " | star rms S/N>=20 (px, radial) |")
    print("| --- |" + " ---: |" * (len(labels) + 1))
    for name, cat in runs.items():
        match = match_to_truth(cat, truth, fwhm=args.fwhm)
        comp = completeness_by_snr(match, truth, bins=BINS, kind="star")
        rms = astrometric_rms(match, cat, truth, min_snr=20.0)["rms_radial"]
        cells = [f"{float(r['completeness']):.3f} ({int(r['n_found'])}/{int(r['n_true'])})" for r in comp]
        print(f"| {name} | " + " | ".join(cells) + f" | {rms:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

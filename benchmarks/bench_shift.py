"""Fresh survey fields from shifted PSF families, through the whole pipeline: does the guard keep its promise?

Each field is simulated (GalSim) with a PSF family and written as FITS whose
header gives **only the FWHM** (``PSFMODEL`` and ``BETA`` removed, as a real
header would), then run through ``detect_image`` as the flows run it: every
survey expert, the gate at alpha = 1 %, the pipeline's own PSF and background.
Every catalog row is labelled against the truth table as the gate's training
rows are (``training.gate.truth_labels``).  Per family the table gives:

* the PSF measured from the field's stars against the truth (FWHM, beta);
* isolated true stars with S/N >= 10 accepted automatically as galaxies;
* the error among automatically decided detections with its 95 % upper
  bound (Clopper-Pearson), and the share decided, without and with the shift
  guard (:mod:`moe_imaging.triage.guard`);
* the guard's verdicts.

Families: Moffat beta 2.5, 3.0, 3.5 (stronger wings than the pipeline's
header prior, beta 4.765) and, as the control inside the training envelope,
Kolmogorov and Moffat beta 4.765 (the prior's own profile)::

    python benchmarks/bench_shift.py                 # 2 fields of 2048^2 per family (about 10 min)
    python benchmarks/bench_shift.py --fields 1 --size 1024   # quick look
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from astropy.table import Table
from scipy.spatial import cKDTree

from contracts.vocabulary import SURVEY_CLASSES, SURVEY_EXPERTS
from moe_imaging.simulate import SurveySimConfig, simulate_survey
from moe_imaging.triage.calibration import clopper_pearson
from moe_imaging.triage.guard import apply_guard, survey_shift_guard
from pipelines import DetectionConfig, detect_image
from pipelines.io import write_exposure
from pipelines.models import load_gate
from training.gate import truth_labels

FAMILIES: dict[str, dict] = {
    "moffat-beta2.5": {"psf_model": "moffat", "moffat_beta": 2.5},
    "moffat-beta3.0": {"psf_model": "moffat", "moffat_beta": 3.0},
    "moffat-beta3.5": {"psf_model": "moffat", "moffat_beta": 3.5},
    "kolmogorov (control)": {"psf_model": "kolmogorov"},
    "moffat-beta4.765 (control)": {"psf_model": "moffat", "moffat_beta": 4.765},
}
FWHMS = (3.0, 3.6)


def _field(family: dict, fwhm: float, size: int, seed: int, folder: Path) -> tuple[Path, Table]:
    sim = simulate_survey(SurveySimConfig(size=size, seed=seed, fwhm_px=fwhm, **family))
    header = sim.header.copy()
    for key in ("PSFMODEL", "BETA"):  # the header gives only the FWHM
        header.remove(key, ignore_missing=True)
    path = folder / f"field_{seed}.fits"
    write_exposure(path, sim.image, header)
    return path, sim.truth


def _stars_as_galaxies(cat: Table, truth: Table, fwhm: float) -> tuple[int, int]:
    """Isolated true stars with S/N >= 10 matched by a detection; how many were accepted as galaxies."""
    kind = np.asarray(truth["kind"]).astype(str)
    stars = (kind == "star") & (np.asarray(truth["mf_snr"], float) >= 10)
    xy_t = np.column_stack([truth["x"], truth["y"]]).astype(float)
    d, _ = cKDTree(xy_t).query(xy_t, k=2)
    stars &= d[:, 1] > 5 * fwhm
    if not len(cat):
        return int(stars.sum()), 0
    xy_c = np.column_stack([cat["x"], cat["y"]]).astype(float)
    dist, idx = cKDTree(xy_c).query(xy_t[stars], k=1)
    found = dist < max(1.5, fwhm)
    accepted = np.asarray(cat["decision"]).astype(str)[idx[found]] == "accepted"
    galaxy = np.asarray(cat["kind"]).astype(str)[idx[found]] == "galaxy"
    return int(found.sum()), int((accepted & galaxy).sum())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fields", type=int, default=2, help="fields per family (default 2)")
    parser.add_argument("--size", type=int, default=2048, help="field side in pixels (default 2048)")
    parser.add_argument("--out", default="bench_out", help="folder for bench_shift.json")
    args = parser.parse_args(argv)
    gate = load_gate()
    config = DetectionConfig.from_mapping({"experts": list(SURVEY_EXPERTS),
                                           "gate": {"enabled": True, "alpha": 0.01, "shift_guard": False}})
    rows = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for name, family in FAMILIES.items():
            acc = {"n": 0, "auto": 0, "wrong": 0, "auto_g": 0, "wrong_g": 0, "stars": 0, "star_gal": 0,
                   "fwhm_err": [], "beta": [], "verdicts": []}
            for i in range(args.fields):
                fwhm = FWHMS[i % len(FWHMS)]
                seed = 50_000 + 100 * list(FAMILIES).index(name) + i
                path, truth = _field(family, fwhm, args.size, seed, Path(tmp))
                result = detect_image(path, config=config, checksum=False)
                cat = result.catalog
                measured = result.provenance.extra.get("psf_measured", {})
                m_fwhm = measured.get("fwhm_px")
                if m_fwhm is not None:
                    acc["fwhm_err"].append(m_fwhm / fwhm - 1)
                    acc["beta"].append(measured.get("beta"))
                verdict = survey_shift_guard(cat, measured_fwhm=m_fwhm, prior_fwhm=result.psf.fwhm,
                                             fwhm_range=gate.fwhm_range)
                guarded = apply_guard(cat, verdict)
                labelled = Table(cat, copy=True)
                labelled["kind"] = np.where(np.asarray(cat["expert"]).astype(str) == "streak", "streak", "")
                true_kind = np.asarray(SURVEY_CLASSES)[truth_labels(labelled, truth, fwhm)]
                wrong = np.asarray(cat["kind"]).astype(str) != true_kind
                auto = np.asarray(cat["decision"]).astype(str) != "review"
                auto_g = np.asarray(guarded["decision"]).astype(str) != "review"
                acc["n"] += len(cat)
                acc["auto"] += int(auto.sum())
                acc["wrong"] += int((auto & wrong).sum())
                acc["auto_g"] += int(auto_g.sum())
                acc["wrong_g"] += int((auto_g & wrong).sum())
                s, g = _stars_as_galaxies(cat, truth, fwhm)
                acc["stars"] += s
                acc["star_gal"] += g
                acc["verdicts"].append("pass" if verdict.passed else "review: " + "; ".join(verdict.reasons))
                print(f"  {name} field {i}: FWHM {fwhm}, {len(cat)} rows, measured {measured}, "
                      f"guard {'pass' if verdict.passed else 'FAIL'} {verdict.checks.get('bright_stars')}",
                      flush=True)
            hi = clopper_pearson(acc["wrong"], acc["auto"], 0.95, sided="upper")[1] if acc["auto"] else 1.0
            hi_g = clopper_pearson(acc["wrong_g"], acc["auto_g"], 0.95, sided="upper")[1] if acc["auto_g"] else 1.0
            rows.append({"family": name, **{k: v for k, v in acc.items() if k not in ("fwhm_err", "beta")},
                         "fwhm_err_max": float(np.max(np.abs(acc["fwhm_err"]))) if acc["fwhm_err"] else None,
                         "beta_measured": acc["beta"], "upper": hi, "upper_guarded": hi_g})
    print(f"\n{args.fields} fresh {args.size}^2 fields per family, header FWHM only, every expert + gate, "
          f"alpha 1 %; {time.perf_counter() - t0:.0f} s\n")
    print("| family | PSF FWHM error (max) | beta measured | stars S/N>=10 accepted as galaxies | "
          "no guard: decided / error [95 % up] | with guard: decided / error [95 % up] | guard |")
    print("| --- | ---: | --- | ---: | ---: | ---: | --- |")
    for r in rows:
        frac = r["star_gal"] / max(r["stars"], 1)
        err = r["wrong"] / max(r["auto"], 1)
        err_g = r["wrong_g"] / max(r["auto_g"], 1)
        betas = ", ".join(f"{b:.2f}" for b in r["beta_measured"] if b is not None)
        fwhm_err = f"{r['fwhm_err_max']:.1%}" if r["fwhm_err_max"] is not None else "not measured"
        verdicts = "; ".join(sorted(set(v if v == "pass" else "review" for v in r["verdicts"])))
        print(f"| {r['family']} | {fwhm_err} | {betas} | {r['star_gal']}/{r['stars']} ({frac:.1%}) | "
              f"{r['auto'] / max(r['n'], 1):.1%} / {err:.2%} [{r['upper']:.2%}] | "
              f"{r['auto_g'] / max(r['n'], 1):.1%} / {err_g:.2%} [{r['upper_guarded']:.2%}] | {verdicts} |")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_shift.json").write_text(json.dumps(rows, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())

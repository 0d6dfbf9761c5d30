"""Benchmark of the microscopy (nucleus) triage on fresh simulated fields.

    python benchmarks/bench_nucleus_triage.py [--fields 40] [--pipeline-fields 16]

Fields of split 3 (``SeedSequence([seed, 3, i])``; the shipped model used
splits 0, 1 and 2 for training, calibration and test), drawn from the same
recipe as the calibration fields (``training.nucleus_triage``):

* risk-coverage at alpha 0.5 %, 1 %, 2 %, 5 % (delta 5 %): the error among
  automatically decided detections with its Clopper-Pearson 95 % interval and
  the fraction decided automatically, overall and per stratum;
* ECE of the calibrated (and the raw) confidence;
* accuracy of the triage's class against the nucleus expert alone (every
  detection a nucleus) and against the expert's S/N thresholded (threshold
  chosen on the test split of the model);
* end to end: a few fields written as OME-TIFF and run through
  ``pipelines.detect_image`` with the gate enabled (pipeline background and
  noise, tiling), scored against the label mask;
* out of range: fields at 1.3 um pixels (nuclei 4.6-11 px, smaller than any
  calibration field's) are routed to review entirely.

Writes ``bench_out/nucleus_triage.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from moe_imaging.triage import TriageContext, apply_triage, certified_thresholds  # noqa: E402
from moe_imaging.triage.calibration import clopper_pearson, expected_calibration_error  # noqa: E402
from moe_imaging.triage.microscopy import (  # noqa: E402
    OUT_OF_RANGE_STRATUM,
    label_detections,
    outside_feature_range,
    predict_nucleus,
)
from pipelines.models import DEFAULT_NUCLEUS_TRIAGE_WEIGHTS, load_nucleus_triage  # noqa: E402
from training.nucleus_triage import (  # noqa: E402
    NucleusTriageConfig,
    detect_field,
    field_config,
    simulate_samples,
)

ALPHAS = (0.005, 0.01, 0.02, 0.05)


def _row(name: str, wrong: np.ndarray, auto: np.ndarray) -> dict:
    n, n_auto = len(wrong), int(auto.sum())
    k = int(wrong[auto].sum())
    lo, hi = clopper_pearson(k, n_auto, 0.95)
    return {"stratum": name, "n": n, "n_auto": n_auto, "errors_auto": k,
            "error_auto": k / n_auto if n_auto else math.nan, "ci_low": lo, "ci_high": hi,
            "coverage": n_auto / n if n else math.nan}


def _fmt(r: dict, alpha: float) -> str:
    err = "   n/a " if not r["n_auto"] else f"{100 * r['error_auto']:6.2f}%"
    ci = "" if not r["n_auto"] else f"[{100 * r['ci_low']:.2f}, {100 * r['ci_high']:.2f}]%"
    return (f"| {100 * alpha:4.1f}% | {r['stratum']:<22} | {r['n']:6d} | {r['n_auto']:6d} | {r['errors_auto']:4d} | "
            f"{err} {ci:<16} | {100 * r['coverage']:5.1f}% |")


def _pipeline_check(cfg: NucleusTriageConfig, n_fields: int, alpha: float, size: int | None, weights: Path) -> dict:
    """detect_image on OME-TIFFs (gate enabled) against the label masks."""
    from moe_imaging.simulate_microscopy import simulate_microscopy
    from pipelines import DetectionConfig, detect_image
    from pipelines.io import write_ome_tiff

    n = n_auto = k = n_review = n_spurious = 0
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(n_fields):
            sc = field_config(cfg, 3, 10_000 + i)
            if size is not None:
                sc = dataclasses.replace(sc, shape=(size, size))
            sim = simulate_microscopy(sc)
            path = write_ome_tiff(Path(tmp) / f"f{i}.ome.tif", sim.image, pixel_size_um=sc.pixel_size_um,
                                  numerical_aperture=sc.numerical_aperture, wavelength_nm=sc.emission_wavelength_nm)
            det = DetectionConfig.from_mapping({
                "gate": {"enabled": True, "alpha": alpha, "nucleus_weights": str(weights)},
                "microscopy": {"nucleus_diameter_um": list(sc.nucleus_diameter_um)},
            })
            cat = detect_image(path, config=det, checksum=False).catalog
            outcome = label_detections(cat, sim.labels, sim.truth)
            truth_kind = np.where(outcome == "nucleus", "nucleus", "artifact")
            decision = np.asarray(cat["decision"]).astype(str)
            auto = decision != "review"
            wrong = np.asarray(cat["kind"]).astype(str) != truth_kind
            n += len(cat)
            n_auto += int(auto.sum())
            k += int(wrong[auto].sum())
            n_review += int((~auto).sum())
            n_spurious += int(np.sum(outcome == "spurious"))
    lo, hi = clopper_pearson(k, n_auto, 0.95)
    return {"fields": n_fields, "size": size or cfg.field_size, "spurious": n_spurious, "alpha": alpha, "n": n, "n_auto": n_auto, "errors_auto": k,
            "error_auto": k / n_auto if n_auto else math.nan, "ci_low": lo, "ci_high": hi,
            "coverage": n_auto / n if n else math.nan}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fields", type=int, default=40, help="fresh 1024^2 fields (default 40)")
    parser.add_argument("--pipeline-fields", type=int, default=16, help="fields of each size run through detect_image (default 16)")
    parser.add_argument("--out-of-range-fields", type=int, default=4)
    parser.add_argument("--weights", default=None, help="model file (default: the shipped one)")
    parser.add_argument("--out", default="bench_out")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    weights = Path(args.weights) if args.weights else DEFAULT_NUCLEUS_TRIAGE_WEIGHTS
    model = load_nucleus_triage(weights)
    cfg = NucleusTriageConfig(**model.metadata["config"])
    cal = model.calibration
    test = simulate_samples(cfg, 3, args.fields)
    probs = predict_nucleus(model, test.features)
    conf = probs.max(axis=1)
    pred = probs.argmax(axis=1)
    wrong = pred != test.labels
    beyond = outside_feature_range(test.features, model.feature_range) != ""
    strata = np.where(beyond, OUT_OF_RANGE_STRATUM, test.strata)
    outcomes = {k: int(v) for k, v in zip(*np.unique(test.outcome, return_counts=True))}
    print(f"nucleus triage benchmark: {args.fields} fresh {cfg.field_size}^2 fields (split 3), {len(test)} detections "
          f"{outcomes}; calibration split {len(cal['scores'])} detections; delta 5 %; "
          f"{int(beyond.sum())} detections outside the training range of the physics (always review)")
    print()
    print("| alpha | stratum                |      n | n_auto | err  | error auto [95% CI]     | auto   |")
    print("| ---: | --- | ---: | ---: | ---: | --- | ---: |")
    table = []
    for alpha in ALPHAS:
        triage = certified_thresholds(model, alpha=alpha, delta=0.05)  # what apply_triage uses
        auto, _ = triage.decide(conf, strata)
        rows = [_row("all", wrong, auto)]
        for s in sorted(set(strata.tolist())):
            m = strata == s
            rows.append(_row(s, wrong[m], auto[m]))
        rejected = auto & (pred == 1)
        for r in rows:
            r["alpha"] = alpha
            print(_fmt(r, alpha))
        rows[0]["rejected"] = int(rejected.sum())
        rows[0]["rejected_wrong"] = int((rejected & wrong).sum())
        rows[0]["tau"] = {k: t.tau for k, t in triage.thresholds.items()}
        table.extend(rows)
    print()
    for r in table:
        if r["stratum"] == "all":
            print(f"alpha {100 * r['alpha']:.1f}%: {r['rejected']} auto-rejected ({r['rejected_wrong']} of them wrong)")
    correct = ~wrong
    ece = expected_calibration_error(conf, correct)
    raw = predict_nucleus(model, test.features, calibrated=False)
    ece_raw = expected_calibration_error(raw.max(axis=1), raw.argmax(axis=1) == test.labels)
    # baselines: the expert alone (everything a nucleus), and its S/N thresholded on the model's test split
    ref = simulate_samples(cfg, 2, min(cfg.n_test_fields, 10))
    cands = np.unique(ref.snr)
    acc_ref = [np.mean((ref.snr >= t) == (ref.labels == 0)) for t in cands[:: max(1, len(cands) // 400)]]
    t_best = float(cands[:: max(1, len(cands) // 400)][int(np.argmax(acc_ref))])
    acc_snr = float(np.mean((test.snr >= t_best) == (test.labels == 0)))
    acc_expert = float(np.mean(test.labels == 0))
    acc_triage = float(np.mean(correct))
    print(f"ECE (15 bins): calibrated {ece:.4f}, raw {ece_raw:.4f}; temperature {model.temperature:.3f}")
    print(f"accuracy (nucleus vs artifact): triage {acc_triage:.4f}; nucleus expert alone {acc_expert:.4f}; "
          f"expert S/N >= {t_best:.1f} {acc_snr:.4f}")
    # end to end through the pipeline
    pipe = []
    for size in ((None, 512) if args.pipeline_fields > 0 else ()):
        p = _pipeline_check(cfg, args.pipeline_fields, 0.01, size, weights)
        pipe.append(p)
        print(f"end to end (detect_image, gate enabled, alpha 1%, {p['fields']} fields of {p['size']}^2): "
              f"{p['n']} detections ({p['spurious']} spurious), "
              f"{p['n_auto']} decided ({100 * p['coverage']:.1f}%), {p['errors_auto']} wrong "
              f"({100 * p['error_auto']:.2f}%, 95% CI [{100 * p['ci_low']:.2f}, {100 * p['ci_high']:.2f}]%)")
    # out of range: coarse pixels, nuclei smaller (in pixels) than any calibration field's
    n_oor = n_oor_auto = oor_right = 0
    strata_oor: set[str] = set()
    reasons: set[str] = set()
    for i in range(args.out_of_range_fields):
        sc = dataclasses.replace(field_config(cfg, 3, 20_000 + i), pixel_size_um=1.3)
        cand, expert, fwhm, sim = detect_field(sc)
        out = apply_triage(load_nucleus_triage(weights), cand,
                           context=TriageContext(mode="microscopy", psf_fwhm=fwhm, diameter_px=expert.diameter_px),
                           alpha=0.05)
        outcome = label_detections(cand, sim.labels, sim.truth)
        n_oor += len(out)
        n_oor_auto += int(np.sum(np.asarray(out["decision"]).astype(str) != "review"))
        oor_right += int(np.sum((np.asarray(out["kind"]).astype(str) == "nucleus") == (outcome == "nucleus")))
        strata_oor |= set(np.asarray(out["triage_stratum"]).astype(str).tolist())
        reasons |= {str(r).split(";")[0] for r in out["review_reason"]}
    print(f"out of range (pixel 1.3 um, model range: smallest diameter {model.diameter_range[0]:.1f}-"
          f"{model.diameter_range[1]:.1f} px, PSF {model.psf_range[0]:.2f}-{model.psf_range[1]:.2f} px; alpha 5%): "
          f"{n_oor} detections, {n_oor_auto} decided automatically; strata {sorted(strata_oor)}; "
          f"reason {sorted(reasons)[:1]}; the classifier would have been right for "
          f"{100 * oor_right / max(n_oor, 1):.1f}%")
    print(f"total {time.perf_counter() - t0:.0f} s")
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "nucleus_triage.json").write_text(json.dumps({
        "fields": args.fields, "n": len(test), "outcomes": outcomes, "risk_coverage": table,
        "ece": ece, "ece_raw": ece_raw, "accuracy": {"triage": acc_triage, "expert": acc_expert, "expert_snr": acc_snr,
                                                     "snr_threshold": t_best},
        "pipeline": pipe, "out_of_range": {"n": n_oor, "n_auto": n_oor_auto, "strata": sorted(strata_oor)},
    }, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())

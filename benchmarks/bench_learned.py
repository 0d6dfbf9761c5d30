"""The learned expert on fresh held-out simulations: accuracy per class, speed, D4 stability, PSF out of range.

Run with ``python benchmarks/bench_learned.py [--quick] [--out DIR]``.

Fields come from the ``bench`` split of :mod:`training.learned` (their
seeds are checked to be disjoint from every training, validation and test
field of the shipped weights).  It prints:

* per-class recall (accuracy), precision and the confusion matrix for stamps
  at the true positions (all, and matched-filter S/N >= 10), and per PSF
  FWHM bin;
* the same for the expert's own proposals (point-expert peaks matched to the
  truth), i.e. what ``LearnedExpert.propose`` returns on a whole field;
* speed: stamps per second with and without D4 test-time augmentation, and
  ``propose`` in Mpix/s;
* D4 stability: mean and quantiles, correct vs wrong;
* fields whose PSF FWHM is outside the trained range (1.0, 9 and 12 px =
  2x the largest trained FWHM): the network's own (raw) accuracy and mean
  max probability, what the expert reports after tempering, and the fraction
  of candidates flagged ``learned_in_range = False``.

Informational: the exit status is 0.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from contracts.flags import MaskBit
from contracts.vocabulary import SURVEY_CLASSES as CLASSES
from moe_imaging.experts.learned import LearnedExpert, LearnedExpertConfig
from moe_imaging.learned.model import classify_stamps
from moe_imaging.psf import moffat_psf
from moe_imaging.simulate import simulate_survey
from moe_imaging.tile import Tile
from pipelines.models import load_learned
from training.learned import (
    TrainConfig,
    evaluate,
    field_config,
    field_samples,
    field_seed,
    summarize_predictions,
)

_LABEL = {"star": 0, "saturated_star": 0, "galaxy": 1, "streak": 2, "cosmic_ray": 3, "hot_pixel": 3}


def _class_rows(m: dict) -> list[str]:
    rows = ["| class | n | recall (accuracy) | precision |", "| --- | ---: | ---: | ---: |"]
    for c in CLASSES:
        rows.append(f"| {c} | {m['support'][c]} | {m['recall'][c]:.3f} | {m['precision'][c]:.3f} |")
    return rows


def _confusion_rows(m: dict) -> list[str]:
    rows = ["| true \\ predicted | " + " | ".join(CLASSES) + " |", "| --- |" + " ---: |" * len(CLASSES)]
    rows += [f"| {c} | " + " | ".join(map(str, r)) + " |" for c, r in zip(CLASSES, m["confusion"], strict=True)]
    return rows


def _tile_of(sim_cfg, prior) -> tuple[Tile, object]:
    exp = simulate_survey(sim_cfg)
    sky = exp.sky.astype(np.float64)
    img = exp.image.astype(np.float64)
    var = sky / sim_cfg.gain + (sim_cfg.rdnoise / sim_cfg.gain) ** 2
    mask = np.where(img >= sim_cfg.saturate, np.uint16(MaskBit.SATURATED), np.uint16(0))
    tile = Tile(image=img - sky, variance=var, mask=mask, background=sky, psf=moffat_psf(prior["fwhm"]), gain=sim_cfg.gain)
    return tile, exp.truth


def _match(cands, truth, fwhm: float) -> np.ndarray:
    """True class of each candidate (-1: matches nothing), nearest object within its tolerance."""
    n = len(cands)
    best_d = np.full(n, np.inf)
    label = np.full(n, -1)
    if n == 0:
        return label
    cxy = np.column_stack([np.asarray(cands["x"], float), np.asarray(cands["y"], float)])
    kinds = np.asarray(truth["kind"]).astype(str)
    for i in range(len(truth)):
        k = kinds[i]
        if k == "streak":
            p0 = np.array([truth["x0"][i], truth["y0"][i]], float)
            p1 = np.array([truth["x1"][i], truth["y1"][i]], float)
            d = p1 - p0
            t = np.clip(((cxy - p0) @ d) / max(d @ d, 1e-9), 0, 1)
            dist = np.hypot(*(cxy - (p0 + t[:, None] * d)).T)
            tol = 2.0 + fwhm
        else:
            dist = np.hypot(cxy[:, 0] - truth["x"][i], cxy[:, 1] - truth["y"][i])
            hlr = float(truth["hlr"][i]) if k == "galaxy" else 0.0
            tol = max(2.0, 0.5 * fwhm, hlr if np.isfinite(hlr) else 0.0)
        better = (dist <= tol) & (dist < best_d)
        best_d[better] = dist[better]
        label[better] = _LABEL[k]
    return label


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer fields (about a minute)")
    ap.add_argument("--fields", type=int, default=None, help="held-out fields (default 12, quick 3)")
    ap.add_argument("--weights", default=None, help="weights file (default: the shipped one)")
    ap.add_argument("--out", default=None, help="folder for bench_learned.json")
    args = ap.parse_args(argv)
    n_fields = args.fields or (3 if args.quick else 12)
    model = load_learned(args.weights)
    tcfg = TrainConfig.from_mapping(model.metadata.get("train_config", {}))
    # held-out check: bench seeds never coincide with train/val/test seeds of these weights
    used = {field_seed(tcfg.seed, s, i) for s, n in (("train", tcfg.n_train_fields), ("val", tcfg.n_val_fields), ("test", tcfg.n_test_fields)) for i in range(n)}
    bench_seeds = [field_seed(tcfg.seed, "bench", i) for i in range(n_fields)]
    assert not used & set(bench_seeds), "benchmark fields overlap the training data"
    report: dict = {"n_fields": n_fields, "weights": str(args.weights or "shipped"), "fwhm_range": list(model.fwhm_range)}
    lines: list[str] = [f"# Learned expert: {n_fields} held-out fields ({tcfg.field_size}^2 px), trained FWHM {model.fwhm_range} px", ""]

    # --- truth positions ----------------------------------------------------
    t0 = time.perf_counter()
    fields = [field_samples(tcfg, "bench", i) for i in range(n_fields)]
    t_sim = time.perf_counter() - t0
    allm = evaluate(model, fields)
    m10 = evaluate(model, fields, min_snr=10.0)
    report["truth_positions"] = allm
    report["truth_positions_snr10"] = m10
    lines += [f"## Stamps at true positions: accuracy {allm['accuracy']:.3f}, balanced {allm['balanced_accuracy']:.3f} "
              f"(S/N >= 10: {m10['accuracy']:.3f}, balanced {m10['balanced_accuracy']:.3f}); simulation {t_sim:.0f} s", ""]
    lines += _class_rows(allm) + [""] + _confusion_rows(allm) + ["", "S/N >= 10:", ""] + _class_rows(m10) + [""]
    bins = [(1.5, 2.5), (2.5, 4.0), (4.0, 6.0)]
    lines += ["| FWHM bin (px) | fields | n | accuracy | balanced accuracy |", "| --- | ---: | ---: | ---: | ---: |"]
    report["by_fwhm"] = {}
    for lo, hi in bins:
        sel = [f for f in fields if lo <= float(f["true_fwhm"]) < hi]
        if sel:
            mb = evaluate(model, sel)
            report["by_fwhm"][f"{lo}-{hi}"] = mb
            lines.append(f"| {lo}-{hi} | {len(sel)} | {mb['n']} | {mb['accuracy']:.3f} | {mb['balanced_accuracy']:.3f} |")
    lines.append("")

    # --- D4 stability -------------------------------------------------------
    stab, correct = [], []
    for f in fields:
        p, s = classify_stamps(f["stamps"], f["psf_image"], float(f["fwhm"]), model)
        stab.append(s)
        correct.append(p.argmax(1) == f["labels"])
    stab = np.concatenate(stab)
    correct = np.concatenate(correct)
    q = np.quantile(stab, [0.01, 0.05, 0.5])
    report["stability"] = {"mean": float(stab.mean()), "q01": float(q[0]), "q05": float(q[1]), "median": float(q[2]),
                           "mean_correct": float(stab[correct].mean()), "mean_wrong": float(stab[~correct].mean()) if (~correct).any() else math.nan,
                           "accuracy_stability_ge_0.9": float(correct[stab >= 0.9].mean()), "frac_stability_ge_0.9": float(np.mean(stab >= 0.9))}
    st = report["stability"]
    lines += ["## D4 stability", "", "| mean | 1 % | 5 % | median | mean when correct | mean when wrong | frac >= 0.9 | accuracy there |",
              "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
              f"| {st['mean']:.3f} | {st['q01']:.3f} | {st['q05']:.3f} | {st['median']:.3f} | {st['mean_correct']:.3f} | "
              f"{st['mean_wrong']:.3f} | {st['frac_stability_ge_0.9']:.3f} | {st['accuracy_stability_ge_0.9']:.3f} |", ""]

    # --- speed --------------------------------------------------------------
    big = np.concatenate([f["stamps"] for f in fields])[:4096]
    f0 = fields[0]
    classify_stamps(big[:64], f0["psf_image"], float(f0["fwhm"]), model)  # warm up
    speed = {}
    for tta in (True, False):
        t = time.perf_counter()
        classify_stamps(big, f0["psf_image"], float(f0["fwhm"]), model, tta=tta)
        speed["stamps_per_s_tta" if tta else "stamps_per_s_no_tta"] = len(big) / (time.perf_counter() - t)
    report["speed"] = speed

    # --- the expert's own proposals -------------------------------------------
    expert = LearnedExpert(LearnedExpertConfig(weights=args.weights), model=model)
    labels, preds, n_unmatched, n_cand, t_prop, npix = [], [], 0, 0, 0.0, 0
    for i in range(min(n_fields, 2 if args.quick else 4)):
        sim_cfg, prior = field_config(tcfg, "bench", i)
        tile, truth = _tile_of(sim_cfg, prior)
        t = time.perf_counter()
        cands = expert.propose(tile)
        t_prop += time.perf_counter() - t
        npix += tile.image.size
        lab = _match(cands, truth, sim_cfg.fwhm_px)
        pred = np.array([CLASSES.index(k) for k in np.asarray(cands["kind"]).astype(str)], int)
        n_cand += len(cands)
        n_unmatched += int((lab < 0).sum())
        labels.append(lab[lab >= 0])
        preds.append(pred[lab >= 0])
    lab = np.concatenate(labels)
    onehot = np.eye(len(CLASSES))[np.concatenate(preds)]
    pm = summarize_predictions(lab, onehot, np.full(len(lab), np.nan))
    speed["propose_mpix_per_s"] = npix / 1e6 / t_prop
    report["proposals"] = {**pm, "n_candidates": n_cand, "n_unmatched": n_unmatched}
    lines += [f"## The expert's proposals (point-expert peaks matched to the truth): {n_cand} candidates, "
              f"{n_unmatched} match no object; accuracy {pm['accuracy']:.3f}, balanced {pm['balanced_accuracy']:.3f}", ""]
    lines += _class_rows(pm) + [""] + _confusion_rows(pm) + [""]
    lines += ["## Speed (CPU, this machine)", "", "| stamps/s with D4 TTA | stamps/s without | propose (Mpix/s) |", "| ---: | ---: | ---: |",
              f"| {speed['stamps_per_s_tta']:.0f} | {speed['stamps_per_s_no_tta']:.0f} | {speed['propose_mpix_per_s']:.3f} |", ""]

    # --- PSF out of range ---------------------------------------------------
    lines += ["## PSF outside the trained range (2 fields each)", "",
              "| FWHM (px) | n | raw accuracy | raw mean max prob | raw frac wrong with p >= 0.9 | reported mean max prob | "
              "reported frac p >= 0.9 | flagged out of range |", "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    report["out_of_range"] = {}
    for fw in (1.0, 9.0, 12.0):
        ood = [field_samples(tcfg, "bench", 10_000 + int(fw * 10) * 10 + j, fwhm=fw) for j in range(2)]
        om = evaluate(model, ood)
        sim_cfg, prior = field_config(tcfg, "bench", 10_000 + int(fw * 10) * 10, fwhm=fw)
        tile, _ = _tile_of(sim_cfg, prior)
        cands = expert.propose(tile)
        flagged = float(np.mean(~np.asarray(cands["learned_in_range"], bool))) if len(cands) else math.nan
        conf = np.asarray(cands["learned_confidence"], float)
        om["expert_frac_flagged"] = flagged
        om["expert_frac_conf_ge_0.9"] = float(np.mean(conf >= 0.9)) if len(conf) else math.nan
        report["out_of_range"][f"{fw:g}"] = om
        lines.append(f"| {fw:g} | {om['n']} | {om['raw']['accuracy']:.3f} | {om['raw']['mean_max_prob']:.3f} | "
                     f"{om['raw']['frac_confident_wrong']:.3f} | {om['mean_max_prob']:.3f} | {om['expert_frac_conf_ge_0.9']:.3f} | {flagged:.3f} |")
    lines.append("")
    print("\n".join(lines))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "bench_learned.json").write_text(json.dumps(report, indent=2, default=float))
        print(f"wrote {out / 'bench_learned.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Training the gate on simulations: ``moe-imaging train gate``.

Recipe (all from :func:`moe_imaging.simulate.simulate_survey`, seeds in
:class:`GateTrainConfig`):

1. Fields with a PSF FWHM log-uniform in ``fwhm_range`` (Moffat of random
   beta, or Kolmogorov), random sky and read noise.  Training fields carry
   raised densities of every kind (4-10x the default survey simulation), so
   each field has plenty of examples and crowding.  Calibration and test
   fields follow the distribution the certified triage is promised for:
   ``calibration_field_size`` fields with densities 1-4x the default survey
   (``calibration_density_scale``); crowded detections are their own triage
   stratum (:func:`moe_imaging.triage.strata.beam_density`).
2. On each field every survey expert proposes candidates on the whole field
   as one tile (the PSF prior is what the pipeline would take from the
   header: a Moffat of the header FWHM); they are fused
   (:func:`moe_imaging.fusion.fuse`) and every expert scores every fused row
   (:func:`moe_imaging.triage.survey_features.score_candidates`).
3. Labels from the truth table: the nearest true object within a radius
   (a galaxy's half-light radius, a cosmic ray's track, 0.75 FWHM at least)
   gives ``star`` (saturated stars too), ``galaxy`` or ``artifact`` (cosmic
   rays, hot pixels); a row on a true trail is ``streak``; a row matching
   nothing is ``artifact`` (a noise peak or a piece of a halo is not a source).
4. Three disjoint sets of fields (``SeedSequence([seed, split, i])``): training,
   *calibration* (never used for training: the temperature and the triage
   thresholds are fitted on it) and test (the model card's numbers).

The calibration split's scores, errors and strata are saved with the weights,
so the certified triage thresholds can be refitted for any risk level at run
time (:func:`moe_imaging.triage.certify.fit_stratified_triage`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from astropy.table import Table
from scipy.spatial import cKDTree

from contracts.config import Config, check_int, check_range
from contracts.errors import ConfigError
from contracts.flags import MaskBit
from contracts.vocabulary import SURVEY_CLASSES, SURVEY_EXPERTS
from moe_imaging.fusion import fuse
from moe_imaging.psf import moffat_psf
from moe_imaging.simulate import SurveySimConfig, simulate_survey
from moe_imaging.tile import Tile
from moe_imaging.triage.calibration import expected_calibration_error, fit_temperature
from moe_imaging.triage.strata import beam_density, field_density, triage_stratum
from moe_imaging.triage.survey import GateModel, GateNet, gate_predict
from moe_imaging.triage.survey_features import (
    evidence_features,
    physics_features,
    score_candidates,
)
from pipelines.modality import make_configured_expert
from pipelines.models import DEFAULT_GATE_WEIGHTS, save_card, save_model
from training.progress import Log, say

__all__ = ["GateTrainConfig", "GateSamples", "field_config", "truth_labels", "simulate_samples", "train_gate"]

@dataclasses.dataclass(frozen=True)
class GateTrainConfig(Config):
    """How the shipped gate is made (see module docs)."""

    seed: int = 1
    n_train_fields: int = 20
    n_train_sparse_fields: int = 16
    n_calibration_fields: int = 40
    n_test_fields: int = 6
    field_size: int = 512
    calibration_field_size: int = 1024
    calibration_density_scale: tuple[float, float] = (0.125, 0.5)
    fwhm_range: tuple[float, float] = (1.5, 6.0)
    epochs: int = 80
    learning_rate: float = 3e-3
    batch_size: int = 512
    threads: int = 2

    def __post_init__(self) -> None:
        for name in ("seed", "n_train_fields", "n_train_sparse_fields", "n_calibration_fields", "n_test_fields", "field_size", "epochs",
                     "batch_size", "threads"):
            check_int(f"gate.{name}", getattr(self, name))
        check_range("gate.n_train_fields", self.n_train_fields, low=1, high=10000)
        check_range("gate.n_train_sparse_fields", self.n_train_sparse_fields, low=0, high=10000)
        check_range("gate.n_calibration_fields", self.n_calibration_fields, low=1, high=10000)
        check_range("gate.n_test_fields", self.n_test_fields, low=0, high=10000)
        check_range("gate.field_size", self.field_size, low=128, high=8192)
        check_int("gate.calibration_field_size", self.calibration_field_size)
        check_range("gate.calibration_field_size", self.calibration_field_size, low=128, high=8192)
        scale = tuple(float(v) for v in self.calibration_density_scale)
        object.__setattr__(self, "calibration_density_scale", scale)
        if len(scale) != 2 or not 0.0 < scale[0] <= scale[1] <= 4.0:
            raise ConfigError(f"gate.calibration_density_scale: expected (low, high) within (0, 4], got {scale}")
        rng = tuple(self.fwhm_range)
        object.__setattr__(self, "fwhm_range", rng)
        if len(rng) != 2 or not 1.0 <= rng[0] < rng[1] <= 20.0:
            raise ConfigError(f"gate.fwhm_range: expected (low, high) within [1, 20], got {rng}")
        check_range("gate.learning_rate", self.learning_rate, low=0.0, high=1.0, low_inclusive=False)
        check_range("gate.epochs", self.epochs, low=1, high=100000)
        check_range("gate.threads", self.threads, low=1, high=256)


@dataclasses.dataclass
class GateSamples:
    """Features, labels and strata of fused detections on simulated fields."""

    physics: np.ndarray
    evidence: dict[str, np.ndarray]
    labels: np.ndarray
    fwhm: np.ndarray
    snr: np.ndarray
    chosen_kind: np.ndarray  # the kind the physics precedence of the fusion picked
    density: np.ndarray  # detections per FWHM^2 around each one (moe_imaging.triage.strata.beam_density)
    exposure_density: np.ndarray  # detections per FWHM^2 over the row's whole field (gate.field_density)

    def __len__(self) -> int:
        return len(self.labels)

    @staticmethod
    def concat(parts: list["GateSamples"]) -> "GateSamples":
        return GateSamples(
            np.concatenate([p.physics for p in parts]),
            {k: np.concatenate([p.evidence[k] for p in parts]) for k in parts[0].evidence},
            np.concatenate([p.labels for p in parts]),
            np.concatenate([p.fwhm for p in parts]),
            np.concatenate([p.snr for p in parts]),
            np.concatenate([p.chosen_kind for p in parts]),
            np.concatenate([p.density for p in parts]),
            np.concatenate([p.exposure_density for p in parts]),
        )

    def strata(self, fwhm_range: tuple[float, float], field_max: float | None = None) -> np.ndarray:
        """The triage stratum of every sample (PSF-size bin and crowding; with ``field_max``, the
        rows of fields denser than that get the uncalibrated field-density stratum)."""
        return triage_stratum(self.fwhm, fwhm_range, "survey", self.density,
                              exposure_density=self.exposure_density, exposure_density_max=field_max)


def _field_config(rng: np.random.Generator, seed: int, size: int, fwhm_range,
                  density_scale: tuple[float, float] = (1.0, 1.0)) -> SurveySimConfig:
    """A random field.  At ``density_scale`` 1 the densities are raised 4-10x over the default survey
    simulation (many examples per field, and crowding); the calibration fields draw a scale
    log-uniformly in ``density_scale`` (0.125-0.5: 1-4x the default survey)."""
    fwhm = float(np.exp(rng.uniform(math.log(fwhm_range[0]), math.log(fwhm_range[1]))))
    kolmogorov = rng.uniform() < 0.3
    beta = float(rng.uniform(2.5, 5.0))
    sky = float(np.exp(rng.uniform(math.log(100), math.log(3000))))
    rdnoise = float(rng.uniform(3.0, 8.0))
    lo, hi = density_scale
    scale = 1.0 if lo == hi == 1.0 else float(np.exp(rng.uniform(math.log(lo), math.log(hi))))
    return SurveySimConfig(
        size=size, seed=seed, fwhm_px=fwhm, psf_model="kolmogorov" if kolmogorov else "moffat",
        moffat_beta=beta, sky_adu=sky, rdnoise=rdnoise, star_density=1200.0 * scale, galaxy_density=300.0 * scale,
        n_streaks=16.0 * scale, cosmic_ray_density=150.0 * scale, hot_pixel_density=60.0 * scale,
        saturated_star_density=8.0 * scale, snr_range=(3.0, 1000.0), galaxy_snr_range=(8.0, 300.0),
    )


def truth_labels(fused: Table, truth: Table, fwhm: float) -> np.ndarray:
    """Class index (:data:`~contracts.vocabulary.SURVEY_CLASSES`) of each fused row from the truth table (see module docs).

    ``fused["kind"] == "streak"`` (the fusion's choice, i.e. the streak
    expert's detection) marks rows on a true trail as streaks; rows of a
    catalog, whose ``kind`` is the gate's, should pass the ``expert`` column
    in its place so the label does not depend on the gate.
    """
    n = len(fused)
    labels = np.full(n, SURVEY_CLASSES.index("artifact"))
    if n == 0:
        return labels
    x, y = np.asarray(fused["x"], float), np.asarray(fused["y"], float)
    kinds = np.asarray(truth["kind"]).astype(str)
    point_like = kinds != "streak"
    t = truth[point_like]
    tk = kinds[point_like]
    radius = np.maximum.reduce([
        np.full(len(t), max(2.0, 0.75 * fwhm)),
        np.nan_to_num(np.asarray(t["hlr"], float)),
        1.5 + 0.5 * np.asarray(t["npix"], float),
    ])
    if len(t):
        d, j = cKDTree(np.column_stack([t["x"], t["y"]])).query(np.column_stack([x, y]))
        hit = d <= radius[j]
        cls = np.select([tk[j] == "galaxy", np.isin(tk[j], ("star", "saturated_star"))], [1, 0], default=3)
        labels = np.where(hit, cls, labels)
    for row in truth[kinds == "streak"]:
        x0, y0, x1, y1 = (float(row[c]) for c in ("x0", "y0", "x1", "y1"))
        length = math.hypot(x1 - x0, y1 - y0)
        ux, uy = (x1 - x0) / length, (y1 - y0) / length
        s = (x - x0) * ux + (y - y0) * uy
        tt = np.abs(-(x - x0) * uy + (y - y0) * ux)
        on = (tt <= max(3.0, fwhm)) & (s >= -fwhm) & (s <= length + fwhm)
        # a real star or galaxy the trail crosses keeps its own label
        labels = np.where(on & (labels == 3), SURVEY_CLASSES.index("streak"), labels)
        if "kind" in fused.colnames:
            labels = np.where(on & (np.asarray(fused["kind"]).astype(str) == "streak"), 2, labels)
    return labels


def field_samples(sim, experts, *, threshold: float) -> GateSamples:
    """Run the experts on one simulated field and return its labelled gate samples."""
    cfg = sim.truth.meta["config"]
    fwhm = float(cfg["fwhm_px"])
    sigma2 = sim.sky / cfg["gain"] + (cfg["rdnoise"] / cfg["gain"]) ** 2
    mask = np.where(sim.image >= cfg["saturate"], np.uint16(MaskBit.SATURATED), np.uint16(0))
    tile = Tile(image=sim.image - sim.sky, variance=sigma2, mask=mask, background=sim.sky,
                psf=moffat_psf(fwhm), gain=float(cfg["gain"]))
    proposals = {e.name: e.propose(tile) for e in experts}
    fused = fuse(proposals, radius=max(1.5, fwhm))
    fused["psf_fwhm"] = np.full(len(fused), fwhm)
    evidence = score_candidates(tile, fused, experts)
    x = np.asarray(fused["x"], float) if len(fused) else np.zeros(0)
    y = np.asarray(fused["y"], float) if len(fused) else np.zeros(0)
    return GateSamples(
        physics=physics_features(fused, psf_fwhm=fwhm, threshold=threshold),
        evidence=evidence_features(evidence),
        labels=truth_labels(fused, sim.truth, fwhm),
        fwhm=np.full(len(fused), fwhm),
        snr=np.nan_to_num(np.asarray(fused["snr"], float), nan=0.0),
        chosen_kind=np.asarray(fused["kind"]).astype(str),
        density=beam_density(x, y, fwhm, sim.image.shape),
        exposure_density=np.full(len(fused), field_density(len(fused), fwhm, sim.image.shape)),
    )


def field_config(config: GateTrainConfig, split: int, i: int, *, fwhm_range: tuple[float, float] | None = None,
                 crowded: bool | None = None) -> SurveySimConfig:
    """The simulation of field ``i`` of ``split`` (seeds ``[seed, split, i]``), as :func:`simulate_samples` draws it.

    Split 0 (or ``crowded=True``) draws ``field_size`` fields at the raised
    training densities; the others the calibration distribution.  Benchmarks
    use splits 3 and up (fresh fields), e.g. to write them as FITS and run the
    whole pipeline on them.
    """
    crowded = (split == 0) if crowded is None else crowded
    size = config.field_size if crowded else config.calibration_field_size
    scale = (1.0, 1.0) if crowded else config.calibration_density_scale
    ss = np.random.SeedSequence([config.seed, split, i])
    rng = np.random.default_rng(ss)
    sim_seed = int(ss.generate_state(1)[0])
    return _field_config(rng, sim_seed, size, fwhm_range or config.fwhm_range, scale)


def simulate_samples(config: GateTrainConfig, split: int, n_fields: int, *, log: Log = None,
                     fwhm_range: tuple[float, float] | None = None, crowded: bool | None = None,
                     start: int = 0) -> GateSamples:
    """Labelled samples from ``n_fields`` fields of one split (0 train, 1 calibration, 2 test, 3+ benchmark).

    The training split (and ``crowded=True``) uses ``field_size`` fields at the raised densities;
    the others follow the calibration distribution (``calibration_field_size``,
    ``calibration_density_scale``): what the certified triage assumes of the data it decides on.
    Fields are numbered from ``start`` within the split (their seeds are ``[seed, split, i]``).
    """
    experts = [make_configured_expert(name) for name in SURVEY_EXPERTS]
    threshold = experts[0].config.detection_threshold(moffat_psf(3.0))
    parts = []
    for i in range(start, start + n_fields):
        sim = simulate_survey(field_config(config, split, i, fwhm_range=fwhm_range, crowded=crowded))
        parts.append(field_samples(sim, experts, threshold=threshold))
        say(log, f"split {split} field {i + 1}/{start + n_fields}: FWHM {sim.truth.meta['config']['fwhm_px']:.2f} px, "
                 f"{len(parts[-1])} detections")
    return GateSamples.concat(parts)


def _tensors(s: GateSamples, mean: np.ndarray, std: np.ndarray):
    x = torch.from_numpy(((s.physics - mean) / std).astype(np.float32))
    ev = {k: torch.from_numpy(v.astype(np.float32)) for k, v in s.evidence.items()}
    return x, ev, torch.from_numpy(s.labels.astype(np.int64))


def train_gate(config: GateTrainConfig = GateTrainConfig(), *, out: str | Path | None = None,
               log: Log = None) -> GateModel:
    """Simulate, train, calibrate (temperature) and save the gate with its calibration split."""
    t0 = time.perf_counter()
    out = Path(out) if out is not None else DEFAULT_GATE_WEIGHTS
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(config.threads)
    torch.use_deterministic_algorithms(True)
    try:
        train = simulate_samples(config, 0, config.n_train_fields, log=log)
        if config.n_train_sparse_fields:  # training fields drawn like the calibration ones, after the crowded
            train = GateSamples.concat([train, simulate_samples(config, 0, config.n_train_sparse_fields,
                                                                log=log, crowded=False,
                                                                start=config.n_train_fields)])
        calib = simulate_samples(config, 1, config.n_calibration_fields, log=log)
        test = simulate_samples(config, 2, config.n_test_fields, log=log) if config.n_test_fields else None
        t_data = time.perf_counter() - t0
        torch.manual_seed(config.seed)
        mean = train.physics.mean(axis=0)
        std = train.physics.std(axis=0) + 1e-6
        sizes = {k: v.shape[1] for k, v in train.evidence.items()}
        net = GateNet(train.physics.shape[1], sizes)
        x, ev, y = _tensors(train, mean, std)
        counts = np.bincount(train.labels, minlength=len(SURVEY_CLASSES)).astype(float)
        weight = torch.tensor(len(train) / (len(SURVEY_CLASSES) * np.maximum(counts, 1.0)), dtype=torch.float32)
        opt = torch.optim.AdamW(net.parameters(), lr=config.learning_rate, weight_decay=1e-4)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=config.epochs)
        gen = torch.Generator().manual_seed(config.seed)
        for epoch in range(config.epochs):
            net.train()
            order = torch.randperm(len(y), generator=gen)
            total = 0.0
            for start in range(0, len(y), config.batch_size):
                idx = order[start : start + config.batch_size]
                log_p, _, _ = net(x[idx], {k: v[idx] for k, v in ev.items()})
                loss = torch.nn.functional.nll_loss(log_p, y[idx], weight=weight)
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += loss.item() * len(idx)
            sched.step()
            if (epoch + 1) % 10 == 0:
                say(log, f"epoch {epoch + 1}/{config.epochs}: loss {total / len(y):.4f}")
        net.eval()
        model = GateModel(net, mean.astype(np.float32), std.astype(np.float32), 1.0, tuple(config.fwhm_range),
                          {"evidence_sizes": sizes})
        # calibration split: temperature, then the scores/errors/strata the triage thresholds are fitted on
        probs_c, _, _ = gate_predict(model, calib.physics, calib.evidence, calibrated=False)
        model.temperature = fit_temperature(np.log(np.clip(probs_c, 1e-12, 1.0)), calib.labels)
        probs_c, _, _ = gate_predict(model, calib.physics, calib.evidence)
        conf_c = probs_c.max(axis=1)
        wrong_c = probs_c.argmax(axis=1) != calib.labels
        metrics: dict[str, Any] = {
            "n_train": len(train), "n_calibration": len(calib),
            "train_class_counts": dict(zip(SURVEY_CLASSES, counts.astype(int).tolist())),
            "temperature": model.temperature,
            "calibration_accuracy": float(1.0 - wrong_c.mean()),
            "calibration_ece": float(expected_calibration_error(conf_c, ~wrong_c)),
        }
        if test is not None:
            probs_t, _, _ = gate_predict(model, test.physics, test.evidence)
            pred = probs_t.argmax(axis=1)
            metrics["test_accuracy"] = float(np.mean(pred == test.labels))
            metrics["test_ece"] = float(expected_calibration_error(probs_t.max(axis=1), pred == test.labels))
            metrics["test_per_class_recall"] = {
                c: float(np.mean(pred[test.labels == k] == k)) if np.any(test.labels == k) else float("nan")
                for k, c in enumerate(SURVEY_CLASSES)
            }
            chosen = np.array([SURVEY_CLASSES.index(k) if k in SURVEY_CLASSES else 3 for k in test.chosen_kind])
            metrics["test_accuracy_fusion_precedence"] = float(np.mean(chosen == test.labels))
        model.metadata.update(
            {
                "config": config.to_dict(),
                "metrics": metrics,
                "classes": list(SURVEY_CLASSES),
                "experts": list(net.experts),
                "torch": torch.__version__,
                "calibration": {
                    "scores": conf_c.round(6).tolist(),
                    "errors": wrong_c.astype(int).tolist(),
                    "strata": calib.strata(model.fwhm_range).tolist(),
                    # what the strata are made of, so they can be recomputed (triage_stratum)
                    "fwhm": calib.fwhm.round(4).tolist(),
                    "density": calib.density.round(6).tolist(),
                    "exposure_density": calib.exposure_density.round(6).tolist(),
                    # the densest calibration field: a denser exposure is outside the calibrated range
                    "field_density_max": float(calib.exposure_density.max()),
                },
                "seconds": {"data": t_data, "total": time.perf_counter() - t0},
            }
        )
        save_model(model, out, card=_model_card(model), card_name="GATE_MODEL_CARD.md")
        save_card(out, json.dumps(model.metadata["metrics"], indent=2, default=float), "gate_v1_metrics.json")
        return model
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)


def _model_card(model: GateModel) -> str:
    m = model.metadata["metrics"]
    cfg = model.metadata["config"]
    lines = [
        "# Model card: the gate `gate_v1`",
        "",
        "A mixture of per-expert heads weighted by a gating network (`moe_imaging.triage.survey.GateNet`,",
        f"{sum(p.numel() for p in model.net.parameters())} parameters) that turns the experts' evidence and the",
        "physics of each fused detection into probabilities over " + ", ".join(SURVEY_CLASSES) + ".",
        "",
        "## Reproduce",
        "",
        "```",
        f"moe-imaging train gate --seed {cfg['seed']}",
        "```",
        "",
        f"torch {model.metadata['torch']}, {cfg['threads']} threads, deterministic algorithms; the same seed",
        "gives the same weights on the same machine and library versions (on another CPU",
        "they agree to ~1e-6 and the calibration split's errors are identical).",
        f"Simulation {model.metadata['seconds']['data']:.0f} s, total {model.metadata['seconds']['total']:.0f} s.",
        "",
        "## Data recipe",
        "",
        f"- {cfg['n_train_fields']} crowded + {cfg.get('n_train_sparse_fields', 0)} sparse training, "
        f"{cfg['n_calibration_fields']} calibration and {cfg['n_test_fields']} test "
        "fields (`training.gate`; disjoint seeds).",
        f"- Crowded training fields: {cfg['field_size']}^2 px at raised densities (4-10x the default survey",
        "  simulation: many examples, blends). Sparse training fields are drawn like the calibration fields.",
        f"- Calibration and test fields: {cfg['calibration_field_size']}^2 px, densities 1-4x the default survey "
        f"(scale {cfg['calibration_density_scale']}",
        "  of the crowded training fields'): the data the triage guarantee is for.",
        f"- PSF FWHM log-uniform in {cfg['fwhm_range']} px; Moffat (beta 2.5-5) or Kolmogorov (30 %).",
        "- All survey experts run on each field, fused, and every expert scores every fused row.",
        "- Labels from the truth table; detections matching no real object are `artifact`.",
        f"- Training rows: {m['n_train']} ({m['train_class_counts']}); calibration rows: {m['n_calibration']}.",
        "",
        "## Calibration (the calibration split, never used for training)",
        "",
        f"Temperature {m['temperature']:.3f}; accuracy {m['calibration_accuracy']:.3f}; "
        f"ECE {m['calibration_ece']:.4f}. The split's confidences, errors and strata are stored in the",
        "weights file so the certified triage thresholds are refitted for any risk level.",
        "",
    ]
    strata = model.metadata.get("calibration", {}).get("strata")
    if strata is not None:
        names, counts = np.unique(np.asarray(strata, dtype=str), return_counts=True)
        lines += [
            "Calibration rows per triage stratum (sparse detections by PSF FWHM bin; those with more than "
            "0.01 detections per FWHM^2 around them form the one `crowded` stratum):",
            "",
            "| stratum | rows |",
            "| --- | ---: |",
            *[f"| {n} | {c} |" for n, c in zip(names, counts)],
            "",
        ]
    if "test_accuracy" in m:
        lines += [
            "## Test fields",
            "",
            f"Accuracy {m['test_accuracy']:.3f} (the fusion's physics precedence alone: "
            f"{m['test_accuracy_fusion_precedence']:.3f}); ECE {m['test_ece']:.4f}.",
            "",
            "| class | recall |",
            "| --- | ---: |",
            *[f"| {c} | {v:.3f} |" for c, v in m["test_per_class_recall"].items()],
            "",
        ]
    lines += [
        "## Limits",
        "",
        f"- Trained for FWHM {cfg['fwhm_range']} px and sidereal survey exposures; outside that range the",
        "  triage sends detections to review (their stratum is not certified).",
        "- Simulated fields only; real data can differ (PSF wings, galaxy morphologies, artifacts).",
        "",
    ]
    return "\n".join(lines)

"""Training the learned expert on simulations, reproducibly from a seed.

:func:`train_learned` builds its data with :func:`moe_imaging.simulate.simulate_survey`:
square fields with raised densities of every object kind, each field with its
own PSF (Moffat with a random beta, or Kolmogorov; FWHM log-uniform in
:attr:`TrainConfig.fwhm_range`) and its own noise (sky, read noise and gain
drawn per field).  Stamps (:func:`~moe_imaging.learned.model.extract_stamps`)
are cut at the true positions of the objects with a small jitter (what the
point expert's peaks do), streaks at several places along their length.
Labels: ``star`` (stars and saturated stars, whose saturated pixels are
masked as the pipeline masks them), ``galaxy``, ``streak`` and ``artifact``
(cosmic rays and hot pixels).

Half of the fields give the network the true PSF image; the other half give
it a Moffat prior (beta 4.765) of the header FWHM with a few per cent of
error, as the pipeline does when a header is all it has.

Splits: the train, validation and test fields draw their simulation seeds
from ``SeedSequence([seed, split, i])`` with a different ``split`` number
each (and the benchmark from yet another), so held-out fields never repeat a
training field.  The checkpoint with the best validation balanced accuracy is
kept; the test split and fields with a PSF outside the training range are
measured once at the end and written into the weights' metadata and the model
card.

Reproducibility: ``torch.manual_seed``, deterministic algorithms and a fixed
number of threads (:attr:`TrainConfig.num_threads`, restored afterwards)
make the same seed give bit-identical weights on the same machine, torch
version and BLAS; across machines the weights agree to rounding.
"""

from __future__ import annotations

import dataclasses
import math
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from contracts.config import Config, check_int, check_range
from contracts.errors import ConfigError
from contracts.vocabulary import SURVEY_CLASSES
from moe_imaging.learned.model import (
    STAMP_SIZE,
    LearnedModel,
    StampNet,
    classify_stamps,
    extract_stamps,
    fwhm_feature,
    psf_channel,
    temper_probabilities,
)
from moe_imaging.psf import moffat_psf
from moe_imaging.simulate import SurveySimConfig, simulate_survey
from pipelines.models import save_card, save_model

__all__ = [
    "TrainConfig",
    "SPLITS",
    "FIELD_DENSITIES",
    "field_seed",
    "field_config",
    "field_samples",
    "build_dataset",
    "evaluate",
    "summarize_predictions",
    "train_learned",
    "model_card",
]

SPLITS: dict[str, int] = {"train": 0, "val": 1, "test": 2, "bench": 3, "ood": 4}
"""Split numbers mixed into the field seeds (disjoint fields per split)."""

FIELD_DENSITIES: dict[str, Any] = {
    "star_density": 800.0,
    "snr_range": (5.0, 1000.0),
    "galaxy_density": 600.0,
    "galaxy_snr_range": (8.0, 300.0),
    "n_streaks": 60.0,
    "streak_snr_range": (20.0, 300.0),
    "streak_length_range": (20.0, 200.0),
    "cosmic_ray_density": 500.0,
    "hot_pixel_density": 200.0,
    "saturated_star_density": 16.0,
    "min_separation_px": 6.0,
}
"""Object densities (per 1024^2 px) of the training and evaluation fields."""

_LABEL = {"star": 0, "saturated_star": 0, "galaxy": 1, "streak": 2, "cosmic_ray": 3, "hot_pixel": 3}
_MIN_LOCAL_SNR = 6.0  # streak pieces fainter than this in a stamp are not labelled


@dataclasses.dataclass(frozen=True)
class TrainConfig(Config):
    """Options of :func:`train_learned` (the defaults reproduce the shipped weights).

    Attributes
    ----------
    seed : int
        Seeds the field simulations, the network's initial weights and the
        batch order.
    n_train_fields, n_val_fields, n_test_fields : int
        Simulated fields per split.
    field_size : int
        Side of each field (pixels).
    fwhm_range : tuple of float
        PSF FWHM range (pixels); log-uniform per field.
    moffat_beta_range : tuple of float
        Moffat beta range of the Moffat fields.
    kolmogorov_fraction : float
        Fraction of fields with a Kolmogorov PSF.
    sky_range : tuple of float
        Sky level range (ADU, log-uniform).
    rdnoise_range, gain_range : tuple of float
        Read noise (e-) and gain (e-/ADU) ranges (uniform).
    true_psf_fraction : float
        Fraction of fields whose PSF input is the true PSF image (the rest get
        a Moffat prior of the header FWHM).
    fwhm_error : float
        Relative error (1 sigma) of the header FWHM given to the network.
    epochs, batch_size : int
        Passes over the training stamps and stamps per step.
    lr, weight_decay : float
        AdamW learning rate (one-cycle schedule peak) and weight decay.
    width : int
        Channels of the network's first block.
    num_threads : int
        Torch threads while training (restored afterwards).
    ood_fwhm : tuple of float
        FWHM of the out-of-range evaluation fields.
    """

    seed: int = 1
    n_train_fields: int = 48
    n_val_fields: int = 6
    n_test_fields: int = 8
    field_size: int = 512
    fwhm_range: tuple[float, float] = (1.5, 6.0)
    moffat_beta_range: tuple[float, float] = (2.5, 5.0)
    kolmogorov_fraction: float = 0.3
    sky_range: tuple[float, float] = (50.0, 5000.0)
    rdnoise_range: tuple[float, float] = (2.0, 10.0)
    gain_range: tuple[float, float] = (1.0, 4.0)
    true_psf_fraction: float = 0.5
    fwhm_error: float = 0.05
    epochs: int = 12
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 1e-4
    width: int = 16
    num_threads: int = 2
    ood_fwhm: tuple[float, ...] = (1.0, 9.0, 12.0)

    def __post_init__(self) -> None:
        for name, low, high in (
            ("seed", 0, 2**32 - 1),
            ("n_train_fields", 1, 10_000),
            ("n_val_fields", 1, 10_000),
            ("n_test_fields", 1, 10_000),
            ("field_size", 64, 8192),
            ("epochs", 1, 1000),
            ("batch_size", 2, 65536),
            ("width", 2, 256),
            ("num_threads", 1, 1024),
        ):
            check_int(f"train.{name}", getattr(self, name))
            check_range(f"train.{name}", getattr(self, name), low=low, high=high)
        self._pair("fwhm_range", 1.0, 20.0)
        self._pair("moffat_beta_range", 1.5, 20.0)
        self._pair("sky_range", 0.0, 1e7)
        self._pair("rdnoise_range", 0.0, 1e4)
        self._pair("gain_range", 1e-3, 1e4)
        check_range("train.kolmogorov_fraction", self.kolmogorov_fraction, low=0.0, high=1.0)
        check_range("train.true_psf_fraction", self.true_psf_fraction, low=0.0, high=1.0)
        check_range("train.fwhm_error", self.fwhm_error, low=0.0, high=0.5)
        check_range("train.lr", self.lr, low=0.0, high=1.0, low_inclusive=False)
        check_range("train.weight_decay", self.weight_decay, low=0.0, high=1.0)
        if isinstance(self.ood_fwhm, list):
            object.__setattr__(self, "ood_fwhm", tuple(self.ood_fwhm))
        if not isinstance(self.ood_fwhm, tuple):
            raise ConfigError(f"train.ood_fwhm: expected a list of FWHM, got {self.ood_fwhm!r}")
        for i, v in enumerate(self.ood_fwhm):
            check_range(f"train.ood_fwhm[{i}]", v, low=1.0, high=20.0)

    def _pair(self, name: str, low: float, high: float) -> None:
        value = getattr(self, name)
        if isinstance(value, list):
            value = tuple(value)
            object.__setattr__(self, name, value)
        if not isinstance(value, tuple) or len(value) != 2:
            raise ConfigError(f"train.{name}: expected a (low, high) pair, got {value!r}")
        check_range(f"train.{name}[0]", value[0], low=low, high=high)
        check_range(f"train.{name}[1]", value[1], low=value[0], high=high)


# --------------------------------------------------------------------------- data


def field_seed(seed: int, split: str, index: int) -> int:
    """Simulation seed of field ``index`` of ``split`` (disjoint across splits)."""
    ss = np.random.SeedSequence([int(seed), SPLITS[split], int(index)])
    return int(ss.generate_state(1, dtype=np.uint32)[0])


def field_config(
    cfg: TrainConfig, split: str, index: int, *, fwhm: float | None = None
) -> tuple[SurveySimConfig, dict[str, Any]]:
    """The simulation configuration of one field and the PSF prior it shows the network.

    Returns
    -------
    sim : SurveySimConfig
        The field.
    prior : dict
        ``fwhm`` (the header FWHM given to the network) and ``true_psf``
        (whether the network sees the true PSF image or a Moffat prior).
    """
    sseed = field_seed(cfg.seed, split, index)
    rng = np.random.default_rng([sseed, 1])
    lo, hi = cfg.fwhm_range
    f = float(np.exp(rng.uniform(math.log(lo), math.log(hi)))) if fwhm is None else float(fwhm)
    kolmo = bool(rng.random() < cfg.kolmogorov_fraction)
    beta = float(rng.uniform(*cfg.moffat_beta_range))
    sky = float(np.exp(rng.uniform(math.log(max(cfg.sky_range[0], 1e-3)), math.log(max(cfg.sky_range[1], 1e-3)))))
    rdnoise = float(rng.uniform(*cfg.rdnoise_range))
    gain = float(rng.uniform(*cfg.gain_range))
    true_psf = bool(rng.random() < cfg.true_psf_fraction)
    f_header = f * float(np.exp(rng.normal(0.0, cfg.fwhm_error)))
    sim = SurveySimConfig(
        size=cfg.field_size,
        seed=sseed,
        fwhm_px=f,
        psf_model="kolmogorov" if kolmo else "moffat",
        moffat_beta=beta,
        sky_adu=sky,
        rdnoise=rdnoise,
        gain=gain,
        **FIELD_DENSITIES,
    )
    return sim, {"fwhm": f_header, "true_psf": true_psf}


def field_samples(
    cfg: TrainConfig, split: str, index: int, *, fwhm: float | None = None
) -> dict[str, np.ndarray]:
    """Labelled stamps of one simulated field.

    Returns
    -------
    dict
        ``stamps (n, 3, S, S)``, ``labels (n,)``, ``mf_snr (n,)``,
        ``truth_kind (n,)``, ``psf (S, S)`` (the PSF channel),
        ``fwhm`` (0-d, the header FWHM) and ``true_fwhm`` (0-d).
    """
    sim_cfg, prior = field_config(cfg, split, index, fwhm=fwhm)
    exp = simulate_survey(sim_cfg)
    sky = np.asarray(exp.sky, dtype=np.float64)
    image = np.asarray(exp.image, dtype=np.float64)
    variance = sky / sim_cfg.gain + (sim_cfg.rdnoise / sim_cfg.gain) ** 2
    mask = (image >= sim_cfg.saturate).astype(np.uint16)
    rng = np.random.default_rng([sim_cfg.seed, 2])
    truth = exp.truth
    ys, xs, labels, snrs, kinds = [], [], [], [], []
    for row in truth:
        kind = str(row["kind"])
        label = _LABEL[kind]
        if kind == "streak":
            length = float(row["length"])
            local = float(row["mf_snr"]) * math.sqrt(min(1.0, STAMP_SIZE / length))
            if local < _MIN_LOCAL_SNR:
                continue
            npos = int(np.clip(round(length / 25.0), 1, 5))
            t = rng.uniform(-0.45, 0.45, npos)
            px = float(row["x0"]) + (0.5 + t) * (float(row["x1"]) - float(row["x0"]))
            py = float(row["y0"]) + (0.5 + t) * (float(row["y1"]) - float(row["y0"]))
            for x, y in zip(px, py, strict=True):
                ys.append(y + rng.uniform(-1, 1))
                xs.append(x + rng.uniform(-1, 1))
                labels.append(label)
                snrs.append(local)
                kinds.append(kind)
            continue
        jit = rng.choice([-1, 0, 0, 0, 1], 2) if kind in ("star", "galaxy", "saturated_star") else (0, 0)
        ys.append(float(row["y"]) + jit[0])
        xs.append(float(row["x"]) + jit[1])
        labels.append(label)
        snrs.append(float(row["mf_snr"]))
        kinds.append(kind)
    yx = np.column_stack([np.floor(np.asarray(ys) + 0.5), np.floor(np.asarray(xs) + 0.5)]).astype(np.int64)
    stamps = extract_stamps(image - sky, variance, mask, yx.reshape(-1, 2))
    if prior["true_psf"]:
        psf_img = exp.psf_image
    else:
        psf_img = moffat_psf(prior["fwhm"]).image
    return {
        "stamps": stamps,
        "labels": np.asarray(labels, np.int64),
        "mf_snr": np.asarray(snrs, np.float64),
        "truth_kind": np.asarray(kinds, dtype="U14"),
        "psf": psf_channel(psf_img),
        "psf_image": np.asarray(psf_img),
        "fwhm": np.float64(prior["fwhm"]),
        "true_fwhm": np.float64(sim_cfg.fwhm_px),
    }


def build_dataset(cfg: TrainConfig, split: str, n_fields: int, **kwargs: Any) -> list[dict[str, np.ndarray]]:
    """The samples of ``n_fields`` fields of one split (see :func:`field_samples`)."""
    return [field_samples(cfg, split, i, **kwargs) for i in range(n_fields)]


# --------------------------------------------------------------------------- evaluation


def _confusion(labels: np.ndarray, pred: np.ndarray, k: int) -> np.ndarray:
    cm = np.zeros((k, k), np.int64)
    np.add.at(cm, (labels, pred), 1)
    return cm


def summarize_predictions(labels: np.ndarray, probs: np.ndarray, stab: np.ndarray) -> dict[str, Any]:
    """Accuracy, per-class recall and precision, confusion matrix and confidence statistics.

    Parameters
    ----------
    labels : numpy.ndarray
        True class indices ``(n,)``.
    probs : numpy.ndarray
        Probabilities ``(n, len(SURVEY_CLASSES))`` (one-hot rows for hard labels).
    stab : numpy.ndarray
        D4 stability per row (NaN when not measured).
    """
    k = len(SURVEY_CLASSES)
    pred = probs.argmax(axis=1) if len(probs) else np.zeros(0, np.int64)
    cm = _confusion(labels, pred, k)
    recall = {c: float(cm[i, i] / cm[i].sum()) if cm[i].sum() else math.nan for i, c in enumerate(SURVEY_CLASSES)}
    precision = {c: float(cm[i, i] / cm[:, i].sum()) if cm[:, i].sum() else math.nan for i, c in enumerate(SURVEY_CLASSES)}
    maxp = probs.max(axis=1) if len(probs) else np.zeros(0)
    correct = pred == labels
    return {
        "n": int(len(labels)),
        "accuracy": float(correct.mean()) if len(labels) else math.nan,
        "balanced_accuracy": float(np.nanmean(list(recall.values()))),
        "recall": recall,
        "precision": precision,
        "support": {c: int(cm[i].sum()) for i, c in enumerate(SURVEY_CLASSES)},
        "confusion": cm.tolist(),
        "mean_max_prob": float(maxp.mean()) if len(maxp) else math.nan,
        "mean_max_prob_when_wrong": float(maxp[~correct].mean()) if (~correct).any() else math.nan,
        "frac_confident_wrong": float(np.mean((maxp >= 0.9) & ~correct)) if len(maxp) else math.nan,
        "mean_stability": float(np.nanmean(stab)) if len(stab) and np.isfinite(stab).any() else math.nan,
    }


def evaluate(
    model: LearnedModel,
    fields: list[dict[str, np.ndarray]],
    *,
    min_snr: float = 0.0,
    tta: bool = True,
    device: str | None = None,
) -> dict[str, Any]:
    """Accuracy, per-class recall and precision, confusion and confidence on fields.

    Probabilities are tempered for fields whose header FWHM is outside the
    model's range (as the expert does); ``raw`` holds the untempered numbers.
    """
    labels, probs, raw, stab, in_range = [], [], [], [], []
    for f in fields:
        sel = f["mf_snr"] >= min_snr
        if not sel.any():
            continue
        p, s = classify_stamps(f["stamps"][sel], f["psf_image"], float(f["fwhm"]), model, tta=tta, device=device)
        pt, ok, _ = temper_probabilities(p, float(f["fwhm"]), model.fwhm_range)
        labels.append(f["labels"][sel])
        raw.append(p)
        probs.append(pt)
        stab.append(s)
        in_range.append(np.full(int(sel.sum()), ok))
    if not labels:
        return {"n": 0}
    lab = np.concatenate(labels)
    out = summarize_predictions(lab, np.concatenate(probs), np.concatenate(stab))
    out["raw"] = summarize_predictions(lab, np.concatenate(raw), np.concatenate(stab))
    out["frac_in_range"] = float(np.concatenate(in_range).mean())
    out["min_snr"] = float(min_snr)
    return out


# --------------------------------------------------------------------------- training


def _stack(fields: list[dict[str, np.ndarray]]) -> tuple[np.ndarray, ...]:
    stamps = np.concatenate([f["stamps"] for f in fields])
    labels = np.concatenate([f["labels"] for f in fields])
    which = np.concatenate([np.full(len(f["labels"]), i) for i, f in enumerate(fields)])
    psfs = np.stack([f["psf"] for f in fields])
    feats = np.array([fwhm_feature(float(f["fwhm"])) for f in fields], np.float32)
    return stamps, labels, which, psfs, feats


def _augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """A random element of D4 per stamp."""
    t = torch.randint(0, 8, (len(x),), generator=g)
    out = torch.empty_like(x)
    for i in range(8):
        sel = t == i
        if sel.any():
            flip, k = divmod(i, 4)
            v = torch.flip(x[sel], dims=(-1,)) if flip else x[sel]
            out[sel] = torch.rot90(v, k, dims=(-2, -1))
    return out


def train_learned(
    cfg: TrainConfig = TrainConfig(),
    *,
    out: str | Path | None = None,
    device: str = "cpu",
    log: Callable[[str], None] | None = None,
) -> tuple[LearnedModel, dict[str, Any]]:
    """Train the learned expert from simulations (see module docs).

    Parameters
    ----------
    cfg : TrainConfig
        Data recipe, seed and optimisation options.
    out : str or Path, optional
        Where to write the weights; the model card goes next to it as
        ``MODEL_CARD.md``.  Nothing is written when omitted.
    device : str
        Torch device for training.
    log : callable, optional
        Called with one line of progress per stage and epoch.

    Returns
    -------
    model : LearnedModel
        The trained network (best validation epoch), eval mode.
    metrics : dict
        Held-out test metrics, out-of-range metrics, timings.
    """
    if not isinstance(device, str) or device.split(":")[0] not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"train.device: must be cpu, cuda, cuda:N or mps, got {device!r}")
    say = log or (lambda _msg: None)
    t0 = time.perf_counter()
    old_threads = torch.get_num_threads()
    old_det = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(cfg.num_threads)
    torch.use_deterministic_algorithms(True)
    try:
        train = build_dataset(cfg, "train", cfg.n_train_fields)
        val = build_dataset(cfg, "val", cfg.n_val_fields)
        t_data = time.perf_counter() - t0
        stamps, labels, which, psfs, feats = _stack(train)
        counts = np.bincount(labels, minlength=len(SURVEY_CLASSES)).astype(np.float64)
        say(f"data: {len(labels)} training stamps ({dict(zip(SURVEY_CLASSES, counts.astype(int).tolist()))}) "
            f"from {cfg.n_train_fields} fields in {t_data:.1f} s")

        torch.manual_seed(cfg.seed)
        g = torch.Generator().manual_seed(cfg.seed)
        net = StampNet(width=cfg.width).to(device)
        class_w = torch.tensor(counts.sum() / np.maximum(counts, 1.0) / len(SURVEY_CLASSES), dtype=torch.float32, device=device)
        loss_fn = nn.CrossEntropyLoss(weight=class_w, label_smoothing=0.02)
        opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        steps_per_epoch = max(1, len(labels) // cfg.batch_size)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.epochs * steps_per_epoch)
        x_all = torch.from_numpy(stamps)
        y_all = torch.from_numpy(labels)
        w_all = torch.from_numpy(which)
        psf_all = torch.from_numpy(psfs)
        f_all = torch.from_numpy(feats)
        model = LearnedModel(net=net, fwhm_range=tuple(float(v) for v in cfg.fwhm_range))
        best: tuple[float, dict[str, torch.Tensor] | None, int] = (-1.0, None, -1)
        history = []
        for epoch in range(cfg.epochs):
            net.train()
            te = time.perf_counter()
            perm = torch.randperm(len(labels), generator=g)
            total = 0.0
            for b in range(steps_per_epoch):
                idx = perm[b * cfg.batch_size : (b + 1) * cfg.batch_size]
                x = torch.cat([x_all[idx], psf_all[w_all[idx]][:, None]], dim=1)
                x = _augment(x, g).to(device)
                loss = loss_fn(net(x, f_all[w_all[idx]].to(device)), y_all[idx].to(device))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                total += float(loss.detach())
            net.eval()
            vm = evaluate(model, val, tta=False, device=device)
            history.append({"epoch": epoch + 1, "loss": total / steps_per_epoch, "val_balanced_accuracy": vm["balanced_accuracy"]})
            say(f"epoch {epoch + 1}/{cfg.epochs}: loss {total / steps_per_epoch:.4f}, "
                f"val balanced accuracy {vm['balanced_accuracy']:.4f} ({time.perf_counter() - te:.1f} s)")
            if vm["balanced_accuracy"] > best[0]:
                best = (vm["balanced_accuracy"], {k: v.detach().clone() for k, v in net.state_dict().items()}, epoch + 1)
        assert best[1] is not None
        net.load_state_dict(best[1])
        net.eval()
        for p in net.parameters():
            p.requires_grad_(False)
        t_train = time.perf_counter() - t0 - t_data

        test = build_dataset(cfg, "test", cfg.n_test_fields)
        metrics: dict[str, Any] = {
            "test": evaluate(model, test, device=device),
            "test_snr10": evaluate(model, test, min_snr=10.0, device=device),
            "test_no_tta": evaluate(model, test, tta=False, device=device),
            "val_best_balanced_accuracy": best[0],
            "best_epoch": best[2],
            "history": history,
            "n_train_stamps": int(len(labels)),
            "train_class_counts": dict(zip(SURVEY_CLASSES, counts.astype(int).tolist())),
        }
        ood = {}
        for i, fw in enumerate(cfg.ood_fwhm):
            fields = [field_samples(cfg, "ood", 100 * i + j, fwhm=fw) for j in range(2)]
            ood[f"{fw:g}"] = evaluate(model, fields, device=device)
        metrics["out_of_range"] = ood
        metrics["time_data_s"] = round(t_data, 1)
        metrics["time_train_s"] = round(t_train, 1)
        metrics["time_total_s"] = round(time.perf_counter() - t0, 1)
        model.metadata = {
            "train_config": _plain(cfg.to_dict()),
            "field_densities": _plain(FIELD_DENSITIES),
            "metrics": _plain(metrics),
            "torch_version": str(torch.__version__),
            "numpy_version": np.__version__,
            "platform": platform.platform(),
            "n_parameters": int(sum(p.numel() for p in net.parameters())),
            "device": str(device),
        }
        if out is not None:
            path = save_model(model, out)
            save_card(path, model_card(model, weights_path=Path(path)), "MODEL_CARD.md")
            say(f"wrote {path} ({Path(path).stat().st_size / 1024:.0f} KiB) and its model card")
        return model, metrics
    finally:
        torch.set_num_threads(old_threads)
        torch.use_deterministic_algorithms(old_det)


def _plain(obj: Any) -> Any:
    """Nested plain Python values (tuples to lists, numpy scalars to floats)."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


# --------------------------------------------------------------------------- model card


def _fmt(v: float) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"


def _class_table(m: dict[str, Any]) -> list[str]:
    lines = ["| class | support | recall (accuracy) | precision |", "| --- | ---: | ---: | ---: |"]
    for c in SURVEY_CLASSES:
        lines.append(f"| {c} | {m['support'][c]} | {_fmt(m['recall'][c])} | {_fmt(m['precision'][c])} |")
    return lines


def _confusion_table(m: dict[str, Any]) -> list[str]:
    lines = ["| true \\ predicted | " + " | ".join(SURVEY_CLASSES) + " |", "| --- |" + " ---: |" * len(SURVEY_CLASSES)]
    for c, row in zip(SURVEY_CLASSES, m["confusion"], strict=True):
        lines.append(f"| {c} | " + " | ".join(str(v) for v in row) + " |")
    return lines


def model_card(model: LearnedModel, *, weights_path: Path | None = None) -> str:
    """The model card (Markdown) from the metadata stored with the weights."""
    md = model.metadata
    cfg = md["train_config"]
    m = md["metrics"]
    test, t10 = m["test"], m["test_snr10"]
    size_kib = weights_path.stat().st_size / 1024 if weights_path is not None and weights_path.exists() else math.nan
    lo, hi = model.fwhm_range
    lines = [
        "# Model card: learned expert `learned_v1`",
        "",
        "A small CNN (`moe_imaging.learned.model.StampNet`, "
        f"{md['n_parameters']:,} parameters, {size_kib:.0f} KiB) that classifies "
        f"{model.stamp_size} x {model.stamp_size} px candidate stamps as "
        + ", ".join(f"`{c}`" for c in model.classes)
        + ", with the PSF as an extra input (its image as a channel, its FWHM as FiLM conditioning).",
        "",
        "## Reproduce",
        "",
        "```",
        f"moe-imaging train learned --seed {cfg['seed']} --out moe_imaging/models/learned_v1.pt",
        "```",
        "",
        f"Seed {cfg['seed']}; torch {md['torch_version']}, numpy {md['numpy_version']}, "
        f"{cfg['num_threads']} CPU thread(s), deterministic algorithms ({md['platform']}). "
        "The same seed gives bit-identical weights on the same machine and library versions; "
        f"elsewhere they agree to rounding. Data {m['time_data_s']} s, training {m['time_train_s']} s, "
        f"total with evaluation {m['time_total_s']} s.",
        "",
        "## Data recipe (all simulated, `moe_imaging.simulate.simulate_survey`)",
        "",
        f"- {cfg['n_train_fields']} training, {cfg['n_val_fields']} validation and {cfg['n_test_fields']} test fields "
        f"of {cfg['field_size']}^2 px; seeds from `SeedSequence([seed, split, i])`, a different split number per split "
        "(the benchmark uses another), so held-out fields never repeat training fields.",
        f"- PSF per field: FWHM log-uniform in [{lo:g}, {hi:g}] px; Kolmogorov with probability "
        f"{cfg['kolmogorov_fraction']}, otherwise Moffat with beta uniform in {cfg['moffat_beta_range']}.",
        f"- Noise per field: sky log-uniform in {cfg['sky_range']} ADU, read noise uniform in "
        f"{cfg['rdnoise_range']} e-, gain uniform in {cfg['gain_range']} e-/ADU; "
        "pixel sigma^2 = sky/gain + (rdnoise/gain)^2.",
        f"- PSF input: the true PSF image on {cfg['true_psf_fraction']:.0%} of the fields, otherwise a Moffat "
        f"(beta 4.765) prior of the header FWHM, which carries a {cfg['fwhm_error']:.0%} (1 sigma) error.",
        "- Objects per 1024^2 px: " + ", ".join(f"{k} {v}" for k, v in md["field_densities"].items()) + ".",
        "- Labels: `star` = stars and saturated stars (saturated pixels masked), `galaxy` = bulge+disk galaxies, "
        "`streak` = fast movers (stamps at up to 5 places along each streak; pieces with a stamp S/N < 6 dropped), "
        "`artifact` = cosmic rays and hot pixels.",
        "- Stamps at the true positions, stars and galaxies jittered by -1/0/+1 px (what the point expert's peaks do); "
        "pixels in units of their noise, asinh-compressed, plus a brightness-free shape channel and a mask channel.",
        f"- Training stamps: {m['n_train_stamps']} ({', '.join(f'{k} {v}' for k, v in m['train_class_counts'].items())}); "
        "inverse-frequency class weights, label smoothing 0.02, a random rotation/flip (D4) per stamp.",
        f"- AdamW, one-cycle learning rate (peak {cfg['lr']}), batch {cfg['batch_size']}, {cfg['epochs']} epochs; "
        f"the epoch with the best validation balanced accuracy is kept (epoch {m['best_epoch']}, "
        f"{_fmt(m['val_best_balanced_accuracy'])}).",
        "",
        "## Held-out test fields (PSF in range, D4 test-time augmentation)",
        "",
        f"All test stamps: accuracy {_fmt(test['accuracy'])}, balanced accuracy {_fmt(test['balanced_accuracy'])}, "
        f"mean max probability {_fmt(test['mean_max_prob'])} ({_fmt(test['mean_max_prob_when_wrong'])} when wrong), "
        f"mean D4 stability {_fmt(test['mean_stability'])}; without test-time augmentation accuracy "
        f"{_fmt(m['test_no_tta']['accuracy'])}.",
        "",
        *_class_table(test),
        "",
        "Confusion matrix (rows: truth):",
        "",
        *_confusion_table(test),
        "",
        f"Objects with matched-filter S/N >= 10: accuracy {_fmt(t10['accuracy'])}, balanced accuracy "
        f"{_fmt(t10['balanced_accuracy'])}.",
        "",
        *_class_table(t10),
        "",
        "## PSF outside the training range",
        "",
        f"The expert compares the tile's PSF FWHM with [{lo:g}, {hi:g}] px. Outside it, `learned_in_range` is "
        "False and the probabilities are mixed toward uniform, with weight "
        "min(1, |log(FWHM / nearest range end)| / log(1.5)): fully uniform at 1.5x beyond the range. "
        "Measured on two simulated fields per FWHM (raw = the network's own answer before tempering):",
        "",
        "| FWHM (px) | n | raw accuracy | raw mean max prob | raw frac. wrong with p >= 0.9 | "
        "tempered mean max prob | flagged out of range |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for fw, om in m["out_of_range"].items():
        lines.append(
            f"| {fw} | {om['n']} | {_fmt(om['raw']['accuracy'])} | {_fmt(om['raw']['mean_max_prob'])} | "
            f"{_fmt(om['raw']['frac_confident_wrong'])} | {_fmt(om['mean_max_prob'])} | {_fmt(1 - om['frac_in_range'])} |"
        )
    lines += [
        "",
        "## Intended use",
        "",
        "One expert of the mixture: per-candidate class evidence (`p_star`, `p_galaxy`, `p_streak`, `p_artifact`, "
        "`learned_confidence`, `learned_stability`, `learned_in_range`) for the gate, on background-subtracted "
        "survey tiles with a variance plane and a PSF prior, candidates from the point expert's matched filter.",
        "",
        "## Limitations",
        "",
        "- Trained on simulations only (parametric bulge+disk galaxies, idealised cosmic rays and hot pixels, "
        "straight streaks); real data will differ: calibrate the gate on labelled real data.",
        "- Small galaxies under a wide PSF are physically unresolved and look like stars; most star/galaxy "
        "confusion is there and at low S/N.",
        "- Blends are labelled by the object at the stamp centre; a stamp is 31 px, so streak pieces and large "
        "galaxies are seen only in part.",
        "- No microscopy classes (`nucleus`), no bleed trails or satellite glints as separate classes.",
        "- Out of the FWHM range the output carries no information by construction (uniform); rescale the image "
        "or retrain with a wider `fwhm_range` for such data.",
        "",
    ]
    return "\n".join(lines)

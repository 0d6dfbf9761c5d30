"""Training the microscopy (nucleus) triage: simulate -> detect -> fit -> calibrate -> model card.

``moe-imaging train nucleus-triage`` runs :func:`train_nucleus_triage`.  It
simulates fields with :func:`moe_imaging.simulate_microscopy.simulate_microscopy`
over a range of pixel sizes, optics, densities, clumping, brightness, noise and
vignetting, from disjoint seeds for training, calibration and test
(``SeedSequence([seed, split, i])``), runs the nucleus expert on each whole
field as one tile with the background and noise the pipeline would estimate,
labels every detection against the simulator's label mask
(:func:`moe_imaging.triage.microscopy.label_detections`), trains the small MLP,
fits its temperature on the calibration split and stores that split with the
weights.  The model itself is :class:`moe_imaging.triage.microscopy.NucleusTriageModel`.
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from astropy.table import Table
from torch import nn

from contracts.config import Config, check_int, check_range
from contracts.errors import ConfigError
from moe_imaging.experts.nucleus import (
    NucleusExpertConfig,
    find_nuclei,
    microscopy_background,
)
from moe_imaging.psf import airy_psf
from moe_imaging.simulate_microscopy import (
    MicroscopySimConfig,
    SimulatedMicroscopy,
    simulate_microscopy,
)
from moe_imaging.tile import Tile
from moe_imaging.triage.calibration import expected_calibration_error, fit_temperature
from moe_imaging.triage.certify import fit_stratified_triage
from moe_imaging.triage.microscopy import (
    FEATURES,
    OUT_OF_RANGE_STRATUM,
    RANGE_FEATURES,
    RANGE_QUANTILES,
    NucleusTriageModel,
    NucleusTriageNet,
    _col,
    _logits,
    label_detections,
    nucleus_features,
    nucleus_stratum,
    outside_feature_range,
    predict_nucleus,
)
from pipelines.models import save_model

__all__ = [
    "NucleusTriageConfig",
    "NucleusSamples",
    "field_config",
    "detect_field",
    "simulate_samples",
    "train_nucleus_triage",
]


@dataclasses.dataclass(frozen=True)
class NucleusTriageConfig(Config):
    """How the shipped nucleus triage is made (frozen, validated; the seed lives here).

    Attributes
    ----------
    seed : int
        Root seed; field ``i`` of split ``s`` uses ``SeedSequence([seed, s, i])``.
    n_train_fields, n_calibration_fields, n_test_fields : int
        Simulated fields per split (disjoint seeds).
    field_size : int
        Side of each simulated field, pixels.
    pixel_size_um : tuple of float
        Log-uniform range of object-plane pixel sizes, um.
    numerical_aperture : tuple of float
        Uniform range of the objective NA.
    wavelength_nm : tuple of float
        Uniform range of the emission wavelength, nm.
    diameter_low_um : tuple of float
        Uniform range of the smallest nucleus diameter, um; the largest is this
        times a factor uniform in ``diameter_spread``.  The expert is told the
        same range (as a user would configure it).
    diameter_spread : tuple of float
        Range of largest / smallest diameter.
    density_per_mm2 : tuple of float
        Log-uniform range of nuclei per mm^2.
    clump_fraction, dim_fraction, texture : tuple of float
        Uniform ranges of the simulator's parameters of the same names.
    brightness_e, background_e : tuple of float
        Log-uniform ranges, e- per pixel.
    read_noise_e, vignetting : tuple of float
        Uniform ranges.
    hidden : int
        Width of the classifier's hidden layers.
    epochs : int
        Full-batch Adam steps.
    learning_rate, weight_decay : float
        Adam options.
    threads : int
        torch threads during training (results depend on it).
    estimated_background : bool
        Run the expert with the background and noise the pipeline estimates
        (default), not the simulator's true ones (:func:`detect_field`).
    """

    seed: int = 1
    n_train_fields: int = 80
    n_calibration_fields: int = 150
    n_test_fields: int = 30
    field_size: int = 1024
    pixel_size_um: tuple[float, float] = (0.2, 0.65)
    numerical_aperture: tuple[float, float] = (0.3, 1.3)
    wavelength_nm: tuple[float, float] = (450.0, 650.0)
    diameter_low_um: tuple[float, float] = (6.0, 10.0)
    diameter_spread: tuple[float, float] = (1.4, 1.9)
    density_per_mm2: tuple[float, float] = (600.0, 3000.0)
    clump_fraction: tuple[float, float] = (0.1, 0.5)
    dim_fraction: tuple[float, float] = (0.05, 0.3)
    texture: tuple[float, float] = (0.1, 0.4)
    brightness_e: tuple[float, float] = (600.0, 6000.0)
    background_e: tuple[float, float] = (20.0, 400.0)
    read_noise_e: tuple[float, float] = (1.0, 6.0)
    vignetting: tuple[float, float] = (0.0, 0.4)
    hidden: int = 32
    epochs: int = 600
    learning_rate: float = 1e-2
    weight_decay: float = 1e-4
    threads: int = 2
    estimated_background: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.estimated_background, bool):
            raise ConfigError(f"nucleus_triage.estimated_background: expected true or false, "
                              f"got {self.estimated_background!r}")
        for name in ("seed", "n_train_fields", "n_calibration_fields", "n_test_fields", "field_size", "hidden",
                     "epochs", "threads"):
            check_int(f"nucleus_triage.{name}", getattr(self, name))
        check_range("nucleus_triage.seed", self.seed, low=0, high=2**63 - 1)
        check_range("nucleus_triage.n_train_fields", self.n_train_fields, low=1, high=100000)
        check_range("nucleus_triage.n_calibration_fields", self.n_calibration_fields, low=1, high=100000)
        check_range("nucleus_triage.n_test_fields", self.n_test_fields, low=0, high=100000)
        check_range("nucleus_triage.field_size", self.field_size, low=128, high=8192)
        check_range("nucleus_triage.hidden", self.hidden, low=2, high=4096)
        check_range("nucleus_triage.epochs", self.epochs, low=1, high=1000000)
        check_range("nucleus_triage.threads", self.threads, low=1, high=256)
        check_range("nucleus_triage.learning_rate", self.learning_rate, low=0.0, high=1.0, low_inclusive=False)
        check_range("nucleus_triage.weight_decay", self.weight_decay, low=0.0, high=1.0)
        limits = {
            "pixel_size_um": (0.01, 20.0), "numerical_aperture": (0.05, 1.6), "wavelength_nm": (200.0, 2000.0),
            "diameter_low_um": (0.5, 200.0), "diameter_spread": (1.0, 5.0), "density_per_mm2": (1.0, 1e6),
            "clump_fraction": (0.0, 1.0), "dim_fraction": (0.0, 1.0), "texture": (0.0, 2.0),
            "brightness_e": (1.0, 1e6), "background_e": (0.0, 1e6), "read_noise_e": (0.0, 1000.0),
            "vignetting": (0.0, 1.0),
        }
        for name, (lo, hi) in limits.items():
            value = tuple(float(v) for v in getattr(self, name))
            if len(value) != 2 or not lo <= value[0] <= value[1] <= hi:
                raise ConfigError(f"nucleus_triage.{name}: expected (low, high) with {lo} <= low <= high <= {hi}, "
                                  f"got {getattr(self, name)!r}")
            object.__setattr__(self, name, value)




def _uniform(rng: np.random.Generator, lohi: tuple[float, float]) -> float:
    return float(rng.uniform(lohi[0], lohi[1])) if lohi[1] > lohi[0] else float(lohi[0])


def _log_uniform(rng: np.random.Generator, lohi: tuple[float, float]) -> float:
    if lohi[1] <= lohi[0]:
        return float(lohi[0])
    return float(math.exp(rng.uniform(math.log(lohi[0]), math.log(lohi[1]))))


def field_config(config: NucleusTriageConfig, split: int, index: int) -> MicroscopySimConfig:
    """The simulated field ``index`` of ``split`` (0 train, 1 calibration, 2 test, 3+ benchmarks)."""
    ss = np.random.SeedSequence([int(config.seed), int(split), int(index)])
    rng = np.random.default_rng(ss)
    d_lo = _uniform(rng, config.diameter_low_um)
    d_hi = d_lo * _uniform(rng, config.diameter_spread)
    return MicroscopySimConfig(
        shape=(config.field_size, config.field_size),
        seed=int(ss.generate_state(1, np.uint32)[0]),
        pixel_size_um=_log_uniform(rng, config.pixel_size_um),
        numerical_aperture=_uniform(rng, config.numerical_aperture),
        emission_wavelength_nm=_uniform(rng, config.wavelength_nm),
        nucleus_diameter_um=(d_lo, d_hi),
        density_per_mm2=_log_uniform(rng, config.density_per_mm2),
        clump_fraction=_uniform(rng, config.clump_fraction),
        dim_fraction=_uniform(rng, config.dim_fraction),
        brightness_e=_log_uniform(rng, config.brightness_e),
        texture=_uniform(rng, config.texture),
        background_e=_log_uniform(rng, config.background_e),
        vignetting=_uniform(rng, config.vignetting),
        read_noise_e=_uniform(rng, config.read_noise_e),
    )


def detect_field(sim_config: MicroscopySimConfig, sim: SimulatedMicroscopy | None = None, *,
                 estimated_background: bool = True) -> tuple[Table, NucleusExpertConfig, float, SimulatedMicroscopy]:
    """Simulate a field (unless given) and run the nucleus expert on it as one tile.

    With ``estimated_background`` (the default) the tile takes the background
    and noise the pipeline would estimate
    (:func:`moe_imaging.experts.nucleus.microscopy_background`, the same two
    passes as ``pipelines.detect_image``), so the triage learns, and is
    calibrated on, the detections the pipeline makes, including the faint
    fragments a misestimated background leaves.  Otherwise it takes the
    simulator's true (vignetted) background and the noise
    ``sqrt(background + read_noise^2) / gain`` per pixel.

    Returns
    -------
    (candidates, expert configuration, PSF FWHM in pixels, simulation)
    """
    cfg = sim_config
    if sim is None:
        sim = simulate_microscopy(cfg)
    ny, nx = cfg.shape
    yc, xc = 0.5 * (ny - 1), 0.5 * (nx - 1)
    r2 = ((np.arange(nx) - xc) ** 2)[None, :] + ((np.arange(ny) - yc) ** 2)[:, None]
    vig = 1.0 - cfg.vignetting * r2 / (xc * xc + yc * yc)
    bkg = cfg.background_e * vig / cfg.gain
    noise = np.sqrt(cfg.background_e * vig + cfg.read_noise_e**2) / cfg.gain
    psf = airy_psf(numerical_aperture=cfg.numerical_aperture, wavelength_nm=cfg.emission_wavelength_nm,
                   pixel_size_um=cfg.pixel_size_um)
    expert = NucleusExpertConfig.from_optics(diameter_um=tuple(cfg.nucleus_diameter_um),
                                             pixel_size_um=cfg.pixel_size_um)
    image = np.asarray(sim.image, np.float64)
    if estimated_background:
        bkg, noise = microscopy_background(image, expert, psf).evaluate(0, ny, 0, nx)
    tile = Tile.from_image(image, psf, noise=noise, background=bkg, gain=cfg.gain)
    return find_nuclei(tile, config=expert), expert, float(psf.fwhm), sim


@dataclasses.dataclass
class NucleusSamples:
    """Features, outcomes and per-row context of nucleus detections on simulated fields."""

    features: np.ndarray
    outcome: np.ndarray
    strata: np.ndarray
    snr: np.ndarray
    diameter_low_px: np.ndarray
    psf_fwhm: np.ndarray
    field: np.ndarray

    def __len__(self) -> int:
        return len(self.outcome)

    @property
    def labels(self) -> np.ndarray:
        """Class index per row: 0 ``nucleus``, 1 ``artifact``."""
        return (self.outcome != "nucleus").astype(np.int64)

    @staticmethod
    def concat(parts: list[NucleusSamples]) -> NucleusSamples:
        """One sample set from several."""
        if not parts:
            return NucleusSamples(np.zeros((0, len(FEATURES)), np.float32), np.zeros(0, "U8"), np.zeros(0, "U40"),
                                  np.zeros(0), np.zeros(0), np.zeros(0), np.zeros(0, np.int64))
        return NucleusSamples(*(np.concatenate([getattr(p, f.name) for p in parts])
                                for f in dataclasses.fields(NucleusSamples)))


def simulate_samples(
    config: NucleusTriageConfig,
    split: int,
    n_fields: int,
    *,
    start: int = 0,
    log: Callable[[str], None] | None = None,
    field_override: Callable[[MicroscopySimConfig], MicroscopySimConfig] | None = None,
) -> NucleusSamples:
    """Labelled detections from fields ``start .. start + n_fields - 1`` of ``split``.

    ``field_override`` may change each field's simulation configuration (e.g.
    an out-of-range pixel size for a benchmark).  Strata carry no range check
    here (the model's range is fitted from these samples).
    """
    check_int("split", split)
    check_int("n_fields", n_fields)
    parts = []
    t0 = time.perf_counter()
    for i in range(start, start + n_fields):
        cfg = field_config(config, split, i)
        if field_override is not None:
            cfg = field_override(cfg)
        cand, expert, fwhm, sim = detect_field(cfg, estimated_background=config.estimated_background)
        feats = nucleus_features(cand, diameter_px=expert.diameter_px, psf_fwhm=fwhm)
        n = len(cand)
        parts.append(NucleusSamples(
            features=feats,
            outcome=label_detections(cand, sim.labels, sim.truth),
            strata=nucleus_stratum(cand, diameter_px=expert.diameter_px, psf_fwhm=fwhm),
            snr=np.nan_to_num(_col(cand, "snr"), nan=0.0),
            diameter_low_px=np.full(n, expert.diameter_px[0]),
            psf_fwhm=np.full(n, fwhm),
            field=np.full(n, i, np.int64),
        ))
        if log is not None and ((i - start + 1) % 10 == 0 or i == start + n_fields - 1):
            log(f"split {split}: {i - start + 1}/{n_fields} fields, {sum(len(p) for p in parts)} detections, "
                f"{time.perf_counter() - t0:.0f} s")
    return NucleusSamples.concat(parts)





def _fit_net(config: NucleusTriageConfig, x: np.ndarray, y: np.ndarray) -> NucleusTriageNet:
    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        torch.manual_seed(config.seed)
        net = NucleusTriageNet(x.shape[1], config.hidden)
        opt = torch.optim.Adam(net.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
        xt = torch.from_numpy(np.ascontiguousarray(x, np.float32))
        yt = torch.from_numpy(y.astype(np.int64))
        loss_fn = nn.CrossEntropyLoss()
        net.train()
        for _ in range(config.epochs):
            opt.zero_grad()
            loss = loss_fn(net(xt), yt)
            loss.backward()
            opt.step()
        net.eval()
    finally:
        torch.set_num_threads(threads)
    return net


def _model_card(model: NucleusTriageModel, path: Path) -> str:
    m = model.metadata
    met = m["metrics"]
    cfg = m["config"]
    rows = "\n".join(f"| {k} | {v} |" for k, v in sorted(met["calibration_strata"].items()))
    out_rows = "\n".join(f"| {k} | {v} |" for k, v in sorted(met["outcomes_calibration"].items()))
    background = ("the background and noise the pipeline estimates (two passes, `microscopy_background`)"
                  if cfg.get("estimated_background", False) else "the simulator's true background and noise")
    return f"""# Model card: the nucleus triage `{path.stem}`

A small MLP (`moe_imaging.triage.microscopy.NucleusTriageNet`, {m['n_parameters']} parameters) that
turns the nucleus expert's measurements of a detection into `p_nucleus` (exactly one real
nucleus) and `p_artifact` (an error: spurious, a piece of a split nucleus, or a merge of
two), followed by the certified triage of `moe_imaging.triage.certify.fit_stratified_triage`.

## Reproduce

```
moe-imaging train nucleus-triage --seed {cfg['seed']}
```

torch {m['torch']}, {cfg['threads']} threads, full-batch Adam; the same seed gives the same
weights on the same machine and library versions (checked: two runs bit-identical);
another CPU's kernels move the weights by ~1e-3 and the temperature in the 4th digit. Total time {met['time_total_s']:.0f} s.

## Data recipe

- {cfg['n_train_fields']} training, {cfg['n_calibration_fields']} calibration and {cfg['n_test_fields']} test fields
  of {cfg['field_size']}^2 px (`moe_imaging.simulate_microscopy`; disjoint seeds
  `SeedSequence([seed, split, i])`).
- Per field: pixel size log-uniform in {cfg['pixel_size_um']} um, NA {cfg['numerical_aperture']},
  emission {cfg['wavelength_nm']} nm, smallest nucleus diameter {cfg['diameter_low_um']} um times
  {cfg['diameter_spread']} for the largest (the expert is told that range), density
  {cfg['density_per_mm2']} per mm^2, clumps {cfg['clump_fraction']}, dim {cfg['dim_fraction']},
  brightness {cfg['brightness_e']} e-, background {cfg['background_e']} e-, read noise
  {cfg['read_noise_e']} e-, vignetting {cfg['vignetting']}.
- The nucleus expert runs on each whole field as one tile, with {background}.
- Labels from the label mask: `nucleus`, else `artifact` (spurious / split / merge).
- Training rows: {met['n_train']} ({met['train_error_fraction']:.3f} errors); calibration rows: {met['n_calibration']}.

## Calibration (never used for training)

Temperature {model.temperature:.3f}; accuracy {met['calibration_accuracy']:.4f}; ECE {met['calibration_ece']:.4f}.
Calibrated range (anything outside goes to review): smallest expected diameter
{model.diameter_range[0]:.1f}-{model.diameter_range[1]:.1f} px, PSF FWHM {model.psf_range[0]:.2f}-{model.psf_range[1]:.2f} px.
Single detections outside the training split's 0.1-99.9 % quantiles of
{', '.join(RANGE_FEATURES)} are out of range too (their calibration rows are left out):
{', '.join(f"{k} [{v[0]:.2f}, {v[1]:.2f}]" for k, v in model.feature_range.items())}.
The split's confidences, errors and strata are stored in the weights file, so the
thresholds are refitted for any risk level.

| stratum | rows |
| --- | ---: |
{rows}

| outcome | rows |
| --- | ---: |
{out_rows}

## Test fields

Accuracy {met['test_accuracy']:.4f} (the expert alone, everything a nucleus: {met['test_expert_accuracy']:.4f});
at alpha=1 %, delta=5 %: error among automatic decisions {met['test_error_auto_1pct']:.4f},
{met['test_coverage_1pct']:.3f} decided automatically.

## Limits

Simulated widefield fluorescence only; the guarantee assumes new detections are exchangeable
with the calibration ones within a stratum. Real images need their own calibration labels.
"""


def train_nucleus_triage(
    config: NucleusTriageConfig = NucleusTriageConfig(),
    *,
    out: str | Path | None = None,
    log: Callable[[str], None] | None = None,
) -> NucleusTriageModel:
    """Simulate, train, calibrate and (with ``out``) save the nucleus triage and its model card.

    Parameters
    ----------
    config : NucleusTriageConfig
        The recipe (and the seed).
    out : str or path-like, optional
        Weights file to write (``.pt``); the model card ``NUCLEUS_TRIAGE_MODEL_CARD.md``
        is written beside it.
    log : callable, optional
        Receives progress lines.

    Returns
    -------
    NucleusTriageModel
    """
    t0 = time.perf_counter()
    train = simulate_samples(config, 0, config.n_train_fields, log=log)
    cal = simulate_samples(config, 1, config.n_calibration_fields, log=log)
    test = simulate_samples(config, 2, config.n_test_fields, log=log)
    if len(train) == 0 or len(cal) == 0:
        raise ValueError("no detections on the simulated training or calibration fields")
    mean = train.features.mean(axis=0)
    std = train.features.std(axis=0)
    std = np.where(std > 1e-6, std, 1.0).astype(np.float32)
    x = ((train.features - mean) / std).astype(np.float32)
    t_sim = time.perf_counter() - t0
    net = _fit_net(config, x, train.labels)
    lo_q, hi_q = RANGE_QUANTILES
    feature_range = {name: (float(np.quantile(train.features[:, FEATURES.index(name)], lo_q)),
                            float(np.quantile(train.features[:, FEATURES.index(name)], hi_q)))
                     for name in RANGE_FEATURES}
    model = NucleusTriageModel(net, mean.astype(np.float32), std, 1.0, (0.0, 0.0), (0.0, 0.0), {}, feature_range)
    cal.strata = np.where(outside_feature_range(cal.features, feature_range) != "", OUT_OF_RANGE_STRATUM, cal.strata)
    test.strata = np.where(outside_feature_range(test.features, feature_range) != "", OUT_OF_RANGE_STRATUM,
                           test.strata)
    temperature = fit_temperature(_logits(model, cal.features), cal.labels)
    model.temperature = temperature
    p_cal = predict_nucleus(model, cal.features)
    conf = p_cal.max(axis=1)
    errors = (p_cal.argmax(axis=1) != cal.labels).astype(np.int64)
    model.calibration = {"scores": conf.tolist(), "errors": errors.tolist(), "strata": cal.strata.tolist()}
    model.diameter_range = (float(cal.diameter_low_px.min()), float(cal.diameter_low_px.max()))
    model.psf_range = (float(cal.psf_fwhm.min()), float(cal.psf_fwhm.max()))
    metrics: dict[str, Any] = {
        "n_train": len(train),
        "n_calibration": len(cal),
        "n_test": len(test),
        "train_error_fraction": float(train.labels.mean()),
        "calibration_accuracy": float(1 - errors.mean()),
        "calibration_ece": float(expected_calibration_error(conf, errors == 0)),
        "calibration_strata": {k: int(v) for k, v in zip(*np.unique(cal.strata, return_counts=True))},
        "outcomes_calibration": {k: int(v) for k, v in zip(*np.unique(cal.outcome, return_counts=True))},
        "time_simulation_s": t_sim,
    }
    if len(test):
        p_test = predict_nucleus(model, test.features)
        err_test = p_test.argmax(axis=1) != test.labels
        keep = cal.strata != OUT_OF_RANGE_STRATUM
        triage = fit_stratified_triage(conf[keep], errors[keep], cal.strata[keep], alpha=0.01, delta=0.05)
        auto, _ = triage.decide(p_test.max(axis=1), test.strata)
        metrics.update({
            "test_accuracy": float(1 - err_test.mean()),
            "test_expert_accuracy": float((test.labels == 0).mean()),
            "test_error_auto_1pct": float(err_test[auto].mean()) if auto.any() else float("nan"),
            "test_coverage_1pct": float(auto.mean()),
        })
    else:
        metrics.update({"test_accuracy": float("nan"), "test_expert_accuracy": float("nan"),
                        "test_error_auto_1pct": float("nan"), "test_coverage_1pct": float("nan")})
    metrics["time_total_s"] = time.perf_counter() - t0
    model.metadata = {
        "config": config.to_dict(),
        "metrics": metrics,
        "n_parameters": int(sum(p.numel() for p in net.parameters())),
        "torch": torch.__version__,
    }
    if out is not None:
        save_model(model, out, card=_model_card(model, Path(out)), card_name="NUCLEUS_TRIAGE_MODEL_CARD.md")
    if log is not None:
        log(f"calibration accuracy {metrics['calibration_accuracy']:.4f}, ECE {metrics['calibration_ece']:.4f}, "
            f"test accuracy {metrics['test_accuracy']:.4f}; {metrics['time_total_s']:.0f} s")
    return model

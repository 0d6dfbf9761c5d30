"""The gate: every expert's evidence in, one calibrated class decision per detection out.

The experts each speak for some kinds of object; the gate weighs what they
say, given the physics of the detection.  It is a small *mixture of experts*
network (:class:`GateNet`):

* each expert ``e`` has a **head**: a linear map from that expert's own
  evidence (its ``score`` columns, :data:`EVIDENCE`) plus the shared physics
  features to class logits, so its opinion over :data:`GATE_CLASSES`;
* a **gating network** maps the physics features (S/N, size relative to the
  PSF, sharpness, elongation, background and noise, crowding, PSF FWHM,
  observation mode) to weights ``w_e`` over the experts (softmax);
* the class probabilities are the weighted mixture ``p = sum_e w_e p_e``.

The weights say whose opinion counted for a detection, and the reason in
words (:func:`explain`) quotes the two strongest opinions, e.g.
``"point expert 0.55 (star) vs artifact expert 0.41 (artifact); S/N 4.8 near
threshold"``.

Everything is a pure function of tables; the network is trained on
simulations by :mod:`moe_imaging.gate_train` (``moe-imaging train gate``),
and its probabilities are calibrated and turned into decisions with a
guaranteed error rate by :mod:`moe_imaging.calibrate`.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from astropy.table import Table
from scipy.spatial import cKDTree
from torch import nn

from .tile import Tile

__all__ = [
    "GATE_CLASSES",
    "EVIDENCE",
    "PHYSICS_FEATURES",
    "DEFAULT_GATE_WEIGHTS",
    "score_candidates",
    "physics_features",
    "evidence_features",
    "GateNet",
    "GateModel",
    "load_gate",
    "gate_predict",
    "explain",
    "DECISIONS",
    "FWHM_STRATA",
    "CROWDED_BEAM_DENSITY",
    "field_density",
    "beam_density",
    "fwhm_stratum",
    "outside_calibration_strata",
    "triage_stratum",
    "apply_gate",
]

GATE_CLASSES: tuple[str, ...] = ("star", "galaxy", "streak", "artifact")
"""What the gate decides between (survey mode).  ``artifact`` also covers
detections that match no real object (noise peaks, pieces of a halo)."""

EVIDENCE: dict[str, tuple[str, ...]] = {
    "point": ("point_snr", "point_sharpness"),
    "extended": ("extended_snr",),
    "artifact": ("artifact_sharp_sigma",),
    "streak": ("streak_line_snr", "streak_line_over_point"),
    "learned": ("p_star", "p_galaxy", "p_streak", "p_artifact", "learned_stability", "learned_in_range"),
}
"""The ``score`` columns of each expert the gate reads (in this order)."""

PHYSICS_FEATURES: tuple[str, ...] = (
    "log_snr",
    "size_over_psf",
    "sharpness",
    "elongation",
    "log_noise",
    "log_background_over_noise",
    "crowding",
    "log_fwhm",
    "rate_tracked",
    "near_threshold",
)
"""The physics features the gating network (and every head) sees."""

DEFAULT_GATE_WEIGHTS = Path(__file__).resolve().parent / "models" / "gate_v1.pt"
"""The shipped gate (``moe-imaging train gate`` reproduces it)."""


# --------------------------------------------------------------------------- features


def score_candidates(tile: Tile, candidates: Table, experts: Sequence[object]) -> Table:
    """Every expert's evidence for every candidate of a tile (one row each, in order).

    Calls each expert's ``score``; the columns of :data:`EVIDENCE` an expert
    does not provide (or experts not given) are NaN.
    """
    n = len(candidates)
    out = Table()
    by_name = {getattr(e, "name", ""): e for e in experts}
    for name, cols in EVIDENCE.items():
        scored = by_name[name].score(tile, candidates) if name in by_name and n else None
        for col in cols:
            if scored is not None and col in scored.colnames:
                out[col] = np.asarray(scored[col], dtype=np.float64)
            else:
                out[col] = np.full(n, np.nan)
    return out


def _col(table: Table, name: str, default: float = np.nan) -> np.ndarray:
    if name in table.colnames:
        return np.asarray(table[name], dtype=np.float64)
    return np.full(len(table), default)


def physics_features(
    candidates: Table, *, psf_fwhm: float | np.ndarray, threshold: float = 5.0, rate_tracked: bool = False
) -> np.ndarray:
    """The :data:`PHYSICS_FEATURES` of each candidate, shape ``(n, len(PHYSICS_FEATURES))``.

    Missing measurements are replaced by neutral values (S/N 0, size 1,
    sharpness 1, elongation 0), so every expert's rows can be gated.
    """
    n = len(candidates)
    fwhm = np.broadcast_to(np.asarray(psf_fwhm, dtype=np.float64), (n,))
    if "psf_fwhm" in candidates.colnames:
        own = _col(candidates, "psf_fwhm")
        fwhm = np.where(np.isfinite(own) & (own > 0), own, fwhm)
    snr = np.nan_to_num(_col(candidates, "snr"), nan=0.0)
    sigma_psf = fwhm / 2.3548
    a = _col(candidates, "a")
    b = _col(candidates, "b")
    size = np.where(np.isfinite(a) & (a > 0), a / sigma_psf, 1.0)
    if "length" in candidates.colnames:  # a trail's size is its length
        length = _col(candidates, "length")
        size = np.where(np.isfinite(length) & (length > 0), np.maximum(size, length / fwhm), size)
    sharp = np.nan_to_num(_col(candidates, "sharpness"), nan=1.0)
    elong = np.where(np.isfinite(a) & np.isfinite(b) & (a > 0), 1.0 - np.clip(b / np.where(a > 0, a, 1.0), 0, 1), 0.0)
    noise = _col(candidates, "noise")
    noise = np.where(np.isfinite(noise) & (noise > 0), noise, 1.0)
    bkg = np.nan_to_num(_col(candidates, "background"), nan=0.0)
    if n:
        xy = np.column_stack([_col(candidates, "x"), _col(candidates, "y")])
        ok = np.all(np.isfinite(xy), axis=1)
        crowd = np.zeros(n)
        if ok.sum() > 1:
            tree = cKDTree(xy[ok])
            counts = np.array([len(v) - 1 for v in tree.query_ball_point(xy[ok], 5.0 * float(np.median(fwhm)))])
            crowd[ok] = counts
    else:
        crowd = np.zeros(0)
    feats = np.column_stack(
        [
            np.log10(np.clip(snr, 0.1, 1e6)),
            np.log(np.clip(size, 0.1, 1e3)),
            np.log(np.clip(sharp, 0.05, 50.0)),
            elong,
            np.log10(noise),
            np.arcsinh(bkg / noise / 100.0),
            np.log1p(crowd),
            np.log(fwhm / 3.0),
            np.full(n, 1.0 if rate_tracked else 0.0),
            np.exp(-0.5 * ((snr - threshold) / 1.5) ** 2),
        ]
    ) if n else np.zeros((0, len(PHYSICS_FEATURES)))
    return feats.astype(np.float32)


def evidence_features(evidence: Table) -> dict[str, np.ndarray]:
    """Each expert's evidence as a ``(n, k_e + 1)`` array: transformed values and a "said nothing" flag."""
    out = {}
    for name, cols in EVIDENCE.items():
        values = []
        missing = np.zeros(len(evidence), bool)
        for col in cols:
            v = _col(evidence, col)
            missing |= ~np.isfinite(v)
            if col.endswith("_snr") or col == "artifact_sharp_sigma":
                v = np.arcsinh(np.nan_to_num(v, nan=0.0) / 3.0)
            elif col in ("point_sharpness", "streak_line_over_point"):
                v = np.log(np.clip(np.nan_to_num(v, nan=1.0, posinf=50.0), 0.05, 50.0))
            else:
                v = np.nan_to_num(v, nan=0.25 if col.startswith("p_") else 0.0)
            values.append(v)
        values.append(missing.astype(np.float64))
        out[name] = np.column_stack(values).astype(np.float32)
    return out


# --------------------------------------------------------------------------- the network


class GateNet(nn.Module):
    """A mixture of per-expert heads weighted by a gating network (see module docs)."""

    def __init__(self, n_physics: int, evidence_sizes: dict[str, int], n_classes: int = len(GATE_CLASSES),
                 hidden: int = 32) -> None:
        super().__init__()
        self.experts = list(evidence_sizes)
        self.heads = nn.ModuleDict(
            {
                name: nn.Sequential(nn.Linear(size + n_physics, hidden), nn.GELU(), nn.Linear(hidden, n_classes))
                for name, size in evidence_sizes.items()
            }
        )
        self.gating = nn.Sequential(
            nn.Linear(n_physics + len(evidence_sizes), hidden), nn.GELU(), nn.Linear(hidden, len(evidence_sizes))
        )

    def forward(self, physics: torch.Tensor, evidence: dict[str, torch.Tensor]):
        """``(log class probabilities (n, k), expert weights (n, E), per-expert probabilities (n, E, k))``."""
        said = torch.stack([1.0 - evidence[name][:, -1] for name in self.experts], dim=1)
        log_w = torch.log_softmax(self.gating(torch.cat([physics, said], dim=1)), dim=1)
        # an expert that said nothing about a candidate gets no weight
        log_w = log_w + torch.log(said.clamp_min(1e-6))
        log_w = log_w - torch.logsumexp(log_w, dim=1, keepdim=True)
        log_p = torch.stack(
            [torch.log_softmax(self.heads[name](torch.cat([evidence[name], physics], dim=1)), dim=1)
             for name in self.experts],
            dim=1,
        )
        mix = torch.logsumexp(log_w.unsqueeze(2) + log_p, dim=1)
        return mix, log_w.exp(), log_p.exp()


@dataclass
class GateModel:
    """A trained gate: the network, feature scaling, calibration and provenance."""

    net: GateNet
    mean: np.ndarray
    std: np.ndarray
    temperature: float = 1.0
    fwhm_range: tuple[float, float] = (1.5, 6.0)
    metadata: dict[str, Any] = field(default_factory=dict)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(
            {
                "state_dict": self.net.state_dict(),
                "n_physics": len(self.mean),
                "evidence_sizes": {k: int(v) for k, v in self.metadata["evidence_sizes"].items()},
                "mean": self.mean.tolist(),
                "std": self.std.tolist(),
                "temperature": float(self.temperature),
                "fwhm_range": list(self.fwhm_range),
                "metadata": json.loads(json.dumps(self.metadata, default=float)),
            },
            path,
        )
        return path


@functools.lru_cache(maxsize=4)
def _load(path: str) -> GateModel:
    blob = torch.load(path, map_location="cpu", weights_only=False)
    net = GateNet(blob["n_physics"], blob["evidence_sizes"])
    net.load_state_dict(blob["state_dict"])
    net.eval()
    meta = dict(blob["metadata"])
    meta["evidence_sizes"] = blob["evidence_sizes"]
    return GateModel(net, np.asarray(blob["mean"], np.float32), np.asarray(blob["std"], np.float32),
                     float(blob["temperature"]), tuple(blob["fwhm_range"]), meta)


def load_gate(path: str | Path | None = None) -> GateModel:
    """The gate at ``path`` (default: the shipped one), loaded once per process."""
    path = Path(path) if path is not None else DEFAULT_GATE_WEIGHTS
    if not path.exists():
        raise FileNotFoundError(f"{path}: no gate weights (run `moe-imaging train gate`)")
    return _load(str(path.resolve()))


def gate_predict(model: GateModel, physics: np.ndarray, evidence: dict[str, np.ndarray], *,
                 calibrated: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Class probabilities ``(n, k)``, expert weights ``(n, E)`` and per-expert opinions ``(n, E, k)``.

    ``calibrated`` applies the temperature fitted on the calibration split.
    """
    n = len(physics)
    if n == 0:
        e = len(model.net.experts)
        return np.zeros((0, len(GATE_CLASSES))), np.zeros((0, e)), np.zeros((0, e, len(GATE_CLASSES)))
    x = (np.asarray(physics, np.float32) - model.mean) / model.std
    with torch.no_grad():
        log_p, w, per = model.net(torch.from_numpy(x), {k: torch.from_numpy(np.asarray(v, np.float32))
                                                       for k, v in evidence.items()})
        if calibrated and model.temperature != 1.0:
            log_p = torch.log_softmax(log_p / model.temperature, dim=1)
    return log_p.exp().numpy().astype(np.float64), w.numpy().astype(np.float64), per.numpy().astype(np.float64)


def explain(probs: np.ndarray, weights: np.ndarray, per_expert: np.ndarray, experts: Sequence[str],
            snr: np.ndarray, threshold: float) -> list[str]:
    """A reason in words for each decision: the two strongest opinions and the S/N context."""
    out = []
    for i in range(len(probs)):
        order = np.argsort(-weights[i])[:2]
        parts = []
        for e in order:
            k = int(np.argmax(per_expert[i, e]))
            parts.append(f"{experts[e]} expert {weights[i, e]:.2f} ({GATE_CLASSES[k]})")
        text = " vs ".join(parts)
        s = float(snr[i]) if np.isfinite(snr[i]) else float("nan")
        if np.isfinite(s) and s < threshold + 1.5:
            text += f"; S/N {s:.1f} near threshold"
        elif np.isfinite(s):
            text += f"; S/N {s:.0f}"
        out.append(text)
    return out


# --------------------------------------------------------------------------- decisions

DECISIONS: tuple[str, ...] = ("accepted", "rejected", "review")
"""``accepted``: a real source decided automatically; ``rejected``: an artifact
decided automatically; ``review``: a human decides."""


FWHM_STRATA: tuple[float, ...] = (2.5, 4.0)
"""Edges (px) of the PSF-size strata of the triage thresholds."""

CROWDED_BEAM_DENSITY = 0.01
"""Detections per PSF beam (per FWHM^2) above which a detection is ``crowded``.

Confusion is a matter of beams, not pixels: at 0.01 detections per FWHM^2 about
3 % of objects have a neighbour within one FWHM, and blends of two stars, or
segments merging several objects, dominate the gate's errors.  Crowded and
sparse detections are separate triage strata, so the easy sparse regime does
not hide the hard crowded one (nor the other way round)."""


def _unit_disc_points(n: int = 256) -> np.ndarray:
    """``n`` points spread evenly over the unit disc (a Fibonacci lattice), shape ``(n, 2)``."""
    k = np.arange(n) + 0.5
    r = np.sqrt(k / n)
    phi = k * np.pi * (3.0 - np.sqrt(5.0))
    return np.column_stack([r * np.cos(phi), r * np.sin(phi)])


def beam_density(x: np.ndarray, y: np.ndarray, fwhm: np.ndarray | float,
                 shape: tuple[int, int] | None = None) -> np.ndarray:
    """Local density of detections, in detections per FWHM^2, around each detection.

    Counts the *other* detections within ``R = max(50, 15 FWHM)`` px (a
    scale over which a field's crowding is smooth but still local, e.g. a
    cluster in an otherwise empty field) and divides by the disc's area in
    units of ``FWHM^2``.  With the image ``shape`` ``(ny, nx)`` only the part
    of the disc inside the image counts, so detections near an edge are not
    taken for sparse ones.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    n = len(x)
    f = np.broadcast_to(np.asarray(fwhm, dtype=float), (n,))
    out = np.zeros(n)
    ok = np.isfinite(x) & np.isfinite(y) & np.isfinite(f) & (f > 0)
    if ok.sum() < 2:
        return out
    radius = np.maximum(50.0, 15.0 * f[ok])
    xy = np.column_stack([x[ok], y[ok]])
    counts = np.array([len(v) - 1 for v in cKDTree(xy).query_ball_point(xy, radius)])
    inside = np.ones(len(xy))
    if shape is not None:
        ny, nx = shape
        px = xy[:, :1] + radius[:, None] * _unit_disc_points()[None, :, 0]
        py = xy[:, 1:] + radius[:, None] * _unit_disc_points()[None, :, 1]
        inside = np.clip(np.mean((px >= -0.5) & (px < nx - 0.5) & (py >= -0.5) & (py < ny - 0.5), axis=1), 0.1, 1.0)
    out[ok] = counts / (np.pi * radius**2 * inside) * f[ok] ** 2
    return out


def fwhm_stratum(fwhm: np.ndarray | float, mode: str = "survey", density: np.ndarray | float | None = None) -> np.ndarray:
    """The triage stratum of each detection, e.g. ``"survey:fwhm<2.5:sparse"`` or ``"survey:crowded"``.

    Sparse detections are split by PSF size (mode, FWHM bin); crowded ones
    (``density`` above :data:`CROWDED_BEAM_DENSITY`) form one stratum per
    mode: crowding is already measured in beams, so it is one regime whatever
    the PSF, and splitting its few calibration items by FWHM as well would
    leave each bin too small to certify anything.  ``density`` is
    :func:`beam_density`; without it the crowding part is left out.
    """
    f = np.atleast_1d(np.asarray(fwhm, dtype=float))
    lo, hi = FWHM_STRATA
    names = np.where(f < lo, f"fwhm<{lo:g}", np.where(f < hi, f"fwhm{lo:g}-{hi:g}", f"fwhm>={hi:g}")).astype(str)
    names = np.char.add(f"{mode}:", names)
    if density is None:
        return names
    crowded = np.broadcast_to(np.asarray(density, dtype=float), f.shape) > CROWDED_BEAM_DENSITY
    return np.where(crowded, f"{mode}:crowded", np.char.add(names, ":sparse")).astype(str)


def field_density(n_detections: int, fwhm: np.ndarray | float, shape: tuple[int, int]) -> float:
    """Detections per PSF beam (per FWHM^2) over a whole exposure: how crowded the field is as a whole.

    ``fwhm`` may be one value or one per detection (their median is used).
    """
    ny, nx = shape
    f = np.asarray(fwhm, dtype=float)
    f = f[np.isfinite(f)] if f.ndim else f
    beam = float(np.median(f)) ** 2 if np.size(f) else math.nan
    return float(n_detections) * beam / float(ny * nx) if ny * nx else math.nan


def outside_calibration_strata(mode: str = "survey") -> tuple[str, str]:
    """The strata the simulated calibration split never holds: a PSF outside the trained range, and an
    exposure denser than every calibration field (:func:`triage_stratum`).

    Their detections go to review until reviewers' labels calibrate them
    (:func:`moe_imaging.recalibrate.recalibrate_with_labels`).
    """
    return f"{mode}:fwhm-outside-training-range", f"{mode}:field-denser-than-calibration"


def triage_stratum(psf_fwhm: np.ndarray, fwhm_range: tuple[float, float], mode: str = "survey",
                   density: np.ndarray | None = None, *, exposure_density: float | np.ndarray | None = None,
                   exposure_density_max: float | None = None) -> np.ndarray:
    """The stratum of each detection; outside the calibrated range a detection gets its own, never certified, stratum.

    A PSF outside the trained FWHM range gives ``"<mode>:fwhm-outside-training-range"``;
    an exposure whose :func:`field_density` ``exposure_density`` exceeds
    ``exposure_density_max`` (the densest calibration field) gives ``"<mode>:field-denser-than-calibration"``
    to all its detections (``exposure_density`` may also be given per
    detection, e.g. for rows pooled from many fields).  A sparser field than any
    in calibration is not refused: fewer neighbours make blends rarer, not more
    common.  A PSF outside the trained range takes precedence.
    """
    f = np.asarray(psf_fwhm, dtype=float)
    psf_outside, too_dense = outside_calibration_strata(mode)
    strata = fwhm_stratum(f, mode, density)
    if exposure_density is not None and exposure_density_max is not None:
        with np.errstate(invalid="ignore"):
            denser = np.broadcast_to(np.asarray(exposure_density, dtype=float) > exposure_density_max, f.shape)
        strata = np.where(denser, too_dense, strata)
    outside = ~((f >= fwhm_range[0]) & (f <= fwhm_range[1]))
    return np.where(outside, psf_outside, strata)


@functools.lru_cache(maxsize=16)
def _triage(path_key: str, alpha: float, delta: float, min_count: int):
    from .calibrate import fit_stratified_triage

    model = _load(path_key)
    cal = model.metadata["calibration"]
    return fit_stratified_triage(np.asarray(cal["scores"]), np.asarray(cal["errors"]), np.asarray(cal["strata"]),
                                 alpha=alpha, delta=delta, min_count=min_count)


def apply_gate(
    table: Table,
    evidence: Table,
    *,
    psf_fwhm: float,
    threshold: float,
    alpha: float = 0.01,
    delta: float = 0.05,
    min_count: int = 50,
    weights: str | Path | None = None,
    mode: str = "survey",
    image_shape: tuple[int, int] | None = None,
) -> Table:
    """Add the gate's decision columns to a fused candidate table (a new table).

    Columns: ``kind`` (the gate's class), ``p_<class>`` for every class,
    ``confidence`` (the calibrated probability of that class), ``w_<expert>``
    (the gating weights), ``decision`` (:data:`DECISIONS`) and
    ``review_reason`` (why a human is needed; empty otherwise),
    ``gate_reason`` (the two strongest opinions, always) and
    ``triage_stratum`` (whose thresholds decided it).

    The certified triage (:mod:`moe_imaging.calibrate`) decides automatically
    only where, in the detection's stratum (PSF size bin), the calibration
    split certifies an error rate <= ``alpha`` with probability >= 1 - ``delta``;
    the strata are the PSF-size bin and the crowding (:func:`beam_density` of
    the detections in ``table``, so pass the whole exposure's catalog, and the
    exposure's ``image_shape`` so edges are not taken for sparse regions); a PSF
    outside the gate's training range, or an exposure more crowded as a whole
    than any calibration field (:func:`field_density`, needs ``image_shape``),
    is never decided automatically.
    """
    path = Path(weights) if weights is not None else DEFAULT_GATE_WEIGHTS
    model = load_gate(path)
    out = Table(table, copy=True)
    n = len(out)
    physics = physics_features(out, psf_fwhm=psf_fwhm, threshold=threshold)
    probs, w, per = gate_predict(model, physics, evidence_features(evidence))
    kind = np.array([GATE_CLASSES[k] for k in probs.argmax(axis=1)], dtype="U16") if n else np.zeros(0, "U16")
    conf = probs.max(axis=1) if n else np.zeros(0)
    fwhm = np.asarray(out["psf_fwhm"], float) if "psf_fwhm" in out.colnames else np.full(n, psf_fwhm)
    density = beam_density(_col(out, "x"), _col(out, "y"), fwhm, image_shape) if n else np.zeros(0)
    dens_max = model.metadata.get("calibration", {}).get("field_density_max")
    dens = field_density(n, fwhm, image_shape) if (image_shape is not None and n) else None
    strata = triage_stratum(fwhm, model.fwhm_range, mode, density, exposure_density=dens,
                            exposure_density_max=dens_max)
    triage = _triage(str(path.resolve()), float(alpha), float(delta), int(min_count))
    auto, reasons = triage.decide(conf, strata) if n else (np.zeros(0, bool), [])
    snr = np.asarray(out["snr"], float) if "snr" in out.colnames else np.full(n, np.nan)
    why = explain(probs, w, per, model.net.experts, snr, threshold)
    out["kind"] = kind
    for k, c in enumerate(GATE_CLASSES):
        out[f"p_{c}"] = probs[:, k] if n else np.zeros(0)
    out["confidence"] = conf
    for e, name in enumerate(model.net.experts):
        out[f"w_{name}"] = w[:, e] if n else np.zeros(0)
    decision = np.where(auto, np.where(kind == "artifact", "rejected", "accepted"), "review")
    out["decision"] = decision.astype("U8")
    out["review_reason"] = np.array([f"{r}; {g}" if not a else "" for a, r, g in zip(auto, reasons, why)],
                                    dtype=object).astype(str) if n else np.zeros(0, "U1")
    out["gate_reason"] = np.asarray(why, dtype=str) if n else np.zeros(0, "U1")
    out["triage_stratum"] = strata.astype(str) if n else np.zeros(0, "U1")
    out.meta["gate"] = {"weights": path.name, "alpha": alpha, "delta": delta, "temperature": model.temperature,
                        "uncalibrated_strata": dict(triage.uncalibrated), "field_density": dens,
                        "field_density_max": dens_max}
    return out

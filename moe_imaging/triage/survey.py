"""The gate: every expert's evidence in, one calibrated class decision per detection out.

The experts each speak for some kinds of object; the gate weighs what they
say, given the physics of the detection.  It is a small *mixture of experts*
network (:class:`GateNet`):

* each expert ``e`` has a **head**: a linear map from that expert's own
  evidence (its ``score`` columns, :data:`EVIDENCE`) plus the shared physics
  features to class logits, so its opinion over :data:`contracts.vocabulary.SURVEY_CLASSES`;
* a **gating network** maps the physics features (S/N, size relative to the
  PSF, sharpness, elongation, background and noise, crowding, PSF FWHM,
  observation mode) to weights ``w_e`` over the experts (softmax);
* the class probabilities are the weighted mixture ``p = sum_e w_e p_e``.

The weights say whose opinion counted for a detection, and the reason in
words (:func:`explain`) quotes the two strongest opinions, e.g.
``"point expert 0.55 (star) vs artifact expert 0.41 (artifact); S/N 4.8 near
threshold"``.

Everything is a pure function of tables; the network is trained on
simulations by :mod:`training.gate` (``moe-imaging train gate``),
and its probabilities are calibrated and turned into decisions with a
guaranteed error rate by :func:`moe_imaging.triage.apply.apply_triage`.
The model implements :class:`~moe_imaging.triage.protocol.TriageModel`.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, ClassVar, Sequence

import numpy as np
import torch
from astropy.table import Table
from torch import nn

from contracts.vocabulary import SURVEY_CLASSES

from .protocol import CalibrationSplit, TriageContext, TriagePrediction
from .strata import (
    beam_density,
    field_density,
    outside_calibration_strata,
    triage_stratum,
)
from .survey_features import _col, evidence_features, physics_features

__all__ = ["GateNet", "GateModel", "gate_predict", "explain"]

# --------------------------------------------------------------------------- the network


class GateNet(nn.Module):
    """A mixture of per-expert heads weighted by a gating network (see module docs)."""

    def __init__(self, n_physics: int, evidence_sizes: dict[str, int], n_classes: int = len(SURVEY_CLASSES),
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


@dataclasses.dataclass
class GateModel:
    """A trained gate: the network, feature scaling, calibration and provenance.

    The survey head of the triage (:class:`~moe_imaging.triage.protocol.TriageModel`).
    ``metadata["calibration"]`` holds the calibration split (``scores``,
    ``errors``, ``strata``), the densest calibration field
    (``field_density_max``) and the label sets added since training.
    """

    net: GateNet
    mean: np.ndarray
    std: np.ndarray
    temperature: float = 1.0
    fwhm_range: tuple[float, float] = (1.5, 6.0)
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)
    source: str = ""

    classes: ClassVar[tuple[str, ...]] = SURVEY_CLASSES
    _PER_ROW: ClassVar[frozenset[str]] = frozenset({"scores", "errors", "strata", "fwhm", "density", "exposure_density"})

    # ---- the triage protocol

    def predict(self, table: Table, context: TriageContext) -> TriagePrediction:
        """Class probabilities, expert weights, strata and the two strongest opinions in words."""
        n = len(table)
        physics = physics_features(table, psf_fwhm=context.psf_fwhm, threshold=context.threshold)
        probs, w, per = gate_predict(self, physics, evidence_features(context.evidence))
        fwhm = np.asarray(table["psf_fwhm"], float) if "psf_fwhm" in table.colnames else np.full(n, context.psf_fwhm)
        density = beam_density(_col(table, "x"), _col(table, "y"), fwhm, context.image_shape) if n else np.zeros(0)
        dens_max = self.metadata.get("calibration", {}).get("field_density_max")
        dens = field_density(n, fwhm, context.image_shape) if (context.image_shape is not None and n) else None
        strata = triage_stratum(fwhm, self.fwhm_range, context.mode, density, exposure_density=dens,
                                exposure_density_max=dens_max)
        snr = np.asarray(table["snr"], float) if "snr" in table.colnames else np.full(n, np.nan)
        why = explain(probs, w, per, self.net.experts, snr, context.threshold)
        weights = {f"w_{name}": (w[:, e] if n else np.zeros(0)) for e, name in enumerate(self.net.experts)}
        return TriagePrediction(probs, strata, why, weights, {"field_density": dens, "field_density_max": dens_max})

    def calibration_split(self) -> CalibrationSplit:
        """The simulated calibration split (and any reviewers' labels added since)."""
        cal = self.metadata["calibration"]
        return CalibrationSplit.from_lists(cal["scores"], cal["errors"], cal["strata"])

    def label_strata(self) -> tuple[str, ...]:
        """A PSF outside the trained range and a field denser than calibration: labels alone calibrate them."""
        return outside_calibration_strata("survey")

    def label_history(self) -> list[dict[str, Any]]:
        """The label sets added to the calibration split so far."""
        return list(self.metadata.get("calibration", {}).get("label_sets", []))

    def with_calibration(self, split: CalibrationSplit, label_sets: list[dict[str, Any]]) -> GateModel:
        """A copy whose calibration split is ``split`` (scores rounded to 6 decimals).

        The per-row arrays of the simulated split (PSF, densities) no longer line
        up with a pooled split and are dropped; everything else (the densest
        calibration field, the calibrated range) is kept.
        """
        cal = self.metadata["calibration"]
        meta = dict(self.metadata)
        meta["calibration"] = {**{k: v for k, v in cal.items() if k not in self._PER_ROW},
                               "scores": split.scores.round(6).tolist(), "errors": split.errors.astype(int).tolist(),
                               "strata": split.strata.tolist(), "label_sets": label_sets}
        return dataclasses.replace(self, metadata=meta)

    # ---- plain state (weights files are read and written by ``pipelines.models``)

    def to_state(self) -> dict[str, Any]:
        """Everything needed to rebuild the model, as tensors and plain types."""
        return {
            "state_dict": self.net.state_dict(),
            "n_physics": len(self.mean),
            "evidence_sizes": {k: int(v) for k, v in self.metadata["evidence_sizes"].items()},
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "temperature": float(self.temperature),
            "fwhm_range": list(self.fwhm_range),
            "metadata": json.loads(json.dumps(self.metadata, default=float)),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], *, source: str = "") -> GateModel:
        """The model :meth:`to_state` describes (``source``: where it was read from)."""
        net = GateNet(state["n_physics"], state["evidence_sizes"])
        net.load_state_dict(state["state_dict"])
        net.eval()
        meta = dict(state["metadata"])
        meta["evidence_sizes"] = state["evidence_sizes"]
        return cls(net, np.asarray(state["mean"], np.float32), np.asarray(state["std"], np.float32),
                   float(state["temperature"]), tuple(state["fwhm_range"]), meta, source)

def gate_predict(model: GateModel, physics: np.ndarray, evidence: dict[str, np.ndarray], *,
                 calibrated: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Class probabilities ``(n, k)``, expert weights ``(n, E)`` and per-expert opinions ``(n, E, k)``.

    ``calibrated`` applies the temperature fitted on the calibration split.
    """
    n = len(physics)
    if n == 0:
        e = len(model.net.experts)
        return np.zeros((0, len(SURVEY_CLASSES))), np.zeros((0, e)), np.zeros((0, e, len(SURVEY_CLASSES)))
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
            parts.append(f"{experts[e]} expert {weights[i, e]:.2f} ({SURVEY_CLASSES[k]})")
        text = " vs ".join(parts)
        s = float(snr[i]) if np.isfinite(snr[i]) else float("nan")
        if np.isfinite(s) and s < threshold + 1.5:
            text += f"; S/N {s:.1f} near threshold"
        elif np.isfinite(s):
            text += f"; S/N {s:.0f}"
        out.append(text)
    return out

"""Certified triage of microscopy (nucleus) detections.

The survey gate (:mod:`moe_imaging.triage.survey`) has a microscopy counterpart here:
a small calibrated classifier that says, for every detection of the nucleus
expert (:mod:`moe_imaging.experts.nucleus`), whether it is **one real nucleus**
(``nucleus``) or an **error** (``artifact``), and the certified triage of
:func:`moe_imaging.triage.certify.fit_stratified_triage` that decides which of
these calls may be taken without a human.

What counts as an error
-----------------------
The classes are defined against the simulator's label mask
(:func:`label_detections`):

* ``nucleus``: the detection's centroid (or, failing that, its peak pixel)
  lies on a true nucleus that no other detection claims, and the detection
  did not swallow a neighbour (see *merge*);
* ``artifact`` -- every other detection, with its sub-case kept as the
  outcome:

  - ``spurious``: no true nucleus under it (noise, a background structure);
  - ``split``: one true nucleus claimed by two or more detections; *all* the
    pieces are errors (none of them is the whole nucleus, and a count or a
    size measured on one piece is wrong);
  - ``merge``: the detection covers a neighbour the expert did not find on
    its own (a missed true nucleus whose centre lies within 0.6 of the
    detection's diameter of its centroid, with the detection larger than its
    own nucleus by a third): two nuclei counted as one is an error.

So ``p_nucleus`` is the probability that a detection is exactly one real
nucleus and ``p_artifact = 1 - p_nucleus``.  A ``rejected`` decision means
"not a single nucleus" (spurious, a piece of a split nucleus or a merge).

Features (:data:`FEATURES`, :func:`nucleus_features`) are physics measured by
the nucleus expert, in units that carry across optics: S/N and the
significance at the marker, diameter relative to the expected nucleus size
(from the configuration's diameter range in pixels), the PSF FWHM relative to
that size, elongation and fill (area over that of the RMS ellipse: a merge of
two nuclei is elongated and under-filled), local crowding (neighbours within
the largest expected diameter, the nearest neighbour's distance), the
expert's ``BLENDED`` and ``EDGE`` flags, mean surface brightness over the
noise, and the background over the noise.

Strata and range
----------------
Triage strata (:func:`nucleus_stratum`) are ``microscopy:isolated`` and
``microscopy:crowded`` (flagged ``BLENDED`` by the expert, or a neighbour
closer than the smallest expected diameter): the errors live in the clumps,
and the easy isolated nuclei must not hide them.  An image whose expected
nucleus size (smallest diameter in pixels) or PSF FWHM (pixels) lies outside
the range covered by the calibration fields gets the stratum
``microscopy:outside-training-range``, which is never calibrated, so all its
detections go to review.  So does every single detection whose physics lies
outside the training range (:data:`RANGE_FEATURES`: S/N, significance, size,
fill, surface brightness, background; beyond the 0.1 %--99.9 % quantiles of
the training split, which the calibration split never touches): e.g. a
detection fainter or larger than anything the classifier was trained on.  The
calibration detections outside that range are left out of the calibration
of every stratum, so the rule is the same for calibration and new data.

Calibration
-----------
Temperature scaling is fitted on the calibration split (fields never used
for training).  With two classes the confidence ``max(p)`` is a monotone
function of ``|logit difference|`` for every temperature, so fitting the
temperature and the triage thresholds on the same split does not change
which detections are decided automatically; it only makes the
probabilities honest.  The split's scores, errors and strata are stored with
the weights, so the thresholds are refitted for any ``alpha`` at run time.

Training (:func:`training.nucleus_triage.train_nucleus_triage`, ``moe-imaging train nucleus-triage``)
simulates fields with :func:`moe_imaging.simulate_microscopy.simulate_microscopy`
over a range of pixel sizes, optics, densities, clumping, brightness, noise
and vignetting, from disjoint seeds for training, calibration and test
(``SeedSequence([seed, split, i])``).  The expert runs on each whole field as
one tile with the background and noise the pipeline would estimate
(:func:`moe_imaging.experts.nucleus.microscopy_background`), so the training
and calibration detections are the pipeline's, faint fragments of a
misestimated background included; ``benchmarks/bench_nucleus_triage.py``
checks the guarantee end to end through ``pipelines.detect_image``.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any, ClassVar

import numpy as np
import torch
from astropy.table import Table
from scipy.spatial import cKDTree
from torch import nn

from contracts.flags import SourceFlag
from contracts.vocabulary import MICROSCOPY_CLASSES

from .protocol import CalibrationSplit, TriageContext, TriagePrediction

__all__ = [
    "NUCLEUS_CLASSES",
    "FEATURES",
    "OUTCOMES",
    "RANGE_FEATURES",
    "OUT_OF_RANGE_STRATUM",
    "NucleusTriageNet",
    "NucleusTriageModel",
    "nucleus_features",
    "label_detections",
    "nucleus_stratum",
    "outside_feature_range",
    "predict_nucleus",
]

NUCLEUS_CLASSES: tuple[str, ...] = MICROSCOPY_CLASSES
"""What the triage decides between (:data:`contracts.vocabulary.MICROSCOPY_CLASSES`): one real nucleus, or an
error (see module docs)."""

OUTCOMES: tuple[str, ...] = ("nucleus", "spurious", "split", "merge")
"""The outcome of a detection against the truth; all but ``nucleus`` are ``artifact``."""

FEATURES: tuple[str, ...] = (
    "log_snr",
    "log_det_snr",
    "log_diameter_over_expected",
    "log_psf_over_expected",
    "elongation",
    "fill",
    "log1p_neighbours",
    "nearest_over_expected",
    "blended",
    "edge",
    "log_surface_snr",
    "background_over_noise",
)
"""Per-detection features (:func:`nucleus_features`), in this order."""

RANGE_FEATURES: tuple[str, ...] = (
    "log_snr",
    "log_det_snr",
    "log_diameter_over_expected",
    "fill",
    "log_surface_snr",
    "background_over_noise",
)
"""Features whose training range (0.1 %--99.9 % quantiles of the training split) a
detection must lie in to be decided automatically (:func:`outside_feature_range`)."""

RANGE_QUANTILES = (0.001, 0.999)

OUT_OF_RANGE_STRATUM = "microscopy:outside-training-range"
"""Stratum of images whose nucleus size or PSF (pixels) the calibration did not cover."""

_MERGE_REACH = 0.6  # a missed nucleus within this fraction of a detection's diameter is swallowed
_MERGE_GROWTH = 1.33  # ... when the detection is this much larger than its own nucleus


# --------------------------------------------------------------------------- features and labels


def _col(table: Table, name: str, default: float = np.nan) -> np.ndarray:
    if name in table.colnames:
        return np.asarray(table[name], dtype=np.float64)
    return np.full(len(table), default)


def _neighbours(x: np.ndarray, y: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Other detections within ``radius`` and the nearest one's distance (inf when alone)."""
    n = len(x)
    count = np.zeros(n)
    nearest = np.full(n, np.inf)
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() >= 2:
        xy = np.column_stack([x[ok], y[ok]])
        tree = cKDTree(xy)
        count[ok] = [len(v) - 1 for v in tree.query_ball_point(xy, radius)]
        d, _ = tree.query(xy, k=2)
        nearest[ok] = d[:, 1]
    return count, nearest


def nucleus_features(
    candidates: Table,
    *,
    diameter_px: tuple[float, float],
    psf_fwhm: float,
) -> np.ndarray:
    """The :data:`FEATURES` of each nucleus detection.

    Parameters
    ----------
    candidates : astropy.table.Table
        The nucleus expert's table for a whole image (crowding is measured
        among its rows): ``x``, ``y``, ``snr``, ``det_snr``, ``flux``,
        ``area``, ``diameter``, ``a``, ``b``, ``flags``, ``background``,
        ``noise``; missing ones take neutral values.
    diameter_px : (float, float)
        Expected nucleus diameter range in pixels (the expert's configuration).
    psf_fwhm : float
        PSF FWHM in pixels.

    Returns
    -------
    numpy.ndarray, shape (n, len(FEATURES)), float32
    """
    d_lo, d_hi = (float(v) for v in diameter_px)
    if not (0 < d_lo <= d_hi) or not (psf_fwhm > 0):
        raise ValueError(f"diameter_px {diameter_px!r} and psf_fwhm {psf_fwhm!r} must be positive")
    n = len(candidates)
    if n == 0:
        return np.zeros((0, len(FEATURES)), np.float32)
    d_mid = math.sqrt(d_lo * d_hi)
    snr = np.nan_to_num(_col(candidates, "snr"), nan=0.0)
    det = np.nan_to_num(_col(candidates, "det_snr"), nan=0.0)
    diam = _col(candidates, "diameter")
    diam = np.where(np.isfinite(diam) & (diam > 0), diam, d_mid)
    a = _col(candidates, "a")
    b = _col(candidates, "b")
    good_ab = np.isfinite(a) & np.isfinite(b) & (a > 0)
    elong = np.where(good_ab, 1.0 - np.clip(b / np.where(good_ab, a, 1.0), 0.0, 1.0), 0.0)
    area = _col(candidates, "area")
    area = np.where(np.isfinite(area) & (area > 0), area, math.pi * d_mid**2 / 4)
    ellipse = 4.0 * math.pi * np.where(good_ab, a * np.where(good_ab, b, 1.0), d_mid**2 / 16)
    fill = np.clip(area / np.maximum(ellipse, 1e-6), 0.0, 3.0)
    count, nearest = _neighbours(_col(candidates, "x"), _col(candidates, "y"), d_hi)
    flags = np.nan_to_num(_col(candidates, "flags", 0.0), nan=0.0).astype(np.int64)
    noise = _col(candidates, "noise")
    noise = np.where(np.isfinite(noise) & (noise > 0), noise, 1.0)
    flux = np.nan_to_num(_col(candidates, "flux"), nan=0.0)
    bkg = np.nan_to_num(_col(candidates, "background"), nan=0.0)
    feats = np.column_stack([
        np.log10(np.clip(snr, 0.1, 1e7)),
        np.log10(np.clip(det, 0.1, 1e7)),
        np.log(np.clip(diam / d_mid, 0.05, 20.0)),
        np.full(n, math.log(float(psf_fwhm) / d_mid)),
        elong,
        fill,
        np.log1p(count),
        np.clip(nearest / d_mid, 0.0, 3.0),
        ((flags & int(SourceFlag.BLENDED)) != 0).astype(np.float64),
        ((flags & int(SourceFlag.EDGE)) != 0).astype(np.float64),
        np.log10(np.clip(flux / area / noise, 1e-3, 1e5)),
        np.arcsinh(bkg / noise / 10.0),
    ])
    return feats.astype(np.float32)


def label_detections(candidates: Table, labels: np.ndarray, truth: Table) -> np.ndarray:
    """The outcome (:data:`OUTCOMES`) of each detection against a simulated label mask.

    Parameters
    ----------
    candidates : astropy.table.Table
        Nucleus detections with ``x``, ``y`` (0-based centroid), ``x_peak``,
        ``y_peak``, ``area`` and ``diameter``.
    labels : numpy.ndarray of int
        The simulator's label mask (0 background, ``k`` nucleus ``k``).
    truth : astropy.table.Table
        The simulator's truth table (``label``, ``x``, ``y``, ``area_px``).

    Returns
    -------
    numpy.ndarray of str
        ``nucleus``, ``spurious``, ``split`` or ``merge`` per detection (see
        module docs); the class is ``nucleus`` only for ``nucleus``.
    """
    n = len(candidates)
    out = np.full(n, "nucleus", dtype="U8")
    if n == 0:
        return out
    lab = np.asarray(labels)
    ny, nx = lab.shape
    x = np.asarray(candidates["x"], float)
    y = np.asarray(candidates["y"], float)
    xi = np.clip(np.round(x).astype(np.int64), 0, nx - 1)
    yi = np.clip(np.round(y).astype(np.int64), 0, ny - 1)
    hit = lab[yi, xi].astype(np.int64)
    if "x_peak" in candidates.colnames:
        px = np.clip(np.asarray(candidates["x_peak"], np.int64), 0, nx - 1)
        py = np.clip(np.asarray(candidates["y_peak"], np.int64), 0, ny - 1)
        hit = np.where(hit > 0, hit, lab[py, px])
    out[hit == 0] = "spurious"
    claimed, counts = np.unique(hit[hit > 0], return_counts=True)
    split_labels = claimed[counts > 1]
    out[np.isin(hit, split_labels) & (hit > 0)] = "split"
    # merges: a true nucleus nobody claimed, swallowed by a detection that grew over it
    t_label = np.asarray(truth["label"], np.int64)
    t_area = dict(zip(t_label.tolist(), np.asarray(truth["area_px"], float).tolist()))
    missed = ~np.isin(t_label, claimed)
    if missed.any():
        mxy = np.column_stack([np.asarray(truth["x"], float)[missed], np.asarray(truth["y"], float)[missed]])
        tree = cKDTree(mxy)
        diam = np.asarray(candidates["diameter"], float)
        area = np.asarray(candidates["area"], float)
        for i in np.flatnonzero(out == "nucleus"):
            own = t_area.get(int(hit[i]), np.nan)
            if not (np.isfinite(own) and area[i] > _MERGE_GROWTH * own):
                continue
            if tree.query_ball_point([x[i], y[i]], _MERGE_REACH * diam[i]):
                out[i] = "merge"
    return out


def nucleus_stratum(
    candidates: Table,
    *,
    diameter_px: tuple[float, float],
    psf_fwhm: float,
    diameter_range: tuple[float, float] | None = None,
    psf_range: tuple[float, float] | None = None,
) -> np.ndarray:
    """The triage stratum of each detection (see module docs).

    ``microscopy:crowded`` (``BLENDED``, or a neighbour closer than the
    smallest expected diameter), else ``microscopy:isolated``; every row is
    ``microscopy:outside-training-range`` when the smallest expected diameter
    (pixels) is outside ``diameter_range`` or the PSF FWHM (pixels) outside
    ``psf_range`` (ranges of the calibration fields; ``None`` skips the check).
    """
    n = len(candidates)
    d_lo, d_hi = (float(v) for v in diameter_px)
    flags = np.nan_to_num(_col(candidates, "flags", 0.0), nan=0.0).astype(np.int64)
    _, nearest = _neighbours(_col(candidates, "x"), _col(candidates, "y"), d_hi)
    crowded = ((flags & int(SourceFlag.BLENDED)) != 0) | (nearest < d_lo)
    strata = np.where(crowded, "microscopy:crowded", "microscopy:isolated").astype("U40")
    outside = False
    if diameter_range is not None and not (diameter_range[0] <= d_lo <= diameter_range[1]):
        outside = True
    if psf_range is not None and not (psf_range[0] <= float(psf_fwhm) <= psf_range[1]):
        outside = True
    if outside:
        strata = np.full(n, OUT_OF_RANGE_STRATUM, dtype="U40")
    return strata


def outside_feature_range(features: np.ndarray, feature_range: dict[str, tuple[float, float]]) -> np.ndarray:
    """Per row: the names of the :data:`RANGE_FEATURES` outside ``feature_range`` (empty when inside).

    Parameters
    ----------
    features : numpy.ndarray, shape (n, len(FEATURES))
        From :func:`nucleus_features`.
    feature_range : mapping of str to (float, float)
        Allowed ``(low, high)`` per feature name (a model's ``feature_range``).

    Returns
    -------
    numpy.ndarray of str, shape (n,)
        Comma-separated names of the features out of range, ``""`` when all are in range.
    """
    f = np.asarray(features)
    out = np.full(len(f), "", dtype=object)
    for name, (lo, hi) in feature_range.items():
        v = f[:, FEATURES.index(name)]
        bad = (v < lo) | (v > hi) | ~np.isfinite(v)
        for i in np.flatnonzero(bad):
            out[i] = f"{out[i]},{name}" if out[i] else name
    return out.astype(str)


# --------------------------------------------------------------------------- the model


class NucleusTriageNet(nn.Module):
    """A small MLP: standardised :data:`FEATURES` in, logits over :data:`NUCLEUS_CLASSES` out."""

    def __init__(self, n_features: int = len(FEATURES), hidden: int = 32) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Linear(n_features, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(),
            nn.Linear(hidden, len(NUCLEUS_CLASSES)),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits, shape ``(n, 2)``."""
        return self.body(x)


@dataclasses.dataclass
class NucleusTriageModel:
    """A trained nucleus triage: network, feature scaling, temperature, range and calibration split.

    The microscopy head of the triage (:class:`~moe_imaging.triage.protocol.TriageModel`).

    Attributes
    ----------
    net : NucleusTriageNet
    mean, std : numpy.ndarray
        Feature standardisation (from the training split).
    temperature : float
        Fitted on the calibration split.
    diameter_range : (float, float)
        Smallest expected nucleus diameter (pixels) covered by calibration.
    psf_range : (float, float)
        PSF FWHM (pixels) covered by calibration.
    calibration : dict
        ``scores``, ``errors`` and ``strata`` of the calibration split (rows
        outside ``feature_range`` have the stratum ``microscopy:outside-training-range``).
    feature_range : dict
        ``(low, high)`` of each of :data:`RANGE_FEATURES` (training split quantiles).
    metadata : dict
        Configuration, metrics, versions, the label sets added since training.
    source : str
        Where the weights were read from (a file name), for provenance.
    """

    net: NucleusTriageNet
    mean: np.ndarray
    std: np.ndarray
    temperature: float
    diameter_range: tuple[float, float]
    psf_range: tuple[float, float]
    calibration: dict[str, list]
    feature_range: dict[str, tuple[float, float]] = dataclasses.field(default_factory=dict)
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)
    source: str = ""

    classes: ClassVar[tuple[str, ...]] = NUCLEUS_CLASSES

    # ---- the triage protocol

    def predict(self, table: Table, context: TriageContext) -> TriagePrediction:
        """``p_nucleus``/``p_artifact``, strata (out-of-range rows apart) and the evidence in words."""
        if context.diameter_px is None:
            raise ValueError("the nucleus triage needs the expected nucleus diameter (context.diameter_px)")
        n = len(table)
        feats = nucleus_features(table, diameter_px=context.diameter_px, psf_fwhm=context.psf_fwhm)
        probs = predict_nucleus(self, feats)
        strata = nucleus_stratum(table, diameter_px=context.diameter_px, psf_fwhm=context.psf_fwhm,
                                 diameter_range=self.diameter_range, psf_range=self.psf_range)
        beyond = outside_feature_range(feats, self.feature_range) if n else np.zeros(0, str)
        strata = np.where(beyond != "", OUT_OF_RANGE_STRATUM, strata)
        why = _explain(table, probs, context.diameter_px) if n else []
        why = [f"{w}; outside the calibrated range: {b}" if b else w for w, b in zip(why, beyond)]
        return TriagePrediction(probs, strata, why)

    def calibration_split(self) -> CalibrationSplit:
        """The calibration split; its out-of-range rows are never used to fit a threshold."""
        cal = self.calibration
        return CalibrationSplit.from_lists(cal["scores"], cal["errors"], cal["strata"], never=(OUT_OF_RANGE_STRATUM,))

    def label_strata(self) -> tuple[str, ...]:
        """None: single detections outside the training range lie outside the classifier's physics."""
        return ()

    def label_history(self) -> list[dict[str, Any]]:
        """The label sets added to the calibration split so far."""
        return list(self.metadata.get("label_sets", []))

    def with_calibration(self, split: CalibrationSplit, label_sets: list[dict[str, Any]]) -> NucleusTriageModel:
        """A copy whose calibration split is ``split``."""
        meta = dict(self.metadata)
        meta["label_sets"] = label_sets
        calibration = {"scores": split.scores.tolist(), "errors": split.errors.astype(int).tolist(),
                       "strata": split.strata.tolist()}
        return dataclasses.replace(self, calibration=calibration, metadata=meta)

    # ---- plain state (weights files are read and written by ``pipelines.models``)

    def to_state(self) -> dict[str, Any]:
        """Everything needed to rebuild the model, as tensors and plain types."""
        return {
            "kind": "nucleus_triage",
            "features": list(FEATURES),
            "hidden": int(self.net.body[0].out_features),
            "state_dict": self.net.state_dict(),
            "mean": [float(v) for v in self.mean],
            "std": [float(v) for v in self.std],
            "temperature": float(self.temperature),
            "diameter_range": [float(v) for v in self.diameter_range],
            "psf_range": [float(v) for v in self.psf_range],
            "calibration": _pack_calibration(self.calibration),
            "feature_range": {k: [float(v[0]), float(v[1])] for k, v in self.feature_range.items()},
            "metadata": json.loads(json.dumps(self.metadata, default=float)),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], *, source: str = "") -> NucleusTriageModel:
        """The model :meth:`to_state` describes.

        Raises
        ------
        ValueError
            When ``state`` is not a nucleus triage for :data:`FEATURES`.
        """
        if state.get("kind") != "nucleus_triage" or list(state.get("features", [])) != list(FEATURES):
            raise ValueError(f"not a nucleus triage model for features {FEATURES}")
        net = NucleusTriageNet(len(FEATURES), int(state["hidden"]))
        net.load_state_dict(state["state_dict"])
        net.eval()
        return cls(net, np.asarray(state["mean"], np.float32), np.asarray(state["std"], np.float32),
                   float(state["temperature"]), tuple(state["diameter_range"]), tuple(state["psf_range"]),
                   _unpack_calibration(state["calibration"]),
                   {k: (float(v[0]), float(v[1])) for k, v in state["feature_range"].items()},
                   dict(state["metadata"]), source)


def _pack_calibration(cal: dict[str, Any]) -> dict[str, Any]:
    """Compact storage: float64 scores, uint8 errors, stratum codes and names."""
    names, codes = np.unique(np.asarray(cal["strata"], dtype=str), return_inverse=True)
    return {"scores": torch.from_numpy(np.asarray(cal["scores"], np.float64).copy()),
            "errors": torch.from_numpy(np.asarray(cal["errors"], np.uint8).copy()),
            "strata_names": [str(v) for v in names],
            "strata_codes": torch.from_numpy(codes.astype(np.int16))}


def _unpack_calibration(blob: dict[str, Any]) -> dict[str, list]:
    names = np.asarray(blob["strata_names"], dtype=object)
    return {"scores": blob["scores"].numpy().astype(np.float64).tolist(),
            "errors": blob["errors"].numpy().astype(np.int64).tolist(),
            "strata": [str(v) for v in names[blob["strata_codes"].numpy().astype(np.int64)]]}


def _logits(model: NucleusTriageModel, features: np.ndarray) -> np.ndarray:
    x = (np.asarray(features, np.float32) - model.mean) / model.std
    with torch.no_grad():
        return model.net(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).numpy().astype(np.float64)


def predict_nucleus(model: NucleusTriageModel, features: np.ndarray, *, calibrated: bool = True) -> np.ndarray:
    """Class probabilities ``(n, 2)`` over :data:`NUCLEUS_CLASSES` (temperature-scaled when ``calibrated``)."""
    f = np.asarray(features)
    if f.ndim != 2 or f.shape[1] != len(FEATURES):
        raise ValueError(f"features: expected shape (n, {len(FEATURES)}), got {f.shape}")
    if len(f) == 0:
        return np.zeros((0, len(NUCLEUS_CLASSES)))
    z = _logits(model, f) / (model.temperature if calibrated else 1.0)
    z = z - z.max(axis=1, keepdims=True)
    p = np.exp(z)
    return p / p.sum(axis=1, keepdims=True)


def _explain(table: Table, probs: np.ndarray, diameter_px: tuple[float, float]) -> list[str]:
    d_mid = math.sqrt(diameter_px[0] * diameter_px[1])
    snr = _col(table, "snr")
    diam = _col(table, "diameter")
    flags = np.nan_to_num(_col(table, "flags", 0.0), nan=0.0).astype(np.int64)
    out = []
    for i in range(len(table)):
        parts = [f"p_nucleus {probs[i, 0]:.2f}"]
        if np.isfinite(snr[i]):
            parts.append(f"S/N {snr[i]:.0f}")
        if np.isfinite(diam[i]):
            parts.append(f"diameter {diam[i] / d_mid:.2f}x expected")
        if flags[i] & int(SourceFlag.BLENDED):
            parts.append("touching another nucleus")
        if flags[i] & int(SourceFlag.EDGE):
            parts.append("at the image edge")
        out.append(", ".join(parts))
    return out

"""Are the confidences honest?  Calibration statistics on a held-out set.

:func:`fit_temperature` rescales the logits of a multi-class head
(temperature scaling, Guo et al. 2017); :func:`fit_isotonic` maps a binary
confidence monotonically onto the observed accuracy (pool-adjacent-violators);
:func:`expected_calibration_error` and :func:`reliability_table` measure what is
left; :func:`clopper_pearson` bounds an observed error rate.  The certified
thresholds built on these live in :mod:`moe_imaging.triage.certify`.
Draw a reliability table with :func:`catalogs.plots.reliability_diagram`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy import optimize, special, stats

from contracts.config import check_choice, check_int, check_range
from contracts.errors import ConfigError

__all__ = [
    "IsotonicMap",
    "apply_temperature",
    "clopper_pearson",
    "expected_calibration_error",
    "fit_isotonic",
    "fit_temperature",
    "reliability_table",
]


# ---------------------------------------------------------------------------
# input checks
# ---------------------------------------------------------------------------


def _as_1d(name: str, values: Any, *, dtype: Any = np.float64) -> np.ndarray:
    arr = np.asarray(values, dtype=dtype)
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-d array, got shape {arr.shape}")
    return arr


def _as_binary(name: str, values: Any, n: int) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1 or len(arr) != n:
        raise ValueError(f"{name}: expected a 1-d array of length {n}, got shape {arr.shape}")
    if arr.dtype != bool:
        num = np.asarray(arr, dtype=np.float64)
        if not np.all((num == 0) | (num == 1)):
            raise ValueError(f"{name}: values must be 0/1 or boolean")
        arr = num == 1
    return arr


def _check_scores(name: str, values: Any) -> np.ndarray:
    arr = _as_1d(name, values)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: calibration scores must be finite")
    return arr


# ---------------------------------------------------------------------------
# temperature scaling
# ---------------------------------------------------------------------------


def _check_logits(logits: Any) -> np.ndarray:
    arr = np.asarray(logits, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] < 2:
        raise ValueError(f"logits: expected shape (n, k) with k >= 2, got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("logits: values must be finite")
    return arr


def apply_temperature(logits: Any, temperature: float) -> np.ndarray:
    """Return ``softmax(logits / temperature)`` along the last axis.

    Parameters
    ----------
    logits : array_like, shape (n, k)
        Unnormalised class scores.
    temperature : float
        ``T > 0``; ``T > 1`` softens over-confident probabilities.

    Returns
    -------
    numpy.ndarray, shape (n, k)
        Class probabilities (rows sum to one), computed stably.
    """
    check_range("temperature", temperature, low=0.0, low_inclusive=False)
    z = _check_logits(logits) / float(temperature)
    return special.softmax(z, axis=1)


def _nll(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    z = logits / temperature
    logp = z[np.arange(len(labels)), labels] - special.logsumexp(z, axis=1)
    return float(-np.mean(logp))


def fit_temperature(
    logits: Any,
    labels: Any,
    *,
    bounds: tuple[float, float] = (0.05, 20.0),
) -> float:
    """Fit the temperature minimising the negative log-likelihood of ``labels``.

    Parameters
    ----------
    logits : array_like, shape (n, k)
        Logits of the calibration items (from the model, before softmax).
    labels : array_like of int, shape (n,)
        True class indices in ``[0, k)``.
    bounds : (float, float)
        Search interval of ``T``; the optimisation runs on ``log T``.

    Returns
    -------
    float
        The fitted temperature ``T`` (apply with :func:`apply_temperature`).
    """
    z = _check_logits(logits)
    y = np.asarray(labels)
    if y.ndim != 1 or len(y) != len(z):
        raise ValueError(f"labels: expected shape ({len(z)},), got {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        if not np.all(np.asarray(y, dtype=float) == np.round(np.asarray(y, dtype=float))):
            raise ValueError("labels: expected integer class indices")
        y = y.astype(np.int64)
    if len(y) == 0:
        raise ValueError("labels: no calibration items")
    if y.min() < 0 or y.max() >= z.shape[1]:
        raise ValueError(f"labels: class indices must lie in [0, {z.shape[1]})")
    lo, hi = (float(b) for b in bounds)
    if not 0 < lo < hi:
        raise ValueError(f"bounds: expected 0 < low < high, got {bounds}")
    res = optimize.minimize_scalar(
        lambda logt: _nll(z, y, math.exp(logt)),
        bounds=(math.log(lo), math.log(hi)),
        method="bounded",
        options={"xatol": 1e-6},
    )
    return float(math.exp(res.x))


# ---------------------------------------------------------------------------
# isotonic calibration (pool adjacent violators)
# ---------------------------------------------------------------------------


def _pav(y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted non-decreasing least-squares fit of ``y`` (already ordered)."""
    n = len(y)
    means = np.empty(n)
    weights = np.empty(n)
    sizes = np.empty(n, dtype=np.int64)
    top = -1
    for i in range(n):
        top += 1
        means[top], weights[top], sizes[top] = y[i], w[i], 1
        while top > 0 and means[top - 1] > means[top]:
            wsum = weights[top - 1] + weights[top]
            means[top - 1] = (means[top - 1] * weights[top - 1] + means[top] * weights[top]) / wsum
            weights[top - 1] = wsum
            sizes[top - 1] += sizes[top]
            top -= 1
    return np.repeat(means[: top + 1], sizes[: top + 1])


@dataclasses.dataclass(frozen=True)
class IsotonicMap:
    """A monotone non-decreasing map from a raw confidence to a calibrated one.

    Between the knots the map interpolates linearly; outside them it is
    constant (the first and last fitted values).

    Attributes
    ----------
    x : tuple of float
        Increasing knot positions (distinct raw confidences).
    y : tuple of float
        Non-decreasing calibrated values at the knots, in ``[0, 1]``.
    """

    x: tuple[float, ...]
    y: tuple[float, ...]

    def __post_init__(self) -> None:
        x = np.asarray(self.x, dtype=np.float64)
        y = np.asarray(self.y, dtype=np.float64)
        if x.ndim != 1 or x.shape != y.shape or len(x) == 0:
            raise ValueError("IsotonicMap: x and y must be non-empty 1-d sequences of one length")
        if np.any(np.diff(x) <= 0):
            raise ValueError("IsotonicMap: x must be strictly increasing")
        if np.any(np.diff(y) < 0):
            raise ValueError("IsotonicMap: y must be non-decreasing")
        object.__setattr__(self, "x", tuple(float(v) for v in x))
        object.__setattr__(self, "y", tuple(float(v) for v in y))

    def __call__(self, confidence: Any) -> np.ndarray:
        """Return the calibrated confidence for raw ``confidence`` (any shape)."""
        c = np.asarray(confidence, dtype=np.float64)
        return np.interp(c, np.asarray(self.x), np.asarray(self.y))

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable description."""
        return {"kind": "isotonic", "x": list(self.x), "y": list(self.y)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> IsotonicMap:
        """Rebuild a map written by :meth:`to_dict`."""
        if data.get("kind", "isotonic") != "isotonic":
            raise ValueError(f"IsotonicMap.from_dict: not an isotonic map (kind={data.get('kind')!r})")
        return cls(x=tuple(data["x"]), y=tuple(data["y"]))


def fit_isotonic(confidence: Any, correct: Any, *, sample_weight: Any = None) -> IsotonicMap:
    """Fit a monotone map from ``confidence`` to the probability of being correct.

    Pool-adjacent-violators on the items sorted by confidence (items of equal
    confidence are pooled first), i.e. the weighted least-squares
    non-decreasing fit of ``correct`` against ``confidence``.

    Parameters
    ----------
    confidence : array_like, shape (n,)
        Raw confidences (any monotone score).
    correct : array_like of bool or 0/1, shape (n,)
        Whether each decision was correct.
    sample_weight : array_like, shape (n,), optional
        Non-negative weights (default one each).

    Returns
    -------
    IsotonicMap
    """
    c = _check_scores("confidence", confidence)
    if len(c) == 0:
        raise ValueError("confidence: no calibration items")
    y = _as_binary("correct", correct, len(c)).astype(np.float64)
    w = np.ones_like(c) if sample_weight is None else _as_1d("sample_weight", sample_weight)
    if len(w) != len(c) or np.any(w < 0) or not np.all(np.isfinite(w)) or w.sum() <= 0:
        raise ValueError("sample_weight: expected finite non-negative weights, one per item, not all zero")
    keep = w > 0
    c, y, w = c[keep], y[keep], w[keep]
    xs, inverse = np.unique(c, return_inverse=True)
    wsum = np.bincount(inverse, weights=w)
    ymean = np.bincount(inverse, weights=w * y) / wsum
    fitted = np.clip(_pav(ymean, wsum), 0.0, 1.0)
    return IsotonicMap(x=tuple(xs), y=tuple(fitted))


# ---------------------------------------------------------------------------
# calibration error
# ---------------------------------------------------------------------------


def _bin_edges(c: np.ndarray, n_bins: int, strategy: str) -> np.ndarray:
    check_int("n_bins", n_bins)
    check_range("n_bins", n_bins, low=1, high=10_000)
    check_choice("strategy", strategy, ("uniform", "quantile"))
    if strategy == "uniform":
        return np.linspace(0.0, 1.0, n_bins + 1)
    edges = np.quantile(c, np.linspace(0.0, 1.0, n_bins + 1))
    edges[0], edges[-1] = min(edges[0], 0.0), max(edges[-1], 1.0)
    return np.unique(edges)


def _binned(confidence: Any, correct: Any, n_bins: int, strategy: str):
    c = _check_scores("confidence", confidence)
    if len(c) == 0:
        raise ValueError("confidence: no items")
    if np.any((c < 0) | (c > 1)):
        raise ValueError("confidence: values must lie in [0, 1]")
    y = _as_binary("correct", correct, len(c)).astype(np.float64)
    edges = _bin_edges(c, n_bins, strategy)
    nb = len(edges) - 1
    # bins are (low, high], the first one [0, high]
    idx = np.clip(np.searchsorted(edges, c, side="left") - 1, 0, nb - 1)
    counts = np.bincount(idx, minlength=nb)
    with np.errstate(invalid="ignore", divide="ignore"):
        conf = np.bincount(idx, weights=c, minlength=nb) / counts
        acc = np.bincount(idx, weights=y, minlength=nb) / counts
    return edges, conf, acc, counts


def expected_calibration_error(
    confidence: Any,
    correct: Any,
    n_bins: int = 15,
    strategy: str = "uniform",
) -> float:
    """Expected calibration error: ``sum_b (n_b / n) |accuracy_b - confidence_b|``.

    Parameters
    ----------
    confidence : array_like, shape (n,)
        Predicted probability that the decision is correct, in ``[0, 1]``.
    correct : array_like of bool or 0/1, shape (n,)
        Whether the decision was correct.
    n_bins : int
        Number of bins.
    strategy : {"uniform", "quantile"}
        Equal-width bins on ``[0, 1]`` or bins holding equal numbers of items.

    Returns
    -------
    float
        The ECE, in ``[0, 1]``.  It is biased upwards for small samples
        (about ``sqrt(n_bins / n)``).
    """
    _, conf, acc, counts = _binned(confidence, correct, n_bins, strategy)
    full = counts > 0
    return float(np.sum(counts[full] * np.abs(acc[full] - conf[full])) / counts.sum())


def reliability_table(
    confidence: Any,
    correct: Any,
    n_bins: int = 15,
    strategy: str = "uniform",
):
    """Per-bin mean confidence and accuracy (the data of a reliability diagram).

    Parameters
    ----------
    confidence, correct, n_bins, strategy
        As for :func:`expected_calibration_error`.

    Returns
    -------
    astropy.table.Table
        Columns ``bin_low``, ``bin_high``, ``mean_confidence``, ``accuracy``
        (NaN for empty bins) and ``count``; ``meta["ece"]`` holds the ECE.
    """
    from astropy.table import Table

    edges, conf, acc, counts = _binned(confidence, correct, n_bins, strategy)
    full = counts > 0
    ece = float(np.sum(counts[full] * np.abs(acc[full] - conf[full])) / counts.sum())
    return Table(
        {
            "bin_low": edges[:-1],
            "bin_high": edges[1:],
            "mean_confidence": conf,
            "accuracy": acc,
            "count": counts.astype(np.int64),
        },
        meta={"ece": ece, "strategy": strategy},
    )


# ---------------------------------------------------------------------------
# binomial bounds
# ---------------------------------------------------------------------------


def clopper_pearson(
    k: int,
    n: int,
    confidence: float = 0.95,
    *,
    sided: str = "two",
) -> tuple[float, float]:
    """Exact (Clopper–Pearson) confidence interval of a binomial proportion.

    Parameters
    ----------
    k : int
        Number of successes (here: errors), ``0 <= k <= n``.
    n : int
        Number of trials.
    confidence : float
        Confidence level in ``(0, 1)``.
    sided : {"two", "upper", "lower"}
        ``"two"``: equal-tailed interval; ``"upper"``: ``(0, high)`` with all
        of ``1 - confidence`` in the upper tail (e.g. ``k=0, n=100, 0.95`` gives
        ``high = 1 - 0.05**(1/100) = 0.0295``, whereas the two-sided interval
        has ``high = 0.0362``); ``"lower"``: ``(low, 1)``.

    Returns
    -------
    (float, float)
        ``(low, high)``; ``(0, 1)`` when ``n == 0``.
    """
    check_int("k", int(k) if isinstance(k, np.integer) else k)
    check_int("n", int(n) if isinstance(n, np.integer) else n)
    k, n = int(k), int(n)
    check_range("n", n, low=0)
    check_range("k", k, low=0, high=n)
    check_range("confidence", confidence, low=0.0, high=1.0, low_inclusive=False)
    if not confidence < 1:
        raise ConfigError(f"confidence: must be < 1, got {confidence}")
    check_choice("sided", sided, ("two", "upper", "lower"))
    if n == 0:
        return 0.0, 1.0
    tail = (1.0 - confidence) / 2.0 if sided == "two" else 1.0 - confidence
    low = 0.0 if k == 0 or sided == "upper" else float(stats.beta.ppf(tail, k, n - k + 1))
    high = 1.0 if k == n or sided == "lower" else float(stats.beta.ppf(1.0 - tail, k + 1, n - k))
    return low, high

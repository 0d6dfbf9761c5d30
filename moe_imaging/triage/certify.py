"""Which decisions may be taken without a human?  Certified triage thresholds.

Two questions are answered here, both with plain statistics on a held-out
*calibration* set (never the training set):

1. **Are the confidences honest?**  :func:`fit_temperature` rescales the
   logits of a multi-class head (temperature scaling, Guo et al. 2017);
   :func:`fit_isotonic` maps a binary confidence monotonically onto the
   observed accuracy (pool-adjacent-violators); :func:`expected_calibration_error`
   and :func:`reliability_table` measure what is left.

2. **Which decisions may be taken without a human?**  :func:`fit_triage`
   chooses a confidence threshold ``tau`` such that, among new items with
   ``score >= tau`` (decided automatically), the error rate is at most the
   risk ``alpha`` with probability at least ``1 - delta``.  Everything else
   goes to review.  :func:`fit_stratified_triage` does this per stratum
   (PSF-size bin, observation mode, survey vs microscopy), and
   :meth:`StratifiedTriage.decide` says in words why each item was or was not
   decided automatically.

The guarantee and its assumptions
---------------------------------
The threshold is chosen by *Learn then Test* (Angelopoulos et al. 2021,
arXiv:2110.01052) with fixed-sequence testing.  For each candidate
threshold ``tau`` the null hypothesis ``H0(tau): risk(tau) > alpha`` (risk =
probability that an automatically decided item is wrong) is tested with the
exact binomial p-value ``P[Binomial(n(tau), alpha) <= k(tau)]``, where
``n(tau)`` items of the calibration set have ``score >= tau`` and ``k(tau)`` of
them are errors.  The candidates are tested from the strictest downwards; the
scan stops at the first hypothesis not rejected at level ``delta``, which
controls the family-wise error rate at ``delta`` without any multiplicity
correction.  The lowest rejected threshold is returned.

The statement ``P[risk(tau_hat) <= alpha] >= 1 - delta`` holds under these
assumptions, which the caller must check:

* **Exchangeability.**  Calibration items and future items of one stratum
  are exchangeable (e.g. i.i.d. draws of the same survey conditions).  A
  change of instrument, depth, PSF regime or sky density is a new stratum
  and needs new calibration data.
* **Marginal over calibration draws.**  With probability ``1 - delta`` over
  the draw of the calibration set, the *expected* error rate of future
  automatically decided items is ``<= alpha``.  It is not a statement about
  one particular batch (whose realised error rate fluctuates around the
  risk), nor about one item, nor conditional on a sub-population that is
  not a stratum of its own.
* **Labels from the same distribution.**  ``errors`` must be the truth for
  the calibration items, obtained the same way for every item.  Items that
  reached human review are *selected* (low confidence); using only them to
  refit breaks exchangeability.  Refit from reviewed items only when they are
  a random sample of all items (e.g. a random audit of automatic decisions
  as well), otherwise flag the refit as uncertified.
* **Per stratum.**  Each stratum's threshold carries its own ``1 - delta``
  guarantee.  For a simultaneous guarantee over all ``m`` strata pass
  ``simultaneous=True`` (Bonferroni: ``delta / m`` per stratum).

The candidate thresholds are the observed calibration scores.  The scan
starts at the highest score with at least ``min_auto`` items at or above it
(see :class:`TriageConfig`: by default a count large enough that an error
rate of ``alpha / 2`` certifies, so that one early error does not end the
scan); that starting point depends on the number of items only, never on the
error labels, and the binomial p-value is exact conditionally on ``n(tau)``, as
in the selective-classification example of Angelopoulos et al.  The
repeated-draw test in ``tests/moe_imaging/test_calibrate.py`` checks the
coverage of the guarantee empirically.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from scipy import stats

from contracts.config import Config, check_int, check_range
from contracts.errors import ConfigError

from .calibration import _as_1d, _as_binary, _check_scores, clopper_pearson

__all__ = [
    "StratifiedTriage",
    "TriageConfig",
    "TriageThreshold",
    "evaluate_triage",
    "fit_stratified_triage",
    "fit_triage",
    "risk_coverage",
]


# ---------------------------------------------------------------------------
# certified triage
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TriageConfig(Config):
    """Options of certified triage.

    Attributes
    ----------
    alpha : float
        Risk: the largest tolerated error rate among automatically decided items.
    delta : float
        Allowed probability (over the calibration draw) that the certified
        threshold nevertheless has risk above ``alpha``.
    min_auto : int or None
        Fewest calibration items at or above a candidate threshold for it to
        be tested: the fixed sequence starts at the ``min_auto``-th highest
        score.  ``None`` (default): the smallest count from which on an
        observed error rate of ``alpha / 2`` would still certify (1049 for
        ``alpha=0.01, delta=0.05``; 333 for ``0.02, 0.1``).  Starting stricter
        (with few items) lets one unlucky early error stop the whole scan;
        starting here means a certified threshold always auto-decides at
        least ``min_auto`` calibration items.  The floor is the count at
        which zero errors certify, ``ceil(log(delta) / log(1 - alpha))``
        (299 for the defaults).
    min_count : int
        Per stratum: fewer calibration items than this and the whole stratum
        goes to review (its threshold is ``+inf``).
    simultaneous : bool
        Per stratum: use ``delta / m`` for ``m`` calibrated strata so that all
        thresholds hold together with probability ``1 - delta``.
    """

    alpha: float = 0.01
    delta: float = 0.05
    min_auto: int | None = None
    min_count: int = 50
    simultaneous: bool = False

    def __post_init__(self) -> None:
        check_range("alpha", self.alpha, low=0.0, high=1.0, low_inclusive=False)
        if not self.alpha < 1:
            raise ConfigError(f"alpha: must be < 1, got {self.alpha}")
        check_range("delta", self.delta, low=0.0, high=1.0, low_inclusive=False)
        if not self.delta < 1:
            raise ConfigError(f"delta: must be < 1, got {self.delta}")
        check_int("min_auto", self.min_auto, allow_none=True)
        check_range("min_auto", self.min_auto, low=1, allow_none=True)
        check_int("min_count", self.min_count)
        check_range("min_count", self.min_count, low=1)
        if not isinstance(self.simultaneous, bool):
            raise ConfigError(f"simultaneous: expected true or false, got {self.simultaneous!r}")

    def effective_min_auto(self, delta: float | None = None) -> int:
        """``min_auto``, or its default for ``alpha`` and ``delta`` (see the class)."""
        if self.min_auto is not None:
            return int(self.min_auto)
        return _default_min_auto(float(self.alpha), float(self.delta if delta is None else delta))


@functools.lru_cache(maxsize=64)
def _default_min_auto(alpha: float, delta: float) -> int:
    """Smallest ``n0`` such that ``k = floor(alpha n / 2)`` errors certify for every ``n >= n0``."""
    z = stats.norm.isf(delta)
    approx = (z * math.sqrt(alpha * (1 - alpha)) / (alpha / 2)) ** 2
    top = int(3 * approx) + 1000
    n = np.arange(1, top + 1)
    ok = stats.binom.cdf(np.floor(n * alpha / 2), n, alpha) <= delta
    bad = np.flatnonzero(~ok)
    if len(bad) == 0:
        return 1
    if bad[-1] == top - 1:  # pragma: no cover - the normal approximation is far off
        return top
    return int(n[bad[-1] + 1])


def _pct(x: float) -> str:
    return f"{100.0 * x:g}%"


def _fmt_pair(a: float, b: float) -> tuple[str, str]:
    """Format two numbers with the fewest decimals (2..6) that tell them apart."""
    for digits in range(2, 7):
        sa, sb = f"{a:.{digits}f}", f"{b:.{digits}f}"
        if sa != sb:
            return sa, sb
    return f"{a:.6g}", f"{b:.6g}"


def _float_or_none(x: float) -> float | None:
    return None if not math.isfinite(x) else float(x)


@dataclasses.dataclass(frozen=True)
class TriageThreshold:
    """A certified confidence threshold: decide automatically when ``score >= tau``.

    Attributes
    ----------
    tau : float
        The threshold; ``+inf`` when nothing could be certified (all items go
        to review).
    alpha, delta : float
        Risk and confidence of the guarantee (see the module docstring).
    n_calibration : int
        Calibration items used.
    n_auto : int
        Calibration items with ``score >= tau``.
    errors_auto : int
        Errors among them.
    upper_bound : float
        One-sided Clopper–Pearson ``1 - delta`` upper bound of the risk at
        ``tau`` (``<= alpha`` when certified); NaN when ``n_auto == 0``.
    coverage : float
        ``n_auto / n_calibration``: the fraction decided automatically on the
        calibration set.
    reason : str
        Why the threshold is ``+inf`` (empty when one was certified).
    """

    tau: float
    alpha: float
    delta: float
    n_calibration: int
    n_auto: int
    errors_auto: int
    upper_bound: float
    coverage: float
    reason: str = ""

    @property
    def certified(self) -> bool:
        """Whether a finite threshold was certified."""
        return math.isfinite(self.tau)

    def decide(
        self, scores: Any, label: str | None = None, *, noun: str = "threshold"
    ) -> tuple[np.ndarray, list[str]]:
        """Split items into automatic decisions and review.

        Parameters
        ----------
        scores : array_like, shape (n,)
            Calibrated confidences of new items (non-finite ones go to review).
        label : str, optional
            Name of the stratum, quoted in the reasons.
        noun : str
            What the threshold is called in the reasons.

        Returns
        -------
        auto : numpy.ndarray of bool, shape (n,)
            True where the item may be decided automatically.
        reason : list of str
            Why, in words, per item.
        """
        s = _as_1d("scores", scores)
        finite = np.isfinite(s)
        auto = finite & (s >= self.tau)
        where = f"{label}, " if label is not None else ""
        context = f"({where}alpha={_pct(self.alpha)})"
        reasons: list[str] = []
        for value, ok, fin in zip(s.tolist(), auto.tolist(), finite.tolist()):
            if not fin:
                reasons.append(f"confidence {value} is not finite {context}")
            elif not self.certified:
                what = f"stratum {label!r}" if label is not None else "triage"
                reasons.append(f"{what} has no certified threshold: {self.reason}")
            else:
                sv, st = _fmt_pair(value, self.tau)
                if ok:
                    reasons.append(f"confidence {sv} at or above the {noun} {st} {context}")
                else:
                    reasons.append(f"confidence {sv} below the {noun} {st} {context}")
        return auto, reasons

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable description (``tau: None`` means ``+inf``)."""
        out = dataclasses.asdict(self)
        out["tau"] = _float_or_none(self.tau)
        out["upper_bound"] = _float_or_none(self.upper_bound)
        out["kind"] = "triage_threshold"
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TriageThreshold:
        """Rebuild a threshold written by :meth:`to_dict`."""
        d = dict(data)
        d.pop("kind", None)
        d["tau"] = math.inf if d.get("tau") is None else float(d["tau"])
        d["upper_bound"] = math.nan if d.get("upper_bound") is None else float(d["upper_bound"])
        return cls(**d)


def _uncertified(n: int, alpha: float, delta: float, reason: str) -> TriageThreshold:
    return TriageThreshold(
        tau=math.inf,
        alpha=alpha,
        delta=delta,
        n_calibration=n,
        n_auto=0,
        errors_auto=0,
        upper_bound=math.nan,
        coverage=0.0,
        reason=reason,
    )


def _resolve_config(config: TriageConfig | None, **kwargs: Any) -> TriageConfig:
    if config is None:
        return TriageConfig(**{k: v for k, v in kwargs.items() if v is not _UNSET})
    if not isinstance(config, TriageConfig):
        raise ConfigError(f"config: expected a TriageConfig, got {type(config).__name__}")
    changes = {k: v for k, v in kwargs.items() if v is not _UNSET}
    return config.replace(**changes) if changes else config


_UNSET: Any = object()


def _fit_one(s: np.ndarray, e: np.ndarray, alpha: float, delta: float, min_auto: int) -> TriageThreshold:
    n = len(s)
    if n == 0:
        return _uncertified(0, alpha, delta, "no calibration items")
    order = np.argsort(-s, kind="stable")
    ss, ee = s[order], e[order].astype(np.int64)
    cum_err = np.cumsum(ee)
    # candidate thresholds: each distinct score; n(tau) counts all ties
    last_of_tie = np.flatnonzero(np.r_[ss[1:] != ss[:-1], True])
    n_tau = last_of_tie + 1
    k_tau = cum_err[last_of_tie]
    tested = n_tau >= min_auto
    if not np.any(tested):
        return _uncertified(
            n, alpha, delta,
            f"{n} calibration items, fewer than the {min_auto} needed to certify "
            f"alpha={_pct(alpha)} at delta={_pct(delta)}",
        )
    cand = np.flatnonzero(tested)
    pvals = stats.binom.cdf(k_tau[cand], n_tau[cand], alpha)
    fail = np.flatnonzero(pvals > delta)
    n_accepted = fail[0] if len(fail) else len(cand)
    if n_accepted == 0:
        return _uncertified(
            n, alpha, delta,
            f"no threshold certified at alpha={_pct(alpha)}, delta={_pct(delta)} "
            f"({n} calibration items; the strictest tested, with {int(n_tau[cand[0]])} items, "
            f"has {int(k_tau[cand[0]])} errors)",
        )
    j = cand[n_accepted - 1]
    nj, kj = int(n_tau[j]), int(k_tau[j])
    return TriageThreshold(
        tau=float(ss[last_of_tie[j]]),
        alpha=alpha,
        delta=delta,
        n_calibration=n,
        n_auto=nj,
        errors_auto=kj,
        upper_bound=clopper_pearson(kj, nj, 1.0 - delta, sided="upper")[1],
        coverage=nj / n,
    )


def fit_triage(
    scores: Any,
    errors: Any,
    *,
    alpha: float = _UNSET,
    delta: float = _UNSET,
    min_auto: int | None = _UNSET,
    config: TriageConfig | None = None,
) -> TriageThreshold:
    """Certify a confidence threshold by Learn-then-Test with fixed-sequence testing.

    Parameters
    ----------
    scores : array_like, shape (n,)
        Confidence of each calibration item (e.g. the calibrated maximum class
        probability); larger means more confident.  Must be finite.
    errors : array_like of bool or 0/1, shape (n,)
        Whether the automatic decision on the item would be wrong.
    alpha : float
        Risk to certify (default 0.01).
    delta : float
        Confidence parameter (default 0.05): ``P[risk(tau) <= alpha] >= 1 - delta``.
    min_auto : int or None
        See :class:`TriageConfig`.
    config : TriageConfig, optional
        Options; explicit keyword arguments override its fields.

    Returns
    -------
    TriageThreshold
        ``tau = +inf`` (everything to review) when no threshold is certified.

    Notes
    -----
    Candidate thresholds are the distinct calibration scores, scanned from the
    highest down; at each, ``p = P[Binomial(n(tau), alpha) <= k(tau)]``.  A
    threshold is accepted while ``p <= delta``; the first ``p > delta`` stops
    the scan and the lowest accepted threshold is returned.  See the module
    docstring for the assumptions of the guarantee.
    """
    cfg = _resolve_config(config, alpha=alpha, delta=delta, min_auto=min_auto)
    s = _check_scores("scores", scores)
    e = _as_binary("errors", errors, len(s))
    return _fit_one(s, e, cfg.alpha, cfg.delta, cfg.effective_min_auto())


@dataclasses.dataclass(frozen=True)
class StratifiedTriage:
    """Certified thresholds, one per stratum.

    Attributes
    ----------
    alpha, delta : float
        Risk and confidence (``delta`` is per stratum unless ``simultaneous``).
    min_count : int
        Strata with fewer calibration items go to review entirely.
    thresholds : mapping of str to TriageThreshold
        One per stratum seen in calibration, keyed by ``str(label)``.
    simultaneous : bool
        Whether ``delta`` was split over the strata (Bonferroni).
    """

    alpha: float
    delta: float
    min_count: int
    thresholds: Mapping[str, TriageThreshold]
    simultaneous: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "thresholds", types.MappingProxyType(dict(self.thresholds)))

    @property
    def uncalibrated(self) -> dict[str, str]:
        """Strata seen in calibration without a certified threshold, with the reason."""
        return {k: t.reason for k, t in self.thresholds.items() if not t.certified}

    def decide(self, scores: Any, strata: Any) -> tuple[np.ndarray, list[str]]:
        """Split new items into automatic decisions and review, by stratum.

        Parameters
        ----------
        scores : array_like, shape (n,)
            Calibrated confidences of the new items.
        strata : array_like of hashable, shape (n,)
            Stratum label of each item (compared as ``str(label)``).

        Returns
        -------
        auto : numpy.ndarray of bool, shape (n,)
            True where the item may be decided automatically.
        reason : list of str
            Why, in words, per item, e.g. ``"confidence 0.83 below the
            stratum threshold 0.97 (fwhm 3-4.5 px, alpha=1%)"`` or ``"stratum
            'fwhm>9' not calibrated (not seen in calibration)"``.
        """
        s = _as_1d("scores", scores)
        keys = _labels(strata, len(s))
        auto = np.zeros(len(s), dtype=bool)
        reasons: list[str] = [""] * len(s)
        groups: dict[str, list[int]] = {}
        for i, key in enumerate(keys):
            groups.setdefault(key, []).append(i)
        for key, idx_list in groups.items():
            idx = np.asarray(idx_list, dtype=np.int64)
            thr = self.thresholds.get(key)
            if thr is None:
                for i in idx_list:
                    reasons[i] = f"stratum {key!r} not calibrated (not seen in calibration)"
                continue
            if not thr.certified:
                for i in idx_list:
                    reasons[i] = f"stratum {key!r} not calibrated: {thr.reason}"
                continue
            a, r = thr.decide(s[idx], label=key, noun="stratum threshold")
            auto[idx] = a
            for i, text in zip(idx_list, r):
                reasons[i] = text
        return auto, reasons

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable description (to save beside the weights)."""
        return {
            "kind": "stratified_triage",
            "alpha": float(self.alpha),
            "delta": float(self.delta),
            "min_count": int(self.min_count),
            "simultaneous": bool(self.simultaneous),
            "thresholds": {k: t.to_dict() for k, t in self.thresholds.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StratifiedTriage:
        """Rebuild a stratified triage written by :meth:`to_dict`."""
        if data.get("kind", "stratified_triage") != "stratified_triage":
            raise ValueError(f"StratifiedTriage.from_dict: wrong kind {data.get('kind')!r}")
        return cls(
            alpha=float(data["alpha"]),
            delta=float(data["delta"]),
            min_count=int(data["min_count"]),
            simultaneous=bool(data.get("simultaneous", False)),
            thresholds={str(k): TriageThreshold.from_dict(v) for k, v in data["thresholds"].items()},
        )


def _labels(strata: Any, n: int) -> list[str]:
    if isinstance(strata, (str, bytes)) or not isinstance(strata, (np.ndarray, Iterable)):
        raise TypeError("strata: expected a sequence with one label per item")
    keys = [str(v) for v in (strata.tolist() if isinstance(strata, np.ndarray) else strata)]
    if len(keys) != n:
        raise ValueError(f"strata: expected {n} labels, got {len(keys)}")
    return keys


def fit_stratified_triage(
    scores: Any,
    errors: Any,
    strata: Any,
    *,
    alpha: float = _UNSET,
    delta: float = _UNSET,
    min_count: int = _UNSET,
    min_auto: int | None = _UNSET,
    simultaneous: bool = _UNSET,
    config: TriageConfig | None = None,
) -> StratifiedTriage:
    """Certify one threshold per stratum (see :func:`fit_triage`).

    Parameters
    ----------
    scores, errors
        As for :func:`fit_triage`.
    strata : array_like of hashable, shape (n,)
        Stratum label of each calibration item (e.g. a PSF-size bin, an
        observation mode); labels are keyed by ``str(label)``.
    alpha, delta, min_auto
        As for :func:`fit_triage` (defaults 0.01, 0.05).
    min_count : int
        Strata with fewer calibration items get ``tau = +inf`` (default 50).
    simultaneous : bool
        Split ``delta`` over the strata with at least ``min_count`` items.
    config : TriageConfig, optional
        Options; explicit keyword arguments override its fields.

    Returns
    -------
    StratifiedTriage
    """
    cfg = _resolve_config(
        config, alpha=alpha, delta=delta, min_count=min_count, min_auto=min_auto, simultaneous=simultaneous
    )
    s = _check_scores("scores", scores)
    e = _as_binary("errors", errors, len(s))
    keys = np.asarray(_labels(strata, len(s)), dtype=object)
    names = sorted(set(keys.tolist()))
    counts = {k: int(np.sum(keys == k)) for k in names}
    m = sum(1 for k in names if counts[k] >= cfg.min_count)
    delta_each = cfg.delta / max(m, 1) if cfg.simultaneous else cfg.delta
    thresholds: dict[str, TriageThreshold] = {}
    for k in names:
        sel = keys == k
        if counts[k] < cfg.min_count:
            thresholds[k] = _uncertified(
                counts[k], cfg.alpha, delta_each,
                f"{counts[k]} calibration items, fewer than min_count={cfg.min_count}",
            )
        else:
            thresholds[k] = _fit_one(s[sel], e[sel], cfg.alpha, delta_each, cfg.effective_min_auto(delta_each))
    return StratifiedTriage(
        alpha=cfg.alpha,
        delta=cfg.delta,
        min_count=cfg.min_count,
        thresholds=thresholds,
        simultaneous=cfg.simultaneous,
    )


def evaluate_triage(
    triage: TriageThreshold | StratifiedTriage,
    scores: Any,
    errors: Any,
    strata: Any = None,
    *,
    confidence: float = 0.95,
) -> dict[str, float | int]:
    """Measure a triage on labelled test items.

    Parameters
    ----------
    triage : TriageThreshold or StratifiedTriage
        The fitted triage.
    scores : array_like, shape (n,)
        Confidences of the test items.
    errors : array_like of bool or 0/1, shape (n,)
        Whether each automatic decision would be wrong.
    strata : array_like, optional
        Stratum labels; required for a :class:`StratifiedTriage`.
    confidence : float
        Level of the two-sided Clopper–Pearson interval of the error rate.

    Returns
    -------
    dict
        ``error_rate_auto`` (NaN when nothing is decided automatically),
        ``ci_low``, ``ci_high``, ``coverage`` (fraction decided
        automatically), ``n_auto``, ``errors_auto`` and ``n``.
    """
    s = _as_1d("scores", scores)
    e = _as_binary("errors", errors, len(s))
    if isinstance(triage, StratifiedTriage):
        if strata is None:
            raise ValueError("strata: required to evaluate a StratifiedTriage")
        auto, _ = triage.decide(s, strata)
    elif isinstance(triage, TriageThreshold):
        auto = np.isfinite(s) & (s >= triage.tau)
    else:
        raise TypeError(f"triage: expected a TriageThreshold or StratifiedTriage, got {type(triage).__name__}")
    n_auto = int(auto.sum())
    k = int(e[auto].sum())
    low, high = clopper_pearson(k, n_auto, confidence)
    return {
        "error_rate_auto": k / n_auto if n_auto else math.nan,
        "ci_low": low,
        "ci_high": high,
        "coverage": n_auto / len(s) if len(s) else math.nan,
        "n_auto": n_auto,
        "errors_auto": k,
        "n": len(s),
    }


def risk_coverage(
    scores: Any,
    errors: Any,
    alphas: Sequence[float] = (0.005, 0.01, 0.02, 0.05),
    *,
    delta: float = 0.05,
    calib_fraction: float = 0.5,
    seed: int = 0,
):
    """Risk–coverage table from one random calibration / test split.

    Parameters
    ----------
    scores, errors
        Labelled items, as for :func:`fit_triage`.
    alphas : sequence of float
        Risks to certify.
    delta : float
        Confidence parameter.
    calib_fraction : float
        Fraction of items used for calibration; the rest are the test set.
    seed : int
        Seed of the split.

    Returns
    -------
    astropy.table.Table
        One row per ``alpha``: ``alpha``, ``tau``, ``upper_bound`` (on the
        calibration half), then the test half's ``error_rate_auto``,
        ``ci_low``, ``ci_high``, ``coverage`` and ``n_auto``.
    """
    from astropy.table import Table

    check_range("delta", delta, low=0.0, high=1.0, low_inclusive=False)
    check_range("calib_fraction", calib_fraction, low=0.0, high=1.0, low_inclusive=False)
    if not calib_fraction < 1:
        raise ConfigError(f"calib_fraction: must be < 1, got {calib_fraction}")
    check_int("seed", seed)
    s = _check_scores("scores", scores)
    e = _as_binary("errors", errors, len(s))
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(s))
    n_cal = round(calib_fraction * len(s))
    cal, test = perm[:n_cal], perm[n_cal:]
    rows = []
    for a in alphas:
        thr = fit_triage(s[cal], e[cal], alpha=float(a), delta=delta)
        ev = evaluate_triage(thr, s[test], e[test])
        rows.append(
            (float(a), thr.tau, thr.upper_bound, ev["error_rate_auto"], ev["ci_low"], ev["ci_high"],
             ev["coverage"], ev["n_auto"])
        )
    names = ("alpha", "tau", "upper_bound", "error_rate_auto", "ci_low", "ci_high", "coverage", "n_auto")
    return Table(rows=rows, names=names, meta={"delta": delta, "n_calibration": len(cal), "n_test": len(test)})

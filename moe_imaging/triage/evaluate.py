"""Evaluating calibrated confidences: reliability, risk-coverage, recalibration, strata.

Arrays in, tables out (notebooks call these through ``catalogs`` tables'
columns): the confidence a triage head gave each item and whether its class
was right (from a simulation's truth or from reviewers' labels).

* :func:`calibration_table` - the reliability diagram's data and the ECE
  (:func:`~moe_imaging.triage.calibration.reliability_table`);
* :func:`risk_coverage_curve` - the empirical risk at every coverage when
  the most confident items are decided first;
  :func:`certified_risk_coverage` - the certified thresholds of
  :func:`~moe_imaging.triage.certify.risk_coverage`;
* :func:`recalibration` - calibration before and after an isotonic map fitted
  on labelled items, measured on held-out labelled items;
* :func:`strata` - the triage stratum of each catalog row.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from astropy.table import Table

from contracts.errors import InputError

from .calibration import expected_calibration_error, fit_isotonic, reliability_table
from .certify import risk_coverage
from .strata import fwhm_stratum

__all__ = [
    "calibration_table",
    "risk_coverage_curve",
    "certified_risk_coverage",
    "Recalibration",
    "recalibration",
    "strata",
]


def _frame(table: Any) -> pd.DataFrame:
    if isinstance(table, pd.DataFrame):
        return table
    if isinstance(table, Table):
        return table.to_pandas()
    return pd.DataFrame(table)


def _scored(confidence: Any, correct: Any) -> tuple[np.ndarray, np.ndarray]:
    """Finite confidences and their correctness (items without a confidence dropped)."""
    c = np.asarray(confidence, dtype=float)
    y = np.asarray(correct)
    if c.shape != y.shape or c.ndim != 1:
        raise InputError("confidence", f"expected two 1-d arrays of one length, got {c.shape} and {y.shape}")
    keep = np.isfinite(c)
    c, y = c[keep], y[keep].astype(bool)
    if len(c) == 0:
        raise InputError("confidence", "no item has a confidence (was the gate enabled?)")
    if np.any((c < 0) | (c > 1)):
        raise InputError("confidence", "values must lie in [0, 1]")
    return c, y


def calibration_table(confidence: Any, correct: Any, *, n_bins: int = 10, strategy: str = "uniform") -> Table:
    """Reliability-diagram data of confidences against correctness.

    Items with a NaN confidence (no gate) are left out.  Wraps
    :func:`~moe_imaging.triage.calibration.reliability_table`: columns ``bin_low``,
    ``bin_high``, ``mean_confidence``, ``accuracy``, ``count``;
    ``meta["ece"]`` is the expected calibration error and ``meta["n"]`` the
    number of items.
    """
    c, y = _scored(confidence, correct)
    table = reliability_table(c, y, n_bins=n_bins, strategy=strategy)
    table.meta["n"] = int(len(c))
    return table


def risk_coverage_curve(confidence: Any, correct: Any) -> pd.DataFrame:
    """Empirical risk-coverage curve: decide the most confident items first.

    Returns
    -------
    pandas.DataFrame
        One row per distinct confidence threshold, from the highest:
        ``threshold``, ``n_auto`` (items with ``confidence >= threshold``),
        ``coverage`` (their fraction), ``errors`` and ``risk`` (their error
        rate).  Items without a confidence are left out.
    """
    c, y = _scored(confidence, correct)
    order = np.argsort(-c, kind="stable")
    c, err = c[order], (~y[order]).astype(np.int64)
    cum_err = np.cumsum(err)
    last = np.r_[np.flatnonzero(np.diff(c) != 0), len(c) - 1]  # last item of each tie group
    n_auto = last + 1
    return pd.DataFrame({
        "threshold": c[last], "n_auto": n_auto, "coverage": n_auto / len(c),
        "errors": cum_err[last], "risk": cum_err[last] / n_auto,
    })


def certified_risk_coverage(
    confidence: Any,
    correct: Any,
    *,
    alphas: Sequence[float] = (0.01, 0.02, 0.05, 0.1),
    delta: float = 0.05,
    seed: int = 0,
) -> Table:
    """Certified thresholds on one calibration/test split (:func:`~moe_imaging.triage.certify.risk_coverage`).

    Returns the astropy table of ``risk_coverage``: per ``alpha`` the threshold
    ``tau`` certified on half the items and the test half's error rate (with
    its Clopper-Pearson interval) and coverage.
    """
    c, y = _scored(confidence, correct)
    try:
        return risk_coverage(c, ~y, alphas=tuple(alphas), delta=delta, seed=seed)
    except ValueError as exc:
        raise InputError("risk_coverage", str(exc)) from None


@dataclasses.dataclass(frozen=True, eq=False)
class Recalibration:
    """Calibration before and after an isotonic map fitted on labelled items.

    Attributes
    ----------
    before, after : astropy.table.Table
        Reliability tables on the held-out items, of the raw and of the mapped
        confidences (``meta["ece"]``).
    ece_before, ece_after : float
        Their expected calibration errors.
    n_fit, n_test : int
        Items used to fit the map and to measure.
    mapping : moe_imaging.triage.calibration.IsotonicMap
        The fitted map.
    """

    before: Table
    after: Table
    ece_before: float
    ece_after: float
    n_fit: int
    n_test: int
    mapping: Any


def recalibration(
    confidence: Any,
    correct: Any,
    *,
    fit_fraction: float = 0.5,
    n_bins: int = 10,
    seed: int = 0,
) -> Recalibration:
    """Measure calibration before and after refitting on labels.

    The labelled items are split at random: an isotonic map
    (:func:`~moe_imaging.triage.calibration.fit_isotonic`) is fitted on ``fit_fraction``
    of them and both the raw and the mapped confidences are measured on the
    rest.  Caveat: items that reached review were selected (low confidence),
    so the map is calibrated for reviewed items, not for all detections.
    """
    c, y = _scored(confidence, correct)
    if not 0 < fit_fraction < 1:
        raise InputError("fit_fraction", f"must be in (0, 1), got {fit_fraction}")
    if len(c) < 4:
        raise InputError("labels", f"{len(c)} labelled items; at least 4 are needed to fit and test")
    perm = np.random.default_rng(seed).permutation(len(c))
    n_fit = max(1, min(len(c) - 1, round(fit_fraction * len(c))))
    fit, test = perm[:n_fit], perm[n_fit:]
    mapping = fit_isotonic(c[fit], y[fit])
    mapped = mapping(c[test])
    before = reliability_table(c[test], y[test], n_bins=n_bins)
    after = reliability_table(mapped, y[test], n_bins=n_bins)
    return Recalibration(
        before=before, after=after,
        ece_before=expected_calibration_error(c[test], y[test], n_bins=n_bins),
        ece_after=expected_calibration_error(mapped, y[test], n_bins=n_bins),
        n_fit=int(len(fit)), n_test=int(len(test)), mapping=mapping,
    )


def strata(table: Any, *, mode: str | None = None) -> np.ndarray:
    """The triage stratum of each row.

    The catalog's own ``triage_stratum`` (what the gate used) when every row
    has one; otherwise the observation mode and PSF-size bin from
    ``psf_fwhm`` (:func:`~moe_imaging.triage.strata.fwhm_stratum`, without the crowding
    part).  ``mode`` defaults to the table's ``mode`` column, else
    ``"survey"``.
    """
    df = _frame(table)
    if "triage_stratum" in df.columns and mode is None:
        own = df["triage_stratum"].astype(str).to_numpy()
        if len(own) and (own != "").all():
            return own
    if "psf_fwhm" not in df.columns:
        raise InputError("table", "no triage_stratum or psf_fwhm column to stratify by")
    fwhm = df["psf_fwhm"].to_numpy(dtype=float)
    if mode is None and "mode" in df.columns:
        modes = df["mode"].astype(str).to_numpy()
        out = np.empty(len(df), dtype=object)
        for m in pd.unique(modes):
            sel = modes == m
            out[sel] = fwhm_stratum(fwhm[sel], m or "survey")
        return out.astype(str)
    return fwhm_stratum(fwhm, mode or "survey") if len(fwhm) else np.zeros(0, dtype="U1")

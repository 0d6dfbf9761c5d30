"""Tests of moe_imaging.triage.calibration and .certify: temperature, isotonic, ECE and certified triage."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
from scipy import special

from contracts.errors import ConfigError
from moe_imaging.triage.calibration import (
    IsotonicMap,
    apply_temperature,
    clopper_pearson,
    expected_calibration_error,
    fit_isotonic,
    fit_temperature,
    reliability_table,
)
from moe_imaging.triage.certify import (
    StratifiedTriage,
    TriageConfig,
    TriageThreshold,
    evaluate_triage,
    fit_stratified_triage,
    fit_triage,
    risk_coverage,
)


def _draw_labels(rng, probs):
    u = rng.random((len(probs), 1))
    return (u > np.cumsum(probs, axis=1)).sum(axis=1).clip(0, probs.shape[1] - 1)


# ---------------------------------------------------------------- temperature


def test_temperature_recovers_known_value_and_reduces_ece():
    rng = np.random.default_rng(1)
    n, k, t_true = 20000, 5, 2.5
    logits = rng.normal(0.0, 4.0, size=(n, k))
    labels = _draw_labels(rng, special.softmax(logits / t_true, axis=1))
    t = fit_temperature(logits, labels)
    assert abs(t - t_true) / t_true < 0.10

    raw = special.softmax(logits, axis=1)
    cal = apply_temperature(logits, t)
    np.testing.assert_allclose(cal.sum(axis=1), 1.0)
    ece_raw = expected_calibration_error(raw.max(1), raw.argmax(1) == labels)
    ece_cal = expected_calibration_error(cal.max(1), cal.argmax(1) == labels)
    assert ece_cal < 0.02
    assert ece_raw > 0.1


def test_apply_temperature_is_stable_and_validates():
    p = apply_temperature(np.array([[1000.0, 0.0], [-1000.0, 1000.0]]), 1.0)
    assert np.all(np.isfinite(p))
    np.testing.assert_allclose(p, [[1.0, 0.0], [0.0, 1.0]])
    with pytest.raises(ConfigError, match="temperature"):
        apply_temperature(np.zeros((2, 3)), 0.0)
    with pytest.raises(ValueError, match="labels"):
        fit_temperature(np.zeros((2, 3)), [0, 3])


# ---------------------------------------------------------------- isotonic


def _brute_isotonic(y):
    """Min-max formula of the (unweighted) isotonic regression."""
    n = len(y)
    return np.array(
        [max(min(np.mean(y[j : k + 1]) for k in range(i, n)) for j in range(i + 1)) for i in range(n)]
    )


def test_isotonic_matches_brute_force_on_all_small_cases():
    x = np.arange(6, dtype=float) / 5
    for bits in itertools.product([0, 1], repeat=6):
        y = np.array(bits, dtype=float)
        iso = fit_isotonic(x, y)
        np.testing.assert_allclose(iso(x), _brute_isotonic(y), atol=1e-12)


def test_isotonic_is_monotone_pools_ties_and_round_trips():
    rng = np.random.default_rng(2)
    c = rng.random(3000)
    correct = rng.random(3000) < c**2
    c[:100] = 0.5  # ties are pooled into one knot
    iso = fit_isotonic(c, correct)
    grid = np.linspace(-0.1, 1.1, 500)
    assert np.all(np.diff(iso(grid)) >= 0)
    assert len(iso.x) == len(np.unique(c))
    assert np.all((np.asarray(iso.y) >= 0) & (np.asarray(iso.y) <= 1))
    back = IsotonicMap.from_dict(json.loads(json.dumps(iso.to_dict())))
    np.testing.assert_array_equal(back(grid), iso(grid))
    assert expected_calibration_error(iso(c), correct) < expected_calibration_error(c, correct)


# ---------------------------------------------------------------- ECE


def test_ece_small_when_calibrated_large_when_overconfident():
    rng = np.random.default_rng(3)
    conf = rng.uniform(0.3, 1.0, 20000)
    calibrated = rng.random(20000) < conf
    over = rng.random(20000) < conf - 0.2
    for strategy in ("uniform", "quantile"):
        assert expected_calibration_error(conf, calibrated, strategy=strategy) < 0.02
        assert expected_calibration_error(conf, over, strategy=strategy) > 0.15


def test_reliability_table_columns_and_diagram(tmp_path):
    rng = np.random.default_rng(4)
    conf = rng.random(1000)
    correct = rng.random(1000) < conf
    table = reliability_table(conf, correct, n_bins=10)
    assert table.colnames == ["bin_low", "bin_high", "mean_confidence", "accuracy", "count"]
    assert int(table["count"].sum()) == 1000
    assert math.isclose(table.meta["ece"], expected_calibration_error(conf, correct, n_bins=10))
    with pytest.raises(ConfigError, match="n_bins"):
        expected_calibration_error(conf, correct, n_bins=0)
    from catalogs.plots import reliability_diagram  # the one reliability plot

    fig = reliability_diagram(table, title="test")
    fig.savefig(tmp_path / "rel.png")
    assert (tmp_path / "rel.png").stat().st_size > 0


# ---------------------------------------------------------------- Clopper-Pearson


def test_clopper_pearson_known_values():
    assert clopper_pearson(0, 100, 0.95, sided="upper")[1] == pytest.approx(1 - 0.05 ** (1 / 100), rel=1e-9)
    assert clopper_pearson(0, 100, 0.95, sided="upper")[1] == pytest.approx(0.0295, abs=1e-4)
    assert clopper_pearson(0, 100, 0.95)[1] == pytest.approx(0.0362, abs=1e-4)  # two-sided
    low, high = clopper_pearson(5, 100, 0.95)
    assert low == pytest.approx(0.01643, abs=1e-4) and high == pytest.approx(0.11284, abs=1e-4)
    assert clopper_pearson(10, 10, 0.95)[1] == 1.0
    assert clopper_pearson(0, 0, 0.95) == (0.0, 1.0)
    with pytest.raises(ConfigError, match="k"):
        clopper_pearson(5, 3)


# ---------------------------------------------------------------- certified triage


def _synthetic(rng, n, trials=None):
    shape = (n,) if trials is None else (trials, n)
    s = rng.random(shape)
    err = rng.random(shape) < 0.2 * (1.0 - s) ** 3
    return s, err


def test_guarantee_holds_under_repeated_draws():
    """P[risk(tau) > alpha] <= delta over calibration draws, with useful coverage."""
    rng = np.random.default_rng(5)
    alpha, delta, trials = 0.02, 0.1, 200
    cal_s, cal_e = _synthetic(rng, 2000, trials)
    test_s, test_e = _synthetic(rng, 20000, trials)
    taus = np.array([fit_triage(cal_s[t], cal_e[t], alpha=alpha, delta=delta).tau for t in range(trials)])
    auto = test_s >= taus[:, None]
    n_auto = auto.sum(1)
    emp_err = (test_e & auto).sum(1) / np.maximum(n_auto, 1)
    # exact risk for uniform scores: E[0.2 (1-s)^3 | s >= tau] = 0.05 (1-tau)^3
    true_risk = np.where(np.isfinite(taus), 0.05 * (1 - np.minimum(taus, 1)) ** 3, 0.0)
    exceed_emp = np.mean(emp_err > alpha)
    exceed_true = np.mean(true_risk > alpha)
    coverage = np.mean(n_auto / test_s.shape[1])
    print(f"exceedance empirical={exceed_emp:.3f} true={exceed_true:.3f} mean coverage={coverage:.3f}")
    assert exceed_true <= delta + 0.07
    assert exceed_emp <= 0.17
    assert coverage > 0.3


def test_fit_triage_fields_and_equivalence_with_bound():
    rng = np.random.default_rng(6)
    s, e = _synthetic(rng, 5000)
    thr = fit_triage(s, e, alpha=0.02, delta=0.1)
    assert thr.certified and 0 < thr.tau < 1
    assert thr.n_auto == int((s >= thr.tau).sum())
    assert thr.errors_auto == int(e[s >= thr.tau].sum())
    assert thr.upper_bound <= 0.02
    assert thr.coverage == pytest.approx(thr.n_auto / 5000)
    # the next candidate below tau fails the test (fixed sequence stopped there) or none is left
    below = s[s < thr.tau]
    if len(below):
        nxt = below.max()
        k, n = int(e[s >= nxt].sum()), int((s >= nxt).sum())
        assert clopper_pearson(k, n, 0.9, sided="upper")[1] > 0.02
    auto, reasons = thr.decide([thr.tau, thr.tau - 1e-3, np.nan])
    assert auto.tolist() == [True, False, False]
    assert "at or above" in reasons[0] and "below" in reasons[1] and "not finite" in reasons[2]


def test_no_certifiable_threshold_sends_everything_to_review():
    rng = np.random.default_rng(7)
    s = rng.random(1000)
    e = rng.random(1000) < 0.3  # errors unrelated to the score
    thr = fit_triage(s, e, alpha=0.01, delta=0.05)
    assert thr.tau == math.inf and not thr.certified
    assert thr.n_auto == 0 and thr.coverage == 0.0 and math.isnan(thr.upper_bound)
    auto, reasons = thr.decide(rng.random(20))
    assert not auto.any()
    assert all("no certified threshold" in r for r in reasons)
    # too few items to start the scan at alpha=1%, delta=5% (default min_auto is 1049)
    small = fit_triage(np.linspace(0, 1, 500), np.zeros(500), alpha=0.01, delta=0.05)
    assert small.tau == math.inf and "fewer than the 1049" in small.reason
    # ... unless min_auto is lowered to the zero-error floor, 299 = ceil(log 0.05 / log 0.99)
    assert fit_triage(np.linspace(0, 1, 298), np.zeros(298), alpha=0.01, delta=0.05, min_auto=298).tau == math.inf
    floor = fit_triage(np.linspace(0, 1, 500), np.zeros(500), alpha=0.01, delta=0.05, min_auto=299)
    assert floor.certified and floor.tau == 0.0 and floor.coverage == 1.0
    d = small.to_dict()
    assert d["tau"] is None
    assert TriageThreshold.from_dict(json.loads(json.dumps(d))) == small


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"alpha": 0.0}, "alpha"),
        ({"alpha": 1.5}, "alpha"),
        ({"delta": 1.0}, "delta"),
        ({"delta": -0.1}, "delta"),
        ({"alpha": float("nan")}, "alpha"),
        ({"min_auto": 0}, "min_auto"),
    ],
)
def test_invalid_parameters_name_the_argument(kwargs, name):
    with pytest.raises(ConfigError, match=name):
        fit_triage([0.5, 0.6], [0, 1], **kwargs)


def test_invalid_inputs_name_the_argument():
    with pytest.raises(ValueError, match="errors"):
        fit_triage([0.5, 0.6], [0, 2])
    with pytest.raises(ValueError, match="scores"):
        fit_triage([0.5, np.nan], [0, 1])
    with pytest.raises(ConfigError, match="min_count"):
        fit_stratified_triage([0.5], [0], ["a"], min_count=0)
    with pytest.raises(ValueError, match="strata"):
        fit_stratified_triage([0.5, 0.6], [0, 0], ["a"])
    with pytest.raises(TypeError, match="strata"):
        fit_stratified_triage([0.5, 0.6], [0, 0], "ab")


def test_stratified_triage_decides_with_reasons_and_round_trips():
    rng = np.random.default_rng(8)
    s1, e1 = _synthetic(rng, 3000)
    s2 = rng.random(3000)
    e2 = rng.random(3000) < 0.3 * (1 - s2) ** 2  # a harder stratum: risk(tau) = 0.1 (1 - tau)^2
    s3, e3 = _synthetic(rng, 20)  # too few
    scores = np.concatenate([s1, s2, s3])
    errors = np.concatenate([e1, e2, e3])
    strata = ["fwhm 3-4.5 px"] * 3000 + ["fwhm 4.5-9 px"] * 3000 + ["fwhm>9"] * 20
    tri = fit_stratified_triage(scores, errors, strata, alpha=0.02, delta=0.1, min_count=50)
    t_easy, t_hard = tri.thresholds["fwhm 3-4.5 px"], tri.thresholds["fwhm 4.5-9 px"]
    assert t_easy.certified and t_hard.certified and t_hard.tau > t_easy.tau
    assert tri.thresholds["fwhm>9"].tau == math.inf
    assert "fwhm>9" in tri.uncalibrated and "min_count" in tri.uncalibrated["fwhm>9"]

    new_s = np.array([0.999, t_easy.tau - 0.01, 0.999, 0.999])
    new_strata = np.array(["fwhm 3-4.5 px", "fwhm 3-4.5 px", "fwhm>9", "microscopy"])
    auto, reasons = tri.decide(new_s, new_strata)
    assert auto.tolist() == [True, False, False, False]
    assert "below the stratum threshold" in reasons[1] and "fwhm 3-4.5 px" in reasons[1]
    assert "alpha=2%" in reasons[1]
    assert "stratum 'fwhm>9' not calibrated" in reasons[2] and "20 calibration items" in reasons[2]
    assert "stratum 'microscopy' not calibrated" in reasons[3]

    back = StratifiedTriage.from_dict(json.loads(json.dumps(tri.to_dict(), allow_nan=False)))
    assert back == tri
    back_auto, back_reasons = back.decide(new_s, new_strata)
    assert np.array_equal(back_auto, auto) and back_reasons == reasons

    ev = evaluate_triage(tri, scores, errors, strata)
    assert ev["n"] == 6020 and 0 < ev["coverage"] < 1
    assert ev["ci_low"] <= ev["error_rate_auto"] <= ev["ci_high"]


def test_simultaneous_strata_split_delta_and_config_object():
    rng = np.random.default_rng(9)
    s, e = _synthetic(rng, 4000)
    strata = np.repeat([1, 2], 2000)
    cfg = TriageConfig(alpha=0.02, delta=0.1, simultaneous=True)
    tri = fit_stratified_triage(s, e, strata, config=cfg)
    assert set(tri.thresholds) == {"1", "2"}
    assert all(t.delta == pytest.approx(0.05) for t in tri.thresholds.values())
    auto, _ = tri.decide([0.99, 0.99], [1, 2])  # int labels match their str keys
    assert auto.all()
    assert TriageConfig(alpha=0.02, delta=0.1).effective_min_auto() == 333
    assert TriageConfig().effective_min_auto() == 1049
    assert TriageConfig(min_auto=10).effective_min_auto() == 10


def test_default_min_auto_certifies_half_alpha_from_there_on():
    from scipy import stats

    for alpha, delta in [(0.01, 0.05), (0.02, 0.1), (0.05, 0.05)]:
        n0 = TriageConfig(alpha=alpha, delta=delta).effective_min_auto()
        n = np.arange(n0, 4 * n0)
        assert np.all(stats.binom.cdf(np.floor(n * alpha / 2), n, alpha) <= delta)
        assert stats.binom.cdf(np.floor((n0 - 1) * alpha / 2), n0 - 1, alpha) > delta


def test_risk_coverage_table():
    rng = np.random.default_rng(10)
    s, e = _synthetic(rng, 20000)
    table = risk_coverage(s, e, alphas=(0.01, 0.02, 0.05), delta=0.1, seed=1)
    assert len(table) == 3
    cov = np.asarray(table["coverage"])
    assert np.all(np.diff(cov) >= 0)  # a looser risk auto-decides more
    assert np.all(np.asarray(table["upper_bound"]) <= np.asarray(table["alpha"]))

"""Evaluation helpers: truth, calibration, risk-coverage, review load and agreement, expert usage."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from astropy.table import Table

from catalogs import CatalogSchemaError, open_catalog
from catalogs.analysis import (
    evaluate_truth,
    expert_usage,
    label_confusion,
    label_correctness,
    read_truth,
    review_load,
    reviewer_agreement,
    true_kind,
    with_catalog_columns,
)
from catalogs.evaluate import TruthMatch, match_to_truth, purity
from catalogs.labels import read_labels
from contracts.errors import InputError
from moe_imaging.triage.calibration import expected_calibration_error, reliability_table
from moe_imaging.triage.evaluate import (
    calibration_table,
    certified_risk_coverage,
    recalibration,
    risk_coverage_curve,
    strata,
)
from tests.catalogs.demo_data import build_demo


@pytest.fixture(scope="session")
def demo(tmp_path_factory):
    return build_demo(tmp_path_factory.getbasetemp() / "moe_demo_survey")


# --------------------------------------------------------------------------- truth


def test_true_kind_maps_truth_classes_to_catalog_kinds():
    truth = Table({"kind": ["star", "galaxy", "saturated_star", "streak"]})
    match = TruthMatch(
        det_class=np.array(["star", "galaxy", "saturated_star", "streak", "cosmic_ray", "hot_pixel",
                            "bleed", "spurious", "duplicate", "duplicate"]),
        det_truth=np.array([0, 1, 2, 3, -1, -1, 2, -1, 1, 0]),
        truth_det=np.array([0, 1, 2, 3]),
    )
    assert list(true_kind(match, truth)) == ["star", "galaxy", "star", "streak", "artifact", "artifact",
                                             "artifact", "artifact", "galaxy", "star"]


def test_evaluate_truth_counts_agree_with_the_truth_tables(demo):
    cat = open_catalog(demo.catalogs)
    ev = evaluate_truth(cat, demo.truths)
    # per-detection table aligned with the catalog
    assert len(ev.detections) == len(cat)
    np.testing.assert_array_equal(ev.detections["kind"].to_numpy(), cat["kind"].to_numpy())
    np.testing.assert_array_equal(ev.detections["exposure"].to_numpy(), cat["exposure"].to_numpy())
    # n_true per bin is the number of truth objects of that kind and S/N, summed over exposures
    for kind in ("star", "galaxy"):
        rows = ev.completeness[ev.completeness["kind"] == kind]
        edges = (3, 5, 10, 20, 50, np.inf)
        want = np.zeros(len(edges) - 1, dtype=int)
        for path in demo.truths.values():
            t = read_truth(path)
            snr = np.asarray(t["mf_snr"], float)[np.asarray(t["kind"]).astype(str) == kind]
            want += np.histogram(snr, bins=np.array(edges[:-1] + (1e300,)))[0]
        np.testing.assert_array_equal(rows["n_true"].to_numpy(), want)
        assert (rows["n_found"] <= rows["n_true"]).all()
    bright_stars = ev.completeness[(ev.completeness["kind"] == "star") & (ev.completeness["snr_bin"].isin(["20-50", "50+"]))]
    assert bright_stars["n_found"].sum() / bright_stars["n_true"].sum() > 0.9
    # the 'all' purity row is catalogs.evaluate.purity of each exposure, summed
    total = {"n_real": 0, "n_spurious": 0, "n_duplicate": 0, "n_artifact": 0}
    for name, path in demo.truths.items():
        sub = cat[cat["exposure"] == name]
        m = match_to_truth(Table({"x": sub["x"].to_numpy(), "y": sub["y"].to_numpy()}), read_truth(path),
                           fwhm=float(sub["psf_fwhm"].median()))
        p = purity(m)
        for k in total:
            total[k] += p[k]
    row = ev.purity[ev.purity["snr_bin"] == "all"].iloc[0]
    for k, v in total.items():
        assert row[k] == v, k
    assert row["n_detections"] == len(cat)
    assert ev.purity[ev.purity["snr_bin"] != "all"]["n_detections"].sum() == int((cat["snr"] >= 3).sum())


def test_evaluate_truth_single_exposure_and_errors(demo):
    stem = "survey_512_seed2"
    one = open_catalog(demo.catalogs, exposure=stem)
    ev = evaluate_truth(one, demo.truths[stem], fwhm=3.0)
    assert len(ev.detections) == len(one)
    cat = open_catalog(demo.catalogs)
    with pytest.raises(InputError, match="no truth table for exposure"):
        evaluate_truth(cat, {stem: demo.truths[stem]})
    with pytest.raises(CatalogSchemaError, match="missing column 'snr'"):
        evaluate_truth(one.drop(columns=["snr"]), demo.truths[stem])
    with pytest.raises(InputError, match="truth table not found"):
        evaluate_truth(one, demo.truths[stem].with_name("missing.ecsv"))


# --------------------------------------------------------------------------- calibration and risk


def test_calibration_table_is_the_reliability_table_without_nans():
    rng = np.random.default_rng(0)
    conf = rng.uniform(0.3, 1.0, 500)
    correct = rng.random(500) < conf
    conf_nan = np.r_[conf, [np.nan] * 20]
    corr_nan = np.r_[correct, [False] * 20]
    table = calibration_table(conf_nan, corr_nan, n_bins=10)
    ref = reliability_table(conf, correct, n_bins=10)
    np.testing.assert_array_equal(np.asarray(table["count"]), np.asarray(ref["count"]))
    assert table.meta["ece"] == pytest.approx(expected_calibration_error(conf, correct, n_bins=10))
    assert table.meta["n"] == 500
    with pytest.raises(InputError, match="no item has a confidence"):
        calibration_table([np.nan], [True])


def test_risk_coverage_curve_by_hand():
    conf = [0.9, 0.8, 0.8, 0.6, 0.99]
    correct = [True, False, True, False, True]
    curve = risk_coverage_curve(conf, correct)
    assert list(curve["threshold"]) == [0.99, 0.9, 0.8, 0.6]  # ties decided together
    assert list(curve["n_auto"]) == [1, 2, 4, 5]
    assert list(curve["errors"]) == [0, 0, 1, 2]
    np.testing.assert_allclose(curve["risk"], [0, 0, 0.25, 0.4])
    np.testing.assert_allclose(curve["coverage"], [0.2, 0.4, 0.8, 1.0])


def test_certified_risk_coverage_uses_the_calibrate_module():
    rng = np.random.default_rng(1)
    conf = rng.uniform(0.5, 1.0, 4000)
    correct = rng.random(4000) < conf
    table = certified_risk_coverage(conf, correct, alphas=(0.05, 0.1), delta=0.1)
    assert list(table["alpha"]) == [0.05, 0.1]
    assert (np.diff(np.asarray(table["coverage"])) >= 0).all()  # a larger risk allows more coverage
    assert table.meta["delta"] == 0.1


def test_recalibration_fixes_overconfidence():
    rng = np.random.default_rng(2)
    conf = rng.uniform(0.8, 1.0, 2000)
    correct = rng.random(2000) < (conf - 0.3)  # 30 points overconfident
    rec = recalibration(conf, correct, n_bins=10, seed=0)
    assert rec.n_fit == 1000 and rec.n_test == 1000
    assert rec.ece_before > 0.25 and rec.ece_after < 0.06
    assert rec.before.meta["ece"] == pytest.approx(rec.ece_before)
    with pytest.raises(InputError, match="at least 4"):
        recalibration([0.9, 0.8], [True, False])


# --------------------------------------------------------------------------- triage


def test_review_load_counts():
    cat = pd.DataFrame({"exposure": ["a", "a", "a", "b", "b"],
                        "decision": ["accepted", "review", "review", "rejected", ""]})
    load = review_load(cat)
    assert list(load["exposure"]) == ["a", "b", "all"]
    assert list(load["n"]) == [3, 2, 5] and list(load["review"]) == [2, 0, 2]
    assert list(load["undecided"]) == [0, 1, 1]
    np.testing.assert_allclose(load["review_fraction"], [2 / 3, 0, 0.4])


def test_strata_prefer_the_catalogs_own():
    df = pd.DataFrame({"psf_fwhm": [2.0, 3.0, 5.0], "triage_stratum": ["s:a", "s:b", "s:c"]})
    assert list(strata(df)) == ["s:a", "s:b", "s:c"]
    df["triage_stratum"] = ["s:a", "", "s:c"]
    assert list(strata(df)) == ["survey:fwhm<2.5", "survey:fwhm2.5-4", "survey:fwhm>=4"]
    assert list(strata(df.assign(mode=["microscopy"] * 3)))[0] == "microscopy:fwhm<2.5"


def test_reviewer_agreement_by_hand():
    labels = pd.DataFrame({
        "kind": ["star", "star", "galaxy", "galaxy"],
        "label": ["star", "galaxy", "galaxy", "uncertain"],
        "n_decisions": [3, 1, 2, 2],
        "agreement": [1.0, 1.0, 1.0, 0.5],
    })
    agg = reviewer_agreement(labels).set_index("kind")
    assert agg.loc["all", "n_items"] == 4
    assert agg.loc["star", "model_agrees"] == 0.5 and agg.loc["galaxy", "model_agrees"] == 0.5
    assert agg.loc["all", "unanimous"] == 0.5  # items 0 and 2: agreement 1 with >= 2 decisions
    assert agg.loc["all", "disputed"] == 0.25
    assert agg.loc["galaxy", "mean_agreement"] == 0.75
    conf = label_confusion(labels)
    assert conf.loc["star", "galaxy"] == 1 and conf.loc["galaxy", "uncertain"] == 1
    assert label_confusion(labels, normalize=True).loc["star"].sum() == pytest.approx(1.0)
    usable = label_correctness(labels.assign(confidence=[0.9, 0.8, np.nan, 0.7]))
    assert list(usable.index) == [0, 1] and list(usable["correct"]) == [True, False]


def test_expert_usage_means_and_fallback(demo):
    cat = open_catalog(demo.catalogs)
    weights = [c for c in cat.columns if c.startswith("w_")]
    assert weights  # the gate wrote its expert weights
    usage = expert_usage(cat, by="exposure")
    want = cat.groupby("exposure")[weights].mean()
    np.testing.assert_allclose(usage[[w[2:] for w in weights]].to_numpy(), want.to_numpy())
    assert usage.attrs["quantity"] == "mean gate weight" and usage["n"].sum() == len(cat)
    plain = expert_usage(cat.drop(columns=weights), by="kind")
    assert plain.attrs["quantity"] == "fraction of detections proposed"
    np.testing.assert_allclose(plain.drop(columns="n").sum(axis=1), 1.0)
    by_stratum = expert_usage(cat)  # default: by stratum
    assert by_stratum["n"].sum() == len(cat)


def test_labels_get_the_catalogs_strata(demo, tmp_path):
    cat = open_catalog(demo.catalogs)
    labels = read_labels(demo.labels)
    both = with_catalog_columns(labels, cat)
    assert list(both.columns) == [c for c in labels.columns if c != "triage_stratum"] + ["triage_stratum"]
    assert both["triage_stratum"].notna().all()
    key = cat.set_index(["exposure", "source_id"])["triage_stratum"]
    want = [key[(e, s)] for e, s in zip(labels["exposure"], labels["source_id"])]
    assert list(both["triage_stratum"]) == want
    stray = labels.iloc[:1].assign(source_id=-1)
    assert with_catalog_columns(stray, cat)["triage_stratum"].isna().all()
    with pytest.raises(InputError, match="not unique"):
        with_catalog_columns(labels, pd.concat([cat, cat]))
    bad = tmp_path / "labels.parquet"
    labels.drop(columns=["agreement"]).to_parquet(bad)
    with pytest.raises(InputError, match="missing column 'agreement'"):
        read_labels(bad)
    with pytest.raises(InputError, match="no such label file"):
        read_labels(tmp_path / "none.parquet")

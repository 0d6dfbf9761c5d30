"""Plots for notebooks: each returns a figure with the expected content (Agg backend)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from catalogs import CatalogSchemaError, open_catalog
from catalogs.analysis import evaluate_truth, expert_usage, review_load
from catalogs.plots import (
    completeness_plot,
    cutout_gallery,
    expert_usage_plot,
    load_image,
    magnitude_histogram,
    reliability_diagram,
    review_load_plot,
    risk_coverage_plot,
    sky_map,
    snr_histogram,
)
from contracts.errors import InputError
from moe_imaging.triage.evaluate import (
    calibration_table,
    certified_risk_coverage,
    recalibration,
    risk_coverage_curve,
)
from tests.catalogs.demo_data import build_demo


@pytest.fixture(scope="session")
def demo(tmp_path_factory):
    return build_demo(tmp_path_factory.getbasetemp() / "moe_demo_survey")


@pytest.fixture(scope="module")
def cat(demo):
    return open_catalog(demo.catalogs)


def _png(fig: Figure, tmp_path, name: str) -> None:
    path = tmp_path / f"{name}.png"
    fig.savefig(path)
    assert path.stat().st_size > 5000


def test_cutout_gallery_rows_by_kind_sorted_by_confidence(cat, demo, tmp_path):
    fig = cutout_gallery(cat, {k: str(v) for k, v in demo.images.items()}, n_per_kind=5, size=21)
    kinds = [k for k in ("star", "galaxy", "streak", "artifact") if (cat["kind"] == k).any()]
    axes = fig.get_axes()
    assert len(axes) == 5 * len(kinds)
    labels = [axes[5 * r].get_ylabel().split("\n")[0] for r in range(len(kinds))]
    assert labels == kinds
    star_titles = [float(a.get_title().split()[-1]) for a in axes[:5] if a.get_title()]
    assert star_titles == sorted(star_titles) and len(star_titles) == 5
    star_conf = np.sort(cat.loc[cat["kind"] == "star", "confidence"].to_numpy())
    assert star_titles[0] == pytest.approx(star_conf[0], abs=0.006)
    assert star_titles[-1] == pytest.approx(star_conf[-1], abs=0.006)
    # the stamp holds the image pixels around the detection
    image = load_image(demo.images["survey_512_seed1"])
    one = cat[cat["exposure"] == "survey_512_seed1"].iloc[[0]]
    g1 = cutout_gallery(one, image, n_per_kind=1, size=11)
    shown = g1.get_axes()[0].get_images()[0].get_array()
    assert shown.shape == (11, 11) and np.isfinite(shown).any()
    _png(fig, tmp_path, "gallery")


def test_cutout_gallery_errors(cat, demo):
    with pytest.raises(CatalogSchemaError, match="missing column 'exposure'"):
        cutout_gallery(cat.drop(columns=["exposure"]), {"a": demo.images["survey_512_seed1"]})
    with pytest.raises(InputError, match="image not found"):
        cutout_gallery(cat.iloc[:2], demo.root / "missing.fits")


def test_sky_map_and_histograms(cat, tmp_path):
    fig = sky_map(cat)
    ax = fig.get_axes()[0]
    assert ax.xaxis_inverted() and ax.get_xlabel() == "RA (deg)"
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    n_star = int((cat["kind"] == "star").sum())
    assert f"star ({n_star})" in legend
    pix = sky_map(cat.assign(ra=np.nan))
    assert pix.get_axes()[0].get_xlabel() == "x (pix)"
    h = snr_histogram(cat)
    assert h.get_axes()[0].get_xscale() == "log"
    assert sum(len(p.get_xy()) > 0 for p in h.get_axes()[0].patches) == cat["kind"].nunique()
    m = magnitude_histogram(cat, by="exposure")
    assert len(m.get_axes()[0].get_legend().get_texts()) == cat["exposure"].nunique()
    with pytest.raises(CatalogSchemaError, match="missing column 'snr'"):
        snr_histogram(cat.drop(columns=["snr"]))
    for name, f in (("sky", fig), ("snr", h), ("mag", m)):
        _png(f, tmp_path, name)


def test_calibration_and_risk_plots(cat, demo, tmp_path):
    ev = evaluate_truth(cat, demo.truths)
    table = calibration_table(ev.detections["confidence"], ev.detections["correct"])
    fig = reliability_diagram(table, title="gate")
    ax = fig.get_axes()[0]
    assert any("ECE" in t.get_text() for t in ax.get_legend().get_texts())
    rng = np.random.default_rng(0)
    conf = rng.uniform(0.8, 1, 600)
    correct = rng.random(600) < conf - 0.2
    rec = recalibration(conf, correct)
    both = reliability_diagram({"before": rec.before, "after": rec.after})
    texts = [t.get_text() for t in both.get_axes()[0].get_legend().get_texts()]
    assert any(t.startswith("before ECE") for t in texts) and any(t.startswith("after ECE") for t in texts)
    curve = risk_coverage_curve(conf, correct)
    cert = certified_risk_coverage(conf, correct, alphas=(0.2, 0.3))
    rc = risk_coverage_plot(curve, certified=cert)
    assert len(rc.get_axes()[0].lines) >= 1
    for name, f in (("rel", fig), ("rel2", both), ("rc", rc)):
        _png(f, tmp_path, name)


def test_usage_load_and_completeness_plots(cat, demo, tmp_path):
    usage = expert_usage(cat, by="exposure")
    fig = expert_usage_plot(usage)
    ax = fig.get_axes()[0]
    assert len(ax.patches) == len(usage) * (usage.shape[1] - 1)
    assert ax.get_ylabel() == "mean gate weight"
    load = review_load(cat)
    lf = review_load_plot(load)
    assert [t.get_text() for t in lf.get_axes()[0].get_xticklabels()] == sorted(cat["exposure"].unique())
    ev = evaluate_truth(cat, demo.truths)
    cf = completeness_plot(ev.completeness, ev.purity)
    assert len(cf.get_axes()[0].lines) == 3  # star, galaxy, purity
    with pytest.raises(CatalogSchemaError):
        completeness_plot(pd.DataFrame({"kind": []}))
    for name, f in (("usage", fig), ("load", lf), ("comp", cf)):
        _png(f, tmp_path, name)

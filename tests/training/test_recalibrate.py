"""Reviewers' labels refit the certified triage (moe-imaging calibrate --labels)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from catalogs.labels import read_labels
from contracts.errors import InputError
from contracts.vocabulary import LABEL_COLUMNS
from moe_cli import main
from moe_imaging.triage import certified_thresholds
from moe_imaging.triage.certify import fit_stratified_triage
from moe_imaging.triage.microscopy import OUT_OF_RANGE_STRATUM
from moe_imaging.triage.strata import outside_calibration_strata
from pipelines.models import DEFAULT_GATE_WEIGHTS, load_gate, load_nucleus_triage
from training.recalibrate import recalibrate_weights


def recalibrate_with_labels(labels, *, out, alpha=0.01):
    """Refit the survey gate (``moe-imaging calibrate --model gate``); the report with the file written."""
    result = recalibrate_weights(labels, out=out, model="gate", alpha=alpha)
    return _Report(result)


def recalibrate_nucleus_triage_with_labels(labels, *, out, alpha=0.01):
    """Refit the nucleus triage (``moe-imaging calibrate --model nucleus-triage``)."""
    return _Report(recalibrate_weights(labels, out=out, model="nucleus-triage", alpha=alpha))


class _Report:
    """The summary's fields and the setting, as one object (what the tests read)."""

    def __init__(self, result):
        self.__dict__.update(vars(result.summary))
        self.out, self.setting = result.out, result.setting


def _label_file(df: pd.DataFrame, path) -> None:
    """A label file as ``moe-imaging review export`` writes it: every column, ``df``'s values where given."""
    n = len(df)
    full = {"catalog_id": "cat", "source_id": np.arange(n), "exposure": "e", "x": 1.0, "y": 1.0, "ra": np.nan,
            "dec": np.nan, "mode": "survey", "kind": "star", "label": "star", "n_decisions": 1, "agreement": 1.0,
            "confidence": 0.9, "psf_fwhm": 3.0, "review_reason": "", "triage_stratum": "",
            "decided_at": pd.Timestamp("2026-12-01", tz="UTC")}
    out = pd.DataFrame({name: full.get(name, np.nan) for name, _ in LABEL_COLUMNS}, index=range(n))
    for col in df.columns:
        out[col] = df[col].to_numpy()
    out.to_parquet(path)


def _stratum_with_threshold():
    """A stratum of the shipped gate whose threshold at alpha 5 % is certified."""
    cal = load_gate().metadata["calibration"]
    tri = fit_stratified_triage(np.asarray(cal["scores"]), np.asarray(cal["errors"]), np.asarray(cal["strata"]),
                                alpha=0.05, delta=0.05)
    name = next(k for k, t in tri.thresholds.items() if t.certified)
    return name, tri.thresholds[name].tau


def _labels(stratum: str, conf: np.ndarray, wrong: np.ndarray) -> pd.DataFrame:
    kind = np.full(len(conf), "star")
    return pd.DataFrame({"kind": kind, "label": np.where(wrong, "galaxy", "star"), "confidence": conf,
                         "triage_stratum": stratum, "source_id": np.arange(len(conf))})


def test_wrong_confident_labels_make_the_threshold_stricter(tmp_path) -> None:
    stratum, tau = _stratum_with_threshold()
    rng = np.random.default_rng(0)
    conf = rng.uniform(max(tau, 0.5), 1.0, 400)  # all above today's threshold, and all wrong
    out = tmp_path / "gate_labels.pt"
    s = recalibrate_with_labels(_labels(stratum, conf, np.ones(400, bool)), out=out, alpha=0.05)
    r = s.per_stratum[stratum]
    assert s.n_used == 400 and r["labels"] == 400
    assert r["calibration_after"] == r["calibration_before"] + 400
    assert r["gate_error_on_labels"] == 1.0
    assert r["threshold_after"] > r["threshold_before"]
    pooled = load_gate(out).metadata["calibration"]
    assert len(pooled["scores"]) == len(load_gate().metadata["calibration"]["scores"]) + 400
    assert pooled["label_sets"][-1]["used"] == 400
    # the calibrated range travels with the pool; per-row arrays of the simulated split do not
    base = load_gate().metadata["calibration"]
    assert pooled.get("field_density_max") == base.get("field_density_max")
    assert "density" not in pooled and "fwhm" not in pooled


def test_correct_labels_never_make_it_stricter_and_unknown_rows_are_left_out(tmp_path) -> None:
    stratum, tau = _stratum_with_threshold()
    conf = np.linspace(0.3, 1.0, 300)
    labels = _labels(stratum, conf, np.zeros(300, bool))
    extra = pd.DataFrame({"kind": ["star", "star"], "label": ["uncertain", "star"], "confidence": [0.9, 0.9],
                          "triage_stratum": [stratum, "survey:no-such-stratum"], "source_id": [1000, 1001]})
    s = recalibrate_with_labels(pd.concat([labels, extra]), out=tmp_path / "g.pt", alpha=0.05)
    assert s.n_labels == 302 and s.n_used == 300
    r = s.per_stratum[stratum]
    assert r["threshold_after"] <= r["threshold_before"]


def test_label_file_errors_name_the_file_and_cause(tmp_path) -> None:
    with pytest.raises(InputError, match="no such label file"):
        read_labels(tmp_path / "none.parquet")
    junk = tmp_path / "junk.parquet"
    junk.write_text("not parquet")
    with pytest.raises(InputError, match="junk.parquet.*not a readable Parquet"):
        read_labels(junk)
    missing = tmp_path / "missing.parquet"
    pd.DataFrame({"kind": ["star"], "label": ["star"], "confidence": [0.5]}).to_parquet(missing)
    with pytest.raises(InputError, match="missing column 'catalog_id'"):
        read_labels(missing)
    bad = tmp_path / "bad.parquet"
    _label_file(pd.DataFrame({"confidence": [1.5], "triage_stratum": ["x"]}), bad)
    with pytest.raises(InputError, match="column 'confidence': a probability must lie in"):
        read_labels(bad)


def test_cli_refits_and_reports_and_bad_input_is_one_line(tmp_path, capsys) -> None:
    stratum, _ = _stratum_with_threshold()
    path = tmp_path / "labels.parquet"
    _label_file(_labels(stratum, np.linspace(0.5, 1.0, 50), np.zeros(50, bool)), path)
    assert main(["calibrate", "--labels", str(path), "--out", str(tmp_path / "new.pt")]) == 0
    out = capsys.readouterr().out
    assert "50 of 50 labels used" in out and stratum in out and "new.pt" in out
    assert main(["calibrate", "--labels", str(tmp_path / "nope.parquet"), "--out", str(tmp_path / "x.pt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope.parquet" in err[0] and "no such label file" in err[0]
    assert not (tmp_path / "x.pt").exists()


# --------------------------------------------------------------------------- microscopy


def _nucleus_stratum_with_threshold():
    """A stratum of the shipped nucleus triage with a certified threshold above 0.5 at alpha 1 %."""
    tri = certified_thresholds(load_nucleus_triage(), alpha=0.01, delta=0.05)
    name = next(k for k, t in tri.thresholds.items() if t.certified and t.tau > 0.5)
    return name, tri.thresholds[name].tau


def _nucleus_labels(stratum: str, conf: np.ndarray, wrong: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"kind": "nucleus", "label": np.where(wrong, "artifact", "nucleus"), "confidence": conf,
                         "triage_stratum": stratum, "mode": "microscopy", "source_id": np.arange(len(conf))})


def test_microscopy_labels_refit_the_nucleus_triage(tmp_path) -> None:
    stratum, tau = _nucleus_stratum_with_threshold()
    conf = np.random.default_rng(1).uniform(max(tau, 0.5), 1.0, 400)  # above today's threshold, all wrong
    labels = _nucleus_labels(stratum, conf, np.ones(400, bool))
    others = pd.DataFrame({  # survey rows, an uncertain label, the never-calibrated stratum: all left out
        "kind": ["star", "nucleus", "nucleus"], "label": ["galaxy", "uncertain", "artifact"],
        "confidence": [0.99, 0.99, 0.99], "triage_stratum": ["survey:crowded", stratum, OUT_OF_RANGE_STRATUM],
        "mode": ["survey", "microscopy", "microscopy"], "source_id": [1000, 1001, 1002]})
    out = tmp_path / "nuclei_labels.pt"
    s = recalibrate_nucleus_triage_with_labels(pd.concat([labels, others]), out=out, alpha=0.01)
    assert s.n_labels == 403 and s.n_used == 400 and s.setting == "nucleus_weights"
    r = s.per_stratum[stratum]
    assert r["labels"] == 400 and r["calibration_after"] == r["calibration_before"] + 400
    assert r["gate_error_on_labels"] == 1.0 and r["threshold_after"] > r["threshold_before"]
    assert OUT_OF_RANGE_STRATUM not in s.per_stratum
    new = load_nucleus_triage(out)
    assert len(new.calibration["scores"]) == len(load_nucleus_triage().calibration["scores"]) + 400
    assert new.metadata["label_sets"][-1]["used"] == 400
    # what the pipeline will use: the refitted thresholds; the out-of-range stratum is still never decided
    tri = certified_thresholds(new, alpha=0.01)
    assert tri.thresholds[stratum].tau == pytest.approx(r["threshold_after"])
    assert OUT_OF_RANGE_STRATUM not in tri.thresholds
    # the survey gate ignores microscopy labels: none of them is usable there
    s_gate = recalibrate_with_labels(labels, out=tmp_path / "gate.pt", alpha=0.01)
    assert s_gate.n_used == 0


def test_cli_refits_the_nucleus_triage_and_names_the_setting(tmp_path, capsys) -> None:
    stratum, _ = _nucleus_stratum_with_threshold()
    path = tmp_path / "labels.parquet"
    _label_file(_nucleus_labels(stratum, np.linspace(0.6, 1.0, 60), np.zeros(60, bool)), path)
    new = tmp_path / "nuclei.pt"
    assert main(["calibrate", "--model", "nucleus-triage", "--labels", str(path), "--out", str(new)]) == 0
    out = capsys.readouterr().out
    assert "60 of 60 labels used" in out and stratum in out and f'nucleus_weights = "{new}"' in out
    # a survey gate file is not a nucleus triage: one line naming it
    assert main(["calibrate", "--model", "nucleus-triage", "--labels", str(path), "--out", str(tmp_path / "x.pt"),
                 "--weights", str(DEFAULT_GATE_WEIGHTS)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "gate_v1.pt" in err[0] and "not a nucleus triage" in err[0]
    assert not (tmp_path / "x.pt").exists()


def test_labels_alone_calibrate_a_regime_the_simulation_never_had(tmp_path) -> None:
    """Every detection of an out-of-range stratum is reviewed, so its labels are an unselected sample:
    with enough of them (and few errors) the stratum gets a certified threshold; with too few it does not."""
    psf_outside, too_dense = outside_calibration_strata()
    assert psf_outside not in set(load_gate().metadata["calibration"]["strata"])
    rng = np.random.default_rng(3)
    conf = rng.uniform(0.9, 1.0, 600)
    wrong = rng.uniform(size=600) < 0.002
    few = _labels(too_dense, conf[:20], wrong[:20])
    s = recalibrate_with_labels(pd.concat([_labels(psf_outside, conf, wrong), few]), out=tmp_path / "g.pt",
                                alpha=0.05)
    assert s.n_used == 620
    assert s.per_stratum[psf_outside]["threshold_before"] == np.inf
    assert s.per_stratum[psf_outside]["threshold_after"] < 1.0  # certified from the labels alone
    assert s.per_stratum[too_dense]["threshold_after"] == np.inf  # 20 labels: below min_count
    pooled = load_gate(tmp_path / "g.pt").metadata["calibration"]
    tri = fit_stratified_triage(np.asarray(pooled["scores"]), np.asarray(pooled["errors"]),
                                np.asarray(pooled["strata"]), alpha=0.05, delta=0.05)
    auto, _ = tri.decide(np.array([0.999, 0.999]), np.array([psf_outside, too_dense]))
    assert list(auto) == [True, False]

"""One lifecycle for every triage head: the same contract run over the survey gate and the nucleus triage."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from astropy.table import Table

from contracts.vocabulary import DECISIONS
from moe_imaging.triage import (
    TriageContext,
    TriageModel,
    apply_triage,
    recalibrate_with_labels,
)
from pipelines.models import load_gate, load_nucleus_triage

HEADS = {
    "gate": (load_gate, TriageContext(mode="survey", psf_fwhm=3.0, threshold=5.0, image_shape=(500, 500),
                                      evidence=Table())),
    "nucleus_triage": (load_nucleus_triage, TriageContext(mode="microscopy", psf_fwhm=2.0,
                                                          diameter_px=(20.0, 35.0))),
}


@pytest.fixture(params=sorted(HEADS))
def head(request):
    load, context = HEADS[request.param]
    return load(), context


def _rows(n: int, rng: np.random.Generator) -> Table:
    t = Table({"x": rng.uniform(20, 480, n), "y": rng.uniform(20, 480, n), "snr": rng.uniform(5, 200, n),
               "det_snr": rng.uniform(5, 100, n), "flux": rng.uniform(1e3, 1e5, n), "a": rng.uniform(2, 12, n),
               "b": rng.uniform(1, 10, n), "area": rng.uniform(300, 900, n), "diameter": rng.uniform(20, 34, n),
               "noise": np.ones(n), "background": np.full(n, 10.0), "flags": np.zeros(n, np.int32),
               "psf_fwhm": np.full(n, 3.0)})
    t["b"] = np.minimum(t["a"], t["b"])
    return t


def test_is_a_triage_model(head) -> None:
    model, _ = head
    assert isinstance(model, TriageModel)
    assert model.classes[-1] == "artifact" and model.temperature > 0


def test_apply_writes_the_shared_columns_and_only_certified_decisions(head) -> None:
    model, context = head
    table = _rows(40, np.random.default_rng(0))
    if context.mode == "survey":
        context = TriageContext(**{**context.__dict__, "evidence": Table({"point_snr": table["snr"]})})
    out = apply_triage(model, table, context=context, alpha=0.01)
    for col in ("kind", "confidence", "decision", "review_reason", "gate_reason", "triage_stratum",
                *(f"p_{c}" for c in model.classes)):
        assert col in out.colnames
    probs = np.column_stack([np.asarray(out[f"p_{c}"]) for c in model.classes])
    assert np.allclose(probs.sum(axis=1), 1.0)
    decision = np.asarray(out["decision"]).astype(str)
    assert set(decision) <= set(DECISIONS)
    assert np.all((np.asarray(out["review_reason"]).astype(str) != "") == (decision == "review"))
    assert all(s.startswith(context.mode + ":") for s in np.asarray(out["triage_stratum"]).astype(str))
    assert out.meta["gate"]["weights"] == model.source and out.meta["gate"]["alpha"] == 0.01
    empty = apply_triage(model, table[:0], context=context)
    assert len(empty) == 0 and set(out.colnames) == set(empty.colnames)


def test_labels_the_head_does_not_know_change_nothing(head) -> None:
    model, _ = head
    other = "survey:crowded" if model.classes[0] == "nucleus" else "microscopy:crowded"
    labels = pd.DataFrame({"kind": ["dragon", model.classes[0]], "label": [model.classes[0], "uncertain"],
                           "confidence": [0.9, 0.9], "triage_stratum": [other, other]})
    new, summary = recalibrate_with_labels(model, labels, source="none.parquet")
    assert summary.n_labels == 2 and summary.n_used == 0
    assert new.calibration_split() == model.calibration_split()
    assert new.label_history()[-1]["source"] == "none.parquet" and new.label_history()[-1]["used"] == 0
    assert model.label_history() == new.label_history()[:-1]  # the head it started from is unchanged

"""Weights on disk: the one module that reads and writes them, its content-keyed cache and its errors."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from contracts.errors import InputError
from moe_imaging.triage import TriageModel, certified_thresholds
from pipelines import models


def test_shipped_models_load_and_are_triage_heads() -> None:
    gate, nuclei = models.load_gate(), models.load_nucleus_triage()
    for head in (gate, nuclei):
        assert isinstance(head, TriageModel)
        assert head.source.endswith(".pt") and head.calibration_split().fingerprint()
    assert models.load_learned().classes == ("star", "galaxy", "streak", "artifact")
    assert models.load_gate() is gate  # cached: read once per content


def test_a_file_refitted_in_place_is_read_again(tmp_path) -> None:
    """The cache keys on the file's content, not its path (the old path-keyed cache served stale weights)."""
    path = tmp_path / "nuclei.pt"
    shutil.copy(models.DEFAULT_NUCLEUS_TRIAGE_WEIGHTS, path)
    first = models.load_nucleus_triage(path)
    split = first.calibration_split()
    wrong = type(split)(split.scores, np.ones_like(split.errors), split.strata, split.never)  # every item an error
    models.save_model(first.with_calibration(wrong, []), path)  # the same path, new content
    second = models.load_nucleus_triage(path)
    assert second is not first
    assert second.calibration_split().fingerprint() != split.fingerprint()
    before = certified_thresholds(first, alpha=0.01)
    after = certified_thresholds(second, alpha=0.01)
    assert any(t.certified for t in before.thresholds.values())
    assert not any(t.certified for t in after.thresholds.values())  # and the thresholds follow the file


def test_save_and_load_round_trip_with_a_model_card(tmp_path) -> None:
    gate = models.load_gate()
    out = models.save_model(gate, tmp_path / "g.pt", card="# card\n", card_name="G_CARD.md")
    assert (tmp_path / "G_CARD.md").read_text() == "# card\n"
    again = models.load_gate(out)
    assert again.source == "g.pt" and again.temperature == gate.temperature
    assert again.calibration_split() == gate.calibration_split()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["G_CARD.md", "g.pt"]  # no temporary file left


def test_a_user_named_file_that_is_missing_or_wrong_is_one_input_error(tmp_path) -> None:
    with pytest.raises(InputError, match="nope.pt: no such gate weights file"):
        models.open_triage("gate", tmp_path / "nope.pt")
    with pytest.raises(InputError, match="gate_v1.pt: not a nucleus triage model"):
        models.open_triage("nucleus_triage", models.DEFAULT_GATE_WEIGHTS)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not torch")
    with pytest.raises(InputError, match="junk.pt: cannot load learned-expert weights"):
        models.load_learned(junk)

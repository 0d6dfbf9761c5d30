"""Training the learned expert: a tiny run end to end, and the CLI's error path."""

from __future__ import annotations

import numpy as np

from moe_cli import main
from pipelines.models import load_learned
from training.learned import SPLITS, TrainConfig, field_seed, train_learned

TINY = TrainConfig(n_train_fields=1, n_val_fields=1, n_test_fields=1, field_size=128, epochs=1, batch_size=32, ood_fwhm=(12.0,))


def test_splits_never_share_fields() -> None:
    seeds = {s: {field_seed(1, s, i) for i in range(200)} for s in SPLITS}
    names = list(seeds)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert not seeds[a] & seeds[b]


def test_tiny_training_run_end_to_end(tmp_path) -> None:
    out = tmp_path / "tiny.pt"
    model, metrics = train_learned(TINY, out=out)
    assert out.is_file() and (tmp_path / "MODEL_CARD.md").is_file()
    loaded = load_learned(out)
    assert loaded.metadata["train_config"]["n_train_fields"] == 1
    assert "12" in metrics["out_of_range"] and metrics["test"]["n"] > 0
    a = {k: v.numpy() for k, v in model.net.state_dict().items()}
    b = {k: v.numpy() for k, v in loaded.net.state_dict().items()}
    assert all(np.array_equal(a[k], b[k]) for k in a)
    card = (tmp_path / "MODEL_CARD.md").read_text()
    assert "PSF outside the training range" in card and "Confusion matrix" in card


def test_cli_train_bad_argument_is_one_line(capsys) -> None:
    assert main(["train", "learned", "--epochs", "0", "--out", "unused.pt"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("moe-imaging: error: train.epochs")


def test_cli_train_bad_device_is_one_line(capsys, tmp_path) -> None:
    assert main(["train", "learned", "--device", "abacus", "--out", str(tmp_path / "x.pt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "train.device" in err[0]


def test_cli_train_bad_out_is_one_line(capsys) -> None:
    assert main(["train", "learned", "--out", "weights.txt"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("moe-imaging: error: weights.txt")

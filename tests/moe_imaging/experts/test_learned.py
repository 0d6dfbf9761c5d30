"""The learned expert: shipped weights, accuracy on held-out simulations, D4, PSF out of range."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from contracts.errors import ConfigError
from contracts.vocabulary import SURVEY_CLASSES as CLASSES
from moe_imaging.experts import (
    REGISTRY,
    LearnedExpert,
    LearnedExpertConfig,
    make_expert,
)
from moe_imaging.learned.model import (
    STAMP_SIZE,
    classify_stamps,
    extract_stamps,
    temper_probabilities,
)
from moe_imaging.psf import moffat_psf
from moe_imaging.tile import Tile
from pipelines.models import DEFAULT_LEARNED_WEIGHTS as DEFAULT_WEIGHTS
from pipelines.models import load_learned
from training.learned import TrainConfig, field_samples, field_seed


@pytest.fixture(scope="module")
def model():
    return load_learned()


def _star_field(psf, n=9, snr=60.0, seed=0, size=160):
    rng = np.random.default_rng(seed)
    img = rng.normal(0.0, 1.0, (size, size))
    h = psf.half_size
    norm = snr / np.sqrt((psf.image**2).sum())
    pos = []
    for k in range(n):
        y, x = 25 + 50 * (k // 3) + rng.uniform(-0.5, 0.5), 25 + 50 * (k % 3) + rng.uniform(-0.5, 0.5)
        iy, ix = int(round(y)), int(round(x))
        stamp = ndimage.shift(psf.image, (y - iy, x - ix), order=3) * norm
        y0, x0 = iy - h, ix - h
        sy0, sx0 = max(0, -y0), max(0, -x0)
        sy1, sx1 = min(stamp.shape[0], size - y0), min(stamp.shape[1], size - x0)
        img[y0 + sy0 : y0 + sy1, x0 + sx0 : x0 + sx1] += stamp[sy0:sy1, sx0:sx1]
        pos.append((iy, ix))
    return img, np.array(pos)


def _streak_stamp(psf, angle_deg, amp=6.0, seed=1):
    """A bright line through the centre of a noise stamp, blurred by the PSF."""
    s = 61
    line = np.zeros((s, s))
    c = s // 2
    t = np.linspace(-40, 40, 2000)
    xs = c + t * math.cos(math.radians(angle_deg))
    ys = c + t * math.sin(math.radians(angle_deg))
    ok = (xs >= 0) & (xs < s - 0.5) & (ys >= 0) & (ys < s - 0.5)
    np.add.at(line, (np.round(ys[ok]).astype(int), np.round(xs[ok]).astype(int)), 1.0)
    img = ndimage.convolve(line, psf.image, mode="constant")
    img *= amp / img[c, c]
    img += np.random.default_rng(seed).normal(0, 1, img.shape)
    return img


def test_registered_and_shipped_weights_small(model) -> None:
    assert REGISTRY["learned"] is LearnedExpert
    assert DEFAULT_WEIGHTS.is_file() and DEFAULT_WEIGHTS.stat().st_size <= 10 * 1024**2
    assert model.classes == CLASSES and model.stamp_size == STAMP_SIZE
    lo, hi = model.fwhm_range
    assert lo <= 1.5 and hi >= 6.0
    md = model.metadata
    assert md["train_config"]["seed"] == 1 and "test" in md["metrics"]
    assert (DEFAULT_WEIGHTS.parent / "MODEL_CARD.md").is_file()


def test_config_validation() -> None:
    with pytest.raises(ConfigError, match="learned.device"):
        LearnedExpertConfig(device="tpu")
    with pytest.raises(ConfigError, match="learned.batch_size"):
        LearnedExpertConfig(batch_size=0)
    with pytest.raises(ConfigError, match="train.epochs"):
        TrainConfig(epochs=0)


def test_accuracy_on_a_held_out_field(model) -> None:
    """A fresh 384^2 field (benchmark split: never trained on), S/N >= 10: mostly right, every class."""
    cfg = TrainConfig(field_size=384)
    train_seeds = {field_seed(1, "train", i) for i in range(48)}
    assert field_seed(1, "bench", 7) not in train_seeds
    f = field_samples(cfg, "bench", 7, fwhm=3.0)
    sel = f["mf_snr"] >= 10
    probs, _ = classify_stamps(f["stamps"][sel], f["psf_image"], float(f["fwhm"]), model)
    pred = probs.argmax(1)
    labels = f["labels"][sel]
    assert np.mean(pred == labels) >= 0.8
    for k in range(len(CLASSES)):
        assert (labels == k).sum() >= 5
        assert np.mean(pred[labels == k] == k) >= 0.6, CLASSES[k]


def test_round_star_is_stable_and_a_star(model) -> None:
    psf = moffat_psf(3.0)
    img, pos = _star_field(psf, snr=80.0)
    stamps = extract_stamps(img, np.ones_like(img), None, pos)
    probs, stab = classify_stamps(stamps, psf.image, psf.fwhm, model)
    assert np.mean(probs.argmax(1) == 0) >= 8 / 9
    assert np.median(stab) >= 0.95 and np.all((stab >= 0) & (stab <= 1))


def test_rotated_streak_keeps_its_class(model) -> None:
    psf = moffat_psf(3.0)
    img = _streak_stamp(psf, 30.0)
    c = img.shape[0] // 2
    var = np.ones_like(img)
    stamps = np.concatenate([
        extract_stamps(img, var, None, [[c, c]]),
        extract_stamps(np.rot90(img), var, None, [[c, c]]),
        extract_stamps(_streak_stamp(psf, 120.0, seed=2), var, None, [[c, c]]),
    ])
    probs, _ = classify_stamps(stamps, psf.image, psf.fwhm, model)
    assert np.all(probs.argmax(1) == CLASSES.index("streak")), probs
    np.testing.assert_allclose(probs[0], probs[1], atol=1e-5)  # D4 average is invariant


def test_psf_out_of_range_is_flagged_and_tempered() -> None:
    expert = make_expert("learned", model=load_learned())
    psf = moffat_psf(12.0)
    img, _ = _star_field(psf, n=4, snr=80.0, size=200)
    table = expert.propose(Tile.from_image(img, psf, noise=1.0))
    assert len(table) > 0
    assert not np.any(np.asarray(table["learned_in_range"]))
    np.testing.assert_allclose(np.asarray(table["learned_confidence"]), 0.25, atol=1e-9)  # 12 px = 2x the range: uniform
    # a little out of range: tempered, not uniform
    p = np.array([[0.97, 0.01, 0.01, 0.01]])
    pt, ok, w = temper_probabilities(p, 7.0, (1.5, 6.0))
    assert not ok and 0 < w < 1 and pt.max() < 0.97 and math.isclose(pt.sum(), 1.0)
    pt, ok, w = temper_probabilities(p, 3.0, (1.5, 6.0))
    assert ok and w == 0 and np.array_equal(pt, p)


def test_in_range_tile_columns_and_determinism() -> None:
    expert = make_expert("learned", model=load_learned())
    psf = moffat_psf(3.0)
    img, _ = _star_field(psf, snr=50.0, seed=4)
    tile = Tile.from_image(img, psf, noise=1.0)
    a, b = expert.propose(tile), expert.propose(tile)
    assert len(a) == 9 and np.all(np.asarray(a["learned_in_range"]))
    p = np.column_stack([np.asarray(a[f"p_{c}"]) for c in CLASSES])
    np.testing.assert_allclose(p.sum(1), 1.0)
    np.testing.assert_array_equal(p.max(1), np.asarray(a["learned_confidence"]))
    for name in a.colnames:
        np.testing.assert_array_equal(np.asarray(a[name]), np.asarray(b[name]))
    ev = expert.score(tile, a)
    np.testing.assert_allclose(np.asarray(ev["p_star"]), np.asarray(a["p_star"]), atol=1e-6)


def test_the_expert_is_handed_its_network_and_never_reads_weights_itself() -> None:
    with pytest.raises(ConfigError, match="needs its network"):
        LearnedExpert()
    with pytest.raises(ConfigError, match="needs its network"):
        make_expert("learned", LearnedExpertConfig(weights="/no/such/file.pt"))


def test_footprint_covers_the_stamp() -> None:
    expert = LearnedExpert(model=load_learned())
    assert expert.footprint(moffat_psf(1.5)) >= STAMP_SIZE // 2 + 1

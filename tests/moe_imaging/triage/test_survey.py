"""The gate: features, the mixture network, decisions with reasons, training end to end."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from astropy.table import Table

from contracts.flags import MaskBit
from contracts.vocabulary import DECISIONS, SURVEY_CLASSES, SURVEY_EXPERTS
from moe_imaging.fusion import fuse
from moe_imaging.psf import moffat_psf
from moe_imaging.simulate import SurveySimConfig, simulate_survey
from moe_imaging.tile import Tile
from moe_imaging.triage import TriageContext, apply_triage
from moe_imaging.triage.strata import (
    CROWDED_BEAM_DENSITY,
    beam_density,
    field_density,
    fwhm_stratum,
    triage_stratum,
)
from moe_imaging.triage.survey import GateNet
from moe_imaging.triage.survey_features import (
    EVIDENCE,
    PHYSICS_FEATURES,
    evidence_features,
    physics_features,
    score_candidates,
)
from pipelines.modality import make_configured_expert
from pipelines.models import load_gate
from training.gate import GateTrainConfig, train_gate

GATE_CLASSES = SURVEY_CLASSES


def apply_gate(table, evidence, *, psf_fwhm, threshold, weights=None, min_count=50, image_shape=None, alpha=0.01):
    """The gate's decisions through the one triage apply (as the survey pipeline calls it)."""
    context = TriageContext(mode="survey", psf_fwhm=psf_fwhm, threshold=threshold, image_shape=image_shape,
                            evidence=evidence)
    return apply_triage(load_gate(weights), table, context=context, alpha=alpha, min_count=min_count)


def _field(fwhm=3.0, seed=91, size=384):
    sim = simulate_survey(SurveySimConfig(size=size, seed=seed, fwhm_px=fwhm, star_density=600.0, n_streaks=8.0,
                                          cosmic_ray_density=80.0))
    cfg = sim.truth.meta["config"]
    var = sim.sky / cfg["gain"] + (cfg["rdnoise"] / cfg["gain"]) ** 2
    mask = np.where(sim.image >= cfg["saturate"], np.uint16(MaskBit.SATURATED), np.uint16(0))
    tile = Tile(image=sim.image - sim.sky, variance=var, mask=mask, background=sim.sky, psf=moffat_psf(fwhm))
    experts = [make_configured_expert(n) for n in SURVEY_EXPERTS]
    fused = fuse({e.name: e.propose(tile) for e in experts}, radius=max(1.5, fwhm))
    return sim, tile, experts, fused


def test_network_weights_are_a_distribution_and_silent_experts_get_none() -> None:
    torch.manual_seed(0)
    sizes = {name: len(cols) + 1 for name, cols in EVIDENCE.items()}
    net = GateNet(len(PHYSICS_FEATURES), sizes)
    n = 7
    evidence = {k: torch.randn(n, v) for k, v in sizes.items()}
    evidence["streak"][:, -1] = 1.0  # the streak expert said nothing
    log_p, w, per = net(torch.randn(n, len(PHYSICS_FEATURES)), evidence)
    assert log_p.shape == (n, len(GATE_CLASSES)) and per.shape == (n, len(sizes), len(GATE_CLASSES))
    assert torch.allclose(log_p.exp().sum(1), torch.ones(n), atol=1e-5)
    assert torch.allclose(w.sum(1), torch.ones(n), atol=1e-5)
    assert float(w[:, net.experts.index("streak")].max().detach()) < 1e-4


def test_features_for_empty_and_sparse_tables() -> None:
    assert physics_features(Table({"x": [], "y": []}), psf_fwhm=3.0).shape == (0, len(PHYSICS_FEATURES))
    table = Table({"x": [10.0, 20.0], "y": [5.0, 6.0], "snr": [7.0, np.nan]})
    feats = physics_features(table, psf_fwhm=3.0)
    assert feats.shape == (2, len(PHYSICS_FEATURES)) and np.all(np.isfinite(feats))
    ev = evidence_features(Table({"point_snr": [5.0, np.nan]}))
    assert set(ev) == set(EVIDENCE)
    assert ev["point"][1, -1] == 1.0 and ev["point"][0, -1] == 1.0  # point_sharpness missing
    assert ev["learned"][:, -1].tolist() == [1.0, 1.0]


def test_every_expert_scores_every_fused_row() -> None:
    _, tile, experts, fused = _field()
    ev = score_candidates(tile, fused, experts)
    assert len(ev) == len(fused) > 50
    for cols in EVIDENCE.values():
        for col in cols:
            assert col in ev.colnames
    assert np.isfinite(np.asarray(ev["point_snr"])).mean() > 0.9
    partial = score_candidates(tile, fused, [experts[0]])
    assert np.all(np.isnan(np.asarray(partial["extended_snr"])))


def test_strata() -> None:
    assert list(fwhm_stratum([2.0, 3.0, 5.0])) == ["survey:fwhm<2.5", "survey:fwhm2.5-4", "survey:fwhm>=4"]
    assert list(fwhm_stratum([2.0, 5.0], density=[0.001, 0.05])) == ["survey:fwhm<2.5:sparse",
                                                                     "survey:crowded"]
    assert triage_stratum(np.array([9.0]), (1.5, 6.0))[0] == "survey:fwhm-outside-training-range"


def test_beam_density_counts_neighbours_per_fwhm_squared() -> None:
    rng = np.random.default_rng(3)
    # 2000 detections uniformly on 2000 x 2000 px: 5e-4 per px^2, i.e. 0.0125 per FWHM^2 at FWHM 5
    x, y = rng.uniform(0, 2000, (2, 2000))
    d = beam_density(x, y, 5.0)
    inner = (np.abs(x - 1000) < 800) & (np.abs(y - 1000) < 800)  # away from the edges
    assert np.median(d[inner]) == pytest.approx(0.0125, rel=0.15)
    # the same points at FWHM 2 are six times less crowded in beams
    assert np.median(beam_density(x, y, 2.0)[inner]) < CROWDED_BEAM_DENSITY < np.median(d[inner])
    assert np.all(beam_density(np.array([1.0]), np.array([1.0]), 3.0) == 0)
    assert beam_density(np.array([0.0, np.nan]), np.array([0.0, 1.0]), 3.0).tolist() == [0.0, 0.0]


@pytest.fixture(scope="module")
def tiny_gate(tmp_path_factory):
    """A gate trained end to end on tiny fields (the shipped one is made the same way, larger)."""
    out = tmp_path_factory.mktemp("gate") / "gate_tiny.pt"
    cfg = GateTrainConfig(seed=5, n_train_fields=1, n_calibration_fields=1, n_test_fields=0, field_size=256,
                          calibration_field_size=256, epochs=3)
    train_gate(cfg, out=out)
    return out


def test_training_writes_a_loadable_gate_with_its_calibration_split(tiny_gate) -> None:
    model = load_gate(tiny_gate)
    cal = model.metadata["calibration"]
    assert len(cal["scores"]) == len(cal["errors"]) == len(cal["strata"]) > 10
    assert model.temperature > 0
    assert (tiny_gate.parent / "GATE_MODEL_CARD.md").exists()


def test_decisions_have_reasons_and_unknown_psfs_go_to_review(tiny_gate) -> None:
    sim, tile, experts, fused = _field()
    fused["psf_fwhm"] = 3.0
    ev = score_candidates(tile, fused, experts)
    out = apply_gate(fused, ev, psf_fwhm=3.0, threshold=4.9, weights=tiny_gate, min_count=1)
    assert set(np.asarray(out["decision"]).astype(str)) <= set(DECISIONS)
    probs = np.column_stack([np.asarray(out[f"p_{c}"]) for c in GATE_CLASSES])
    assert np.allclose(probs.sum(1), 1.0, atol=1e-6)
    assert np.allclose(np.asarray(out["confidence"]), probs.max(1))
    review = np.asarray(out["decision"]).astype(str) == "review"
    reasons = np.asarray(out["review_reason"]).astype(str)
    assert np.all((reasons != "") == review)
    assert all("expert" in r for r in np.asarray(out["gate_reason"]).astype(str))
    # a PSF far outside the training range: nothing is decided automatically
    fused["psf_fwhm"] = 12.0
    far = apply_gate(fused, ev, psf_fwhm=12.0, threshold=4.9, weights=tiny_gate, min_count=1)
    assert set(np.asarray(far["decision"]).astype(str)) == {"review"}
    assert all("outside-training-range" in r for r in np.asarray(far["review_reason"]).astype(str))


def test_field_density_and_its_stratum() -> None:
    # 400 detections at FWHM 3 on 1000 x 1000 px: 400 * 9 / 1e6 detections per FWHM^2
    assert field_density(400, 3.0, (1000, 1000)) == pytest.approx(0.0036)
    assert field_density(400, np.array([2.0, 3.0, 9.0]), (1000, 1000)) == pytest.approx(0.0036)  # median
    f = np.array([2.0, 3.0, 9.0])
    base = triage_stratum(f, (1.5, 6.0), density=np.zeros(3))
    assert list(triage_stratum(f, (1.5, 6.0), density=np.zeros(3), exposure_density=0.004,
                               exposure_density_max=0.005)) == list(base)
    denser = triage_stratum(f, (1.5, 6.0), density=np.zeros(3), exposure_density=0.006, exposure_density_max=0.005)
    # the PSF range still names its own stratum; the rest of a too-dense exposure gets the field's
    assert list(denser) == ["survey:field-denser-than-calibration"] * 2 + ["survey:fwhm-outside-training-range"]
    # rows pooled from several fields (training, benchmarks): one field density per row, same rule
    pooled = triage_stratum(f, (1.5, 6.0), density=np.zeros(3), exposure_density=np.array([0.006, 0.004, 0.006]),
                            exposure_density_max=0.005)
    assert list(pooled) == ["survey:field-denser-than-calibration", base[1], "survey:fwhm-outside-training-range"]


def test_an_exposure_denser_than_any_calibration_field_goes_to_review(tiny_gate, tmp_path) -> None:
    sim, tile, experts, fused = _field()
    fused["psf_fwhm"] = 3.0
    ev = score_candidates(tile, fused, experts)
    shape = sim.image.shape
    here = field_density(len(fused), 3.0, shape)
    blob = torch.load(tiny_gate, weights_only=False)
    assert blob["metadata"]["calibration"]["field_density_max"] > 0
    paths = {}
    for name, limit in (("roomy", 10 * here), ("tight", 0.5 * here)):
        blob["metadata"]["calibration"]["field_density_max"] = limit
        paths[name] = tmp_path / f"gate_{name}.pt"
        torch.save(blob, paths[name])
    roomy = apply_gate(fused, ev, psf_fwhm=3.0, threshold=4.9, weights=paths["roomy"], min_count=1, image_shape=shape)
    tight = apply_gate(fused, ev, psf_fwhm=3.0, threshold=4.9, weights=paths["tight"], min_count=1, image_shape=shape)
    assert not any("field-denser" in s for s in np.asarray(roomy["triage_stratum"]).astype(str))
    assert set(np.asarray(tight["decision"]).astype(str)) == {"review"}
    assert all("field-denser-than-calibration" in r for r in np.asarray(tight["review_reason"]).astype(str))
    assert tight.meta["gate"]["field_density"] == pytest.approx(here)
    # the probabilities do not change, only who decides
    assert np.allclose(np.asarray(tight["confidence"]), np.asarray(roomy["confidence"]))


def test_config_errors_name_the_key() -> None:
    from contracts.errors import ConfigError

    with pytest.raises(ConfigError, match="gate.fwhm_range"):
        GateTrainConfig(fwhm_range=(5.0, 2.0))
    with pytest.raises(ConfigError, match="gate.n_train_fields"):
        GateTrainConfig(n_train_fields=0)


def test_guarantee_holds_under_repeated_draws_of_simulated_detections() -> None:
    """Thresholds refitted on 100 random subsamples of one part of the shipped gate's calibration
    split (simulated fields) and applied to the other, fixed part: the error among auto-decided
    detections exceeds alpha in at most about delta of the draws (unconditionally)."""
    from moe_imaging.triage.certify import fit_stratified_triage

    cal = load_gate().metadata["calibration"]
    s, e, k = np.asarray(cal["scores"]), np.asarray(cal["errors"], bool), np.asarray(cal["strata"])
    rng = np.random.default_rng(0)
    order = rng.permutation(len(s))
    pool, test = order[: int(0.6 * len(s))], order[int(0.6 * len(s)) :]
    alpha, delta = 0.05, 0.1
    violations, coverage = [], []
    for _ in range(100):
        sub = rng.choice(pool, size=int(0.8 * len(pool)), replace=False)
        auto, _ = fit_stratified_triage(s[sub], e[sub], k[sub], alpha=alpha, delta=delta).decide(s[test], k[test])
        coverage.append(auto.mean())
        violations.append(bool(auto.any() and e[test][auto].mean() > alpha))
    assert np.mean(coverage) > 0.5
    assert np.mean(violations) <= delta + 0.08  # binomial slack for 100 draws


def test_beam_density_near_an_edge_counts_only_the_disc_inside_the_image() -> None:
    rng = np.random.default_rng(4)
    x, y = rng.uniform(0, 600, (2, 3000))  # ~0.0083 per px^2 on a 600 x 600 image
    corner = (x < 20) & (y < 20)
    centre = (np.abs(x - 300) < 100) & (np.abs(y - 300) < 100)
    plain = beam_density(x, y, 3.0)
    fair = beam_density(x, y, 3.0, shape=(600, 600))
    # without the image's extent a corner looks about four times sparser than the centre
    assert np.median(plain[corner]) < 0.4 * np.median(plain[centre])
    assert np.median(fair[corner]) == pytest.approx(np.median(fair[centre]), rel=0.2)
    assert np.allclose(fair[centre], plain[centre])


def test_field_config_is_the_seeded_draw_of_the_splits() -> None:
    from training.gate import field_config

    cfg = GateTrainConfig()
    a, b, other = field_config(cfg, 3, 0), field_config(cfg, 3, 0), field_config(cfg, 4, 0)
    assert a == b and a != other and a.seed != other.seed
    assert a.size == cfg.calibration_field_size and field_config(cfg, 0, 0).size == cfg.field_size
    assert cfg.fwhm_range[0] <= a.fwhm_px <= cfg.fwhm_range[1]
    assert field_config(cfg, 4, 0, fwhm_range=(9.0, 9.5)).fwhm_px >= 9.0

"""The shift guard: an exposure outside the calibration domain goes to review whole, with the reason."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.table import Table
from scipy import stats

from moe_imaging.triage.guard import SHIFT_STRATUM, GuardConfig, apply_guard, survey_shift_guard


def _exposure(n_stars: int = 60, wrong: int = 0, seed: int = 0) -> Table:
    """Bright isolated point sources on a grid (spread consistent with 0), ``wrong`` of them accepted as galaxies."""
    rng = np.random.default_rng(seed)
    side = int(np.ceil(np.sqrt(n_stars)))
    x, y = [a.ravel()[:n_stars] * 40.0 + 30 for a in np.meshgrid(np.arange(side), np.arange(side))]
    kind = np.array(["star"] * n_stars, dtype="U16")
    kind[:wrong] = "galaxy"
    return Table({"x": x, "y": y, "snr": rng.uniform(25, 90, n_stars), "kind": kind,
                   "decision": np.full(n_stars, "accepted", dtype="U8"),
                   "spread_model": rng.normal(0, 0.001, n_stars), "spread_model_err": np.full(n_stars, 0.002),
                   "gate_reason": np.full(n_stars, "point expert 0.90 (star)"),
                   "review_reason": np.full(n_stars, ""), "triage_stratum": np.full(n_stars, "survey:fwhm2.5-4:sparse")})


def test_an_exposure_inside_the_domain_passes_and_keeps_its_decisions() -> None:
    t = _exposure(wrong=2)
    v = survey_shift_guard(t, measured_fwhm=3.02, prior_fwhm=3.0, fwhm_range=(1.5, 6.0))
    assert v.passed and v.reasons == ()
    assert v.checks["bright_stars"]["n"] == 60 and v.checks["bright_stars"]["decided_not_star"] == 2
    out = apply_guard(t, v)
    assert list(out["decision"]) == list(t["decision"]) and out.meta["gate"]["shift_guard"]["passed"]


def test_bright_stars_decided_as_galaxies_send_the_exposure_to_review() -> None:
    t = _exposure(wrong=10)
    v = survey_shift_guard(t, measured_fwhm=3.0, prior_fwhm=3.0, fwhm_range=(1.5, 6.0))
    assert not v.passed and "10 of 60 bright isolated stars" in v.reasons[0]
    out = apply_guard(t, v)
    assert set(out["decision"]) == {"review"} and set(out["triage_stratum"]) == {SHIFT_STRATUM}
    assert all(r.startswith("exposure outside the calibration domain: 10 of 60") for r in out["review_reason"])
    assert all(r.isascii() for r in out["review_reason"])
    # stars the PSF does not settle (resolved), faint ones, or crowded ones are not evidence
    t["spread_model_err"] = 1e-4
    t["spread_model"] = 0.01
    assert survey_shift_guard(t, measured_fwhm=3.0, prior_fwhm=3.0, fwhm_range=(1.5, 6.0)).passed


def test_the_psf_must_lie_in_the_trained_range_and_agree_with_the_prior() -> None:
    t = _exposure()
    far = survey_shift_guard(t, measured_fwhm=7.5, prior_fwhm=7.4, fwhm_range=(1.5, 6.0))
    assert not far.passed and "outside the trained range" in far.reasons[0]
    off = survey_shift_guard(t, measured_fwhm=3.6, prior_fwhm=3.0, fwhm_range=(1.5, 6.0))
    assert not off.passed and "differs from the prior 3.00 px by 20%" in off.reasons[0]
    none = survey_shift_guard(t, measured_fwhm=None, prior_fwhm=3.0, fwhm_range=(1.5, 6.0))
    assert none.passed and "not measured" in none.checks["psf"]


def test_the_false_alarm_rate_is_the_stated_one() -> None:
    """On exposures where the gate errs on exactly the tolerated rate, the guard fires at most ``false_alarm``."""
    cfg = GuardConfig()
    rng = np.random.default_rng(3)
    fired = []
    for n in rng.integers(cfg.min_stars, 400, 4000):
        k = rng.binomial(n, cfg.star_error)
        fired.append(stats.binom.sf(k - 1, n, cfg.star_error) < cfg.false_alarm)
    assert np.mean(fired) <= cfg.false_alarm + 0.005
    # and with too few settled stars nothing is tested
    small = survey_shift_guard(_exposure(n_stars=6, wrong=6), measured_fwhm=3.0, prior_fwhm=3.0,
                               fwhm_range=(1.5, 6.0))
    assert small.passed and "not tested" in small.checks["bright_stars"]["note"]


@pytest.mark.parametrize("n", [0])
def test_an_empty_exposure_passes(n: int) -> None:
    v = survey_shift_guard(_exposure()[:n], measured_fwhm=3.0, prior_fwhm=3.0, fwhm_range=(1.5, 6.0))
    assert v.passed and len(apply_guard(_exposure()[:n], v)) == 0

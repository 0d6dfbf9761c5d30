"""The PSF measured from an exposure's stars, against the truth, and SPREAD_MODEL against it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from contracts.errors import PSFError
from moe_imaging.psf import psf_from_image
from moe_imaging.psf_measure import measure_psf, moffat_pixels, spread_model
from moe_imaging.simulate import SurveySimConfig, simulate_survey

IRAC = Path(__file__).resolve().parents[1] / "data" / "psf" / "irac_ch1_flight.fits"


def _sim(**kw):
    sim = simulate_survey(SurveySimConfig(size=768, seed=kw.pop("seed", 5), **kw))
    cfg = sim.truth.meta["config"]
    var = sim.sky / cfg["gain"] + (cfg["rdnoise"] / cfg["gain"]) ** 2
    return sim, sim.image - sim.sky, np.broadcast_to(var, sim.image.shape), sim.image >= cfg["saturate"]


@pytest.mark.parametrize("beta, fwhm", [(2.5, 3.0), (3.5, 3.6), (6.0, 2.2)])
def test_a_free_beta_moffat_is_recovered_from_the_stars(beta: float, fwhm: float) -> None:
    """FWHM within 3 % and the wings (beta) within 10 %, whatever the header prior says (here: 4 px)."""
    _, img, var, sat = _sim(psf_model="moffat", moffat_beta=beta, fwhm_px=fwhm)
    m = measure_psf(img, np.sqrt(var), mask=sat, fwhm_guess=4.0, prior_fwhm=4.0)
    assert m.fwhm == pytest.approx(fwhm, rel=0.03)
    assert m.beta == pytest.approx(beta, rel=0.10)
    assert m.n_stars >= 20 and m.residual_rms < 1.5
    assert m.psf.model == "moffat" and m.psf.source == f"stars:moffat:{m.n_stars}"
    assert m.describe()["measured_over_prior"] == pytest.approx(fwhm / 4.0, rel=0.03)
    assert m.fwhm_range[0] <= m.fwhm <= m.fwhm_range[1] and m.fwhm_range[1] - m.fwhm_range[0] < 0.05 * fwhm


def test_a_kolmogorov_psf_is_measured_within_three_percent() -> None:
    _, img, var, sat = _sim(psf_model="kolmogorov", fwhm_px=3.6)
    m = measure_psf(img, np.sqrt(var), mask=sat, fwhm_guess=3.0)
    assert m.fwhm == pytest.approx(3.6, rel=0.03)
    assert 4.0 < m.beta < 7.0  # a Kolmogorov core with Moffat-like wings of beta ~ 5


def test_a_psf_varying_over_the_field_is_seen() -> None:
    """Stars whose FWHM grows from 2.5 px to 3.5 px across the field: the plane finds the gradient."""
    rng = np.random.default_rng(1)
    size = 1000
    img = rng.normal(0.0, 1.0, (size, size))
    yy, xx = np.mgrid[-8:9, -8:9]
    for _ in range(120):
        y, x = rng.uniform(20, size - 20, 2)
        fwhm = 2.5 + x / size
        iy, ix = int(round(y)), int(round(x))
        img[iy - 8 : iy + 9, ix - 8 : ix + 9] += 10 ** rng.uniform(3.3, 4.3) * moffat_pixels(
            xx - (x - ix), yy - (y - iy), fwhm, 3.0)
    m = measure_psf(img, 1.0, fwhm_guess=3.0)
    a, b, c = m.fwhm_plane
    assert a == pytest.approx(3.0, abs=0.05) and b == pytest.approx(1.0, abs=0.1) and abs(c) < 0.1
    assert m.fwhm_range[0] == pytest.approx(2.5, abs=0.1) and m.fwhm_range[1] == pytest.approx(3.5, abs=0.1)


def test_too_few_stars_or_a_shape_no_moffat_describes_is_not_measured() -> None:
    rng = np.random.default_rng(2)
    with pytest.raises(PSFError, match="usable stars"):
        measure_psf(rng.normal(0, 1, (200, 200)), 1.0)
    # the real Spitzer/IRAC PSF (undersampled, diffraction-limited): a Moffat is not the model for it
    over = fits.getdata(IRAC).astype(np.float64)
    over /= over.sum()
    img = rng.normal(0.0, 5.0, (512, 512))
    c = np.array(over.shape) // 2
    for _ in range(60):
        (y, x), (sy, sx) = rng.integers(40, 472, 2), rng.integers(0, 4, 2)
        sub = np.roll(np.roll(over, sy, 0), sx, 1)[c[0] - 40 : c[0] + 40, c[1] - 40 : c[1] + 40]
        img[y - 10 : y + 10, x - 10 : x + 10] += 10 ** rng.uniform(4, 5) * sub.reshape(20, 4, 20, 4).sum(axis=(1, 3))
    with pytest.raises(PSFError, match="a Moffat does not describe"):
        measure_psf(img, 5.0, fwhm_guess=psf_from_image(over, oversampling=4).fwhm)


def test_spread_model_is_zero_for_stars_and_positive_for_galaxies() -> None:
    """Against the measured PSF stars sit at zero; against the header's beta 4.765 prior a winged PSF's
    stars look resolved (the shift that made the gate call stars galaxies)."""
    sim, img, var, sat = _sim(psf_model="moffat", moffat_beta=2.5, fwhm_px=3.0, seed=7)
    m = measure_psf(img, np.sqrt(var), mask=sat, fwhm_guess=3.0)
    t = sim.truth
    bright = np.asarray(t["mf_snr"], float) > 20
    kind = np.asarray(t["kind"]).astype(str)
    x, y = np.asarray(t["x"], float), np.asarray(t["y"], float)
    s, e = spread_model(img, var, x, y, fwhm=m.fwhm, beta=m.beta, mask=sat)
    z = s / e
    star, galaxy = bright & (kind == "star") & np.isfinite(z), bright & (kind == "galaxy") & np.isfinite(z)
    assert abs(np.median(z[star])) < 1.0
    assert np.median(z[galaxy]) > 5.0
    s_prior, e_prior = spread_model(img, var, x, y, fwhm=m.fwhm, beta=4.765, mask=sat)
    assert np.median((s_prior / e_prior)[star]) > 3.0
    # a single hot pixel is sharper than any PSF
    hot = np.zeros((41, 41))
    hot[20, 20] = 500.0
    s1, e1 = spread_model(hot + np.random.default_rng(0).normal(0, 1, hot.shape), 1.0, np.array([20.0]),
                          np.array([20.0]), fwhm=3.0, beta=3.0)
    assert s1[0] / e1[0] < -5
    off, _ = spread_model(img, var, np.array([-10.0, 1e6]), np.array([5.0, 5.0]), fwhm=3.0, beta=3.0)
    assert np.isnan(off).all()

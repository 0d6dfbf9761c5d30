"""Tests of moe_imaging.detection: matched filter, thresholds, peaks, sub-pixel refinement."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from moe_imaging.detection import (
    expected_false_peaks,
    find_peaks,
    matched_filter,
    refine_peaks,
    threshold_for_false_rate,
)
from moe_imaging.psf import gaussian_psf, moffat_psf

PSF3 = moffat_psf(3.0)
K3 = PSF3.kernel()


def _place(shape, y: int, x: int, flux: float, psf=PSF3) -> np.ndarray:
    """A noiseless image with one star centred on pixel (y, x) (clipped at the edges)."""
    img = np.zeros(shape)
    c = psf.half_size
    ny, nx = shape
    y0, y1 = max(0, y - c), min(ny, y + c + 1)
    x0, x1 = max(0, x - c), min(nx, x + c + 1)
    img[y0:y1, x0:x1] = flux * psf.image[y0 - (y - c) : y1 - (y - c), x0 - (x - c) : x1 - (x - c)]
    return img


# --------------------------------------------------------------------------- matched filter


@pytest.mark.parametrize("pos", [(50, 50), (3, 60), (0, 0), (97, 12)], ids=["centre", "near-edge", "corner", "other"])
def test_matched_filter_flux_of_a_noiseless_star(pos) -> None:
    """The ML flux at the star's pixel is the true flux (also when the PSF runs
    off the image: the missing pixels are missing from data and model alike)."""
    flux_true = 1234.5
    img = _place((101, 101), *pos, flux_true)
    sigma = 2.0
    snr, flux, ferr = matched_filter(img, np.full(img.shape, 1 / sigma**2), K3)
    y, x = pos
    assert flux[y, x] == pytest.approx(flux_true, rel=1e-6)
    assert np.unravel_index(np.argmax(snr), snr.shape) == pos
    if pos == (50, 50):
        # away from edges: sigma_F = sigma / sqrt(sum P^2), nu = F sqrt(sum P^2) / sigma
        s2 = float(np.sum(K3**2))
        assert ferr[y, x] == pytest.approx(sigma / math.sqrt(s2), rel=1e-5)
        assert snr[y, x] == pytest.approx(flux_true * math.sqrt(s2) / sigma, rel=1e-5)
        # the flux map elsewhere is a smoothed (lower) version
        assert np.nanmax(flux) == pytest.approx(flux_true, rel=1e-6)


def test_matched_filter_is_linear_in_the_image() -> None:
    rng = np.random.default_rng(1)
    a = rng.normal(size=(64, 64))
    b = _place((64, 64), 30, 30, 500.0)
    w = np.ones((64, 64))
    sa, fa, _ = matched_filter(a, w, K3)
    sb, fb, _ = matched_filter(b, w, K3)
    sab, fab, _ = matched_filter(a + 2 * b, w, K3)
    np.testing.assert_allclose(sab, sa + 2 * sb, atol=1e-3, rtol=0)


@pytest.mark.parametrize("seed", [0, 1])
def test_matched_filter_snr_of_pure_noise_is_unit_normal(seed: int) -> None:
    rng = np.random.default_rng(seed)
    sigma = 3.0
    noise = rng.normal(0.0, sigma, (512, 512))
    snr, flux, ferr = matched_filter(noise, np.full(noise.shape, sigma**-2), K3)
    assert abs(float(snr.mean())) < 0.03
    assert float(snr.std()) == pytest.approx(1.0, rel=0.03)
    assert np.all(np.isfinite(snr))


def test_matched_filter_snr_with_variable_noise_and_masks_is_unit_normal() -> None:
    """Per-pixel weights and 20 % random masked pixels: nu stays unit variance."""
    rng = np.random.default_rng(2)
    sigma = np.where(np.arange(512)[None, :] < 256, 1.0, 4.0) * np.ones((512, 1))
    img = rng.normal(size=(512, 512)) * sigma
    good = rng.random((512, 512)) > 0.2
    img[~good] = 1e9  # must be ignored
    snr, _, _ = matched_filter(img, sigma**-2, K3, good=good)
    inner = snr[20:-20, 20:-20]
    assert float(inner[:, :200].std()) == pytest.approx(1.0, rel=0.04)
    assert float(inner[:, 272:].std()) == pytest.approx(1.0, rel=0.04)
    assert abs(float(inner.mean())) < 0.03


def test_masked_pixels_do_not_change_snr_far_from_them() -> None:
    rng = np.random.default_rng(3)
    img = rng.normal(size=(200, 200)) + _place((200, 200), 150, 150, 300.0)
    w = np.ones(img.shape)
    good = np.ones(img.shape, bool)
    good[40:70, 50:90] = False
    polluted = img.copy()
    polluted[40:70, 50:90] = 1e6
    ref, _, _ = matched_filter(img, w, K3)
    snr, flux, ferr = matched_filter(polluted, w, K3, good=good)
    r = K3.shape[0] // 2
    far = np.ones(img.shape, bool)
    far[40 - r - 1 : 70 + r + 1, 50 - r - 1 : 90 + r + 1] = False
    np.testing.assert_allclose(snr[far], ref[far], atol=2e-4, rtol=0)
    # inside the masked block, where too little of the PSF is on good pixels: undefined
    assert np.all(snr[45:65, 55:85] == 0.0)
    assert np.all(np.isnan(flux[45:65, 55:85])) and np.all(np.isnan(ferr[45:65, 55:85]))
    # and the huge masked values leak nowhere
    assert float(np.abs(snr).max()) < 100


def test_zero_weight_acts_like_a_mask() -> None:
    rng = np.random.default_rng(4)
    img = rng.normal(size=(128, 128))
    w = np.ones(img.shape)
    good = rng.random(img.shape) > 0.1
    a, _, _ = matched_filter(img, np.where(good, w, 0.0), K3)
    b, _, _ = matched_filter(img, w, K3, good=good)
    np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)


def test_smooth_weight_shortcut_agrees_for_a_constant_weight_with_masks() -> None:
    rng = np.random.default_rng(5)
    img = rng.normal(0, 2.0, (256, 256))
    w = np.full(img.shape, 0.25)
    good = rng.random(img.shape) > 0.15
    good[100:140, 100:140] = False
    exact, f1, e1 = matched_filter(img, w, K3, good=good, smooth_weight=False)
    fast, f2, e2 = matched_filter(img, w, K3, good=good, smooth_weight=True)
    np.testing.assert_allclose(fast, exact, atol=1e-4, rtol=0)
    ok = np.isfinite(e1)
    np.testing.assert_array_equal(ok, np.isfinite(e2))
    np.testing.assert_allclose(e2[ok], e1[ok], rtol=1e-4)


def test_min_coverage_sets_where_nu_is_defined() -> None:
    """nu is defined where the good pixels carry >= min_coverage of sum P^2."""
    img = np.ones((64, 64))
    w = np.ones(img.shape)
    k2 = K3**2
    r = K3.shape[0] // 2
    corner = float(k2[r:, r:].sum() / k2.sum())  # pixel (0, 0) sees this quarter of the PSF
    edge = float(k2[r:, :].sum() / k2.sum())  # pixel (0, 32) sees this half
    assert corner < edge < 1.0
    for pixel, cov in [((0, 0), corner), ((0, 32), edge)]:
        snr, flux, _ = matched_filter(img, w, K3, min_coverage=cov - 1e-3)
        assert snr[pixel] != 0.0 and np.isfinite(flux[pixel])
        snr, flux, _ = matched_filter(img, w, K3, min_coverage=cov + 1e-3)
        assert snr[pixel] == 0.0 and np.isnan(flux[pixel])
        assert snr[32, 32] != 0.0  # the interior is always defined


# --------------------------------------------------------------------------- thresholds


def test_threshold_is_monotone_in_the_false_rate() -> None:
    rates = [100.0, 10.0, 1.0, 0.1, 0.01, 1e-4]
    thresholds = [threshold_for_false_rate(K3, r) for r in rates]
    assert all(a < b for a, b in zip(thresholds, thresholds[1:]))


def test_threshold_for_one_false_detection_per_megapixel() -> None:
    """About 4.7-5.0 sigma for a FWHM = 3 px Moffat (and a Gaussian)."""
    assert 4.7 <= threshold_for_false_rate(K3, 1.0) <= 5.0
    assert 4.7 <= threshold_for_false_rate(gaussian_psf(3.0).kernel(), 1.0) <= 5.0
    # a broader PSF has fewer independent resolution elements: a lower threshold
    assert threshold_for_false_rate(moffat_psf(6.0).kernel(), 1.0) < threshold_for_false_rate(K3, 1.0)


@pytest.mark.parametrize("rate", [0.01, 0.5, 1.0, 30.0])
def test_threshold_inverts_expected_false_peaks(rate: float) -> None:
    nu = threshold_for_false_rate(K3, rate)
    assert expected_false_peaks(nu, K3, area_pix=1e6) == pytest.approx(rate, rel=1e-4)
    assert expected_false_peaks(nu, K3, area_pix=4e6) == pytest.approx(4 * rate, rel=1e-4)


def test_threshold_rejects_non_positive_rates() -> None:
    with pytest.raises(ValueError):
        threshold_for_false_rate(K3, 0.0)
    with pytest.raises(ValueError):
        threshold_for_false_rate(K3, -1.0)


def test_gaussian_kernel_gradient_variance_matches_theory() -> None:
    """For a Gaussian kernel of width s, E[N] uses sqrt(det Lambda) = 1 / (2 s_eff^2)
    with s_eff^2 = s^2 + 1/12 (pixel integration)."""
    psf = gaussian_psf(5.0)
    s2 = psf.sigma**2 + 1.0 / 12.0
    nu = 4.0
    expected = 1e6 / (2 * s2) / (2 * math.pi) ** 1.5 * nu * math.exp(-nu * nu / 2)
    assert expected_false_peaks(nu, psf.image, area_pix=1e6) == pytest.approx(expected, rel=0.01)


def _count_noise_peaks(kernel: np.ndarray, threshold: float, n_fields: int, seed: int) -> int:
    rng = np.random.default_rng(seed)
    total = 0
    for _ in range(n_fields):
        noise = rng.normal(size=(1024, 1024))
        snr, _, _ = matched_filter(noise, np.ones(noise.shape), kernel)
        y, x = find_peaks(snr, threshold=threshold)
        total += len(y)
    return total


def test_expected_false_peaks_matches_pure_noise_fwhm3() -> None:
    """Euler-characteristic prediction vs peaks found on 16 Mpix of pure noise
    (FWHM 3 px Moffat, threshold 4.0): within a factor 1.5.

    At FWHM 3 px the matched-filter field is only just sampled and 8-connected
    lattice maxima are ~25-30 % fewer than the continuous-field prediction
    (the ratio tends to 1 for FWHM >= 6 px, below); the 16 fields (rather than
    4) keep the Poisson scatter (~6 %) small next to that margin.
    """
    n_fields = 16
    found = _count_noise_peaks(K3, 4.0, n_fields, seed=2024)
    expected = expected_false_peaks(4.0, K3, area_pix=n_fields * 1024**2)
    assert expected / 1.5 < found < expected * 1.5


def test_expected_false_peaks_matches_pure_noise_well_sampled() -> None:
    """For a well-sampled PSF (FWHM 6 px) the formula is accurate to ~10 %."""
    kernel = moffat_psf(6.0).kernel()
    found = _count_noise_peaks(kernel, 3.0, 4, seed=7)
    expected = expected_false_peaks(3.0, kernel, area_pix=4 * 1024**2)
    assert expected > 400
    assert found == pytest.approx(expected, rel=0.15)


# --------------------------------------------------------------------------- find_peaks


def test_find_peaks_breaks_a_2x2_plateau_at_its_first_pixel() -> None:
    snr = np.zeros((9, 9))
    snr[3:5, 5:7] = 7.0
    y, x = find_peaks(snr, threshold=5.0)
    assert list(zip(y.tolist(), x.tolist())) == [(3, 5)]


@pytest.mark.parametrize(
    "cells,first",
    [
        ([(2, 2), (2, 3), (2, 4)], (2, 2)),  # horizontal run
        ([(2, 4), (3, 4), (4, 4)], (2, 4)),  # vertical run
        ([(2, 4), (3, 3)], (2, 4)),  # anti-diagonal pair: (2, 4) precedes in row-major order
        ([(r, c) for r in range(2, 5) for c in range(2, 5)], (2, 2)),  # 3x3 plateau
    ],
)
def test_find_peaks_plateaus_give_exactly_one_peak(cells, first) -> None:
    snr = np.zeros((8, 8))
    for c in cells:
        snr[c] = 6.0
    y, x = find_peaks(snr, threshold=5.0)
    assert list(zip(y.tolist(), x.tolist())) == [first]


def test_find_peaks_threshold_is_inclusive_and_borders_count() -> None:
    snr = np.zeros((6, 6))
    snr[0, 0] = 5.0  # corner, exactly at the threshold
    snr[5, 3] = 4.999
    snr[3, 5] = 6.0  # right edge
    y, x = find_peaks(snr, threshold=5.0)
    assert list(zip(y.tolist(), x.tolist())) == [(0, 0), (3, 5)]


def test_find_peaks_returns_row_major_order_and_respects_region() -> None:
    rng = np.random.default_rng(8)
    snr = rng.normal(size=(64, 64)) * 3
    y, x = find_peaks(snr, threshold=3.0)
    assert len(y) > 5
    key = y * 64 + x
    assert np.all(np.diff(key) > 0)
    # each reported peak really is >= all 8 neighbours
    padded = np.pad(snr, 1, constant_values=-np.inf)
    for yy, xx in zip(y, x):
        assert snr[yy, xx] >= padded[yy : yy + 3, xx : xx + 3].max()
    ry, rx = find_peaks(snr, threshold=3.0, region=(10, 40, 5, 30))
    sel = (y >= 10) & (y < 40) & (x >= 5) & (x < 30)
    np.testing.assert_array_equal(ry, y[sel])
    np.testing.assert_array_equal(rx, x[sel])


@settings(max_examples=40, deadline=None, derandomize=True, database=None)
@given(
    seed=st.integers(0, 2**16),
    ty=st.integers(5, 30),
    tx=st.integers(5, 30),
    levels=st.integers(2, 6),
)
def test_find_peaks_does_not_depend_on_the_tiling(seed, ty, tx, levels) -> None:
    """Tiles with a one-pixel halo and region=core find exactly the whole-image
    peaks, even on a quantised map full of plateaus crossing tile borders."""
    rng = np.random.default_rng(seed)
    snr = rng.integers(0, levels, (47, 53)).astype(np.float64)
    wy, wx = find_peaks(snr, threshold=1.0)
    found = set()
    for y0 in range(0, 47, ty):
        for x0 in range(0, 53, tx):
            y1, x1 = min(47, y0 + ty), min(53, x0 + tx)
            hy0, hx0 = max(0, y0 - 1), max(0, x0 - 1)
            hy1, hx1 = min(47, y1 + 1), min(53, x1 + 1)
            sub = snr[hy0:hy1, hx0:hx1]
            # outside the image the halo is absent; inside it is real data
            py, px = find_peaks(sub, threshold=1.0, region=(y0 - hy0, y1 - hy0, x0 - hx0, x1 - hx0))
            found |= {(int(a) + hy0, int(b) + hx0) for a, b in zip(py, px)}
    assert found == set(zip(wy.tolist(), wx.tolist()))


# --------------------------------------------------------------------------- refine_peaks


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(dy=st.floats(-0.49, 0.49), dx=st.floats(-0.49, 0.49), width=st.floats(0.8, 4.0))
def test_refine_peaks_recovers_a_gaussian_peak(dy: float, dx: float, width: float) -> None:
    yy, xx = np.mgrid[0:21, 0:21]
    amp = 37.0
    snr = amp * np.exp(-((yy - 10 - dy) ** 2 + (xx - 10 - dx) ** 2) / (2 * width**2))
    ry, rx, h = refine_peaks(snr, np.array([10]), np.array([10]))
    assert abs(ry[0] - dy) < 0.02 and abs(rx[0] - dx) < 0.02
    assert h[0] == pytest.approx(amp, rel=1e-3)


def test_refine_peaks_on_a_matched_filter_map() -> None:
    """Sub-pixel star positions from the noiseless matched-filter map, < 0.02 px."""
    from astropy.convolution import discretize_model
    from astropy.modeling.models import Moffat2D

    beta = PSF3.beta
    alpha = 3.0 / (2 * math.sqrt(2 ** (1 / beta) - 1))
    for dy, dx in [(0.0, 0.0), (0.3, -0.2), (-0.45, 0.45), (0.12, 0.37)]:
        model = Moffat2D(1000.0, 32 + dx, 32 + dy, alpha, beta)
        img = discretize_model(model, (0, 65), (0, 65), mode="oversample", factor=10)
        snr, _, _ = matched_filter(img, np.ones(img.shape), K3)
        y, x = find_peaks(snr, threshold=10.0)
        assert list(zip(y.tolist(), x.tolist())) == [(32 + round(dy), 32 + round(dx))]
        ry, rx, h = refine_peaks(snr, y, x)
        assert abs(y[0] + ry[0] - 32 - dy) < 0.02
        assert abs(x[0] + rx[0] - 32 - dx) < 0.02
        assert h[0] >= snr[y[0], x[0]]


def test_refine_peaks_handles_flat_and_nonpositive_neighbours() -> None:
    snr = np.zeros((5, 5))
    snr[2, 2] = 4.0  # neighbours zero: linear parabola fallback
    snr[2, 3] = 2.0
    dy, dx, h = refine_peaks(snr, np.array([2]), np.array([2]))
    assert dy[0] == 0.0
    assert 0.0 < dx[0] <= 0.5
    assert h[0] >= 4.0
    flat = np.full((5, 5), 3.0)
    dy, dx, h = refine_peaks(flat, np.array([2]), np.array([2]))
    assert dy[0] == 0.0 and dx[0] == 0.0 and h[0] == 3.0


def test_refine_peaks_at_the_border_is_not_pushed_outwards() -> None:
    xx = np.arange(12, dtype=float)
    yy = np.arange(9, dtype=float)[:, None]
    snr = 20.0 * np.exp(-((yy - 4) ** 2 + (xx - 0.3) ** 2) / (2 * 1.5**2))
    y, x = find_peaks(snr, threshold=5.0)
    assert list(zip(y.tolist(), x.tolist())) == [(4, 0)]
    _, dx, _ = refine_peaks(snr, y, x)
    assert abs(x[0] + dx[0] - 0.3) <= 0.3  # no worse than not refining at all

"""Tests of moe_imaging.psf: PSF models, measurement and estimation.

Reference values are computed independently of the code under test:

* the FWHM of a *pixel-integrated* profile is computed on a very fine grid
  (analytic erf integral for the Gaussian, a box-filtered fine Moffat), since
  pixel integration broadens a PSF by ~6 % at FWHM = 2 px;
* encircled energies of the oversampled IRAC PSFs are integrated directly on
  the oversampled image (summed-area table, exact for piecewise-constant
  pixels), without any resampling.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from astropy.convolution import discretize_model
from astropy.io import fits
from astropy.modeling.models import Gaussian2D
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage, special

from contracts.errors import PSFError
from moe_imaging.psf import (
    KOLMOGOROV_MOFFAT_BETA,
    PSF,
    estimate_psf,
    gaussian_psf,
    measure_fwhm,
    moffat_psf,
    psf_from_image,
)
from moe_imaging.simulate import SurveySimConfig, simulate_survey

DATA = Path(__file__).resolve().parents[1] / "data" / "psf"
IRAC = [DATA / f"irac_ch{c}_flight.fits" for c in (1, 2, 3, 4)]
FWHM_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))

MEASURE_FWHM_BUG = (
    "measure_fwhm upsamples with ndimage.zoom(grid_mode=False), whose sample spacing is "
    "(N-1)/(N*zoom-1) input pixels, not 1/zoom: the area above half maximum is "
    "overestimated by ((N*zoom-1)/((N-1)*zoom))**2 (FWHM +6 % for a 13x13 image at zoom 4)"
)
PSF_FROM_IMAGE_BUG = (
    "psf_from_image shifts the centroid to the centre of a size_in frame but then "
    "centre-crops the (larger) input to size_in, moving the PSF by "
    "-((n - size_in) // 2) / oversampling detector pixels (-0.5 px for the 81x81 IRAC images)"
)


# --------------------------------------------------------------------------- helpers


def _equivalent_diameter(values: np.ndarray, step: float) -> float:
    """Diameter of the circle with the area where ``values`` >= half its maximum."""
    area = np.count_nonzero(values >= 0.5 * values.max()) * step * step
    return 2.0 * math.sqrt(area / math.pi)


def _pixel_integrated_fwhm_gaussian(fwhm: float) -> float:
    """FWHM (area-equivalent) of a Gaussian integrated over unit square pixels."""
    s = fwhm * FWHM_TO_SIGMA
    step = 1.0 / 400.0
    x = np.arange(-1.5 * fwhm - 1, 1.5 * fwhm + 1 + step / 2, step)
    box = special.ndtr((x + 0.5) / s) - special.ndtr((x - 0.5) / s)
    return _equivalent_diameter(box[:, None] * box[None, :], step)


def _pixel_integrated_fwhm_moffat(fwhm: float, beta: float = KOLMOGOROV_MOFFAT_BETA) -> float:
    """FWHM (area-equivalent) of a Moffat integrated over unit square pixels."""
    alpha = fwhm / (2.0 * math.sqrt(2.0 ** (1.0 / beta) - 1.0))
    sub = 40  # samples per pixel
    step = 1.0 / sub
    half = 1.5 * fwhm + 2
    x = np.arange(-half, half + step / 2, step)
    r2 = x[:, None] ** 2 + x[None, :] ** 2
    prof = (1.0 + r2 / alpha**2) ** (-beta)
    integrated = ndimage.uniform_filter(prof, size=sub + 1, mode="constant")
    return _equivalent_diameter(integrated, step)


def _box_integral(img: np.ndarray, yc: float, xc: float, half: float) -> float:
    """Integral of a piecewise-constant image over the square ``centre +- half``.

    Coordinates are pixel-centre coordinates (pixel ``i`` spans ``[i-0.5, i+0.5]``).
    Bilinear interpolation of the summed-area table is exact for such images.
    """
    sat = np.zeros((img.shape[0] + 1, img.shape[1] + 1))
    sat[1:, 1:] = img.cumsum(0).cumsum(1)

    def cum(y: float, x: float) -> float:
        return float(ndimage.map_coordinates(sat, [[y + 0.5], [x + 0.5]], order=1, mode="nearest")[0])

    y0, y1, x0, x1 = yc - half, yc + half, xc - half, xc + half
    return cum(y1, x1) - cum(y0, x1) - cum(y1, x0) + cum(y0, x0)


def _core_centroid(img: np.ndarray, radius: int) -> tuple[float, float]:
    """Flux centroid within ``radius`` of the brightest pixel (independent helper)."""
    py, px = np.unravel_index(np.argmax(img), img.shape)
    yy, xx = np.indices(img.shape)
    sel = (yy - py) ** 2 + (xx - px) ** 2 <= radius**2
    w = img * sel
    return float((w * yy).sum() / w.sum()), float((w * xx).sum() / w.sum())


def _radial_profile_fwhm(img: np.ndarray) -> float:
    """FWHM from where the azimuthally averaged profile crosses half the peak.

    An estimate independent of :func:`measure_fwhm` (no area counting, no zoom).
    """
    img = np.clip(img, 0.0, None)
    yc, xc = _core_centroid(img, 12)
    peak = float(ndimage.map_coordinates(img, [[yc], [xc]], order=3)[0])
    yy, xx = np.indices(img.shape)
    r = np.hypot(yy - yc, xx - xc)
    edges = np.arange(0.0, 20.0, 0.25)
    centres, prof = [], []
    for a in edges:
        sel = (r >= a) & (r < a + 0.5)
        if sel.any():
            centres.append(a + 0.25)
            prof.append(img[sel].mean())
    prof = np.asarray(prof)
    i = int(np.argmax(prof < 0.5 * peak))
    r_half = np.interp(0.5 * peak, [prof[i], prof[i - 1]], [centres[i], centres[i - 1]])
    return 2.0 * float(r_half)


def _oversampled_gaussian(fwhm_det: float, n: int, *, oversampling: int = 4, offset=(0.0, 0.0)) -> np.ndarray:
    """A Gaussian integrated over the pixels of an ``n x n`` oversampled grid."""
    s = fwhm_det * oversampling * FWHM_TO_SIGMA
    c = (n - 1) / 2
    model = Gaussian2D(7.5, c + offset[1], c + offset[0], s, s)
    return discretize_model(model, (0, n), (0, n), mode="oversample", factor=5)


@pytest.fixture(scope="module")
def irac_images() -> list[np.ndarray]:
    return [fits.getdata(p).astype(np.float64) for p in IRAC]


@pytest.fixture(scope="module")
def star_field():
    """Background-subtracted simulated field (FWHM 3.5 px) and its noise map."""
    cfg = SurveySimConfig(size=1024, seed=5, fwhm_px=3.5)
    sim = simulate_survey(cfg)
    image = sim.image.astype(np.float64) - sim.sky
    noise = np.sqrt(sim.sky / cfg.gain + (cfg.rdnoise / cfg.gain) ** 2)
    return cfg, sim, image, noise


# --------------------------------------------------------------------------- PSF objects


@pytest.mark.parametrize("make", [moffat_psf, gaussian_psf], ids=["moffat", "gaussian"])
@pytest.mark.parametrize("fwhm", [1.2, 2.0, 3.3, 5.0, 8.0])
def test_model_psf_is_normalised_odd_square_and_read_only(make, fwhm: float) -> None:
    psf = make(fwhm)
    img = psf.image
    assert img.dtype == np.float64
    assert img.ndim == 2 and img.shape[0] == img.shape[1] and img.shape[0] % 2 == 1
    assert img.sum() == pytest.approx(1.0, abs=1e-12)
    assert img.min() >= 0.0
    c = psf.half_size
    assert img.shape[0] == 2 * c + 1
    assert np.unravel_index(np.argmax(img), img.shape) == (c, c)
    assert psf.fwhm == fwhm
    assert psf.sigma == pytest.approx(fwhm / 2.3548200450309493, rel=1e-12)
    assert not img.flags.writeable
    with pytest.raises(ValueError):
        img[c, c] = 0.0
    desc = psf.describe()
    assert desc["size"] == img.shape[0] and desc["model"] in ("moffat", "gaussian")


def test_psf_copies_and_normalises_the_callers_array() -> None:
    raw = np.zeros((5, 5))
    raw[2, 2] = 6.0
    raw[1, 2] = 2.0
    raw[0, 0] = -1.0  # negative values are clipped
    before = raw.copy()
    psf = PSF(image=raw, fwhm=1.0, source="test", model="empirical")
    assert raw.flags.writeable and np.array_equal(raw, before)
    assert psf.image[2, 2] == pytest.approx(0.75)
    assert psf.image[1, 2] == pytest.approx(0.25)
    assert psf.image[0, 0] == 0.0


@settings(max_examples=30, deadline=None, derandomize=True, database=None)
@given(fwhm=st.floats(1.0, 9.0), beta=st.floats(1.5, 8.0))
def test_moffat_psf_is_symmetric_and_centred(fwhm: float, beta: float) -> None:
    img = moffat_psf(fwhm, beta=beta).image
    tol = 1e-12 * img.max()
    assert np.allclose(img, img.T, atol=tol, rtol=0)
    assert np.allclose(img, img[::-1, :], atol=tol, rtol=0)
    assert np.allclose(img, img[:, ::-1], atol=tol, rtol=0)
    cy, cx = ndimage.center_of_mass(img)
    c = img.shape[0] // 2
    assert abs(cy - c) < 1e-9 and abs(cx - c) < 1e-9


def test_moffat_holds_99_9_percent_of_the_flux_in_its_image() -> None:
    """The default half-size is chosen to hold 99.9 % of the Moffat's flux."""
    for fwhm, beta in [(3.0, KOLMOGOROV_MOFFAT_BETA), (3.0, 3.0), (4.0, 2.5)]:
        psf = moffat_psf(fwhm, beta=beta)
        alpha = fwhm / (2.0 * math.sqrt(2.0 ** (1.0 / beta) - 1.0))
        # analytic fraction of the flux inside the inscribed circle of the image
        r = psf.half_size + 0.5
        inside_circle = 1.0 - (1.0 + r * r / alpha**2) ** (1.0 - beta)
        assert inside_circle >= 0.999 - 1e-9


@pytest.mark.parametrize(
    "call",
    [
        lambda: moffat_psf(0.0),
        lambda: moffat_psf(-2.0),
        lambda: moffat_psf(float("nan")),
        lambda: moffat_psf(3.0, beta=1.0),
        lambda: gaussian_psf(-1.0),
        lambda: gaussian_psf(0.0),
        lambda: PSF(image=np.ones((4, 4)), fwhm=2.0, source="t", model="empirical"),
        lambda: PSF(image=np.ones((3, 5)), fwhm=2.0, source="t", model="empirical"),
        lambda: PSF(image=np.ones(5), fwhm=2.0, source="t", model="empirical"),
        lambda: PSF(image=np.ones((5, 5)), fwhm=-1.0, source="t", model="empirical"),
        lambda: PSF(image=np.ones((5, 5)), fwhm=float("inf"), source="t", model="empirical"),
        lambda: PSF(image=np.zeros((5, 5)), fwhm=2.0, source="t", model="empirical"),
        lambda: PSF(image=np.full((5, 5), np.nan), fwhm=2.0, source="t", model="empirical"),
        lambda: psf_from_image(np.ones(9)),
        lambda: psf_from_image(np.zeros((9, 9))),
        lambda: psf_from_image(-np.ones((9, 9))),
        lambda: psf_from_image(np.ones((9, 9)), oversampling=0.0),
        lambda: measure_fwhm(np.zeros((7, 7))),
    ],
    ids=[
        "moffat-zero-fwhm", "moffat-negative-fwhm", "moffat-nan-fwhm", "moffat-beta-1",
        "gaussian-negative-fwhm", "gaussian-zero-fwhm", "even-size", "not-square", "1d",
        "negative-fwhm", "infinite-fwhm", "zero-flux", "nan-image", "from-image-1d",
        "from-image-zero", "from-image-negative", "from-image-oversampling-0", "measure-zero",
    ],
)
def test_bad_inputs_raise_psf_error(call) -> None:
    with pytest.raises(PSFError):
        call()


# --------------------------------------------------------------------------- kernel


@pytest.mark.parametrize("make", [moffat_psf, gaussian_psf], ids=["moffat", "gaussian"])
@pytest.mark.parametrize("fwhm", [1.5, 2.0, 3.0, 4.5, 6.0, 8.0])
def test_kernel_radius_holds_99_percent_and_is_minimal(make, fwhm: float) -> None:
    psf = make(fwhm)
    c = psf.half_size
    r = psf.kernel_radius()

    def energy(rr: int) -> float:
        return float(psf.image[c - rr : c + rr + 1, c - rr : c + rr + 1].sum())

    assert math.ceil(1.5 * fwhm) <= r <= c
    assert energy(r) >= 0.99
    # minimal: one pixel less either loses the 99 % or breaks the 1.5 FWHM floor
    assert energy(r - 1) < 0.99 or r - 1 < math.ceil(1.5 * fwhm)
    # a stricter energy needs at least as large a radius
    assert psf.kernel_radius(0.999) >= r


@pytest.mark.parametrize("fwhm", [2.0, 3.0, 5.0])
def test_kernel_is_the_central_cut_and_not_renormalised(fwhm: float) -> None:
    psf = moffat_psf(fwhm)
    k = psf.kernel()
    r = psf.kernel_radius()
    c = psf.half_size
    assert k.shape == (2 * r + 1, 2 * r + 1)
    np.testing.assert_array_equal(k, psf.image[c - r : c + r + 1, c - r : c + r + 1])
    # the truncated wings are missing: the kernel sums to < 1 (but >= 99 %)
    assert 0.99 <= k.sum() < 1.0 - 1e-6
    # the kernel is a copy the caller may modify
    k[r, r] = 0.0
    assert psf.image[c, c] > 0


# --------------------------------------------------------------------------- measure_fwhm


_FWHMS = [2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]
# Cases where the zoom-grid bias (MEASURE_FWHM_BUG) pushes the result past 3 %.
# (gaussian, 2): even with the zoom grid fixed, counting fine pixels at ~10
# samples per FWHM leaves a -4 % quantisation error there.
_FWHM_FAILS = {("gaussian", 2.0), ("gaussian", 5.0), ("moffat", 2.0), ("moffat", 5.0)}


def _fwhm_case(model: str, fwhm: float):
    marks = []
    return pytest.param(model, fwhm, marks=marks, id=f"{model}-{fwhm:g}")


@pytest.mark.parametrize("model,fwhm", [_fwhm_case(m, f) for m in ("gaussian", "moffat") for f in _FWHMS])
def test_measured_fwhm_matches_pixel_integrated_profile(model: str, fwhm: float) -> None:
    """measure_fwhm of a model PSF image within 3 % of the true FWHM of that image.

    The truth is the area-equivalent FWHM of the *pixel-integrated* profile
    (what the image samples); it exceeds the requested FWHM by 6-8 % at 2 px,
    3-4 % at 3 px and 0.4-0.5 % at 8 px, so "within 3 % of the requested FWHM"
    is physically impossible below ~5 px; the requested value is checked
    through the pixel broadening instead.
    """
    if model == "gaussian":
        psf, truth = gaussian_psf(fwhm), _pixel_integrated_fwhm_gaussian(fwhm)
    else:
        psf, truth = moffat_psf(fwhm), _pixel_integrated_fwhm_moffat(fwhm)
    assert fwhm <= truth <= 1.1 * fwhm  # pixel broadening is small and positive
    assert measure_fwhm(psf.image) == pytest.approx(truth, rel=0.03)


def test_measured_fwhm_does_not_depend_on_zero_padding() -> None:
    """Padding a PSF image with zeros does not change its FWHM."""
    img = gaussian_psf(2.0).image  # 11 x 11
    padded = np.pad(img, 40)
    assert measure_fwhm(img) == pytest.approx(measure_fwhm(padded), rel=0.01)


def test_measure_fwhm_scales_with_oversampling() -> None:
    img = gaussian_psf(6.0).image
    assert measure_fwhm(img, oversampling=4) == pytest.approx(measure_fwhm(img) / 4, rel=1e-12)
    # and does not depend on the flux scale
    assert measure_fwhm(1234.0 * img) == pytest.approx(measure_fwhm(img), rel=1e-12)


# --------------------------------------------------------------------------- psf_from_image


@pytest.mark.parametrize(
    "n,offset",
    [
        pytest.param(60, (0.0, 0.0), id="60-centred"),
        pytest.param(61, (0.0, 0.0), id="61-centred"),
        pytest.param(60, (1.3, -0.7), id="60-offcentre"),
        pytest.param(68, (0.4, 0.9), id="68-offcentre"),
        pytest.param(63, (0.0, 0.0), id="63-centred"),
        pytest.param(81, (0.0, 0.0), id="81-centred"),
    ],
)
def test_psf_from_oversampled_gaussian_matches_gaussian_psf(n: int, offset) -> None:
    """Block-integrating a 4x oversampled Gaussian gives the detector-grid Gaussian."""
    over = _oversampled_gaussian(3.0, n, offset=offset)
    psf = psf_from_image(over, oversampling=4, source="test")
    ref = gaussian_psf(3.0, half_size=psf.half_size)
    assert psf.model == "empirical" and psf.source == "test"
    assert psf.image.shape == ref.image.shape
    # the output covers the input: (2h+1) detector pixels = at most the input size / 4
    assert psf.image.shape[0] == 2 * int(math.floor((n / 4 - 1) / 2)) + 1
    err = float(np.abs(psf.image - ref.image).max())
    assert err < 5e-3 * ref.image.max()
    assert psf.fwhm == pytest.approx(3.0, rel=0.05)


def test_block_integration_sums_blocks_of_a_centred_input() -> None:
    """For a centred input whose side is a multiple of the factor, each output
    pixel is the sum (not the mean, nor an interpolation) of its 4x4 block."""
    over = _oversampled_gaussian(2.5, 4 * 11)
    psf = psf_from_image(over, oversampling=4)
    blocks = over.reshape(11, 4, 11, 4).sum(axis=(1, 3))
    np.testing.assert_allclose(psf.image, blocks / over.sum(), atol=1e-3 * psf.image.max(), rtol=0)


def test_oversampling_one_keeps_a_centred_image() -> None:
    img = moffat_psf(3.0).image
    psf = psf_from_image(np.array(img) * 55.0, oversampling=1.0)
    np.testing.assert_allclose(psf.image, img, atol=1e-6 * img.max(), rtol=0)
    assert psf.fwhm == pytest.approx(measure_fwhm(img), rel=1e-12)


def test_psf_from_image_ignores_nonfinite_and_negative_pixels() -> None:
    img = np.array(moffat_psf(3.0).image)
    dirty = img.copy()
    dirty[0, 0] = np.nan
    dirty[0, 1] = np.inf
    dirty[1, 0] = -5.0
    psf = psf_from_image(dirty)
    clean = img.copy()
    clean[0, 0] = clean[0, 1] = clean[1, 0] = 0.0
    np.testing.assert_allclose(psf.image, clean / clean.sum(), atol=1e-6 * img.max(), rtol=0)


@pytest.mark.parametrize("channel", [1, 2, 3, 4])
def test_irac_psf_fwhm_is_a_quarter_of_the_oversampled_fwhm(irac_images, channel: int) -> None:
    """The detector-pixel FWHM of the 4x oversampled IRAC PSF is ~1/4 of the
    FWHM measured on the oversampled image (checked against a radial-profile
    estimate that shares no code with measure_fwhm)."""
    over = irac_images[channel - 1]
    psf = psf_from_image(over, oversampling=4, source=f"image:{IRAC[channel - 1].name}")
    assert psf.source == f"image:irac_ch{channel}_flight.fits"
    assert psf.fwhm == pytest.approx(measure_fwhm(over) / 4, rel=1e-12)
    assert psf.fwhm == pytest.approx(_radial_profile_fwhm(over) / 4, rel=0.10)
    # IRAC is undersampled: between 1 and 2 detector pixels
    assert 1.0 < psf.fwhm < 2.0
    # the output holds the input: 81 oversampled pixels -> 19 detector pixels
    assert psf.image.shape == (19, 19)


@pytest.mark.parametrize("channel", [1, 2, 3, 4])
def test_irac_psf_from_image_is_centred(irac_images, channel: int) -> None:
    psf = psf_from_image(irac_images[channel - 1], oversampling=4)
    c = psf.half_size
    assert np.unravel_index(np.argmax(psf.image), psf.image.shape) == (c, c)
    cy, cx = _core_centroid(psf.image, 3)
    assert abs(cy - c) < 0.1 and abs(cx - c) < 0.1


@pytest.mark.parametrize(
    "channel",
    [pytest.param(c) for c in (1, 2, 3, 4)],
)
def test_irac_block_integration_conserves_encircled_energy(irac_images, channel: int) -> None:
    """The flux in the central (2k+1)^2 detector pixels equals the flux of the
    oversampled image in the 4(2k+1) square around its centroid.

    Tolerances: 5 % for the single central pixel (the cubic-spline re-centring
    of a sharply peaked, drizzled image moves a few % of its flux), 2 % for
    larger boxes; the oversampled frame holds >= 99.4 % of the total, so the
    normalisation differs by < 0.6 %.
    """
    over = np.clip(irac_images[channel - 1], 0.0, None)
    psf = psf_from_image(over, oversampling=4)
    c = psf.half_size
    yc, xc = _core_centroid(over, 12)
    total = over.sum()
    for k in range(5):
        det = psf.image[c - k : c + k + 1, c - k : c + k + 1].sum()
        ref = _box_integral(over, yc, xc, 2.0 * (2 * k + 1)) / total
        assert det == pytest.approx(ref, rel=0.05 if k == 0 else 0.02), f"k={k}"


# --------------------------------------------------------------------------- estimate_psf


def test_estimate_psf_recovers_the_simulated_psf(star_field) -> None:
    cfg, sim, image, noise = star_field
    psf = estimate_psf(image, noise)
    assert psf.source.startswith("stars:")
    n_stars = int(psf.source.split(":")[1])
    assert 5 <= n_stars <= 100
    assert psf.model == "empirical"
    assert psf.fwhm == pytest.approx(cfg.fwhm_px, rel=0.10)
    # the stacked image matches the true pixel-integrated PSF pixel by pixel
    c = psf.half_size
    tc = sim.psf_image.shape[0] // 2
    truth = sim.psf_image[tc - c : tc + c + 1, tc - c : tc + c + 1]
    truth = truth / truth.sum()
    err = float(np.abs(psf.image - truth).max())
    assert err < 0.05 * truth.max()


def test_estimate_psf_respects_mask_and_max_stars(star_field) -> None:
    cfg, _, image, noise = star_field
    full = estimate_psf(image, noise)
    mask = np.zeros(image.shape, np.uint8)
    mask[:, : image.shape[1] // 2] = 1
    half = estimate_psf(image, noise, mask=mask)
    assert int(half.source.split(":")[1]) < int(full.source.split(":")[1])
    assert half.fwhm == pytest.approx(cfg.fwhm_px, rel=0.10)
    few = estimate_psf(image, noise, max_stars=10)
    assert few.source == "stars:10"
    # a scalar noise works as well as a map
    scalar = estimate_psf(image, float(np.median(noise)))
    assert scalar.fwhm == pytest.approx(cfg.fwhm_px, rel=0.10)


def test_estimate_psf_does_not_depend_much_on_the_guess(star_field) -> None:
    _, _, image, noise = star_field
    ref = estimate_psf(image, noise).fwhm
    for guess in (2.0, 2.5, 5.0, 6.0):
        assert estimate_psf(image, noise, fwhm_guess=guess).fwhm == pytest.approx(ref, rel=0.05)


def test_estimate_psf_raises_without_stars() -> None:
    noise = np.random.default_rng(0).normal(0.0, 1.0, (512, 512))
    with pytest.raises(PSFError, match="could not estimate the PSF"):
        estimate_psf(noise, 1.0)


def test_estimate_psf_raises_when_too_few_stars_pass(star_field) -> None:
    _, _, image, noise = star_field
    with pytest.raises(PSFError):
        estimate_psf(image, noise, min_snr=1e5)
    with pytest.raises(PSFError):
        estimate_psf(image, noise, min_stars=10_000)

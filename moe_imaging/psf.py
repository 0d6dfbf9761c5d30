"""Point-spread function models and priors.

The PSF is the prior every expert uses: the point-source expert correlates the
image with it, and the halo a tile needs is derived from it.  A :class:`PSF` is
a small, centred, pixel-integrated image sampled on the detector's pixel grid
and normalised to unit total flux, together with its FWHM and a record of where
it came from (``source``), which is written into the catalog provenance.

Ways to obtain one, in the order the pipeline prefers them:

* :func:`psf_from_image` -- a PSF image (e.g. a Spitzer/IRAC PSF file), possibly
  oversampled, block-integrated onto the detector grid;
* :func:`moffat_psf` -- from a FWHM in the header (``FWHM`` in pixels, or
  ``SEEING`` in arcsec divided by the pixel scale).  The default Moffat index
  beta = 4.765 is the best Moffat approximation to a Kolmogorov (atmospheric)
  profile (Trujillo et al. 2001, MNRAS 328, 977);
* :func:`estimate_psf` -- from bright, isolated, unsaturated stars in the image
  when the header says nothing: the stellar locus is found in the size--S/N
  plane and the stars' centred stamps are median-stacked;
* :func:`airy_psf` -- for microscopy, from the optics: numerical aperture,
  emission wavelength and pixel size.

All functions are pure: arrays in, a :class:`PSF` out.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from astropy.convolution import discretize_model
from astropy.modeling.models import Gaussian2D, Moffat2D
from astropy.stats import sigma_clipped_stats
from scipy import ndimage

from contracts.errors import PSFError

__all__ = [
    "PSF",
    "KOLMOGOROV_MOFFAT_BETA",
    "moffat_psf",
    "gaussian_psf",
    "airy_psf",
    "psf_from_image",
    "estimate_psf",
    "find_psf_stars",
    "local_psf",
    "measure_fwhm",
]

KOLMOGOROV_MOFFAT_BETA = 4.765
"""Moffat index that best matches a Kolmogorov seeing profile (Trujillo et al. 2001)."""

_FWHM_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))


@dataclasses.dataclass(frozen=True, eq=False)
class PSF:
    """A pixel-integrated PSF on the detector pixel grid.

    Parameters
    ----------
    image : numpy.ndarray
        Odd-sized square array, centred on the middle pixel, non-negative,
        normalised to sum 1 (the fraction of a point source's flux falling in
        each pixel).
    fwhm : float
        Full width at half maximum in pixels.
    source : str
        Where the PSF came from, e.g. ``"header:FWHM"``, ``"header:SEEING"``,
        ``"image:irac_ch1_flight.fits"``, ``"stars:23"``, ``"config"``.
    model : str
        ``"moffat"``, ``"gaussian"``, ``"airy"`` or ``"empirical"``.
    beta : float or None
        Moffat index, when ``model == "moffat"``.
    """

    image: np.ndarray
    fwhm: float
    source: str
    model: str
    beta: float | None = None

    def __post_init__(self) -> None:
        img = np.asarray(self.image, dtype=np.float64)
        if img.ndim != 2 or img.shape[0] != img.shape[1] or img.shape[0] % 2 == 0:
            raise PSFError(f"PSF image must be square with odd size, got shape {img.shape}")
        if not np.all(np.isfinite(img)) or img.sum() <= 0:
            raise PSFError("PSF image must be finite with positive total flux")
        if not (self.fwhm > 0 and math.isfinite(self.fwhm)):
            raise PSFError(f"PSF FWHM must be positive, got {self.fwhm}")
        img = np.clip(img, 0.0, None)
        img = img / img.sum()
        img.setflags(write=False)
        object.__setattr__(self, "image", img)

    @property
    def sigma(self) -> float:
        """Gaussian-equivalent width, FWHM / 2.3548, in pixels."""
        return self.fwhm * _FWHM_TO_SIGMA

    @property
    def half_size(self) -> int:
        """Half the side of :attr:`image` (the image is ``2 * half_size + 1`` wide)."""
        return self.image.shape[0] // 2

    def kernel_radius(self, energy: float = 0.99) -> int:
        """Radius (pixels) of the smallest centred square holding ``energy`` of the flux.

        The matched filter is truncated there: the far wings add almost no
        signal-to-noise but would widen every tile's halo.  At least
        ``ceil(1.5 * FWHM)`` and at most :attr:`half_size`.
        """
        c = self.half_size
        total = 0.0
        for r in range(c + 1):
            total = self.image[c - r : c + r + 1, c - r : c + r + 1].sum()
            if total >= energy and r >= math.ceil(1.5 * self.fwhm):
                return r
        return c

    def kernel(self, energy: float = 0.99) -> np.ndarray:
        """The PSF truncated to :meth:`kernel_radius`, *not* renormalised.

        Values stay the fraction of total flux per pixel, so the matched-filter
        flux estimate remains the maximum-likelihood total flux.
        """
        r = self.kernel_radius(energy)
        c = self.half_size
        return np.array(self.image[c - r : c + r + 1, c - r : c + r + 1])

    def describe(self) -> dict[str, object]:
        """Provenance record: source, model, FWHM (px), beta and size."""
        return {
            "source": self.source,
            "model": self.model,
            "fwhm_px": round(float(self.fwhm), 4),
            "beta": self.beta,
            "size": int(self.image.shape[0]),
        }


def _half_size_for(fwhm: float, wings: float) -> int:
    return max(3, int(math.ceil(wings * fwhm)))


def moffat_psf(
    fwhm: float,
    *,
    beta: float = KOLMOGOROV_MOFFAT_BETA,
    source: str = "config",
    half_size: int | None = None,
) -> PSF:
    """A circular Moffat PSF integrated over square pixels.

    Parameters
    ----------
    fwhm : float
        FWHM in pixels (> 0).
    beta : float
        Moffat index (> 1); 4.765 approximates Kolmogorov seeing.
    source : str
        Provenance label.
    half_size : int, optional
        Half-size of the image; default ``ceil(4 * FWHM)`` (more for small beta).
    """
    if not (fwhm > 0):
        raise PSFError(f"PSF FWHM must be positive, got {fwhm}")
    if not (beta > 1):
        raise PSFError(f"Moffat beta must be > 1, got {beta}")
    alpha = fwhm / (2.0 * math.sqrt(2.0 ** (1.0 / beta) - 1.0))
    if half_size is None:
        # radius holding 99.9 % of the flux: 1 - (1 + r^2/alpha^2)^(1-beta) = 0.999
        r999 = alpha * math.sqrt(1e-3 ** (1.0 / (1.0 - beta)) - 1.0)
        half_size = max(_half_size_for(fwhm, 2.5), min(int(math.ceil(r999)), int(8 * fwhm) + 3))
    model = Moffat2D(amplitude=1.0, x_0=0.0, y_0=0.0, gamma=alpha, alpha=beta)
    rng = (-half_size - 0.5, half_size + 0.5)
    img = _discretize(model, rng, fwhm)
    return PSF(image=img, fwhm=float(fwhm), source=source, model="moffat", beta=float(beta))


def gaussian_psf(fwhm: float, *, source: str = "config", half_size: int | None = None) -> PSF:
    """A circular Gaussian PSF integrated over square pixels (FWHM in pixels)."""
    if not (fwhm > 0):
        raise PSFError(f"PSF FWHM must be positive, got {fwhm}")
    half_size = half_size or _half_size_for(fwhm, 2.5)
    sigma = fwhm * _FWHM_TO_SIGMA
    model = Gaussian2D(amplitude=1.0, x_mean=0.0, y_mean=0.0, x_stddev=sigma, y_stddev=sigma)
    img = _discretize(model, (-half_size - 0.5, half_size + 0.5), fwhm)
    return PSF(image=img, fwhm=float(fwhm), source=source, model="gaussian")


def _discretize(model, rng: tuple[float, float], fwhm: float) -> np.ndarray:
    """Integrate a 2-D model over pixels by oversampling (finer for sharp PSFs)."""
    lo, hi = int(round(rng[0] + 0.5)), int(round(rng[1] + 0.5))
    factor = int(min(25, max(5, math.ceil(20.0 / fwhm))))
    return discretize_model(model, (lo, hi), (lo, hi), mode="oversample", factor=factor)


def airy_psf(
    *,
    numerical_aperture: float,
    wavelength_nm: float,
    pixel_size_um: float,
    source: str = "optics",
    oversample: int = 7,
) -> PSF:
    """The diffraction-limited widefield PSF of a microscope, from its optics.

    The in-focus intensity of a circular pupil is the Airy pattern
    ``I(r) = [2 J1(v) / v]^2`` with ``v = 2 pi NA r / lambda``; its FWHM is
    ``0.514 lambda / NA``.  It is integrated over square pixels of
    ``pixel_size_um`` (object plane) by ``oversample`` x ``oversample``
    sampling, out to the third dark ring.

    Parameters
    ----------
    numerical_aperture : float
        Objective NA (0 < NA < 1.6).
    wavelength_nm : float
        Emission wavelength in nanometres.
    pixel_size_um : float
        Pixel size in the object plane, micrometres.
    """
    from scipy.special import j1

    if not (0 < numerical_aperture < 1.6):
        raise PSFError(f"numerical aperture must be in (0, 1.6), got {numerical_aperture}")
    if not (wavelength_nm > 0 and pixel_size_um > 0):
        raise PSFError("wavelength and pixel size must be positive")
    lam_px = wavelength_nm * 1e-3 / pixel_size_um
    fwhm = 0.514 * lam_px / numerical_aperture
    r_ring3 = 1.619 * lam_px / numerical_aperture  # third dark ring: v = 10.17
    half = max(3, int(math.ceil(r_ring3)))
    n = 2 * half + 1
    offsets = (np.arange(n * oversample) + 0.5) / oversample - (n / 2.0)
    yy, xx = np.meshgrid(offsets, offsets, indexing="ij")
    v = 2 * math.pi * numerical_aperture * np.hypot(yy, xx) / lam_px
    with np.errstate(invalid="ignore", divide="ignore"):
        amp = np.where(v > 0, 2 * j1(v) / np.where(v > 0, v, 1.0), 1.0)
    fine = amp * amp
    img = fine.reshape(n, oversample, n, oversample).sum(axis=(1, 3))
    return PSF(image=img, fwhm=float(fwhm), source=source, model="airy")


def measure_fwhm(image: np.ndarray, *, oversampling: float = 1.0) -> float:
    """FWHM of a centred PSF image, in units of the *detector* pixel.

    The area above half maximum is measured on a version of the image
    upsampled (cubic spline) to at least ~20 samples per FWHM, and converted to
    the diameter of a circle of the same area.
    """
    img = np.asarray(image, dtype=np.float64)
    peak = img.max()
    if not peak > 0:
        raise PSFError("PSF image has no positive pixels")
    rough = 2.0 * math.sqrt(np.count_nonzero(img >= 0.5 * peak) / math.pi)
    zoom = max(1, int(math.ceil(20.0 / max(rough, 1.0))))
    # grid_mode: each pixel becomes exactly zoom x zoom fine pixels
    fine = ndimage.zoom(img, zoom, order=3, grid_mode=True, mode="grid-constant") if zoom > 1 else img
    area = np.count_nonzero(fine >= 0.5 * fine.max()) / zoom**2
    return 2.0 * math.sqrt(area / math.pi) / oversampling


def psf_from_image(
    image: np.ndarray,
    *,
    oversampling: float = 1.0,
    source: str = "image",
) -> PSF:
    """Build a detector-grid PSF from a (possibly oversampled) PSF image.

    The image is re-centred on its flux centroid and block-integrated by the
    oversampling factor, so each output pixel holds the flux fraction falling
    on one detector pixel (exact for integer factors; cubic-spline resampling
    otherwise).

    Parameters
    ----------
    image : numpy.ndarray
        2-D PSF image; negative and non-finite values are set to zero.
    oversampling : float
        PSF pixels per detector pixel (e.g. 4 for the drizzled IRAC PSFs).
    source : str
        Provenance label.
    """
    img = np.nan_to_num(np.asarray(image, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    if img.ndim != 2 or img.size == 0:
        raise PSFError(f"PSF image must be 2-D, got shape {img.shape}")
    img = np.clip(img, 0.0, None)
    if img.sum() <= 0:
        raise PSFError("PSF image has no positive flux")
    if not (oversampling > 0):
        raise PSFError(f"PSF oversampling must be positive, got {oversampling}")
    fwhm = measure_fwhm(img, oversampling=oversampling)
    # Re-centre on the centroid of the core (within 3 FWHM of the peak) so the
    # block integration is symmetric.
    yc, xc = _core_centroid(img, fwhm * oversampling)
    n = int(oversampling) if abs(oversampling - round(oversampling)) < 1e-6 else None
    if n is not None and n > 1:
        # choose an output half-size covering the input, pad/shift so that the
        # centroid falls in the middle of the central n x n block
        half_out = int(math.floor((min(img.shape) / n - 1) / 2))
        size_in = (2 * half_out + 1) * n
        # move the centroid to the centre of the top-left size_in x size_in frame
        shifted = ndimage.shift(img, ((size_in - 1) / 2 - yc, (size_in - 1) / 2 - xc), order=3, mode="constant")
        shifted = shifted[:size_in, :size_in]
        out = shifted.reshape(2 * half_out + 1, n, 2 * half_out + 1, n).sum(axis=(1, 3))
    else:
        scale = 1.0 / oversampling
        centred = ndimage.shift(img, ((img.shape[0] - 1) / 2 - yc, (img.shape[1] - 1) / 2 - xc), order=3)
        out = ndimage.zoom(centred, scale, order=3) if oversampling != 1 else centred
        side = min(out.shape)
        side -= 1 - side % 2
        out = _pad_or_crop(out, side)
    out = np.clip(out, 0.0, None)
    return PSF(image=out, fwhm=float(fwhm), source=source, model="empirical")


def _core_centroid(img: np.ndarray, fwhm_pix: float) -> tuple[float, float]:
    py, px = np.unravel_index(np.argmax(img), img.shape)
    r = max(2, int(math.ceil(1.5 * fwhm_pix)))
    sl = (slice(max(0, py - r), py + r + 1), slice(max(0, px - r), px + r + 1))
    cy, cx = ndimage.center_of_mass(img[sl])
    return float(cy + sl[0].start), float(cx + sl[1].start)


def _pad_or_crop(img: np.ndarray, side: int) -> np.ndarray:
    """Centre-crop or zero-pad a 2-D array to ``side x side``."""
    out = np.zeros((side, side), dtype=np.float64)
    ny, nx = img.shape
    sy, sx = min(ny, side), min(nx, side)
    iy0, ix0 = (ny - sy) // 2, (nx - sx) // 2
    oy0, ox0 = (side - sy) // 2, (side - sx) // 2
    out[oy0 : oy0 + sy, ox0 : ox0 + sx] = img[iy0 : iy0 + sy, ix0 : ix0 + sx]
    return out


def local_psf(
    image: np.ndarray,
    noise: np.ndarray | float,
    fallback: PSF,
    *,
    mask: np.ndarray | None = None,
    min_snr: float = 30.0,
    min_stars: int = 5,
    max_ratio: float = 1.5,
) -> PSF:
    """The PSF of one part of the field, from its own stars, else ``fallback``.

    For PSFs that vary over the field (optics, seeing across a wide field):
    :func:`estimate_psf` on this region's stars, starting from the global
    PSF's FWHM.  When the region has fewer than ``min_stars`` good stars, or
    the estimate's FWHM is more than ``max_ratio`` times larger or smaller
    than the global one (a bad estimate, or a halo too small for it), the
    global PSF is returned.  Never raises for a poor region.

    Returns
    -------
    PSF
        The local estimate (``source="stars:N@local"``) or ``fallback``.
    """
    try:
        psf = estimate_psf(image, noise, mask=mask, fwhm_guess=fallback.fwhm, min_snr=min_snr, min_stars=min_stars)
    except PSFError:
        return fallback
    if not (fallback.fwhm / max_ratio <= psf.fwhm <= fallback.fwhm * max_ratio):
        return fallback
    return dataclasses.replace(psf, source=f"{psf.source}@local")


def find_psf_stars(
    image: np.ndarray,
    noise: np.ndarray | float,
    *,
    mask: np.ndarray | None = None,
    fwhm_guess: float = 3.0,
    min_snr: float = 30.0,
    min_stars: int = 3,
) -> tuple[np.ndarray, np.ndarray, float, np.ndarray]:
    """Bright, isolated, unsaturated point sources: the stellar locus of an image.

    A matched filter of the current FWHM finds peaks above ``min_snr``; the
    isolated ones on the small-size locus (:func:`_stellar_locus`: galaxies
    are larger, cosmic rays sharper) are kept, and the FWHM is re-measured
    from them, up to three times, so the result does not depend much on
    ``fwhm_guess``.

    Returns
    -------
    (y, x, fwhm, snr)
        Peak pixels of the stars, the locus FWHM (pixels) and their S/N; empty
        arrays when an iteration finds fewer than ``min_stars``.
    """
    from .detection import find_peaks, matched_filter  # local: detection imports PSF

    img = np.asarray(image, dtype=np.float64)
    noise_arr = np.broadcast_to(np.asarray(noise, dtype=np.float64), img.shape)
    bad = np.zeros(img.shape, bool) if mask is None else np.asarray(mask) != 0
    bad |= ~np.isfinite(img) | ~(noise_arr > 0)
    weight = np.where(bad, 0.0, 1.0 / np.where(noise_arr > 0, noise_arr, 1.0) ** 2)
    img = np.where(bad, 0.0, img)
    fwhm = float(fwhm_guess)
    empty = (np.zeros(0, np.int64), np.zeros(0, np.int64), fwhm, np.zeros(0))
    stars = empty
    for _ in range(3):
        kernel = gaussian_psf(fwhm).image
        snr, _, _ = matched_filter(img, weight, kernel)
        peaks = find_peaks(snr, threshold=min_snr)
        if len(peaks[0]) == 0:
            break
        sel_y, sel_x, sizes = _stellar_locus(img, bad, snr, peaks, fwhm)
        if len(sel_y) < min_stars:
            stars = empty
            break
        new_fwhm = float(np.median(sizes))
        stars = (sel_y, sel_x, new_fwhm, snr[sel_y, sel_x])
        converged = abs(new_fwhm - fwhm) < 0.05 * fwhm
        fwhm = new_fwhm
        if converged:
            break
    return stars


def estimate_psf(
    image: np.ndarray,
    noise: np.ndarray | float,
    *,
    mask: np.ndarray | None = None,
    fwhm_guess: float = 3.0,
    min_snr: float = 30.0,
    max_stars: int = 100,
    min_stars: int = 3,
) -> PSF:
    """Estimate the PSF from bright, isolated, unsaturated stars.

    Parameters
    ----------
    image : numpy.ndarray
        Background-subtracted image.
    noise : numpy.ndarray or float
        Per-pixel background RMS.
    mask : numpy.ndarray, optional
        Non-zero where pixels are bad or saturated; stars touching masked
        pixels are not used.
    fwhm_guess : float
        Starting FWHM (pixels) of the detection kernel; the estimate is
        iterated so the result does not depend on it much.
    min_snr : float
        Minimum matched-filter S/N of a PSF star.
    max_stars : int
        Number of the brightest selected stars to stack.
    min_stars : int
        Fewer selected stars than this raises :class:`PSFError`.

    Returns
    -------
    PSF
        Median stack of the stars' centred, flux-normalised stamps
        (``model="empirical"``, ``source="stars:N"``).

    Raises
    ------
    PSFError
        When too few suitable stars are found.
    """
    img = np.asarray(image, dtype=np.float64)
    noise_arr = np.broadcast_to(np.asarray(noise, dtype=np.float64), img.shape)
    bad = np.zeros(img.shape, bool) if mask is None else np.asarray(mask) != 0
    bad |= ~np.isfinite(img) | ~(noise_arr > 0)
    img = np.where(bad, 0.0, img)
    sel_y, sel_x, fwhm, star_snr = find_psf_stars(image, noise, mask=mask, fwhm_guess=fwhm_guess, min_snr=min_snr,
                                                  min_stars=min_stars)
    if len(sel_y) < min_stars:
        raise PSFError(
            f"could not estimate the PSF: fewer than {min_stars} bright isolated unsaturated "
            "stars (S/N >= {:.0f}) found".format(min_snr)
        )
    order = np.argsort(-star_snr)
    half = max(3, int(math.ceil(3.0 * fwhm)))
    stamps = []
    for iy, ix in zip(sel_y[order], sel_x[order]):
        if len(stamps) == max_stars:  # the brightest usable ones
            break
        y0, x0 = iy - half - 2, ix - half - 2
        if y0 < 0 or x0 < 0 or iy + half + 3 > img.shape[0] or ix + half + 3 > img.shape[1]:
            continue
        cut = img[y0 : iy + half + 3, x0 : ix + half + 3]
        if bad[y0 : iy + half + 3, x0 : ix + half + 3].any():
            continue
        cy, cx = _core_centroid(np.clip(cut, 0, None), fwhm)
        c = (cut.shape[0] - 1) / 2
        shifted = ndimage.shift(cut, (c - cy, c - cx), order=3, mode="nearest")[2:-2, 2:-2]
        total = shifted.sum()
        if total > 0:
            stamps.append(shifted / total)
    if len(stamps) < min_stars:
        raise PSFError(
            f"could not estimate the PSF: only {len(stamps)} usable isolated stars (need {min_stars})"
        )
    stack = np.median(np.stack(stamps), axis=0)
    stack = np.clip(stack, 0.0, None)
    psf_fwhm = measure_fwhm(stack)
    return PSF(image=stack, fwhm=psf_fwhm, source=f"stars:{len(stamps)}", model="empirical")


def _stellar_locus(
    img: np.ndarray,
    bad: np.ndarray,
    snr: np.ndarray,
    peaks: tuple[np.ndarray, np.ndarray],
    fwhm: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Select isolated point sources: the tight, small-size locus above cosmic rays.

    A star is isolated when no peak within its stamp (plus a FWHM) is brighter
    than a tenth of it, and none at all lies closer than 1.5 FWHM: faint
    neighbours do not bias a median stack, and requiring emptiness would leave
    no star at all in a crowded field (a globular cluster, a plate scan).
    """
    py, px = peaks
    ny, nx = img.shape
    half = max(3, int(math.ceil(2.0 * fwhm)))
    r_iso = half + int(math.ceil(fwhm))
    from scipy.spatial import cKDTree

    val = snr[py, px]
    pts = np.column_stack([py, px])
    tree = cKDTree(pts)
    isolated = np.ones(len(py), dtype=bool)
    for i, neighbours in enumerate(tree.query_ball_point(pts, r_iso)):
        for j in neighbours:
            if j == i:
                continue
            close = (py[j] - py[i]) ** 2 + (px[j] - px[i]) ** 2 < (1.5 * fwhm) ** 2
            if close or val[j] > 0.1 * val[i]:
                isolated[i] = False
                break
    keep = isolated & (py >= half) & (px >= half) & (py < ny - half) & (px < nx - half)
    sizes = np.full(len(py), np.nan)
    for i in np.flatnonzero(keep):
        sl = (slice(py[i] - half, py[i] + half + 1), slice(px[i] - half, px[i] + half + 1))
        if bad[sl].any():
            keep[i] = False
            continue
        cut = img[sl]
        peak = cut.max()
        core = img[py[i] - 1 : py[i] + 2, px[i] - 1 : px[i] + 2].sum()
        # Cosmic rays and hot pixels put most of their 3x3 flux in one pixel;
        # even a critically sampled star (FWHM ~ 1.2 px) puts under half there.
        if not peak > 0 or not core > 0 or img[py[i], px[i]] > 0.5 * core:
            keep[i] = False
            continue
        sizes[i] = measure_fwhm(np.clip(cut, 0, None))
    ok = keep & np.isfinite(sizes) & (sizes > 1.0)  # below ~1 px FWHM: cosmic rays / hot pixels
    if ok.sum() < 3:
        return py[ok], px[ok], sizes[ok]
    # The stellar locus is the smallest well-populated size: galaxies are larger.
    _, med, std = sigma_clipped_stats(sizes[ok], sigma=2.5, maxiters=10)
    lo = np.percentile(sizes[ok], 10)
    centre = min(med, lo + 2 * max(std, 0.05 * med))
    tol = max(0.15 * centre, 2 * std if std > 0 else 0.15 * centre)
    locus = ok & (np.abs(sizes - centre) <= min(tol, 0.3 * centre))
    return py[locus], px[locus], sizes[locus]

"""The PSF measured from each exposure's own stars, and how resolved each detection is relative to it.

A header FWHM says how wide the PSF core is, not how strong its wings are:
the pipeline's header prior is a Moffat of index ``beta = 4.765`` (Kolmogorov
seeing), while real PSFs range from ``beta ~ 2`` (strong wings: optics,
scattering, guiding) to near-Gaussian.  A star under a winged PSF looks
*extended* against a ``beta = 4.765`` prior, and a classifier that trusts the
prior calls it a galaxy.  So, wherever an exposure has enough usable stars,
the PSF is measured from them:

:func:`measure_psf`
    selects bright, isolated, unsaturated point sources (the stellar locus of
    :func:`moe_imaging.psf.find_psf_stars`), fits each with a pixel-integrated
    circular Moffat of free FWHM and ``beta`` (flux and local background
    solved linearly at every step), then fits one ``(FWHM, beta)`` to all
    stars jointly with their centres fixed.  The FWHM of each star (``beta``
    held at the joint value) is fitted with a plane over the field, so a PSF
    that varies smoothly across the detector is seen (and reported) rather
    than averaged away, in the spirit of PSFEx.  The result
    (:class:`PSFMeasurement`) carries the model, the number of stars, the
    residuals and the disagreement with the header: the provenance of the
    PSF the pipeline then uses.

:func:`spread_model`
    the resolved-ness of each detection relative to that PSF, after
    SExtractor's ``SPREAD_MODEL`` (Desai et al. 2012, ApJ 757, 83): with
    ``P`` the PSF at the detection, ``G`` the PSF convolved with a circular
    exponential of scale ``FWHM / 16`` and ``W`` the inverse variance,
    ``spread = (G'Wx)/(P'Wx) - (G'WP)/(P'WP)``; zero for a point source,
    positive for a resolved one, negative for something sharper than the PSF
    (a cosmic ray).  Its error follows by propagating the pixel noise, so
    ``spread / spread_err`` is a significance that does not depend on how
    the two models are normalised.

Pure functions of arrays (numpy, scipy); no I/O.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
from astropy.stats import sigma_clipped_stats
from astropy.table import Table
from scipy import optimize, signal

from contracts.errors import PSFError

from .psf import PSF, find_psf_stars, moffat_psf

__all__ = [
    "PSFMeasurement",
    "measure_psf",
    "moffat_pixels",
    "spread_model",
    "SPREAD_SCALE",
    "MIN_PSF_STARS",
]

MIN_PSF_STARS = 8
"""Fewer usable stars than this: the exposure's PSF is not measured (the header / file prior is used)."""

SPREAD_SCALE = 1.0 / 16.0
"""Scale of the exponential that makes the extended model ``G``, in units of the PSF FWHM (SExtractor's)."""

_OVERSAMPLE = 5
_FWHM_BOUNDS = (0.5, 40.0)
_BETA_BOUNDS = (1.2, 25.0)


def moffat_pixels(dx: np.ndarray, dy: np.ndarray, fwhm: float, beta: float, *, factor: int = _OVERSAMPLE) -> np.ndarray:
    """A unit-flux circular Moffat integrated over unit pixels whose centres lie at ``(dx, dy)`` from its centre.

    Parameters
    ----------
    dx, dy : numpy.ndarray
        Pixel-centre offsets from the profile's centre (any equal shapes).
    fwhm : float
        Full width at half maximum, pixels.
    beta : float
        Moffat index (> 1).
    factor : int
        Sub-pixels per side used to integrate over each pixel.

    Returns
    -------
    numpy.ndarray
        The fraction of the flux in each pixel, shape of ``dx``.
    """
    alpha = fwhm / (2.0 * math.sqrt(2.0 ** (1.0 / beta) - 1.0))
    sub = (np.arange(factor) + 0.5) / factor - 0.5
    ox, oy = np.meshgrid(sub, sub)
    x = np.asarray(dx, dtype=np.float64)[..., None] + ox.ravel()
    y = np.asarray(dy, dtype=np.float64)[..., None] + oy.ravel()
    r2 = (x * x + y * y) / (alpha * alpha)
    return ((beta - 1.0) / (math.pi * alpha * alpha) * (1.0 + r2) ** (-beta)).mean(axis=-1)


# --------------------------------------------------------------------------- measurement


@dataclasses.dataclass(frozen=True, eq=False)
class PSFMeasurement:
    """The PSF fitted to an exposure's stars, with what the provenance needs.

    Attributes
    ----------
    psf : PSF
        A pixel-integrated Moffat of the fitted FWHM and ``beta``
        (``source="stars:moffat:N"``).
    fwhm, beta : float
        The joint fit over all stars (at the field's mean position).
    n_stars : int
        Stars used.
    residual_rms : float
        RMS of the stars' normalised residuals (data minus model, over the
        noise): about 1 when the model describes the stars to the noise.
    relative_residual : float
        Median over the stars of ``|data - model| / |model|`` (L2 over the
        stamp): how far the Moffat is from the stars' shape, whatever their S/N.
    fwhm_plane : (float, float, float)
        ``FWHM(x, y) = a + b (x - xc) / 1000 + c (y - yc) / 1000`` fitted to
        the stars (pixels, per 1000 pixels), centred on the image centre.
    fwhm_range : (float, float)
        The plane's lowest and highest FWHM over the image.
    header_fwhm : float or None
        The prior's FWHM (header, file or configuration), for comparison.
    stars : astropy.table.Table
        Per star: ``x``, ``y``, ``flux``, ``snr``, ``fwhm`` (``beta`` fixed),
        ``chi2_dof``.
    """

    psf: PSF
    fwhm: float
    beta: float
    n_stars: int
    residual_rms: float
    relative_residual: float
    fwhm_plane: tuple[float, float, float]
    fwhm_range: tuple[float, float]
    header_fwhm: float | None
    stars: Table

    @property
    def header_ratio(self) -> float:
        """Measured over prior FWHM (NaN without a prior)."""
        return self.fwhm / self.header_fwhm if self.header_fwhm else math.nan

    def describe(self) -> dict[str, Any]:
        """Provenance: model, stars, fit quality, variation over the field and the disagreement with the prior."""
        return {
            "model": "moffat",
            "fwhm_px": round(self.fwhm, 4),
            "beta": round(self.beta, 3),
            "n_stars": int(self.n_stars),
            "residual_rms": round(self.residual_rms, 3),
            "relative_residual": round(self.relative_residual, 4),
            "fwhm_plane_px_per_kpx": [round(v, 4) for v in self.fwhm_plane],
            "fwhm_range_px": [round(v, 4) for v in self.fwhm_range],
            "prior_fwhm_px": None if self.header_fwhm is None else round(float(self.header_fwhm), 4),
            "measured_over_prior": None if self.header_fwhm is None else round(self.header_ratio, 4),
        }


def _stamp(img: np.ndarray, noise: np.ndarray, y: int, x: int, half: int):
    sl = (slice(y - half, y + half + 1), slice(x - half, x + half + 1))
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1]
    return img[sl].ravel(), noise[sl].ravel(), yy.ravel().astype(float), xx.ravel().astype(float)


def _linear_fit(model: np.ndarray, data: np.ndarray, w: np.ndarray) -> tuple[float, float, np.ndarray]:
    """Flux and background that best scale ``model`` onto ``data`` (weights ``w``); the weighted residual."""
    a = np.column_stack([model, np.ones_like(model)]) * w[:, None]
    coef, *_ = np.linalg.lstsq(a, data * w, rcond=None)
    return float(coef[0]), float(coef[1]), data * w - a @ coef


def _fit_star(d: np.ndarray, s: np.ndarray, yy: np.ndarray, xx: np.ndarray, fwhm0: float,
              beta: float | None) -> dict[str, float] | None:
    """One star: centre and FWHM (and ``beta`` unless given), flux and background solved linearly."""
    w = 1.0 / s
    free_beta = beta is None

    def resid(p: np.ndarray) -> np.ndarray:
        b = p[3] if free_beta else beta
        return _linear_fit(moffat_pixels(xx - p[0], yy - p[1], p[2], b), d, w)[2]

    p0 = [0.0, 0.0, fwhm0] + ([3.0] if free_beta else [])
    lo = [-2.0, -2.0, _FWHM_BOUNDS[0]] + ([_BETA_BOUNDS[0]] if free_beta else [])
    hi = [2.0, 2.0, _FWHM_BOUNDS[1]] + ([_BETA_BOUNDS[1]] if free_beta else [])
    try:
        fit = optimize.least_squares(resid, p0, bounds=(lo, hi), x_scale="jac")
    except (ValueError, np.linalg.LinAlgError):
        return None
    if not fit.success:
        return None
    b = fit.x[3] if free_beta else beta
    flux, bkg, r = _linear_fit(moffat_pixels(xx - fit.x[0], yy - fit.x[1], fit.x[2], b), d, w)
    return {"dx": fit.x[0], "dy": fit.x[1], "fwhm": fit.x[2], "beta": b, "flux": flux, "bkg": bkg,
            "chi2": float(r @ r), "npix": len(r), "chi2_dof": float(r @ r) / max(1, len(r) - len(fit.x) - 2)}


def measure_psf(
    image: np.ndarray,
    noise: np.ndarray | float,
    *,
    mask: np.ndarray | None = None,
    fwhm_guess: float = 3.0,
    prior_fwhm: float | None = None,
    min_snr: float = 30.0,
    max_stars: int = 60,
    min_stars: int = MIN_PSF_STARS,
    max_residual_rms: float = 3.0,
) -> PSFMeasurement:
    """Fit a free-``beta`` Moffat PSF, varying smoothly over the field, to an exposure's stars.

    Parameters
    ----------
    image : numpy.ndarray
        Background-subtracted image (the whole exposure, or a central section).
    noise : numpy.ndarray or float
        Per-pixel background RMS.
    mask : numpy.ndarray, optional
        Non-zero where pixels are bad or saturated (stars touching them are not used).
    fwhm_guess : float
        Starting FWHM (pixels): the prior's.
    prior_fwhm : float, optional
        The prior's FWHM, recorded for comparison (header, PSF file or configuration).
    min_snr : float
        Minimum matched-filter S/N of a PSF star.
    max_stars : int
        The brightest usable stars fitted.
    min_stars : int
        Fewer usable stars raises :class:`~contracts.errors.PSFError` (the caller
        falls back to the prior).
    max_residual_rms : float
        Largest RMS of the residuals over the noise for which the Moffat is
        said to describe the stars (about 1 when it does); beyond it (a
        diffraction-limited, undersampled PSF, say) the PSF is not measured and
        :class:`~contracts.errors.PSFError` says why: a pixel-basis model would
        be needed there, and the prior is kept.

    Returns
    -------
    PSFMeasurement

    Raises
    ------
    contracts.errors.PSFError
        Too few usable stars, or fits that fail.
    """
    img = np.asarray(image, dtype=np.float64)
    noise_arr = np.broadcast_to(np.asarray(noise, dtype=np.float64), img.shape)
    ys, xs, fwhm_locus, snr = find_psf_stars(img, noise_arr, mask=mask, fwhm_guess=fwhm_guess, min_snr=min_snr)
    half = max(4, int(math.ceil(3.0 * fwhm_locus)))
    ny, nx = img.shape
    inside = (ys >= half) & (xs >= half) & (ys < ny - half) & (xs < nx - half)
    order = np.argsort(-snr[inside])[:max_stars]
    ys, xs, snr = ys[inside][order], xs[inside][order], snr[inside][order]
    stamps, fits = [], []
    for y, x, sn in zip(ys, xs, snr):
        d, s, yy, xx = _stamp(img, noise_arr, int(y), int(x), half)
        if not np.all(np.isfinite(d)) or not np.all(s > 0):
            continue
        f = _fit_star(d, s, yy, xx, fwhm_locus, None)
        if f is not None and f["flux"] > 0:
            stamps.append((d, s, yy - f["dy"], xx - f["dx"]))
            fits.append({**f, "y": float(y), "x": float(x), "snr": float(sn)})
    if len(fits) < min_stars:
        raise PSFError(f"PSF not measured: {len(fits)} usable stars (need {min_stars})")
    # a star whose own fit is poor (a blend, a galaxy on the locus) does not join the joint fit
    chi = np.array([f["chi2_dof"] for f in fits])
    good = chi <= max(2.0, 3.0 * float(np.median(chi)))
    stamps = [st for st, g in zip(stamps, good) if g]
    fits = [f for f, g in zip(fits, good) if g]
    if len(fits) < min_stars:
        raise PSFError(f"PSF not measured: {len(fits)} stars fit the model well (need {min_stars})")

    def joint(p: np.ndarray) -> np.ndarray:
        return np.concatenate([_linear_fit(moffat_pixels(xx, yy, p[0], p[1]), d, 1.0 / s)[2]
                               for d, s, yy, xx in stamps])

    p0 = [float(np.median([f["fwhm"] for f in fits])), float(np.median([f["beta"] for f in fits]))]
    fit = optimize.least_squares(joint, p0, bounds=([_FWHM_BOUNDS[0], _BETA_BOUNDS[0]],
                                                    [_FWHM_BOUNDS[1], _BETA_BOUNDS[1]]), x_scale="jac")
    fwhm, beta = float(fit.x[0]), float(fit.x[1])
    mismatch = float(np.median([_relative_residual(d, yy, xx, fwhm, beta) for d, s, yy, xx in stamps]))
    # the FWHM of every star at the joint beta, and a plane over the field
    per_star = []
    for (d, s, yy, xx), f in zip(stamps, fits):
        g = _fit_star(d, s, yy, xx, fwhm, beta)
        per_star.append(g if g is not None else {**f, "fwhm": math.nan})
    star_fwhm = np.array([g["fwhm"] for g in per_star])
    # how well the model (one beta, the FWHM free to vary over the field) describes the stars
    rms = float(np.sqrt(sum(g.get("chi2", np.nan) for g in per_star) / sum(g.get("npix", 1) for g in per_star)))
    x = np.array([f["x"] + f["dx"] for f in fits])
    y = np.array([f["y"] + f["dy"] for f in fits])
    plane, span = _fwhm_plane(x, y, star_fwhm, fwhm, (ny, nx))
    stars = Table({"x": x, "y": y, "flux": [f["flux"] for f in fits], "snr": [f["snr"] for f in fits],
                   "fwhm": star_fwhm, "chi2_dof": [f["chi2_dof"] for f in fits]})
    if not rms <= max_residual_rms:
        raise PSFError(f"PSF not measured: a Moffat does not describe the {len(fits)} stars (residuals {rms:.1f} "
                       f"times the noise, more than {max_residual_rms:g}; e.g. an undersampled "
                       f"diffraction-limited PSF)")
    psf = moffat_psf(fwhm, beta=beta, source=f"stars:moffat:{len(fits)}")
    return PSFMeasurement(psf=psf, fwhm=fwhm, beta=beta, n_stars=len(fits),
                          residual_rms=rms, relative_residual=mismatch,
                          fwhm_plane=plane, fwhm_range=span,
                          header_fwhm=None if prior_fwhm is None else float(prior_fwhm), stars=stars)


def _relative_residual(d: np.ndarray, yy: np.ndarray, xx: np.ndarray, fwhm: float, beta: float) -> float:
    """``|data - model| / |model|`` (L2) of one star, flux and background fitted (unweighted)."""
    model = moffat_pixels(xx, yy, fwhm, beta)
    flux, bkg, _ = _linear_fit(model, d, np.ones_like(d))
    m = flux * model
    return float(np.linalg.norm(d - bkg - m) / max(np.linalg.norm(m), 1e-300))


def _fwhm_plane(x: np.ndarray, y: np.ndarray, fwhm: np.ndarray, mean: float,
                shape: tuple[int, int]) -> tuple[tuple[float, float, float], tuple[float, float]]:
    """A sigma-clipped plane ``FWHM(x, y)`` (per 1000 px from the image centre) and its range over the image."""
    ny, nx = shape
    u, v = (x - 0.5 * (nx - 1)) / 1000.0, (y - 0.5 * (ny - 1)) / 1000.0
    ok = np.isfinite(fwhm)
    coef = np.array([mean, 0.0, 0.0])
    if ok.sum() >= 6:
        for _ in range(3):
            a = np.column_stack([np.ones(ok.sum()), u[ok], v[ok]])
            coef, *_ = np.linalg.lstsq(a, fwhm[ok], rcond=None)
            r = fwhm - (coef[0] + coef[1] * u + coef[2] * v)
            _, _, std = sigma_clipped_stats(r[ok], sigma=3.0)
            keep = ok & (np.abs(r) <= 3.0 * max(std, 1e-3))
            if keep.sum() == ok.sum() or keep.sum() < 6:
                break
            ok = keep
    corners = [coef[0] + coef[1] * cu + coef[2] * cv
               for cu in (-0.5 * (nx - 1) / 1000.0, 0.5 * (nx - 1) / 1000.0)
               for cv in (-0.5 * (ny - 1) / 1000.0, 0.5 * (ny - 1) / 1000.0)]
    return (float(coef[0]), float(coef[1]), float(coef[2])), (float(min(corners)), float(max(corners)))


# --------------------------------------------------------------------------- resolved-ness


def _models(dx: np.ndarray, dy: np.ndarray, fwhm: float, beta: float) -> tuple[np.ndarray, np.ndarray]:
    """The point model ``P`` and the extended model ``G`` (``P`` convolved with an exponential of scale FWHM/16)."""
    f = _OVERSAMPLE
    sub = (np.arange(f) + 0.5) / f - 0.5
    h = SPREAD_SCALE * fwhm * f  # exponential scale in sub-pixels
    k = int(math.ceil(6 * h))
    ky, kx = np.mgrid[-k : k + 1, -k : k + 1]
    expo = np.exp(-np.hypot(ky, kx) / max(h, 1e-3))
    expo /= expo.sum()
    side = dx.shape[0]
    # the sub-pixel grid of the whole stamp (rows of sub-pixels), then convolve and bin back to pixels
    gx = (dx[0][None, :, None] + sub[None, None, :]).reshape(1, -1)
    gy = (dy[:, 0][:, None, None] + sub[None, None, :]).reshape(-1, 1)
    alpha = fwhm / (2.0 * math.sqrt(2.0 ** (1.0 / beta) - 1.0))
    fine = (beta - 1.0) / (math.pi * alpha * alpha) * (1.0 + (gx * gx + gy * gy) / (alpha * alpha)) ** (-beta)
    ext = signal.fftconvolve(fine, expo, mode="same")
    p = fine.reshape(side, f, side, f).mean(axis=(1, 3))
    g = ext.reshape(side, f, side, f).mean(axis=(1, 3))
    return p, g


def spread_model(
    image: np.ndarray,
    variance: np.ndarray | float,
    x: np.ndarray,
    y: np.ndarray,
    *,
    fwhm: float,
    beta: float,
    mask: np.ndarray | None = None,
    radius: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``SPREAD_MODEL`` and its error at each position (see the module docs).

    Parameters
    ----------
    image : numpy.ndarray
        Background-subtracted image.
    variance : numpy.ndarray or float
        Per-pixel variance.
    x, y : numpy.ndarray
        0-based centroids (pixel ``i`` centred at ``i``).
    fwhm, beta : float
        The PSF (a Moffat, e.g. :func:`measure_psf`'s).
    mask : numpy.ndarray, optional
        Non-zero where pixels are unusable (left out of the sums).
    radius : float, optional
        Half-size of the stamp, pixels (default ``2 FWHM``, at least 3).

    Returns
    -------
    (spread, spread_err) : tuple of numpy.ndarray
        NaN where the stamp runs off the image or holds no usable pixel.
    """
    img = np.asarray(image, dtype=np.float64)
    var = np.broadcast_to(np.asarray(variance, dtype=np.float64), img.shape)
    bad = np.zeros(img.shape, bool) if mask is None else np.asarray(mask) != 0
    half = int(math.ceil(radius if radius is not None else max(3.0, 2.0 * fwhm)))
    ny, nx = img.shape
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    spread = np.full(len(x), np.nan)
    err = np.full(len(x), np.nan)
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1].astype(np.float64)
    for i in range(len(x)):
        if not (np.isfinite(x[i]) and np.isfinite(y[i])):
            continue
        ix, iy = int(np.floor(x[i] + 0.5)), int(np.floor(y[i] + 0.5))
        if iy < half or ix < half or iy >= ny - half or ix >= nx - half:
            continue
        sl = (slice(iy - half, iy + half + 1), slice(ix - half, ix + half + 1))
        v = var[sl]
        w = np.where(bad[sl] | ~(v > 0) | ~np.isfinite(img[sl]), 0.0, 1.0 / np.where(v > 0, v, 1.0))
        if not w.any():
            continue
        p, g = _models(xx - (x[i] - ix), yy - (y[i] - iy), fwhm, beta)
        d = np.where(w > 0, img[sl], 0.0)
        gwx, pwx = float(np.sum(g * w * d)), float(np.sum(p * w * d))
        gwp, pwp, gwg = float(np.sum(g * w * p)), float(np.sum(p * w * p)), float(np.sum(g * w * g))
        if pwx <= 0 or pwp <= 0:
            continue
        spread[i] = gwx / pwx - gwp / pwp
        num = gwg * pwx**2 + pwp * gwx**2 - 2.0 * gwp * gwx * pwx
        err[i] = math.sqrt(max(num, 0.0)) / pwx**2
    return spread, err

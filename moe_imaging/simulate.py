"""Deterministic simulated survey exposures with a truth table (GalSim).

:func:`simulate_survey` renders one sidereal survey exposure from a
:class:`SurveySimConfig`: stars, bulge+disk galaxies, fast-moving objects
(streaks), cosmic rays, hot pixels and saturated stars with bleed trails, on a
sky with a linear gradient, with Poisson and read noise.  It returns a
:class:`SimulatedExposure` holding the image (ADU, sky *not* subtracted), a FITS
header with a TAN WCS and the detector keywords, the true PSF image and a truth
table with one row per injected object.  The same configuration always gives a
bit-identical image and truth table; the random seed lives in the configuration.

Conventions
-----------
* Pixel coordinates are **0-based**: the centre of pixel ``image[j, i]`` is at
  ``(x, y) = (i, j)``.  The FITS header keeps the FITS 1-based convention
  (``CRPIX`` = 0-based centre + 1).
* Fluxes are total fluxes in ADU before noise and saturation (a drawn stamp may
  hold slightly less: its wings are cut where they fall below a small fraction
  of the pixel noise).  ``mag = MAGZP - 2.5 log10(flux)``.
* Angles (``pa_deg``, ``angle_deg``) are measured from the +x axis towards +y
  in pixel coordinates.

Matched-filter signal-to-noise
------------------------------
Object fluxes are set from a target *matched-filter S/N*, stored in the truth
column ``mf_snr``::

    mf_snr = flux * sqrt(sum_i P_i**2) / sigma_pix
    sigma_pix**2 = sky_local / gain + (rdnoise / gain)**2      [ADU**2]

``P_i`` is the object's normalised (``sum_i P_i = 1``), pixel-integrated
profile and ``sigma_pix`` the background-only pixel noise at the object's
position (``sky_local`` includes the sky gradient).  This is the S/N of the
optimal, profile-weighted flux estimate when the source's own Poisson noise is
negligible.  For stars and saturated stars ``P`` is the centred PSF image
(:attr:`SimulatedExposure.psf_image`); the dependence of ``sum P**2`` on the
sub-pixel position (``sqrt(sum P**2)`` changes by < 0.5 % for FWHM >= 2 px,
about 3 % at FWHM = 1.5 px with the star on a pixel corner) is ignored.  For
galaxies and streaks ``P`` is the object's own drawn (PSF-convolved,
pixel-integrated) profile normalised to sum 1; for cosmic rays and hot pixels it
is their pixel amplitudes, so ``mf_snr = sqrt(sum a_i**2) / sigma_pix``.

Normal stars and galaxies get ``mf_snr`` log-uniform in ``snr_range`` and
``galaxy_snr_range``; streaks in ``streak_snr_range``.

Detector model
--------------
The noiseless scene (sky + objects + cosmic rays + hot pixels, ADU) is converted
to electrons (``* gain``), given Poisson noise and Gaussian read noise
(``rdnoise`` e-), and converted back to ADU.  Finally every pixel above
``saturate`` is clipped to ``saturate`` and its excess charge bleeds along its
column, half up and half down: the charge fills the neighbouring pixels up to
``saturate`` until it is used up (charge is conserved, except what runs off the
top or bottom edge of the detector, which is lost).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import galsim
import numpy as np
from astropy.io import fits
from astropy.table import Table
from scipy import ndimage

from contracts.config import Config, check_choice, check_range
from contracts.errors import ConfigError

__all__ = ["SurveySimConfig", "SimulatedExposure", "simulate_survey", "TRUTH_KINDS"]

TRUTH_KINDS: tuple[str, ...] = (
    "star",
    "galaxy",
    "streak",
    "cosmic_ray",
    "hot_pixel",
    "saturated_star",
)
"""The values of the truth table's ``kind`` column."""

_REF_AREA = 1024.0 * 1024.0  # densities are per 1024**2 pixels
_MAX_HALF = 128  # largest stamp half-size (stamps are at most 257 px on a side)
_WING_FRACTION = 0.02  # cut stamps where the profile falls below this * sigma_pix
_PSF_MIN_SIZE = 51  # the returned PSF image is at least this size (odd)


# --------------------------------------------------------------------------- config


@dataclass(frozen=True)
class SurveySimConfig(Config):
    """Configuration of :func:`simulate_survey` (frozen, validated).

    Densities are numbers per 1024 x 1024 pixels; the number of objects of a
    kind is the density scaled to the image area, rounded stochastically (a
    default 1024 x 1024 field holds exactly the default numbers).

    Parameters
    ----------
    size : int
        The image is ``size x size`` pixels (unless ``shape`` is given).
    shape : tuple of int, optional
        ``(ny, nx)``; overrides ``size``.
    seed : int
        Random seed; the same configuration gives a bit-identical exposure.
    psf_model : {"moffat", "kolmogorov"}
        The PSF profile.
    fwhm_px : float
        PSF FWHM in pixels (of the profile, before pixel integration).
    moffat_beta : float
        Moffat index (``psf_model="moffat"`` only).
    pixscale : float
        Pixel scale, arcsec / pixel.
    gain : float
        e- / ADU.
    rdnoise : float
        Read noise, e-.
    sky_adu : float
        Mean sky level, ADU / pixel.
    sky_gradient : float
        Fractional change of the sky from one corner to the opposite one (a
        plane of random direction, mean ``sky_adu``).
    saturate : float
        Saturation level, ADU.  Must exceed the brightest sky pixel.
    exptime : float
        Exposure time, s (header only).
    magzp : float
        Magnitude of 1 ADU in this exposure.
    star_density, galaxy_density, n_streaks : float
        Numbers of stars, galaxies and streaks per 1024 x 1024 pixels.
    cosmic_ray_density, hot_pixel_density, saturated_star_density : float
        Numbers of cosmic rays, hot pixels and saturated stars per 1024 x 1024
        pixels.
    snr_range, galaxy_snr_range, streak_snr_range : tuple of float
        ``(low, high)`` matched-filter S/N of stars, galaxies and streaks
        (log-uniform).
    streak_length_range : tuple of float
        ``(low, high)`` streak length in pixels (uniform; capped so a streak
        fits inside the image).
    ra_center, dec_center : float
        Sky position of the image centre, deg.
    rotation_deg : float
        Rotation of the sky axes, deg (0: north up, east left).
    min_separation_px : float
        Minimum distance between stars, galaxies and saturated stars; 0 means
        no constraint.  Objects that cannot be placed are dropped.
    add_noise : bool
        Add Poisson and read noise (``False`` gives the noiseless, saturated
        scene; useful for tests).
    """

    size: int = 1024
    shape: tuple[int, int] | None = None
    seed: int = 1
    psf_model: str = "moffat"
    fwhm_px: float = 3.0
    moffat_beta: float = 3.0
    pixscale: float = 0.2
    gain: float = 2.0
    rdnoise: float = 5.0
    sky_adu: float = 500.0
    sky_gradient: float = 0.05
    saturate: float = 60000.0
    exptime: float = 60.0
    magzp: float = 28.0
    star_density: float = 150.0
    snr_range: tuple[float, float] = (3.0, 1000.0)
    galaxy_density: float = 30.0
    galaxy_snr_range: tuple[float, float] = (10.0, 300.0)
    n_streaks: float = 1.0
    streak_length_range: tuple[float, float] = (20.0, 200.0)
    streak_snr_range: tuple[float, float] = (20.0, 300.0)
    cosmic_ray_density: float = 20.0
    hot_pixel_density: float = 10.0
    saturated_star_density: float = 2.0
    ra_center: float = 150.0
    dec_center: float = 2.0
    rotation_deg: float = 0.0
    min_separation_px: float = 0.0
    add_noise: bool = True

    def __post_init__(self) -> None:
        _check_int("size", self.size, low=16, high=65536)
        if self.shape is not None:
            if isinstance(self.shape, list):
                object.__setattr__(self, "shape", tuple(self.shape))
            if not isinstance(self.shape, tuple) or len(self.shape) != 2:
                raise ConfigError(f"shape: expected (ny, nx) or None, got {self.shape!r}")
            _check_int("shape[0]", self.shape[0], low=16, high=65536)
            _check_int("shape[1]", self.shape[1], low=16, high=65536)
        _check_int("seed", self.seed, low=0, high=2**63 - 1)
        check_choice("psf_model", self.psf_model, ("moffat", "kolmogorov"))
        check_range("fwhm_px", self.fwhm_px, low=1.0, high=20.0)
        check_range("moffat_beta", self.moffat_beta, low=1.5, high=20.0)
        check_range("pixscale", self.pixscale, low=0.0, high=3600.0, low_inclusive=False)
        check_range("gain", self.gain, low=0.0, high=1e6, low_inclusive=False)
        check_range("rdnoise", self.rdnoise, low=0.0, high=1e6)
        check_range("sky_adu", self.sky_adu, low=0.0, high=1e8)
        check_range("sky_gradient", self.sky_gradient, low=0.0, high=1.0)
        if self.sky_adu == 0.0 and self.rdnoise == 0.0:
            raise ConfigError("sky_adu, rdnoise: at least one must be > 0 (the noise would be 0)")
        check_range("saturate", self.saturate, low=0.0, high=1e12, low_inclusive=False)
        max_sky = self.sky_adu * (1.0 + 0.5 * self.sky_gradient)
        if self.saturate <= max_sky:
            raise ConfigError(
                f"saturate: must exceed the brightest sky pixel ({max_sky:g} ADU), "
                f"got {self.saturate}"
            )
        check_range("exptime", self.exptime, low=0.0, high=1e7, low_inclusive=False)
        check_range("magzp", self.magzp, low=-50.0, high=100.0)
        for name in (
            "star_density",
            "galaxy_density",
            "n_streaks",
            "cosmic_ray_density",
            "hot_pixel_density",
            "saturated_star_density",
        ):
            check_range(name, getattr(self, name), low=0.0, high=1e5)
        self._check_pair("snr_range", low=0.0, high=1e7)
        self._check_pair("galaxy_snr_range", low=0.0, high=1e7)
        self._check_pair("streak_snr_range", low=0.0, high=1e7)
        self._check_pair("streak_length_range", low=1.0, high=1e5, low_inclusive=True)
        check_range("ra_center", self.ra_center, low=0.0, high=360.0)
        check_range("dec_center", self.dec_center, low=-90.0, high=90.0)
        check_range("rotation_deg", self.rotation_deg, low=-360.0, high=360.0)
        check_range("min_separation_px", self.min_separation_px, low=0.0, high=1e4)
        if not isinstance(self.add_noise, bool):
            raise ConfigError(f"add_noise: expected True or False, got {self.add_noise!r}")

    def _check_pair(
        self, name: str, *, low: float, high: float, low_inclusive: bool = False
    ) -> None:
        """Validate a ``(low, high)`` range field (lists are turned into tuples)."""
        value = getattr(self, name)
        if isinstance(value, list):
            value = tuple(value)
            object.__setattr__(self, name, value)
        if not isinstance(value, tuple) or len(value) != 2:
            raise ConfigError(f"{name}: expected a (low, high) pair, got {value!r}")
        check_range(f"{name}[0]", value[0], low=low, high=high, low_inclusive=low_inclusive)
        check_range(f"{name}[1]", value[1], low=low, high=high, low_inclusive=low_inclusive)
        if value[1] < value[0]:
            raise ConfigError(f"{name}: low must be <= high, got {value!r}")

    @property
    def image_shape(self) -> tuple[int, int]:
        """The image shape ``(ny, nx)``."""
        if self.shape is not None:
            return (int(self.shape[0]), int(self.shape[1]))
        return (int(self.size), int(self.size))


def _check_int(name: str, value: object, *, low: int, high: int) -> None:
    """Raise :class:`ConfigError` unless ``value`` is an int in ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ConfigError(f"{name}: expected an integer, got {value!r}")
    check_range(name, int(value), low=low, high=high)


# --------------------------------------------------------------------------- output


@dataclass(frozen=True)
class SimulatedExposure:
    """One simulated exposure and its truth.

    Attributes
    ----------
    image : numpy.ndarray
        ``float32 (ny, nx)`` image in ADU, with sky (not sky-subtracted), noise
        and saturation.
    header : astropy.io.fits.Header
        TAN WCS and detector keywords (GAIN, RDNOISE, SATURATE, FWHM, ...).
    truth : astropy.table.Table
        One row per injected object (see :func:`simulate_survey`).
    psf_image : numpy.ndarray
        The true PSF, pixel-integrated, centred on the central pixel of an odd
        ``float64`` image, normalised to sum 1.
    sky : numpy.ndarray or None
        The noiseless sky model, ``float32 (ny, nx)``, ADU.
    """

    image: np.ndarray
    header: fits.Header
    truth: Table
    psf_image: np.ndarray
    sky: np.ndarray | None = None


# --------------------------------------------------------------------------- internals


@dataclass(frozen=True)
class _Field:
    """Derived, per-exposure quantities shared by the object renderers."""

    cfg: SurveySimConfig
    ny: int
    nx: int
    sky_coeffs: tuple[float, float]  # sky = sky_adu * (1 + cx * xn + cy * yn)
    psf_fast: galsim.GSObject
    psf_accurate: galsim.GSObject
    psf_image: np.ndarray
    sum_p2: float
    psf_peak: float
    envelope: np.ndarray  # envelope[r]: max PSF pixel at Chebyshev radius >= r

    def sky_at(self, x: np.ndarray | float, y: np.ndarray | float) -> np.ndarray | float:
        """Noiseless sky (ADU) at 0-based pixel position(s)."""
        xn = np.asarray(x, dtype=float) / max(self.nx - 1, 1) - 0.5
        yn = np.asarray(y, dtype=float) / max(self.ny - 1, 1) - 0.5
        cx, cy = self.sky_coeffs
        return self.cfg.sky_adu * (1.0 + cx * xn + cy * yn)

    def sigma_at(self, x: np.ndarray | float, y: np.ndarray | float) -> np.ndarray | float:
        """Background-only pixel noise (ADU) at 0-based pixel position(s)."""
        c = self.cfg
        return np.sqrt(self.sky_at(x, y) / c.gain + (c.rdnoise / c.gain) ** 2)

    def half_for_flux(self, flux: float, sigma: float) -> int:
        """Stamp half-size that holds a point source down to the wing threshold."""
        thresh = _WING_FRACTION * sigma / max(flux, 1e-300)
        below = np.flatnonzero(self.envelope < thresh)
        half = int(below[0]) if below.size else _MAX_HALF
        # +1 px for the sub-pixel offset of the centre
        return int(min(max(half + 1, math.ceil(3.0 * self.cfg.fwhm_px)), _MAX_HALF))

    def needs_accuracy(self, peak_adu: float, sigma: float) -> bool:
        """Whether a profile is bright enough for default FFT ringing to show."""
        return self.cfg.psf_model == "moffat" and 5e-4 * peak_adu > 0.05 * sigma


def _make_psf(cfg: SurveySimConfig, *, accurate: bool) -> galsim.GSObject:
    """The PSF profile (arcsec units).

    ``accurate`` lowers GalSim's ``maxk_threshold`` so that the FFT ringing of
    a Moffat profile (~1e-5 of the peak by default) vanishes under the noise
    of very bright objects.  The folding threshold is relaxed for low-beta
    Moffat profiles whose wings would otherwise need enormous FFTs (the wings
    beyond the largest stamp are cut anyway).
    """
    fwhm = cfg.fwhm_px * cfg.pixscale
    if cfg.psf_model == "kolmogorov":  # smooth k-profile: the defaults are accurate
        return galsim.Kolmogorov(fwhm=fwhm)
    beta = cfg.moffat_beta
    alpha = cfg.fwhm_px / (2.0 * math.sqrt(2.0 ** (1.0 / beta) - 1.0))  # px
    tail = (1.0 + (2.0 * _MAX_HALF / alpha) ** 2) ** (1.0 - beta)  # flux beyond 256 px
    gsparams = galsim.GSParams(
        folding_threshold=max(5e-3, tail), maxk_threshold=1e-6 if accurate else 1e-3
    )
    return galsim.Moffat(beta=beta, fwhm=fwhm, gsparams=gsparams)


def _make_field(cfg: SurveySimConfig, rng: np.random.Generator) -> _Field:
    """Build the PSF, its envelope and the sky plane."""
    ny, nx = cfg.image_shape
    phi = rng.uniform(0.0, 2.0 * np.pi)
    norm = abs(math.cos(phi)) + abs(math.sin(phi))
    coeffs = (
        cfg.sky_gradient * math.cos(phi) / norm,
        cfg.sky_gradient * math.sin(phi) / norm,
    )
    psf_fast = _make_psf(cfg, accurate=False)
    psf_accurate = _make_psf(cfg, accurate=True)
    size = max(_PSF_MIN_SIZE, 2 * math.ceil(5.0 * cfg.fwhm_px) + 1)
    psf_image = psf_accurate.drawImage(
        nx=size, ny=size, scale=cfg.pixscale, dtype=np.float64
    ).array.copy()
    psf_image /= psf_image.sum()
    big = psf_accurate.drawImage(
        nx=2 * _MAX_HALF + 1, ny=2 * _MAX_HALF + 1, scale=cfg.pixscale, dtype=np.float64
    ).array
    idx = np.arange(-_MAX_HALF, _MAX_HALF + 1)
    cheb = np.maximum(np.abs(idx)[:, None], np.abs(idx)[None, :])
    ring_max = np.zeros(_MAX_HALF + 2)
    np.maximum.at(ring_max, cheb.ravel(), np.abs(big).ravel())
    envelope = np.maximum.accumulate(ring_max[::-1])[::-1]
    return _Field(
        cfg=cfg,
        ny=ny,
        nx=nx,
        sky_coeffs=coeffs,
        psf_fast=psf_fast,
        psf_accurate=psf_accurate,
        psf_image=psf_image,
        sum_p2=float(np.sum(psf_image**2)),
        psf_peak=float(psf_image.max()),
        envelope=envelope,
    )


def _count(density: float, area: float, rng: np.random.Generator) -> int:
    """Number of objects: ``density * area / 1024**2``, stochastically rounded."""
    expected = density * area / _REF_AREA
    base = math.floor(expected)
    return int(base + (rng.random() < expected - base))


def _loguniform(rng: np.random.Generator, low: float, high: float, n: int) -> np.ndarray:
    """``n`` log-uniform draws in ``[low, high]``."""
    return np.exp(rng.uniform(math.log(low), math.log(high), n))


class _Placer:
    """Draws positions, honouring a minimum separation (grid hash)."""

    def __init__(self, ny: int, nx: int, min_sep: float) -> None:
        self.ny, self.nx, self.min_sep = ny, nx, min_sep
        self.cells: dict[tuple[int, int], list[tuple[float, float]]] = {}

    def place(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Return up to ``n`` positions ``(x, y)``, shape ``(m, 2)``, uniform over the image."""
        lo_x, hi_x = -0.5, self.nx - 0.5
        lo_y, hi_y = -0.5, self.ny - 0.5
        if self.min_sep <= 0.0:
            return np.column_stack([rng.uniform(lo_x, hi_x, n), rng.uniform(lo_y, hi_y, n)])
        out = []
        for _ in range(n):
            for _attempt in range(100):
                x, y = rng.uniform(lo_x, hi_x), rng.uniform(lo_y, hi_y)
                if self._free(x, y):
                    self._add(x, y)
                    out.append((x, y))
                    break
        return np.array(out, dtype=float).reshape(-1, 2)

    def _cell(self, x: float, y: float) -> tuple[int, int]:
        """Grid cell of a position."""
        return (int(math.floor(x / self.min_sep)), int(math.floor(y / self.min_sep)))

    def _free(self, x: float, y: float) -> bool:
        """Whether no placed object lies within ``min_sep`` of ``(x, y)``."""
        cx, cy = self._cell(x, y)
        d2 = self.min_sep**2
        for i in (cx - 1, cx, cx + 1):
            for j in (cy - 1, cy, cy + 1):
                for px, py in self.cells.get((i, j), ()):
                    if (px - x) ** 2 + (py - y) ** 2 < d2:
                        return False
        return True

    def _add(self, x: float, y: float) -> None:
        """Record a placed position."""
        self.cells.setdefault(self._cell(x, y), []).append((x, y))


def _draw(
    prof: galsim.GSObject, x: float, y: float, half_x: int, half_y: int, scale: float
) -> tuple[np.ndarray, int, int]:
    """Draw ``prof`` centred at 0-based ``(x, y)`` on an odd stamp.

    Returns the stamp (float64) and the 0-based big-image indices of its
    lower-left pixel.  The stamp's central pixel is the pixel nearest to
    ``(x, y)``; GalSim's ``offset`` moves the profile from that pixel's centre.
    """
    ix, iy = int(math.floor(x + 0.5)), int(math.floor(y + 0.5))
    stamp = prof.drawImage(
        nx=2 * half_x + 1,
        ny=2 * half_y + 1,
        scale=scale,
        offset=(x - ix, y - iy),
        dtype=np.float64,
    ).array
    return stamp, ix - half_x, iy - half_y


def _add_stamp(scene: np.ndarray, stamp: np.ndarray, x_lo: int, y_lo: int, factor: float) -> None:
    """Add ``factor * stamp`` into ``scene`` at a lower-left corner, clipped to the image."""
    ny, nx = scene.shape
    sy, sx = stamp.shape
    x0, y0 = max(x_lo, 0), max(y_lo, 0)
    x1, y1 = min(x_lo + sx, nx), min(y_lo + sy, ny)
    if x1 <= x0 or y1 <= y0:
        return
    scene[y0:y1, x0:x1] += factor * stamp[y0 - y_lo : y1 - y_lo, x0 - x_lo : x1 - x_lo]


def _mag(flux: float, magzp: float) -> float:
    """``magzp - 2.5 log10(flux)`` (NaN for non-positive flux)."""
    return magzp - 2.5 * math.log10(flux) if flux > 0 else math.nan


# --------------------------------------------------------------------------- renderers

_Row = dict[str, object]


def _render_point_sources(
    scene: np.ndarray,
    f: _Field,
    xy: np.ndarray,
    flux: np.ndarray,
    kind: str,
) -> list[_Row]:
    """Draw stars (or saturated stars) of given flux at given positions."""
    cfg = f.cfg
    rows: list[_Row] = []
    sigma = np.atleast_1d(f.sigma_at(xy[:, 0], xy[:, 1])) if len(xy) else np.zeros(0)
    for (x, y), fl, sg in zip(xy, flux, sigma, strict=True):
        half = f.half_for_flux(fl, sg)
        psf = f.psf_accurate if f.needs_accuracy(fl * f.psf_peak, sg) else f.psf_fast
        stamp, x_lo, y_lo = _draw(psf, x, y, half, half, cfg.pixscale)
        _add_stamp(scene, stamp, x_lo, y_lo, fl)
        rows.append(
            {
                "kind": kind,
                "x": x,
                "y": y,
                "flux": fl,
                "mf_snr": fl * math.sqrt(f.sum_p2) / sg,
            }
        )
    return rows


def _render_stars(
    scene: np.ndarray, f: _Field, placer: _Placer, rng: np.random.Generator
) -> list[_Row]:
    """Stars with matched-filter S/N log-uniform in ``snr_range``."""
    cfg = f.cfg
    n = _count(cfg.star_density, f.nx * f.ny, rng)
    xy = placer.place(rng, n)
    snr = _loguniform(rng, *cfg.snr_range, len(xy))
    sigma = np.atleast_1d(f.sigma_at(xy[:, 0], xy[:, 1]))
    flux = snr * sigma / math.sqrt(f.sum_p2)
    return _render_point_sources(scene, f, xy, flux, "star")


def _render_saturated(
    scene: np.ndarray, f: _Field, placer: _Placer, rng: np.random.Generator
) -> list[_Row]:
    """Stars whose peak exceeds ``saturate`` by a log-uniform factor of 3-100."""
    cfg = f.cfg
    n = _count(cfg.saturated_star_density, f.nx * f.ny, rng)
    xy = placer.place(rng, n)
    factor = _loguniform(rng, 3.0, 100.0, len(xy))
    flux = factor * cfg.saturate / f.psf_peak
    return _render_point_sources(scene, f, xy, flux, "saturated_star")


def _render_galaxies(
    scene: np.ndarray, f: _Field, placer: _Placer, rng: np.random.Generator
) -> list[_Row]:
    """Bulge (de Vaucouleurs) + disk (exponential) galaxies convolved with the PSF."""
    cfg = f.cfg
    n = _count(cfg.galaxy_density, f.nx * f.ny, rng)
    xy = placer.place(rng, n)
    m = len(xy)
    snr = _loguniform(rng, *cfg.galaxy_snr_range, m)
    hlr_d = _loguniform(rng, 1.5, 8.0, m)
    hlr_b = hlr_d * rng.uniform(0.15, 0.5, m)
    bulge_frac = rng.uniform(0.0, 1.0, m)
    q = rng.uniform(0.3, 1.0, m)
    pa = rng.uniform(0.0, 180.0, m)
    ps = cfg.pixscale
    rows: list[_Row] = []
    for i in range(m):
        x, y = xy[i]
        sg = float(f.sigma_at(x, y))

        def profile(psf: galsim.GSObject, i: int = i) -> galsim.GSObject:
            bulge = galsim.DeVaucouleurs(
                half_light_radius=hlr_b[i] * ps, trunc=8.0 * hlr_b[i] * ps,
                gsparams=psf.gsparams,
            )
            disk = galsim.Exponential(half_light_radius=hlr_d[i] * ps, gsparams=psf.gsparams)
            gal = galsim.Add(
                [bulge.withFlux(bulge_frac[i]), disk.withFlux(1.0 - bulge_frac[i])]
            ).shear(q=q[i], beta=pa[i] * galsim.degrees)
            return galsim.Convolve(gal, psf)

        half0 = min(math.ceil(4.0 * hlr_d[i] + 3.0 * cfg.fwhm_px), _MAX_HALF)
        unit, x_lo, y_lo = _draw(profile(f.psf_fast), x, y, half0, half0, ps)
        g = unit / unit.sum()
        flux = snr[i] * sg / math.sqrt(float(np.sum(g**2)))
        # the exponential disk's wings along the major axis, and the truncated bulge
        rs = hlr_d[i] / 1.678347
        disk_flux = max((1.0 - bulge_frac[i]) * flux, 1e-300)
        peak_disk = disk_flux / (2 * math.pi * rs**2 * q[i])
        r_disk = rs * math.log(max(peak_disk / (_WING_FRACTION * sg), 1.0))
        half = max(
            f.half_for_flux(flux, sg),
            math.ceil(r_disk + 2.0 * cfg.fwhm_px),
            math.ceil(8.0 * hlr_b[i] + 2.0 * cfg.fwhm_px),
        )
        half = min(half, _MAX_HALF)
        accurate = f.needs_accuracy(flux * float(g.max()), sg)
        if half > half0 or accurate:
            psf = f.psf_accurate if accurate else f.psf_fast
            unit, x_lo, y_lo = _draw(profile(psf), x, y, half, half, ps)
        _add_stamp(scene, unit, x_lo, y_lo, flux)
        rows.append(
            {
                "kind": "galaxy",
                "x": x,
                "y": y,
                "flux": flux,
                "mf_snr": snr[i],
                "hlr": hlr_d[i],
                "bulge_hlr": hlr_b[i],
                "q": q[i],
                "pa_deg": pa[i],
                "bulge_frac": bulge_frac[i],
            }
        )
    return rows


def _render_streaks(scene: np.ndarray, f: _Field, rng: np.random.Generator) -> list[_Row]:
    """Fast movers: the PSF convolved with a line segment, both ends inside the image."""
    cfg = f.cfg
    n = _count(cfg.n_streaks, f.nx * f.ny, rng)
    ps = cfg.pixscale
    max_len = float(min(f.nx, f.ny) - 1)
    rows: list[_Row] = []
    for _ in range(n):
        length = min(rng.uniform(*cfg.streak_length_range), max_len)
        angle = rng.uniform(0.0, 180.0)
        snr = float(_loguniform(rng, *cfg.streak_snr_range, 1)[0])
        dx = 0.5 * length * math.cos(math.radians(angle))
        dy = 0.5 * length * math.sin(math.radians(angle))
        # both end points inside the image
        x = rng.uniform(abs(dx), f.nx - 1 - abs(dx))
        y = rng.uniform(abs(dy), f.ny - 1 - abs(dy))
        sg = float(f.sigma_at(x, y))

        def profile(psf: galsim.GSObject) -> galsim.GSObject:
            line = galsim.Box(length * ps, 1e-3 * ps, gsparams=psf.gsparams)
            return galsim.Convolve(line.rotate(angle * galsim.degrees), psf)

        margin0 = math.ceil(3.0 * cfg.fwhm_px) + 2
        hx0, hy0 = math.ceil(abs(dx)) + margin0, math.ceil(abs(dy)) + margin0
        unit, x_lo, y_lo = _draw(profile(f.psf_fast), x, y, hx0, hy0, ps)
        s = unit / unit.sum()
        flux = snr * sg / math.sqrt(float(np.sum(s**2)))
        margin = min(f.half_for_flux(flux, sg), _MAX_HALF // 2)
        accurate = f.needs_accuracy(flux * float(s.max()), sg)
        if margin > margin0 or accurate:
            psf = f.psf_accurate if accurate else f.psf_fast
            hx, hy = math.ceil(abs(dx)) + margin, math.ceil(abs(dy)) + margin
            unit, x_lo, y_lo = _draw(profile(psf), x, y, hx, hy, ps)
        _add_stamp(scene, unit, x_lo, y_lo, flux)
        rows.append(
            {
                "kind": "streak",
                "x": x,
                "y": y,
                "flux": flux,
                "mf_snr": snr,
                "x0": x - dx,
                "y0": y - dy,
                "x1": x + dx,
                "y1": y + dy,
                "length": length,
                "angle_deg": angle,
            }
        )
    return rows


_STEPS = ((1, 0), (1, 1), (0, 1), (-1, 1), (-1, 0), (-1, -1), (0, -1), (1, -1))


def _render_cosmic_rays(scene: np.ndarray, f: _Field, rng: np.random.Generator) -> list[_Row]:
    """Short 8-connected tracks of 1-10 sharp pixels (not PSF-convolved)."""
    cfg = f.cfg
    n = _count(cfg.cosmic_ray_density, f.nx * f.ny, rng)
    rows: list[_Row] = []
    for _ in range(n):
        npix = int(rng.integers(1, 11))
        px, py = int(rng.integers(0, f.nx)), int(rng.integers(0, f.ny))
        direction = int(rng.integers(0, 8))
        pixels = [(px, py)]
        for _step in range(npix - 1):
            r = rng.random()
            if r > 0.7:
                direction = (direction + (1 if r > 0.85 else -1)) % 8
            sx, sy = _STEPS[direction]
            px, py = px + sx, py + sy
            if not (0 <= px < f.nx and 0 <= py < f.ny) or (px, py) in pixels:
                break
            pixels.append((px, py))
        sg = float(f.sigma_at(pixels[0][0], pixels[0][1]))
        amp = sg * _loguniform(rng, 5.0, 50.0, len(pixels))
        if rng.random() < 0.2:  # a brighter hit
            amp *= float(_loguniform(rng, 1.0, 20.0, 1)[0])
        xs = np.array([p[0] for p in pixels])
        ys = np.array([p[1] for p in pixels])
        np.add.at(scene, (ys, xs), amp)
        flux = float(amp.sum())
        rows.append(
            {
                "kind": "cosmic_ray",
                "x": float(np.sum(xs * amp) / flux),
                "y": float(np.sum(ys * amp) / flux),
                "flux": flux,
                "mf_snr": float(np.sqrt(np.sum(amp**2)) / sg),
                "npix": len(pixels),
            }
        )
    return rows


def _render_hot_pixels(scene: np.ndarray, f: _Field, rng: np.random.Generator) -> list[_Row]:
    """Single pixels 10-1000 sigma_pix above the sky (log-uniform)."""
    cfg = f.cfg
    n = _count(cfg.hot_pixel_density, f.nx * f.ny, rng)
    xs = rng.integers(0, f.nx, n)
    ys = rng.integers(0, f.ny, n)
    sigma = np.atleast_1d(f.sigma_at(xs, ys))
    amp = sigma * _loguniform(rng, 10.0, 1000.0, n)
    np.add.at(scene, (ys, xs), amp)
    return [
        {
            "kind": "hot_pixel",
            "x": float(x),
            "y": float(y),
            "flux": float(a),
            "mf_snr": float(a / s),
            "npix": 1,
        }
        for x, y, a, s in zip(xs, ys, amp, sigma, strict=True)
    ]


def _spill(seg: np.ndarray, amount: float, saturate: float) -> None:
    """Pour ``amount`` of charge along ``seg`` (a view), filling pixels up to ``saturate``."""
    if amount <= 0.0 or seg.size == 0:
        return
    room = np.maximum(saturate - seg, 0.0)
    cum = np.cumsum(room)
    k = int(np.searchsorted(cum, amount, side="left"))
    seg[:k] = np.maximum(seg[:k], saturate)
    if k < seg.size:  # the last pixel takes the rest; beyond k the charge is used up
        seg[k] += amount - (cum[k - 1] if k > 0 else 0.0)


def _apply_saturation(image: np.ndarray, saturate: float) -> None:
    """Clip pixels above ``saturate`` and bleed their excess along columns (in place).

    Each run of over-saturated pixels in a column is clipped to ``saturate`` and
    its excess is split in two halves, poured up and down the column into the
    neighbouring pixels until used up; charge running off the image is lost.
    """
    cols = np.flatnonzero((image > saturate).any(axis=0))
    for c in cols:
        col = image[:, c].copy()
        while True:
            over = np.flatnonzero(col > saturate)
            if over.size == 0:
                break
            breaks = np.flatnonzero(np.diff(over) != 1)
            a = int(over[0])
            b = int(over[breaks[0]]) if breaks.size else int(over[-1])
            excess = float(np.sum(col[a : b + 1] - saturate))
            col[a : b + 1] = saturate
            _spill(col[b + 1 :], 0.5 * excess, saturate)
            _spill(col[:a][::-1], 0.5 * excess, saturate)
        image[:, c] = col


def _bleed_extents(image: np.ndarray, saturate: float, rows: list[_Row]) -> None:
    """Record the rows spanned by each saturated star's saturated region."""
    labels, _ = ndimage.label(image >= saturate)
    slices = ndimage.find_objects(labels)
    ny, nx = image.shape
    for row in rows:
        if row["kind"] != "saturated_star":
            continue
        ix = int(math.floor(float(row["x"]) + 0.5))
        iy = int(math.floor(float(row["y"]) + 0.5))
        if 0 <= ix < nx and 0 <= iy < ny and labels[iy, ix] > 0:
            sl = slices[labels[iy, ix] - 1]
            row["bleed_y0"] = sl[0].start
            row["bleed_y1"] = sl[0].stop - 1


# --------------------------------------------------------------------------- header, truth


def _make_header(cfg: SurveySimConfig, ny: int, nx: int) -> fits.Header:
    """TAN WCS plus detector and simulation keywords."""
    s = cfg.pixscale / 3600.0
    rot = math.radians(cfg.rotation_deg)
    h = fits.Header()
    h["WCSAXES"] = (2, "number of WCS axes")
    h["CTYPE1"] = ("RA---TAN", "gnomonic projection, RA")
    h["CTYPE2"] = ("DEC--TAN", "gnomonic projection, Dec")
    h["CUNIT1"] = ("deg", "unit of CRVAL1 and CD1_j")
    h["CUNIT2"] = ("deg", "unit of CRVAL2 and CD2_j")
    h["CRPIX1"] = ((nx + 1) / 2.0, "reference pixel x (1-based FITS: image centre)")
    h["CRPIX2"] = ((ny + 1) / 2.0, "reference pixel y (1-based FITS: image centre)")
    h["CRVAL1"] = (float(cfg.ra_center), "[deg] RA at the reference pixel")
    h["CRVAL2"] = (float(cfg.dec_center), "[deg] Dec at the reference pixel")
    h["CD1_1"] = (-s * math.cos(rot), "[deg/px] WCS CD matrix (RA grows east, to -x)")
    h["CD1_2"] = (s * math.sin(rot), "[deg/px] WCS CD matrix")
    h["CD2_1"] = (s * math.sin(rot), "[deg/px] WCS CD matrix")
    h["CD2_2"] = (s * math.cos(rot), "[deg/px] WCS CD matrix")
    h["RADESYS"] = ("ICRS", "celestial reference frame")
    h["BUNIT"] = ("adu", "pixel values are ADU (sky not subtracted)")
    h["GAIN"] = (float(cfg.gain), "[e-/ADU] detector gain")
    h["RDNOISE"] = (float(cfg.rdnoise), "[e-] read noise")
    h["SATURATE"] = (float(cfg.saturate), "[ADU] saturation level (pixels clipped here)")
    h["EXPTIME"] = (float(cfg.exptime), "[s] exposure time")
    h["FWHM"] = (float(cfg.fwhm_px), "[px] PSF FWHM")
    h["SEEING"] = (float(cfg.fwhm_px * cfg.pixscale), "[arcsec] PSF FWHM")
    h["PIXSCALE"] = (float(cfg.pixscale), "[arcsec/px] pixel scale")
    h["MAGZP"] = (float(cfg.magzp), "[mag] zero point: mag = MAGZP - 2.5 log10(ADU)")
    h["PSFMODEL"] = (cfg.psf_model, "PSF profile of the simulation")
    if cfg.psf_model == "moffat":
        h["BETA"] = (float(cfg.moffat_beta), "Moffat beta of the PSF")
    h["SKYLEVEL"] = (float(cfg.sky_adu), "[ADU] mean sky level per pixel")
    h["SKYGRAD"] = (float(cfg.sky_gradient), "fractional sky change corner to corner")
    h["OBSMODE"] = ("sidereal", "observation mode")
    h["SIMSEED"] = (int(cfg.seed), "random seed of the simulation")
    h["SIMHASH"] = (cfg.config_hash(), "hash of the simulation configuration")
    return h


# name -> (dtype, unit, fill, description)
_COLUMNS: dict[str, tuple[str, str | None, object, str]] = {
    "id": ("int64", None, 0, "row number, 0..N-1"),
    "kind": ("U14", None, "", "object kind: " + ", ".join(TRUTH_KINDS)),
    "x": ("float64", "pix", math.nan, "0-based x of the centroid (pixel i centre at i)"),
    "y": ("float64", "pix", math.nan, "0-based y of the centroid (pixel j centre at j)"),
    "flux": ("float64", "adu", math.nan, "total flux before noise and saturation"),
    "mag": ("float64", "mag", math.nan, "MAGZP - 2.5 log10(flux)"),
    "mf_snr": ("float64", None, math.nan, "matched-filter S/N (background noise only)"),
    "hlr": ("float64", "pix", math.nan, "galaxy disk half-light radius"),
    "bulge_hlr": ("float64", "pix", math.nan, "galaxy bulge half-light radius"),
    "q": ("float64", None, math.nan, "galaxy axis ratio b/a"),
    "pa_deg": ("float64", "deg", math.nan, "galaxy major axis angle from +x towards +y"),
    "bulge_frac": ("float64", None, math.nan, "galaxy bulge flux fraction"),
    "x0": ("float64", "pix", math.nan, "streak start x (0-based)"),
    "y0": ("float64", "pix", math.nan, "streak start y (0-based)"),
    "x1": ("float64", "pix", math.nan, "streak end x (0-based)"),
    "y1": ("float64", "pix", math.nan, "streak end y (0-based)"),
    "length": ("float64", "pix", math.nan, "streak length"),
    "angle_deg": ("float64", "deg", math.nan, "streak angle from +x towards +y, [0, 180)"),
    "npix": ("int64", None, 0, "pixels hit (cosmic ray, hot pixel); 0 otherwise"),
    "bleed_y0": ("int64", "pix", -1, "first row of a saturated star's saturated region, or -1"),
    "bleed_y1": ("int64", "pix", -1, "last row of a saturated star's saturated region, or -1"),
}


def _truth_table(rows: list[_Row], cfg: SurveySimConfig, sum_p2: float) -> Table:
    """Assemble the truth table with the full schema (also when empty)."""
    n = len(rows)
    cols = []
    for name, (dtype, unit, fill, desc) in _COLUMNS.items():
        if name == "id":
            values = np.arange(n, dtype=np.int64)
        elif name == "mag":
            values = np.array([_mag(float(r["flux"]), cfg.magzp) for r in rows], dtype=dtype)
        else:
            values = np.array([r.get(name, fill) for r in rows], dtype=dtype)
        if n == 0:
            values = np.zeros(0, dtype=dtype)
        cols.append((name, values, unit, desc))
    table = Table()
    for name, values, unit, desc in cols:
        table[name] = values
        if unit is not None:
            table[name].unit = unit
        table[name].description = desc
    table.meta["config"] = cfg.to_dict()
    table.meta["config_hash"] = cfg.config_hash()
    table.meta["psf_sum_p2"] = sum_p2
    table.meta["mf_snr"] = (
        "flux * sqrt(sum P_i^2) / sigma_pix; P = normalised pixel-integrated profile "
        "(centred PSF image for stars); sigma_pix^2 = sky_local/gain + (rdnoise/gain)^2 [ADU^2]"
    )
    return table


# --------------------------------------------------------------------------- public


def simulate_survey(config: SurveySimConfig = SurveySimConfig()) -> SimulatedExposure:
    """Render a deterministic simulated survey exposure and its truth table.

    Parameters
    ----------
    config : SurveySimConfig
        All parameters, including the random seed.

    Returns
    -------
    SimulatedExposure
        ``image`` (float32 ADU, with sky, noise and saturation), ``header``
        (TAN WCS, GAIN, RDNOISE, SATURATE, EXPTIME, FWHM, SEEING, PIXSCALE,
        MAGZP, PSFMODEL, BETA, SKYLEVEL, OBSMODE, SIMSEED, BUNIT), ``truth``,
        ``psf_image`` and the noiseless ``sky``.

    Notes
    -----
    The truth table has one row per object, in the order saturated stars,
    galaxies, stars, streaks, cosmic rays, hot pixels, with columns ``id``,
    ``kind``, ``x``, ``y`` (0-based), ``flux`` (ADU), ``mag``, ``mf_snr``,
    galaxy shape ``hlr`` (disk), ``bulge_hlr``, ``q``, ``pa_deg``,
    ``bulge_frac``, streak geometry ``x0``, ``y0``, ``x1``, ``y1``,
    ``length``, ``angle_deg``, ``npix`` and, for saturated stars, the rows
    ``bleed_y0``..``bleed_y1`` of their saturated region.  Columns that do
    not apply to a kind hold NaN (floats), 0 (``npix``) or -1 (bleed rows).
    Each kind draws from its own random stream, so changing one density
    leaves the other kinds unchanged (unless ``min_separation_px`` > 0).

    Examples
    --------
    >>> exp = simulate_survey(SurveySimConfig(size=256, seed=3))
    >>> exp.image.shape, exp.image.dtype
    ((256, 256), dtype('float32'))
    """
    cfg = config
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(cfg.seed).spawn(8)]
    rng_sky, rng_sat, rng_gal, rng_star, rng_streak, rng_cr, rng_hot, rng_noise = streams
    f = _make_field(cfg, rng_sky)
    ny, nx = f.ny, f.nx
    yy, xx = np.mgrid[0:ny, 0:nx]
    sky = np.asarray(f.sky_at(xx, yy), dtype=np.float64)
    del yy, xx
    scene = sky.copy()
    placer = _Placer(ny, nx, float(cfg.min_separation_px))
    rows: list[_Row] = []
    rows += _render_saturated(scene, f, placer, rng_sat)
    rows += _render_galaxies(scene, f, placer, rng_gal)
    rows += _render_stars(scene, f, placer, rng_star)
    rows += _render_streaks(scene, f, rng_streak)
    rows += _render_cosmic_rays(scene, f, rng_cr)
    rows += _render_hot_pixels(scene, f, rng_hot)

    if cfg.add_noise:
        electrons = np.clip(scene * cfg.gain, 0.0, None)
        image = rng_noise.poisson(electrons).astype(np.float64)
        del electrons
        if cfg.rdnoise > 0:
            image += rng_noise.normal(0.0, cfg.rdnoise, image.shape)
        image /= cfg.gain
    else:
        image = scene
    _apply_saturation(image, cfg.saturate)
    _bleed_extents(image, cfg.saturate, rows)
    return SimulatedExposure(
        image=image.astype(np.float32),
        header=_make_header(cfg, ny, nx),
        truth=_truth_table(rows, cfg, f.sum_p2),
        psf_image=f.psf_image,
        sky=sky.astype(np.float32),
    )

"""Deterministic simulated fluorescence-microscopy images with a label mask as truth.

:func:`simulate_microscopy` renders one widefield fluorescence image of stained
nuclei from a :class:`MicroscopySimConfig`: filled, anti-aliased ellipses with
multiplicative chromatin texture, a dim population, clumps of 2-4 touching
nuclei, blurred by the diffraction-limited (Airy) PSF of the objective, with
radial vignetting, a uniform background, Poisson and read noise, and 16-bit (or
fewer) ADU quantisation.  It returns a :class:`SimulatedMicroscopy` holding the
``uint16`` image, the ``int32`` label mask of the noiseless object model, a
truth table with one row per nucleus, the PSF image and the acquisition
metadata.  The same configuration always gives a bit-identical result; the
random seed lives in the configuration.

Conventions
-----------
* Pixel coordinates are **0-based**: the centre of pixel ``image[j, i]`` is at
  ``(x, y) = (i, j)``.
* Angles (``angle_deg``) are those of the major axis, measured from the +x
  axis towards +y in pixel coordinates, in ``[0, 180)``.
* Signals are in electrons (e-) until the last step; the image is in ADU
  (``electrons / gain``).

Object model
------------
Each nucleus is an ellipse whose major-axis diameter is uniform in
``nucleus_diameter_um`` and whose axis ratio is uniform in
``axis_ratio_range``, at a uniform random angle.  Its pixel coverage is
computed by 4 x 4 supersampling (anti-aliased edges).  Its plateau level
``brightness_e`` (the truth column: the peak signal of the flat-topped
nucleus, e- per pixel, before texture, PSF and vignetting) is log-normal with a
mean of ``brightness_e`` and a log-width of 0.25; a random ``dim_fraction`` of
the nuclei (exactly ``round(dim_fraction * N)``) are then made 5-10 times
dimmer (uniform factor).  The chromatin texture multiplies the plateau by
``max(0, 1 + texture * n)``, where ``n`` is white noise smoothed by a Gaussian
of sigma 0.5 um and normalised to unit variance (its autocorrelation falls to
1/e at 1 um).

Where nuclei overlap, contributions add up to a cap: the scene is
``min(sum_k cov_k * L_k, max_k L_k)`` over the nuclei ``k`` that cover the
pixel, where ``cov_k`` is the coverage and ``L_k`` the textured level.  A
pixel shared half-and-half along a common edge therefore shows no dark seam,
while a fully overlapped pixel shows the brighter nucleus (as in a crowded
monolayer, where cells push each other aside rather than stack).

Placement
---------
The number of nuclei is ``density_per_mm2`` times the field area,
stochastically rounded.  About ``clump_fraction`` of them are grouped into
clumps of 2-4 and placed first: a clump's first nucleus at a free random
position, each further one next to a random member of its clump, at a
random direction and at the distance where the two ellipses meet along the
line of centres less an overlap of ``1 px + U(0, 0.2) * min(minor semi-axes)``.
A clump member is accepted when it overlaps its own clump (at least one label
pixel, at most 20 % of its own area), leaves every earlier member at least
60 % of its area visible, and keeps a gap from every other nucleus.  The
remaining nuclei are placed isolated by rejection sampling.  Every nucleus lies
entirely inside the field and keeps a gap of ``max(2 px, 1 um)`` from nuclei of
other clumps.  Nuclei that cannot be placed after a bounded number of tries are
dropped (so a very dense field holds fewer than asked; a clump reduced to one
nucleus counts as isolated).

Label mask and truth
--------------------
``labels`` holds the nucleus number (1..N, in placement order: clumps first)
on the pixels whose coverage is at least 1/2, from the noiseless object model
before PSF blur; where nuclei overlap the later one is on top.  The truth
table's ``x``, ``y`` and ``area_px`` are measured on this mask (the visible
part of the nucleus); ``x_center``, ``y_center``, ``major_um``, ``minor_um``
and ``angle_deg`` describe the whole ellipse.  ``touching`` is true when a
nucleus shares a pixel edge with another nucleus in ``labels``.

Detector model
--------------
The scene (e-) is convolved with the pixel-integrated Airy PSF
(:func:`true_airy_psf`, ``scipy.signal.fftconvolve``), the uniform background
``background_e`` (autofluorescence, which is illuminated and imaged like the
nuclei) is added, and the sum is multiplied by the vignetting map
``1 - vignetting * (r / r_corner)**2`` (``r`` the distance from the image
centre, ``r_corner`` that of the corner pixel centres).  Poisson noise and
Gaussian read noise (``read_noise_e``) are added, the result is divided by
``gain``, rounded to the nearest integer and clipped to
``[0, 2**bit_depth - 1]`` ADU (saturation; no wrap-around).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from astropy.table import Table
from scipy import ndimage, signal, special

from contracts.config import Config, check_int, check_range
from contracts.errors import ConfigError, PSFError

__all__ = ["MicroscopySimConfig", "SimulatedMicroscopy", "true_airy_psf", "simulate_microscopy"]

# v = 2 pi NA r / lambda of the half maximum and of the first five dark rings of (2 J1(v)/v)^2
_AIRY_HALF_MAX_V = 1.6163399561827
_AIRY_ZEROS_V = (3.8317059702, 7.0155866698, 10.1734681351, 13.3236919363, 16.4706300509)
_AIRY_FWHM_FACTOR = 2.0 * _AIRY_HALF_MAX_V / (2.0 * math.pi)  # FWHM = 0.5145 lambda / NA
_PSF_RINGS = 5  # the PSF image reaches the 5th dark ring (at least the 3rd, as promised)
_MAX_PSF_FWHM_PX = 50.0  # finer sampling makes huge PSF images for no benefit

_SUPERSAMPLE = 4  # coverage of nucleus edges: 4 x 4 samples per pixel
_LOG_SIGMA = 0.25  # log-width of the log-normal nucleus brightness
_DIM_FACTOR = (5.0, 10.0)  # dim nuclei are this many times dimmer (uniform)
_TEXTURE_SIGMA_UM = 0.5  # Gaussian smoothing of the texture noise: ACF 1/e at 1 um
_CLUMP_SIZES = (2, 4)  # clumps hold 2..4 nuclei
_GAP_UM = 1.0  # minimum gap between nuclei of different clumps (and >= _GAP_MIN_PX)
_GAP_MIN_PX = 2.0
_MAX_OWN_OVERLAP = 0.2  # a clump member overlaps its clump on at most this fraction of itself
_MIN_VISIBLE = 0.6  # every clump member keeps at least this fraction of its area visible
_TRIES_ISOLATED = 100  # positions tried per isolated nucleus (or clump seed)
_TRIES_MEMBER = 30  # positions tried per further clump member


# --------------------------------------------------------------------------- config


@dataclass(frozen=True)
class MicroscopySimConfig(Config):
    """Configuration of :func:`simulate_microscopy` (frozen, validated).

    Parameters
    ----------
    shape : tuple of int
        ``(ny, nx)`` of the image, each in ``[16, 65536]``.
    seed : int
        Random seed; the same configuration gives a bit-identical result.
    pixel_size_um : float
        Object-plane pixel size, um (camera pixel / magnification; 6.5 um / 20x
        = 0.325 um).
    numerical_aperture : float
        Numerical aperture of the objective, ``(0, 1.7]``.
    emission_wavelength_nm : float
        Emission wavelength, nm, ``[200, 2000]``.
    nucleus_diameter_um : tuple of float
        ``(low, high)`` range of major-axis diameters, um (uniform).
    axis_ratio_range : tuple of float
        ``(low, high)`` range of minor / major axis ratios, in ``(0, 1]``.
    density_per_mm2 : float
        Nuclei per mm^2 of field (stochastically rounded to a count).
    clump_fraction : float
        Fraction of the nuclei placed in clumps of 2-4 touching nuclei.
    dim_fraction : float
        Fraction of the nuclei made 5-10 times dimmer.
    brightness_e : float
        Mean plateau (peak) signal of a bright nucleus, e- per pixel.
    texture : float
        Relative amplitude (standard deviation) of the chromatin texture.
    background_e : float
        Uniform autofluorescence / offset level, e- per pixel (vignetted).
    vignetting : float
        Fractional intensity drop at the image corners, ``[0, 1]``.
    read_noise_e : float
        Gaussian read noise, e-.
    gain : float
        Camera gain, e- / ADU.
    bit_depth : int
        Output bit depth in ``[8, 16]``; the image is ``uint16`` ADU clipped at
        ``2**bit_depth - 1``.

    Raises
    ------
    ConfigError
        When a value is of the wrong type or out of range, naming the field;
        also when the nuclei do not fit the field or are under 2 pixels
        across, or when the PSF is sampled by more than 50 pixels per FWHM.
    """

    shape: tuple[int, int] = (1024, 1024)
    seed: int = 1
    pixel_size_um: float = 0.325
    numerical_aperture: float = 0.75
    emission_wavelength_nm: float = 520.0
    nucleus_diameter_um: tuple[float, float] = (8.0, 14.0)
    axis_ratio_range: tuple[float, float] = (0.6, 1.0)
    density_per_mm2: float = 1500.0
    clump_fraction: float = 0.3
    dim_fraction: float = 0.15
    brightness_e: float = 2000.0
    texture: float = 0.25
    background_e: float = 100.0
    vignetting: float = 0.3
    read_noise_e: float = 2.0
    gain: float = 1.0
    bit_depth: int = 16

    def __post_init__(self) -> None:
        shape = self._tuple("shape")
        for i, n in enumerate(shape):
            check_int(f"shape[{i}]", n)
            check_range(f"shape[{i}]", n, low=16, high=65536)
        check_int("seed", self.seed)
        check_range("seed", self.seed, low=0, high=2**63 - 1)
        check_range("pixel_size_um", self.pixel_size_um, low=0.0, high=100.0, low_inclusive=False)
        check_range(
            "numerical_aperture", self.numerical_aperture, low=0.0, high=1.7, low_inclusive=False
        )
        check_range("emission_wavelength_nm", self.emission_wavelength_nm, low=200.0, high=2000.0)
        self._check_pair("nucleus_diameter_um", low=0.0, high=1e4)
        self._check_pair("axis_ratio_range", low=0.0, high=1.0)
        check_range("density_per_mm2", self.density_per_mm2, low=0.0, high=1e6)
        check_range("clump_fraction", self.clump_fraction, low=0.0, high=1.0)
        check_range("dim_fraction", self.dim_fraction, low=0.0, high=1.0)
        check_range("brightness_e", self.brightness_e, low=0.0, high=1e9, low_inclusive=False)
        check_range("texture", self.texture, low=0.0, high=1.0)
        check_range("background_e", self.background_e, low=0.0, high=1e9)
        check_range("vignetting", self.vignetting, low=0.0, high=1.0)
        check_range("read_noise_e", self.read_noise_e, low=0.0, high=1e6)
        check_range("gain", self.gain, low=0.0, high=1e6, low_inclusive=False)
        check_int("bit_depth", self.bit_depth)
        check_range("bit_depth", self.bit_depth, low=8, high=16)
        # derived constraints
        fwhm_px = self.psf_fwhm_px
        if fwhm_px > _MAX_PSF_FWHM_PX:
            raise ConfigError(
                f"pixel_size_um: the PSF FWHM would be {fwhm_px:.1f} px "
                f"(> {_MAX_PSF_FWHM_PX:g}); use a larger pixel size"
            )
        d_lo, d_hi = self.nucleus_diameter_um
        smallest = self.axis_ratio_range[0] * d_lo / self.pixel_size_um
        if smallest < 2.0:
            raise ConfigError(
                f"nucleus_diameter_um, axis_ratio_range: the smallest nucleus is "
                f"{smallest:.2f} px across its minor axis; it must be >= 2 px "
                f"(pixel_size_um={self.pixel_size_um})"
            )
        need = d_hi / self.pixel_size_um + 2.0 * self.gap_px + 4.0
        if need > min(shape):
            raise ConfigError(
                f"nucleus_diameter_um: the largest nucleus needs {need:.0f} px "
                f"(with its gap), the field is only {min(shape)} px across"
            )

    def _tuple(self, name: str) -> tuple:
        """Return the tuple field ``name`` (a list is turned into a tuple), or raise."""
        value = getattr(self, name)
        if isinstance(value, list):
            value = tuple(value)
            object.__setattr__(self, name, value)
        if not isinstance(value, tuple) or len(value) != 2:
            raise ConfigError(f"{name}: expected a pair of values, got {value!r}")
        return value

    def _check_pair(self, name: str, *, low: float, high: float) -> None:
        """Validate a ``(low, high)`` range field with ``low < value <= high``."""
        value = self._tuple(name)
        check_range(f"{name}[0]", value[0], low=low, high=high, low_inclusive=False)
        check_range(f"{name}[1]", value[1], low=low, high=high, low_inclusive=False)
        if value[1] < value[0]:
            raise ConfigError(f"{name}: low must be <= high, got {value!r}")

    @property
    def psf_fwhm_px(self) -> float:
        """FWHM of the Airy PSF, ``0.5145 lambda / NA``, in pixels."""
        lam_um = self.emission_wavelength_nm * 1e-3
        return _AIRY_FWHM_FACTOR * lam_um / self.numerical_aperture / self.pixel_size_um

    @property
    def gap_px(self) -> float:
        """Minimum gap between nuclei of different clumps, pixels."""
        return max(_GAP_MIN_PX, _GAP_UM / self.pixel_size_um)


# --------------------------------------------------------------------------- output


@dataclass(frozen=True)
class SimulatedMicroscopy:
    """One simulated fluorescence image and its truth.

    Attributes
    ----------
    image : numpy.ndarray
        ``uint16 (ny, nx)`` image in ADU (background included, clipped at
        ``2**bit_depth - 1``).
    labels : numpy.ndarray
        ``int32 (ny, nx)`` label mask of the noiseless object model before PSF
        blur: 0 is background, 1..N the nuclei (the later one on top where
        they overlap).
    truth : astropy.table.Table
        One row per nucleus, row ``k`` for label ``k + 1`` (see
        :func:`simulate_microscopy`).
    psf_image : numpy.ndarray
        The pixel-integrated Airy PSF used, ``float64``, odd size, centred on
        the central pixel, normalised to sum 1.
    metadata : dict
        Acquisition metadata, as an OME-TIFF would carry it: ``pixel_size_um``,
        ``numerical_aperture``, ``emission_wavelength_nm``, ``psf_fwhm_px``,
        ``psf_fwhm_um``, ``gain``, ``read_noise_e``, ``background_e``,
        ``vignetting``, ``bit_depth``, ``saturation_adu``, ...
    """

    image: np.ndarray
    labels: np.ndarray
    truth: Table
    psf_image: np.ndarray
    metadata: dict


# --------------------------------------------------------------------------- PSF


def true_airy_psf(
    numerical_aperture: float,
    wavelength_nm: float,
    pixel_size_um: float,
    *,
    oversample: int = 5,
) -> tuple[np.ndarray, float]:
    """The simulator's own truth PSF (to the 5th dark ring), kept independent of
    the detector's model :func:`moe_imaging.psf.airy_psf` so that a test of one
    is not a test of the other against itself.

    Pixel-integrated Airy PSF of a circular aperture (widefield, in focus).

    The intensity is ``(2 J1(v) / v)**2`` with ``v = 2 pi NA r / lambda``,
    averaged over ``oversample x oversample`` sub-pixel samples of each pixel.

    Parameters
    ----------
    numerical_aperture : float
        Numerical aperture of the objective (> 0).
    wavelength_nm : float
        Emission wavelength, nm (> 0).
    pixel_size_um : float
        Object-plane pixel size, um (> 0).
    oversample : int, optional
        Sub-pixel samples per pixel along each axis (>= 1).

    Returns
    -------
    image : numpy.ndarray
        ``float64`` square image of odd size, centred on its central pixel,
        normalised to sum 1; it reaches at least the 5th dark ring (radius
        ``2.62 lambda / NA``) and is at least 5 x 5 pixels.
    fwhm_px : float
        FWHM of the (un-integrated) Airy pattern, ``0.5145 lambda / NA``, in
        pixels.  The pixel-integrated image is slightly wider (about 2 % at 3.5
        px FWHM, 30 % at 1 px).

    Raises
    ------
    PSFError
        When an argument is not positive, or the PSF would be more than 50
        pixels across its FWHM.

    Examples
    --------
    >>> psf, fwhm = true_airy_psf(1.4, 520.0, 0.065)
    >>> round(fwhm, 2), psf.shape[0] % 2, round(float(psf.sum()), 12)
    (2.94, 1, 1.0)
    """
    for name, value in (
        ("numerical_aperture", numerical_aperture),
        ("wavelength_nm", wavelength_nm),
        ("pixel_size_um", pixel_size_um),
    ):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise PSFError(f"true_airy_psf: {name} must be a positive number, got {value!r}")
        if not math.isfinite(value):
            raise PSFError(f"true_airy_psf: {name} must be finite, got {value!r}")
    if isinstance(oversample, bool) or not isinstance(oversample, int) or oversample < 1:
        raise PSFError(f"true_airy_psf: oversample must be an integer >= 1, got {oversample!r}")
    lam_um = wavelength_nm * 1e-3
    fwhm_px = _AIRY_FWHM_FACTOR * lam_um / numerical_aperture / pixel_size_um
    if fwhm_px > _MAX_PSF_FWHM_PX:
        raise PSFError(
            f"true_airy_psf: FWHM {fwhm_px:.1f} px is over {_MAX_PSF_FWHM_PX:g} px; "
            "use a larger pixel size"
        )
    k_px = 2.0 * math.pi * numerical_aperture * pixel_size_um / lam_um  # v per pixel
    half = max(2, math.ceil(_AIRY_ZEROS_V[_PSF_RINGS - 1] / k_px))
    n = 2 * half + 1
    sub = (np.arange(oversample) + 0.5) / oversample - 0.5
    coord = (np.arange(-half, half + 1)[:, None] + sub[None, :]).ravel()
    v = k_px * np.hypot(coord[:, None], coord[None, :])
    with np.errstate(invalid="ignore", divide="ignore"):
        amp = np.where(v > 0.0, 2.0 * special.j1(v) / v, 1.0)
    fine = amp * amp
    image = fine.reshape(n, oversample, n, oversample).mean(axis=(1, 3))
    image /= image.sum()
    return image, float(fwhm_px)


# --------------------------------------------------------------------------- geometry


@dataclass
class _Nucleus:
    """A placed nucleus (internal, mutable while the field is built)."""

    cx: float
    cy: float
    a: float  # semi-major axis, px
    b: float  # semi-minor axis, px
    theta: float  # rad, major axis from +x towards +y
    group: int  # clump number, or a unique number for an isolated nucleus
    y0: int
    x0: int
    cov: np.ndarray  # float32 coverage on the bounding box
    full_area: int  # label pixels when placed (coverage >= 1/2)

    @property
    def slices(self) -> tuple[slice, slice]:
        """The bounding box as array slices."""
        h, w = self.cov.shape
        return slice(self.y0, self.y0 + h), slice(self.x0, self.x0 + w)


def _half_extent(a: float, b: float, theta: float) -> tuple[float, float]:
    """Half-width and half-height of the bounding box of a rotated ellipse."""
    c, s = math.cos(theta), math.sin(theta)
    return math.sqrt((a * c) ** 2 + (b * s) ** 2), math.sqrt((a * s) ** 2 + (b * c) ** 2)


def _radius(a: float, b: float, theta: float, phi: float) -> float:
    """Distance from the centre to the ellipse boundary in direction ``phi``."""
    d = phi - theta
    return 1.0 / math.sqrt((math.cos(d) / a) ** 2 + (math.sin(d) / b) ** 2)


def _inside(
    xs: np.ndarray, ys: np.ndarray, cx: float, cy: float, a: float, b: float, theta: float
) -> np.ndarray:
    """Whether the points ``(xs[None, :], ys[:, None])`` lie inside the ellipse."""
    c, s = math.cos(theta), math.sin(theta)
    dx = (xs - cx)[None, :]
    dy = (ys - cy)[:, None]
    u = dx * c + dy * s
    w = dy * c - dx * s
    return (u / a) ** 2 + (w / b) ** 2 <= 1.0


def _coverage(
    cx: float, cy: float, a: float, b: float, theta: float, y0: int, x0: int, h: int, w: int
) -> np.ndarray:
    """Fraction of each pixel of the box ``[y0:y0+h, x0:x0+w]`` inside the ellipse."""
    s = _SUPERSAMPLE
    sub = (np.arange(s) + 0.5) / s - 0.5
    xs = ((x0 + np.arange(w))[:, None] + sub[None, :]).ravel()
    ys = ((y0 + np.arange(h))[:, None] + sub[None, :]).ravel()
    inside = _inside(xs, ys, cx, cy, a, b, theta)
    return inside.reshape(h, s, w, s).mean(axis=(1, 3), dtype=np.float32)


class _Canvas:
    """Label and clump-group maps, and the placement rules."""

    def __init__(self, ny: int, nx: int, gap: float) -> None:
        self.ny, self.nx, self.gap = ny, nx, gap
        self.labels = np.zeros((ny, nx), dtype=np.int32)
        self.groups = np.zeros((ny, nx), dtype=np.int32)  # group + 1 on label pixels
        self.nuclei: list[_Nucleus] = []
        self.visible: list[int] = []  # visible label pixels per nucleus

    def try_place(
        self, cx: float, cy: float, a: float, b: float, theta: float, group: int, *, member: bool
    ) -> bool:
        """Place the ellipse if the rules allow it; return whether it was placed.

        Every nucleus must lie inside the field (1 px margin) and keep
        ``self.gap`` from the nuclei of other groups.  A clump ``member`` must
        also overlap its own group by 1 label pixel to ``_MAX_OWN_OVERLAP`` of
        its area, and leave each earlier member ``_MIN_VISIBLE`` of its area.
        """
        hx, hy = _half_extent(a, b, theta)
        x0, x1 = math.floor(cx - hx) - 1, math.ceil(cx + hx) + 1
        y0, y1 = math.floor(cy - hy) - 1, math.ceil(cy + hy) + 1
        if x0 < 0 or y0 < 0 or x1 >= self.nx or y1 >= self.ny:
            return False
        g = self.gap
        ex, ey = _half_extent(a + g, b + g, theta)
        ex0, ex1 = max(0, math.floor(cx - ex)), min(self.nx - 1, math.ceil(cx + ex))
        ey0, ey1 = max(0, math.floor(cy - ey)), min(self.ny - 1, math.ceil(cy + ey))
        near = self.groups[ey0 : ey1 + 1, ex0 : ex1 + 1]
        if np.any((near != 0) & (near != group + 1)):  # quick reject before the exact test
            xs = np.arange(ex0, ex1 + 1, dtype=float)
            ys = np.arange(ey0, ey1 + 1, dtype=float)
            zone = _inside(xs, ys, cx, cy, a + g, b + g, theta)
            hit = near[zone]
            if np.any((hit != 0) & (hit != group + 1)):
                return False
        h, w = y1 - y0 + 1, x1 - x0 + 1
        cov = _coverage(cx, cy, a, b, theta, y0, x0, h, w)
        mask = cov >= 0.5
        area = int(np.count_nonzero(mask))
        if area == 0:
            return False
        sl = (slice(y0, y1 + 1), slice(x0, x1 + 1))
        under = self.labels[sl][mask]
        under = under[under > 0]
        if member:
            if under.size == 0 or under.size > _MAX_OWN_OVERLAP * area:
                return False
            ids, counts = np.unique(under, return_counts=True)
            for k, c in zip(ids, counts, strict=True):
                if self.visible[k - 1] - c < _MIN_VISIBLE * self.nuclei[k - 1].full_area:
                    return False
        elif under.size:  # cannot happen for a new group (the gap test covers it)
            return False
        label = len(self.nuclei) + 1
        if under.size:
            ids, counts = np.unique(under, return_counts=True)
            for k, c in zip(ids, counts, strict=True):
                self.visible[k - 1] -= int(c)
        self.labels[sl][mask] = label
        self.groups[sl][mask] = group + 1
        self.nuclei.append(_Nucleus(cx, cy, a, b, theta, group, y0, x0, cov, area))
        self.visible.append(area)
        return True


def _clump_sizes(n_clumped: int, rng: np.random.Generator) -> list[int]:
    """Split ``n_clumped`` nuclei into clumps of 2-4 (a lone remainder is dropped)."""
    lo, hi = _CLUMP_SIZES
    sizes: list[int] = []
    rem = n_clumped
    while rem >= lo:
        s = int(rng.integers(lo, min(hi, rem) + 1))
        if rem - s == 1:  # never leave a single nucleus behind
            s = s + 1 if s < hi else s - 1
        sizes.append(s)
        rem -= s
    return sizes


def _draw_shape(cfg: MicroscopySimConfig, rng: np.random.Generator) -> tuple[float, float, float]:
    """Semi-axes (px) and angle (rad) of one nucleus."""
    d = rng.uniform(*cfg.nucleus_diameter_um) / cfg.pixel_size_um
    q = rng.uniform(*cfg.axis_ratio_range)
    theta = rng.uniform(0.0, math.pi)
    return 0.5 * d, 0.5 * d * q, theta


def _place_nuclei(cfg: MicroscopySimConfig, rng: np.random.Generator) -> _Canvas:
    """Place the clumps, then the isolated nuclei, on a new canvas."""
    ny, nx = cfg.shape
    canvas = _Canvas(ny, nx, cfg.gap_px)
    area_mm2 = ny * nx * (cfg.pixel_size_um * 1e-3) ** 2
    expected = cfg.density_per_mm2 * area_mm2
    n_total = int(math.floor(expected) + (rng.random() < expected - math.floor(expected)))
    sizes = _clump_sizes(round(cfg.clump_fraction * n_total), rng)
    n_isolated = n_total - sum(sizes)
    group = 0

    def place_free(grp: int) -> bool:
        a, b, theta = _draw_shape(cfg, rng)
        for _ in range(_TRIES_ISOLATED):
            cx, cy = rng.uniform(0.0, nx - 1.0), rng.uniform(0.0, ny - 1.0)
            if canvas.try_place(cx, cy, a, b, theta, grp, member=False):
                return True
        return False

    for size in sizes:
        if not place_free(group):
            group += 1
            continue
        members = [len(canvas.nuclei) - 1]
        for _ in range(size - 1):
            a, b, theta = _draw_shape(cfg, rng)
            for _try in range(_TRIES_MEMBER):
                p = canvas.nuclei[members[int(rng.integers(len(members)))]]
                phi = rng.uniform(0.0, 2.0 * math.pi)
                depth = 1.0 + rng.uniform(0.0, 0.2) * min(p.b, b)
                dist = _radius(p.a, p.b, p.theta, phi) + _radius(a, b, theta, phi) - depth
                cx, cy = p.cx + dist * math.cos(phi), p.cy + dist * math.sin(phi)
                if canvas.try_place(cx, cy, a, b, theta, group, member=True):
                    members.append(len(canvas.nuclei) - 1)
                    break
        group += 1
    for _ in range(n_isolated):
        place_free(group)
        group += 1
    return canvas


# --------------------------------------------------------------------------- rendering


def _texture_field(cfg: MicroscopySimConfig, rng: np.random.Generator) -> np.ndarray:
    """Unit-variance Gaussian-smoothed noise (float32) over the field."""
    noise = rng.standard_normal(cfg.shape, dtype=np.float32)
    sigma = _TEXTURE_SIGMA_UM / cfg.pixel_size_um
    smooth = ndimage.gaussian_filter(noise, sigma, mode="wrap")
    std = float(smooth.std())
    return smooth / std if std > 0 else smooth


def _render_scene(
    cfg: MicroscopySimConfig, nuclei: list[_Nucleus], brightness: np.ndarray, tex: np.ndarray
) -> np.ndarray:
    """Noiseless object model (e- per pixel): coverage x textured level, capped sums."""
    acc = np.zeros(cfg.shape, dtype=np.float64)
    cap = np.zeros(cfg.shape, dtype=np.float64)
    for nuc, level0 in zip(nuclei, brightness, strict=True):
        sl = nuc.slices
        level = level0 * np.clip(1.0 + cfg.texture * tex[sl].astype(np.float64), 0.0, None)
        acc[sl] += nuc.cov * level
        np.maximum(cap[sl], np.where(nuc.cov > 0, level, 0.0), out=cap[sl])
    return np.minimum(acc, cap)


def _vignetting_map(cfg: MicroscopySimConfig) -> np.ndarray:
    """``1 - vignetting * (r / r_corner)**2`` over the field."""
    ny, nx = cfg.shape
    yc, xc = 0.5 * (ny - 1), 0.5 * (nx - 1)
    r2_corner = xc * xc + yc * yc
    dx2 = ((np.arange(nx) - xc) ** 2)[None, :]
    dy2 = ((np.arange(ny) - yc) ** 2)[:, None]
    return 1.0 - cfg.vignetting * (dx2 + dy2) / r2_corner


# --------------------------------------------------------------------------- truth


# name -> (dtype, unit, description)
_COLUMNS: dict[str, tuple[str, str | None, str]] = {
    "label": ("int32", None, "value of the nucleus in the label mask (row + 1)"),
    "x": ("float64", "pix", "0-based x of the label-mask centroid (visible part)"),
    "y": ("float64", "pix", "0-based y of the label-mask centroid (visible part)"),
    "x_center": ("float64", "pix", "0-based x of the ellipse centre"),
    "y_center": ("float64", "pix", "0-based y of the ellipse centre"),
    "area_px": ("int64", "pix2", "pixels of the nucleus in the label mask"),
    "major_um": ("float64", "um", "major-axis diameter of the ellipse"),
    "minor_um": ("float64", "um", "minor-axis diameter of the ellipse"),
    "angle_deg": ("float64", "deg", "major-axis angle from +x towards +y, [0, 180)"),
    "brightness_e": ("float64", "electron", "plateau (peak) level before texture, PSF, vignetting"),
    "dim": ("bool", None, "member of the dim population (5-10x dimmer)"),
    "clump_id": ("int64", None, "clump number (0..), or -1 for an isolated nucleus"),
    "touching": ("bool", None, "shares a pixel edge with another nucleus in the label mask"),
}


def _touching(labels: np.ndarray, n: int) -> np.ndarray:
    """Per label 1..n: whether it shares a pixel edge (4-neighbour) with another label."""
    out = np.zeros(n + 1, dtype=bool)
    for p, q in ((labels[:, :-1], labels[:, 1:]), (labels[:-1, :], labels[1:, :])):
        m = (p != q) & (p > 0) & (q > 0)
        out[p[m]] = True
        out[q[m]] = True
    return out[1:]


def _truth_table(
    cfg: MicroscopySimConfig,
    canvas: _Canvas,
    brightness: np.ndarray,
    dim: np.ndarray,
) -> Table:
    """One row per nucleus, with the full schema also when there are none."""
    nuclei = canvas.nuclei
    n = len(nuclei)
    labels = canvas.labels
    # clumps: groups with >= 2 placed members, numbered 0.. in placement order
    group_counts: dict[int, int] = {}
    for nuc in nuclei:
        group_counts[nuc.group] = group_counts.get(nuc.group, 0) + 1
    clump_of: dict[int, int] = {}
    for nuc in nuclei:
        if group_counts[nuc.group] >= 2 and nuc.group not in clump_of:
            clump_of[nuc.group] = len(clump_of)
    xs, ys, areas = np.zeros(n), np.zeros(n), np.zeros(n, dtype=np.int64)
    for k, nuc in enumerate(nuclei):
        sl = nuc.slices
        jj, ii = np.nonzero(labels[sl] == k + 1)
        areas[k] = jj.size
        xs[k] = nuc.x0 + ii.mean()
        ys[k] = nuc.y0 + jj.mean()
    values = {
        "label": np.arange(1, n + 1),
        "x": xs,
        "y": ys,
        "x_center": [nuc.cx for nuc in nuclei],
        "y_center": [nuc.cy for nuc in nuclei],
        "area_px": areas,
        "major_um": [2.0 * nuc.a * cfg.pixel_size_um for nuc in nuclei],
        "minor_um": [2.0 * nuc.b * cfg.pixel_size_um for nuc in nuclei],
        "angle_deg": [math.degrees(nuc.theta) % 180.0 for nuc in nuclei],
        "brightness_e": brightness,
        "dim": dim,
        "clump_id": [clump_of.get(nuc.group, -1) for nuc in nuclei],
        "touching": _touching(labels, n),
    }
    table = Table()
    for name, (dtype, unit, desc) in _COLUMNS.items():
        table[name] = np.asarray(values[name], dtype=dtype).reshape(n)
        if unit is not None:
            table[name].unit = unit
        table[name].description = desc
    table.meta["config"] = cfg.to_dict()
    table.meta["config_hash"] = cfg.config_hash()
    return table


def _metadata(cfg: MicroscopySimConfig, fwhm_px: float, n: int) -> dict:
    """Acquisition metadata (what an OME-TIFF would carry)."""
    return {
        "mode": "microscopy",
        "observation_mode": "widefield_fluorescence",
        "dimension_order": "YX",
        "shape": tuple(int(s) for s in cfg.shape),
        "units": "adu",
        "pixel_size_um": float(cfg.pixel_size_um),
        "physical_size_x_um": float(cfg.pixel_size_um),
        "physical_size_y_um": float(cfg.pixel_size_um),
        "numerical_aperture": float(cfg.numerical_aperture),
        "emission_wavelength_nm": float(cfg.emission_wavelength_nm),
        "psf_model": "airy",
        "psf_fwhm_px": float(fwhm_px),
        "psf_fwhm_um": float(fwhm_px * cfg.pixel_size_um),
        "gain": float(cfg.gain),
        "read_noise_e": float(cfg.read_noise_e),
        "background_e": float(cfg.background_e),
        "vignetting": float(cfg.vignetting),
        "bit_depth": int(cfg.bit_depth),
        "saturation_adu": int(2**cfg.bit_depth - 1),
        "n_nuclei": int(n),
        "seed": int(cfg.seed),
        "config_hash": cfg.config_hash(),
    }


# --------------------------------------------------------------------------- public


def simulate_microscopy(config: MicroscopySimConfig = MicroscopySimConfig()) -> SimulatedMicroscopy:
    """Render a deterministic simulated fluorescence image of nuclei and its truth.

    Parameters
    ----------
    config : MicroscopySimConfig
        All parameters, including the random seed.

    Returns
    -------
    SimulatedMicroscopy
        ``image`` (uint16 ADU), ``labels`` (int32 truth mask), ``truth``,
        ``psf_image`` and ``metadata``.

    Notes
    -----
    The truth table has one row per nucleus, row ``k`` for label ``k + 1``,
    with columns ``label``, ``x``, ``y`` (0-based centroid of the nucleus in
    ``labels``), ``x_center``, ``y_center`` (ellipse centre), ``area_px``
    (pixels in ``labels``), ``major_um``, ``minor_um`` (ellipse diameters),
    ``angle_deg``, ``brightness_e`` (plateau level, e-), ``dim``,
    ``clump_id`` (-1 if isolated) and ``touching``.  With no nuclei it is
    empty, with the same columns.  Placement, brightness, texture and noise
    draw from separate random streams, so e.g. changing ``read_noise_e``
    leaves the nuclei unchanged.  See the module documentation for the model.

    Examples
    --------
    >>> sim = simulate_microscopy(MicroscopySimConfig(shape=(256, 256), seed=3))
    >>> sim.image.dtype, sim.labels.dtype, int(sim.labels.max()) == len(sim.truth)
    (dtype('uint16'), dtype('int32'), True)
    """
    cfg = config
    seeds = np.random.SeedSequence(cfg.seed).spawn(4)
    rng_place, rng_bright, rng_tex, rng_noise = (np.random.default_rng(s) for s in seeds)

    canvas = _place_nuclei(cfg, rng_place)
    n = len(canvas.nuclei)
    brightness = cfg.brightness_e * np.exp(
        _LOG_SIGMA * rng_bright.standard_normal(n) - 0.5 * _LOG_SIGMA**2
    )
    dim = np.zeros(n, dtype=bool)
    dim[rng_bright.permutation(n)[: round(cfg.dim_fraction * n)]] = True
    brightness[dim] /= rng_bright.uniform(*_DIM_FACTOR, int(dim.sum()))

    tex = _texture_field(cfg, rng_tex)
    scene = _render_scene(cfg, canvas.nuclei, brightness, tex)
    del tex
    psf, fwhm_px = true_airy_psf(cfg.numerical_aperture, cfg.emission_wavelength_nm, cfg.pixel_size_um)
    expected = signal.fftconvolve(scene, psf, mode="same")
    del scene
    np.clip(expected, 0.0, None, out=expected)
    expected += cfg.background_e
    expected *= _vignetting_map(cfg)

    electrons = rng_noise.poisson(expected).astype(np.float64)
    del expected
    if cfg.read_noise_e > 0:
        electrons += rng_noise.normal(0.0, cfg.read_noise_e, electrons.shape)
    adu = np.rint(electrons / cfg.gain)
    np.clip(adu, 0.0, float(2**cfg.bit_depth - 1), out=adu)
    return SimulatedMicroscopy(
        image=adu.astype(np.uint16),
        labels=canvas.labels,
        truth=_truth_table(cfg, canvas, brightness, dim),
        psf_image=psf,
        metadata=_metadata(cfg, fwhm_px, n),
    )

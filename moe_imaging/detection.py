"""Low-level detection primitives shared by the experts.

* :func:`matched_filter` -- the PSF matched filter with per-pixel inverse-variance
  weights, giving the detection S/N map and the maximum-likelihood PSF flux;
* :func:`threshold_for_false_rate` -- the detection threshold (in sigma) that
  gives a chosen expected number of pure-noise detections per megapixel, from
  the Euler characteristic of a smooth Gaussian random field;
* :func:`find_peaks` -- local maxima of the S/N map above a threshold with a
  deterministic tie break;
* :func:`refine_peaks` -- sub-pixel peak position and height from a Gaussian
  (log-parabola) fit to the 3x3 neighbourhood.

The matched filter
------------------
For pixels ``d_i`` with noise variances ``sigma_i^2`` (weights
``w_i = 1/sigma_i^2``, zero for masked pixels) and a point source of flux ``F``
centred on pixel ``p`` with PSF fractions ``P_{i-p}``, the maximum-likelihood
flux and its error are::

    F_hat(p) = sum_i w_i P_{i-p} d_i / sum_i w_i P_{i-p}^2 = num(p) / den2(p)
    sigma_F(p) = 1 / sqrt(den2(p))

and the detection significance is ``nu(p) = F_hat / sigma_F = num / sqrt(den2)``.
Both sums are correlations of the image with the PSF (and of the weights with
PSF^2), done here with FFTs.  Masked pixels simply carry no weight, so masks
need no special case and ``nu`` stays a unit-variance statistic.  For uniform
noise this reduces to the textbook ``sum P d / (sigma sqrt(sum P^2))``.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from scipy import fft as sp_fft
from scipy import ndimage, optimize

__all__ = [
    "matched_filter",
    "threshold_for_false_rate",
    "expected_false_peaks",
    "find_peaks",
    "refine_peaks",
    "connected_regions",
]


def matched_filter(
    image: np.ndarray,
    weight: np.ndarray,
    kernel: np.ndarray,
    *,
    good: np.ndarray | None = None,
    smooth_weight: bool = False,
    min_coverage: float = 0.3,
    with_flux: bool = True,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """PSF matched filter with inverse-variance weights.

    Parameters
    ----------
    image : numpy.ndarray
        Background-subtracted image; values at bad pixels are ignored.
    weight : numpy.ndarray
        Inverse variance per pixel.
    kernel : numpy.ndarray
        PSF fractions per pixel (odd-sized, centred).
    good : numpy.ndarray of bool, optional
        Usable pixels; default ``weight > 0``.
    smooth_weight : bool
        The weight is a smooth model (the background RMS map), varying on
        scales much larger than the PSF.  Then ``den2(p) = w(p) sum P^2
        coverage(p)`` exactly to that order, which saves a convolution; with a
        per-pixel variance plane leave it False.
    min_coverage : float
        Where less than this fraction of the PSF's ``sum P^2`` falls on good
        pixels (most of the PSF masked or off the image), ``nu`` is set to 0.
    with_flux : bool
        Also return the flux map (``snr * flux_err``); ``False`` returns ``None``
        in its place and saves a full-size array.

    Returns
    -------
    snr : numpy.ndarray
        Detection significance ``nu`` (float32, 0 where undefined).
    flux : numpy.ndarray
        Maximum-likelihood PSF flux at each pixel centre.
    flux_err : numpy.ndarray
        Its 1-sigma error (background noise only); NaN where undefined.
    """
    f32 = np.float32
    img = np.asarray(image, dtype=f32)
    w = np.asarray(weight, dtype=f32)
    k = np.asarray(kernel, dtype=np.float64)
    kflip = k[::-1, ::-1]
    k2 = kflip * kflip
    good = (w > 0) if good is None else (np.asarray(good, bool) & (w > 0))
    all_good = bool(good.all())
    # Single-precision arithmetic and FFTs: twice as fast, and the ~1e-6
    # relative round-off is far below the unit noise of nu.
    weighted = np.multiply(img, w, dtype=f32)
    if not all_good:
        weighted[~good] = 0.0
    num = _correlate32(weighted, kflip)
    del weighted
    # Fraction of the PSF's information carried by good pixels (1 away from
    # masks and edges).  It depends only on the local mask, never on the tile.
    coverage = _coverage(good, k2 / k2.sum(), all_good=all_good)
    if smooth_weight:
        den2 = w * (f32(k2.sum()) * coverage)
    else:
        den2 = _correlate32(w if all_good else np.where(good, w, f32(0)), k2)
    invalid = ~((coverage >= min_coverage) & (den2 > 0))
    # flux_err = 1 / sqrt(den2), computed in place in den2's buffer
    with np.errstate(divide="ignore", invalid="ignore"):
        flux_err = np.sqrt(den2, out=den2 if den2.dtype == f32 else None)
        np.reciprocal(flux_err, out=flux_err)
    flux_err[invalid] = np.nan
    snr = np.multiply(num, flux_err, out=num)
    snr[invalid] = 0.0
    flux = snr * flux_err if with_flux else None
    return snr, flux, flux_err


def _coverage(good: np.ndarray, flipped_k2: np.ndarray, *, all_good: bool) -> np.ndarray:
    """``correlate(good, k2)``: the PSF-information fraction on good pixels.

    Computed as the all-good rectangle (exact, no FFT) minus the contribution
    of each bad region, correlated on its own padded bounding box; masked
    regions (saturated stars, bad columns) are usually a tiny part of a tile.
    Falls back to one FFT when they are not.
    """
    k2 = flipped_k2[::-1, ::-1]  # correlating with k2 == convolving with its flip
    rect = _rectangle_coverage(good.shape, k2).astype(np.float32)
    if all_good:
        return rect
    r = flipped_k2.shape[0] // 2
    ny, nx = good.shape
    regions = list(connected_regions(~good))
    boxes = [
        (max(0, sl[0].start - r), min(ny, sl[0].stop + r), max(0, sl[1].start - r), min(nx, sl[1].stop + r))
        for sl, _ in regions
    ]
    if sum((y1 - y0) * (x1 - x0) for y0, y1, x0, x1 in boxes) > 0.1 * good.size:
        return _correlate32(good, flipped_k2)
    k2 = k2.astype(np.float32)
    for (sl, region), (y0, y1, x0, x1) in zip(regions, boxes):
        padded = np.zeros((y1 - y0, x1 - x0), dtype=np.float32)
        padded[sl[0].start - y0 : sl[0].stop - y0, sl[1].start - x0 : sl[1].stop - x0] = region
        rect[y0:y1, x0:x1] -= ndimage.correlate(padded, k2, mode="constant", cval=0.0)
    return rect


def connected_regions(
    mask: np.ndarray, *, cell: int = 32
) -> list[tuple[tuple[slice, slice], np.ndarray]]:
    """8-connected regions of a sparse boolean mask, with their bounding boxes.

    Equivalent to ``scipy.ndimage.label`` + ``find_objects`` with a 3x3
    structure, but it labels a coarse grid of ``cell`` x ``cell`` blocks first
    and full-resolution pixels only inside the blocks that hold any: on a
    tile where a few saturated stars are masked that is several times faster.

    Returns
    -------
    list of (slices, numpy.ndarray)
        For each region, its bounding box (global to ``mask``) and the boolean
        pixels of the region inside it.  Ordered by bounding-box corner.
    """
    m = np.asarray(mask, dtype=bool)
    ny, nx = m.shape
    if m.size == 0:
        return []
    cy, cx = -(-ny // cell), -(-nx // cell)
    full = np.zeros((cy * cell, cx * cell), dtype=bool)
    full[:ny, :nx] = m
    coarse = full.reshape(cy, cell, cx, cell).any(axis=(1, 3))
    eight = np.ones((3, 3), dtype=bool)
    coarse_labels, _ = ndimage.label(coarse, structure=eight)
    out = []
    for k, csl in enumerate(ndimage.find_objects(coarse_labels), start=1):
        if csl is None:
            continue
        y0, y1 = csl[0].start * cell, min(ny, csl[0].stop * cell)
        x0, x1 = csl[1].start * cell, min(nx, csl[1].stop * cell)
        cells = coarse_labels[csl] == k  # other components may share the box
        own = np.repeat(np.repeat(cells, cell, axis=0), cell, axis=1)[: y1 - y0, : x1 - x0]
        labels, _ = ndimage.label(m[y0:y1, x0:x1] & own, structure=eight)
        for j, sl in enumerate(ndimage.find_objects(labels), start=1):
            if sl is None:
                continue
            box = (slice(sl[0].start + y0, sl[0].stop + y0), slice(sl[1].start + x0, sl[1].stop + x0))
            out.append((box, labels[sl] == j))
    out.sort(key=lambda item: (item[0][0].start, item[0][1].start))
    return out


def _rectangle_coverage(shape: tuple[int, int], kernel: np.ndarray) -> np.ndarray:
    """Correlation (not convolution) of an all-ones rectangle with ``kernel``, exactly.

    Inside, more than the kernel radius from every edge, it is ``kernel.sum()``;
    in the border strips it is a rectangle sum of the kernel, read from its
    summed-area table.  No FFT needed.
    """
    r = kernel.shape[0] // 2
    ny, nx = shape
    out = np.full((ny, nx), kernel.sum(), dtype=np.float64)
    table = np.zeros((kernel.shape[0] + 1, kernel.shape[1] + 1))
    table[1:, 1:] = kernel.cumsum(0).cumsum(1)

    def rect(y: np.ndarray, x: np.ndarray) -> np.ndarray:
        # kernel rows u (offset -r..r) with 0 <= y + u < ny  ->  rows [ulo, uhi)
        ulo = np.clip(r - y, 0, 2 * r + 1)[:, None]
        uhi = np.clip(r + (ny - 1 - y), -1, 2 * r)[:, None] + 1
        vlo = np.clip(r - x, 0, 2 * r + 1)[None, :]
        vhi = np.clip(r + (nx - 1 - x), -1, 2 * r)[None, :] + 1
        return table[uhi, vhi] - table[ulo, vhi] - table[uhi, vlo] + table[ulo, vlo]

    ys = np.arange(ny)
    xs = np.arange(nx)
    edge_y = np.concatenate([ys[:r], ys[max(r, ny - r):]])
    edge_x = np.concatenate([xs[:r], xs[max(r, nx - r):]])
    out[edge_y, :] = rect(edge_y, xs)
    out[:, edge_x] = rect(ys, edge_x)
    return out


def _correlate32(image: np.ndarray, flipped_kernel: np.ndarray) -> np.ndarray:
    """``image`` convolved with a flipped kernel (i.e. correlated), FFT in float32.

    The same as ``scipy.signal.fftconvolve(image, flipped_kernel, mode="same")``
    but the kernel's transform is reused between calls of the same shape
    (every tile of an exposure), saving one of the three FFTs.
    """
    img = np.asarray(image, dtype=np.float32)
    ny, nx = img.shape
    ky, kx = flipped_kernel.shape
    shape = (sp_fft.next_fast_len(ny + ky - 1, real=True), sp_fft.next_fast_len(nx + kx - 1, real=True))
    kernel_ft = _kernel_transform(np.ascontiguousarray(flipped_kernel, dtype=np.float32).tobytes(), (ky, kx), shape)
    spectrum = sp_fft.rfft2(img, s=shape)
    spectrum *= kernel_ft
    full = sp_fft.irfft2(spectrum, s=shape)
    y0, x0 = (ky - 1) // 2, (kx - 1) // 2
    return np.ascontiguousarray(full[y0 : y0 + ny, x0 : x0 + nx])


@functools.lru_cache(maxsize=8)
def _kernel_transform(kernel_bytes: bytes, kernel_shape: tuple[int, int], shape: tuple[int, int]) -> np.ndarray:
    """Real FFT of a float32 kernel zero-padded to ``shape`` (memoised, read-only)."""
    kernel = np.frombuffer(kernel_bytes, dtype=np.float32).reshape(kernel_shape)
    ft = sp_fft.rfft2(kernel, s=shape)
    ft.setflags(write=False)
    return ft


def _gradient_covariance(kernel: np.ndarray) -> np.ndarray:
    """Covariance matrix of the gradient of the normalised matched-filter field.

    For white noise filtered by ``k``, the field ``nu`` has unit variance and
    ``Var(d nu / dx_a, d nu / dx_b) = sum (d_a k)(d_b k) / sum k^2``.
    Derivatives are taken in Fourier space of the finely zero-padded kernel
    so that sampling does not bias them.
    """
    k = np.asarray(kernel, dtype=np.float64)
    n = 4 * max(k.shape)
    ft = np.fft.fft2(k, s=(n, n))
    fy = 2 * np.pi * np.fft.fftfreq(n)[:, None]
    fx = 2 * np.pi * np.fft.fftfreq(n)[None, :]
    power = np.abs(ft) ** 2
    norm = power.sum()
    lyy = float((fy**2 * power).sum() / norm)
    lxx = float((fx**2 * power).sum() / norm)
    lxy = float((fx * fy * power).sum() / norm)
    return np.array([[lyy, lxy], [lxy, lxx]])


def expected_false_peaks(threshold: float, kernel: np.ndarray, *, area_pix: float = 1e6) -> float:
    """Expected number of pure-noise detections above ``threshold`` in ``area_pix`` pixels.

    Uses the expected Euler characteristic of the excursion set of a smooth,
    stationary, unit-variance Gaussian random field (Adler 1981; Worsley 1995),
    which at detection thresholds equals the number of local maxima above it::

        E[N](nu) = A * sqrt(det Lambda) / (2 pi)^{3/2} * nu * exp(-nu^2 / 2)

    where ``Lambda`` is the covariance of the field's gradient (see
    :func:`_gradient_covariance`).
    """
    lam = _gradient_covariance(kernel)
    density = math.sqrt(max(np.linalg.det(lam), 0.0)) / (2 * math.pi) ** 1.5
    nu = float(threshold)
    return area_pix * density * nu * math.exp(-0.5 * nu * nu)


def threshold_for_false_rate(kernel: np.ndarray, false_per_mpix: float) -> float:
    """Detection threshold (sigma) giving ``false_per_mpix`` noise peaks per 10^6 pixels.

    Examples
    --------
    For a FWHM = 3 px Gaussian PSF and one false detection per megapixel the
    threshold is about 4.8 sigma.
    """
    if not false_per_mpix > 0:
        raise ValueError("false_per_mpix must be positive")

    lam = _gradient_covariance(kernel)
    log_density = 0.5 * math.log(max(np.linalg.det(lam), 1e-300)) - 1.5 * math.log(2 * math.pi) + math.log(1e6)

    def f(nu: float) -> float:  # log E[N] - log target, written in logs to avoid underflow
        return log_density + math.log(nu) - 0.5 * nu * nu - math.log(false_per_mpix)

    # E[N] decreases monotonically for nu > 1.
    lo, hi = 1.0 + 1e-9, 40.0
    if f(lo) < 0:
        return lo
    return float(optimize.brentq(f, lo, hi, xtol=1e-6))


def find_peaks(
    snr: np.ndarray,
    *,
    threshold: float,
    region: tuple[int, int, int, int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Local maxima (8-connected) of ``snr`` at or above ``threshold``.

    Plateaus are broken deterministically: among equal neighbouring values the
    pixel that comes first in row-major order wins, which keeps the result
    independent of how the image was tiled.

    Parameters
    ----------
    snr : numpy.ndarray
        Significance map.
    threshold : float
        Minimum peak value.
    region : tuple of int, optional
        ``(y0, y1, x0, x1)``: only report peaks inside this sub-array.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        Integer ``y`` and ``x`` of the peaks, sorted row-major.
    """
    ny, nx = snr.shape
    # Only pixels above threshold (a few per cent) are compared with their
    # 8 neighbours: strictly greater than those that precede in row-major
    # order, greater or equal to those that follow.
    y, x = np.nonzero(snr >= threshold)
    if region is not None:
        y0, y1, x0, x1 = region
        inside = (y >= y0) & (y < y1) & (x >= x0) & (x < x1)
        y, x = y[inside], x[inside]
    value = snr[y, x]
    keep = np.ones(len(y), dtype=bool)
    for dy, dx, strict in (
        (-1, -1, True), (-1, 0, True), (-1, 1, True), (0, -1, True),
        (0, 1, False), (1, -1, False), (1, 0, False), (1, 1, False),
    ):
        ny_, nx_ = y + dy, x + dx
        on = (ny_ >= 0) & (ny_ < ny) & (nx_ >= 0) & (nx_ < nx)
        neighbour = np.full(len(y), -np.inf, dtype=np.float64)
        neighbour[on] = snr[ny_[on], nx_[on]]
        keep &= (value > neighbour) if strict else (value >= neighbour)
    return y[keep], x[keep]


def refine_peaks(
    snr: np.ndarray, y: np.ndarray, x: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sub-pixel peak offsets and heights from a Gaussian fit to the 3x3 neighbourhood.

    Along each axis the three samples ``L, C, R`` of ``ln nu`` are fitted with
    a parabola (exact for a Gaussian peak); where a neighbour is not positive
    a plain parabola in ``nu`` is used instead.  Offsets are clipped to
    +-0.5 pixel.

    Returns
    -------
    dy, dx : numpy.ndarray
        Offsets of the peak from the integer pixel.
    height : numpy.ndarray
        Interpolated peak value (>= the pixel value).
    """
    padded = np.pad(snr, 1, mode="edge")
    yy, xx = y + 1, x + 1
    c = padded[yy, xx]
    ny, nx = snr.shape
    out = []
    heights = []
    # On the array border one neighbour is missing: no refinement along that
    # axis (edge padding would fake a plateau and push the peak outwards).
    inside_y = (y > 0) & (y < ny - 1)
    inside_x = (x > 0) & (x < nx - 1)
    for left, right, inside in (
        (padded[yy - 1, xx], padded[yy + 1, xx], inside_y),
        (padded[yy, xx - 1], padded[yy, xx + 1], inside_x),
    ):
        left = np.where(inside, left, c)
        right = np.where(inside, right, c)
        pos = (left > 0) & (right > 0) & (c > 0)
        # over: a nearly flat log-parabola (unused below, or at a position that
        # is not a local maximum) overflows harmlessly
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            lnl = np.log(np.where(pos, left, 1.0))
            lnc = np.log(np.where(pos, c, 1.0))
            lnr = np.log(np.where(pos, right, 1.0))
            den_log = lnl - 2 * lnc + lnr
            off_log = 0.5 * (lnl - lnr) / den_log
            h_log = np.exp(lnc - 0.125 * (lnl - lnr) ** 2 / den_log)
            den_lin = left - 2 * c + right
            off_lin = 0.5 * (left - right) / den_lin
            h_lin = c - 0.125 * (left - right) ** 2 / den_lin
        use_log = pos & (den_log < 0)
        off = np.where(use_log, off_log, np.where(den_lin < 0, off_lin, 0.0))
        h = np.where(use_log, h_log, np.where(den_lin < 0, h_lin, c))
        off = np.clip(np.nan_to_num(off), -0.5, 0.5)
        out.append(off)
        heights.append(np.maximum(np.nan_to_num(h, nan=0.0), c))
    # Separable Gaussian: the 2-D peak height is h_y * h_x / c.
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        height = np.where(c > 0, heights[0] * heights[1] / c, c)
    return out[0], out[1], height

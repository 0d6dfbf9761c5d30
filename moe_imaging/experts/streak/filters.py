"""The segment filters of the coarse search: binning, binned PSF, kernels, angles.

A segment filter on the PSF-filtered binned map is a sum of shifted copies
of that map (:func:`_shift_sum`), normalised by the norm of the segment
kernel (:func:`_kernel_norm`); the angles are spaced so a segment's ends stay
within a fraction of the FWHM of any line (:func:`_angles`).

Package-internal: the names are private to :mod:`moe_imaging.experts.streak`.
"""

from __future__ import annotations

import math

import numpy as np

from ...psf import PSF

__all__ = ["_bin_factor", "_bin", "_binned_psf", "_shift_sum", "_kernel_norm", "_kernel_image", "_angles"]


def _bin_factor(fwhm: float, max_bin: int) -> int:
    """Binning that leaves the PSF 1.5-3 binned pixels wide (1 for sharp PSFs)."""
    return int(max(1, min(max_bin, math.floor(fwhm / 1.5))))


def _bin(arr: np.ndarray, b: int, *, reduce: str = "sum") -> np.ndarray:
    """``b x b`` blocks of ``arr`` summed (``reduce="sum"``) or their maximum (a ragged edge is dropped)."""
    if b == 1:
        return arr
    ny, nx = arr.shape[0] // b * b, arr.shape[1] // b * b
    view = arr[:ny, :nx].reshape(ny // b, b, nx // b, b)
    return view.sum(axis=(1, 3)) if reduce == "sum" else view.max(axis=(1, 3))


def _binned_psf(psf: PSF, b: int) -> np.ndarray:
    """The PSF integrated over ``b x b`` pixels, odd-sized and (to half a binned pixel) centred."""
    img = np.asarray(psf.image)
    if b == 1:
        return img
    n = img.shape[0]
    nb = int(math.ceil(n / b))
    nb += 1 - nb % 2  # odd
    size = nb * b
    before = (size - n) // 2
    padded = np.zeros((size, size))
    padded[before : before + n, before : before + n] = img
    out = padded.reshape(nb, b, nb, b).sum(axis=(1, 3))
    return out / out.sum()


def _shift_sum(field: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """``sum_k field[p + offsets[k]]`` (zero outside the array)."""
    out = np.zeros_like(field)
    ny, nx = field.shape
    for dy, dx in offsets:
        if abs(dy) >= ny or abs(dx) >= nx:
            continue
        ys, yd = (slice(dy, ny), slice(0, ny - dy)) if dy >= 0 else (slice(0, ny + dy), slice(-dy, ny))
        xs, xd = (slice(dx, nx), slice(0, nx - dx)) if dx >= 0 else (slice(0, nx + dx), slice(-dx, nx))
        out[yd, xd] += field[ys, xs]
    return out


def _kernel_norm(psf_b: np.ndarray, offsets: np.ndarray) -> float:
    """``sqrt(sum K^2 / sum P^2)`` for the kernel ``K = sum_k P(. - offset_k)``."""
    k = _kernel_image(psf_b, offsets)
    return float(math.sqrt((k * k).sum() / (psf_b * psf_b).sum()))


def _kernel_image(psf_b: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """The segment kernel ``K = sum_k P(. - offset_k)`` on a grid holding all of it."""
    h = psf_b.shape[0] // 2
    r = int(np.abs(offsets).max()) if len(offsets) else 0
    k = np.zeros((2 * (h + r) + 1,) * 2)
    for dy, dx in offsets:
        k[r + dy : r + dy + 2 * h + 1, r + dx : r + dx + 2 * h + 1] += psf_b
    return k


def _angles(length_b: float, fwhm_b: float) -> np.ndarray:
    """Angles in [0, pi) so a segment's ends stay within ~0.4 FWHM of any line."""
    step = min(math.radians(15.0), 0.8 * fwhm_b / max(length_b, 1.0))
    n = int(math.ceil(math.pi / step))
    return np.arange(n) * (math.pi / n)

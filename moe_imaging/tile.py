"""The pixels an expert sees: :class:`Tile`.

A tile is a rectangular piece of an exposure *with its halo*: the expert sees
``image[...]`` for global pixels ``[origin_y, origin_y + ny) x [origin_x,
origin_x + nx)``, and reports only detections whose peak falls in the *core*
(the part of the image this tile owns).  Global coordinates are used for
everything that must not depend on the tiling: source ids, edge flags, the
background model.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from contracts.flags import MaskBit

from .psf import PSF

__all__ = ["Tile"]


@dataclasses.dataclass(frozen=True, eq=False)
class Tile:
    """A background-subtracted piece of an exposure, with noise, mask and PSF.

    Attributes
    ----------
    image : numpy.ndarray
        Background-subtracted pixels (float32 or float64), 2-D.
    variance : numpy.ndarray
        Noise variance per pixel, same shape: the background RMS squared, or
        the exposure's variance plane when it has one.
    mask : numpy.ndarray
        ``uint16`` :class:`~contracts.flags.MaskBit` bits, same shape.
    background : numpy.ndarray
        The background level that was subtracted (for the catalog).
    psf : PSF
        The PSF prior for this tile.
    origin : tuple of int
        Global ``(y, x)`` of ``image[0, 0]``.
    core : tuple of int
        Global ``(y0, y1, x0, x1)`` of the pixels this tile owns.
    image_shape : tuple of int
        Shape ``(ny, nx)`` of the whole exposure.
    gain : float or None
        Electrons per data unit, for the source Poisson term of flux errors.
    smooth_variance : bool
        True when ``variance`` is a smooth model (the background RMS map)
        rather than a per-pixel variance plane; lets the matched filter skip
        a convolution.
    """

    image: np.ndarray
    variance: np.ndarray
    mask: np.ndarray
    background: np.ndarray
    psf: PSF
    origin: tuple[int, int] = (0, 0)
    core: tuple[int, int, int, int] | None = None
    image_shape: tuple[int, int] | None = None
    gain: float | None = None
    smooth_variance: bool = True

    def __post_init__(self) -> None:
        img = np.asarray(self.image)
        if img.ndim != 2:
            raise ValueError(f"tile image must be 2-D, got shape {img.shape}")
        for name in ("variance", "mask", "background"):
            arr = np.asarray(getattr(self, name))
            if arr.shape != img.shape:
                raise ValueError(f"tile {name} has shape {arr.shape}, image has {img.shape}")
        if self.image_shape is None:
            object.__setattr__(self, "image_shape", tuple(int(v) for v in img.shape))
        if self.core is None:
            oy, ox = self.origin
            object.__setattr__(self, "core", (oy, oy + img.shape[0], ox, ox + img.shape[1]))

    @classmethod
    def from_image(
        cls,
        image: np.ndarray,
        psf: PSF,
        *,
        noise: float | np.ndarray | None = None,
        mask: np.ndarray | None = None,
        background: float | np.ndarray = 0.0,
        gain: float | None = None,
    ) -> "Tile":
        """A whole in-memory image as one tile (handy in notebooks and tests).

        Non-finite pixels are masked.  ``noise`` is the background RMS (scalar
        or map); when omitted it is the sigma-clipped standard deviation.
        """
        from astropy.stats import sigma_clipped_stats

        img = np.asarray(image, dtype=np.float64)
        bad = ~np.isfinite(img)
        m = np.zeros(img.shape, np.uint16) if mask is None else np.asarray(mask, np.uint16).copy()
        m[bad] |= np.uint16(MaskBit.NONFINITE)
        bkg = np.broadcast_to(np.asarray(background, dtype=np.float64), img.shape)
        sub = np.where(bad, 0.0, img - bkg)
        if noise is None:
            _, _, std = sigma_clipped_stats(sub[m == 0])
            noise = float(std)
        var = np.broadcast_to(np.asarray(noise, dtype=np.float64) ** 2, img.shape)
        return cls(image=sub, variance=np.array(var), mask=m, background=np.array(bkg), psf=psf, gain=gain)

    @property
    def bad(self) -> np.ndarray:
        """Pixels that carry no information (any mask bit set or non-positive variance)."""
        return (np.asarray(self.mask) != 0) | ~(np.asarray(self.variance) > 0)

    @property
    def inverse_variance(self) -> np.ndarray:
        """``1 / variance`` where the variance is positive, else 0 (masks ignored)."""
        var = np.asarray(self.variance)
        ok = var > 0
        with np.errstate(divide="ignore"):
            inv = np.reciprocal(var, dtype=var.dtype if var.dtype.kind == "f" else np.float64)
        inv[~ok] = 0.0
        return inv

    @property
    def weight(self) -> np.ndarray:
        """Inverse variance, zero on bad pixels."""
        return np.where(self.bad, 0.0, self.inverse_variance)

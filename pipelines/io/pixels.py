"""Reading pixels: windowed, memory-mapped section reads and the masking rules.

A worker reads its own tile with :meth:`pipelines.io.Exposure.read`, which
opens the file and reads only that section (a read-only memory map of the
data block for plain images; ``hdu.section`` for tile-compressed or scaled
ones, tile by tile, with ``BSCALE``/``BZERO``/``BLANK`` applied) and returns
a :class:`PixelSection`: data, variance (or ``None``) and mask bits.
:func:`check_not_all_nonfinite` streams the science plane in row blocks to
catch an image without a single finite pixel.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from astropy.io import fits

from contracts.errors import InputError
from contracts.flags import MaskBit

from .hdus import _brief, _fits_open, _quiet, _stored_itemsize

if TYPE_CHECKING:
    from .exposure import Exposure

__all__ = ["PixelSection", "check_not_all_nonfinite", "NONFINITE_SCAN_LIMIT_BYTES"]


NONFINITE_SCAN_LIMIT_BYTES: int = 256 * 2**20
"""Science planes up to this many bytes (as stored) are checked for being all
NaN/infinite when opened; larger ones only by :func:`check_not_all_nonfinite`."""

_SCAN_BLOCK_BYTES = 4 * 2**20
"""Bytes of stored pixels read per row block when scanning for finite pixels."""


@dataclass(frozen=True, eq=False)
class PixelSection:
    """The pixels of one rectangular section of an exposure.

    Attributes
    ----------
    data : numpy.ndarray
        2-D ``float32`` (``float64`` when the stored pixels are ``float64``
        or 32/64-bit integers).  Non-finite pixels are replaced by 0 and
        flagged :attr:`MaskBit.NONFINITE`.
    variance : numpy.ndarray or None
        Same shape and dtype as ``data``, in data units squared: the variance
        plane, or ``1 / weight``.  Pixels whose variance is unusable (negative
        or non-finite variance; zero, negative or non-finite weight) are set
        to 0 and flagged :attr:`MaskBit.BAD`.  ``None`` when the file has no
        variance or weight plane.
    mask : numpy.ndarray
        ``uint16`` :class:`~contracts.flags.MaskBit` bits: ``BAD`` (input
        mask plane non-zero, unusable variance/weight), ``NONFINITE``,
        ``SATURATED`` (data >= ``meta.saturate``).  Always combine the arrays
        with the mask: flagged pixels hold placeholder values.
    """

    data: np.ndarray
    variance: np.ndarray | None
    mask: np.ndarray


def _work_dtype(stored: np.dtype) -> np.dtype:
    """float64 for float64 and >= 32-bit integers, else float32."""
    stored = np.dtype(stored)
    if stored.kind == "f":
        return np.dtype(np.float64) if stored.itemsize >= 8 else np.dtype(np.float32)
    if stored.kind in "iu" and stored.itemsize >= 4:
        return np.dtype(np.float64)
    return np.dtype(np.float32)


def _all_nonfinite(hdu: Any, shape: tuple[int, int], source: str) -> bool:
    """Whether every pixel is non-finite, streaming row blocks (middle first)."""
    ny, nx = shape
    rows = max(1, _SCAN_BLOCK_BYTES // max(1, nx * _stored_itemsize(hdu)))
    starts = list(range(0, ny, rows))
    middle = len(starts) // 2
    order = [starts[middle], *starts[:middle], *starts[middle + 1 :]]
    lead = (0,) * (len(hdu.shape) - 2)
    for y0 in order:
        try:
            block = np.asarray(hdu.section[(*lead, slice(y0, min(ny, y0 + rows)), slice(0, nx))])
        except Exception as exc:
            raise InputError(source, f"cannot read pixel data: {_brief(exc)}") from None
        if np.isfinite(block).any():
            return False
    return True


def check_not_all_nonfinite(exposure: Exposure) -> None:
    """Raise :class:`InputError` if every science pixel is NaN or infinite.

    Streams the science plane in row blocks of about 4 MiB and stops at the
    first block holding a finite pixel, so memory is bounded and an
    ordinary image costs one block.  :func:`open_exposure` runs this check
    itself for images up to :data:`NONFINITE_SCAN_LIMIT_BYTES`; call it for
    larger ones when an all-NaN input must be caught before tiling.

    Parameters
    ----------
    exposure : Exposure

    Raises
    ------
    InputError
        ``"all pixels are NaN or infinite"``, or when the file cannot be read.
    """
    if exposure.dtype.kind != "f":
        return
    source = str(exposure.path)
    try:
        with _quiet(), _fits_open(exposure.path) as hdul:
            every_nonfinite = _all_nonfinite(hdul[exposure.hdu], exposure.shape, source)
    except InputError:
        raise
    except FileNotFoundError:
        raise InputError(source, "file not found") from None
    except Exception as exc:
        cause = f"cannot read pixels of HDU {exposure.hdu}: {_brief(exc)}"
        raise InputError(source, cause) from None
    if every_nonfinite:
        raise InputError(source, "all pixels are NaN or infinite")


def _read_section(exposure: Exposure, y0: int, y1: int, x0: int, x1: int) -> PixelSection:
    """Read ``[y0:y1, x0:x1]`` of every plane of ``exposure`` (see :meth:`Exposure.read`)."""
    y0, y1, x0, x1 = (int(v) for v in (y0, y1, x0, x1))
    ny, nx = exposure.shape
    if not (0 <= y0 <= y1 <= ny and 0 <= x0 <= x1 <= nx):
        raise ValueError(
            f"section [{y0}:{y1}, {x0}:{x1}] is outside the image of shape {exposure.shape}"
        )
    work = exposure.pixel_dtype
    if y0 == y1 or x0 == x1:
        shape = (y1 - y0, x1 - x0)
        return PixelSection(
            data=np.zeros(shape, work),
            variance=np.zeros(shape, work) if exposure.has_variance else None,
            mask=np.zeros(shape, np.uint16),
        )
    window = (slice(y0, y1), slice(x0, x1))
    try:
        with _quiet(), _fits_open(exposure.path) as hdul:
            data = _read_window(hdul[exposure.hdu], window, work)
            variance = weight = maskplane = None
            if exposure.variance_hdu is not None:
                variance = _read_window(hdul[exposure.variance_hdu], window, work)
            elif exposure.weight_hdu is not None:
                weight = _read_window(hdul[exposure.weight_hdu], window, np.float64)
            if exposure.mask_hdu is not None:
                maskplane = _read_window(hdul[exposure.mask_hdu], window, None)
    except FileNotFoundError:
        raise InputError(str(exposure.path), "file not found") from None
    except Exception as exc:  # astropy/numpy/OS faults of any kind
        raise InputError(
            str(exposure.path),
            f"cannot read pixels [{y0}:{y1}, {x0}:{x1}] of HDU {exposure.hdu}: {_brief(exc)}",
        ) from None
    return _assemble(data, variance, weight, maskplane, exposure.meta.saturate)


def _plain_memmappable(hdu: Any) -> bool:
    """Whether an image HDU's data block can be mapped as-is (no scaling, no compression)."""
    if isinstance(hdu, fits.CompImageHDU) or hdu.fileinfo() is None:
        return False
    header = hdu.header
    return (
        header.get("BSCALE", 1) == 1
        and header.get("BZERO", 0) == 0
        and "BLANK" not in header
        and not hdu.fileinfo()["file"].compression
    )


def _data_memmap(hdu: Any) -> np.ndarray:
    """Read-only ``numpy.memmap`` of an image HDU's data block (big-endian, as stored)."""
    info = hdu.fileinfo()
    bitpix = int(hdu.header["BITPIX"])
    dtype = np.dtype({8: "u1", 16: ">i2", 32: ">i4", 64: ">i8", -32: ">f4", -64: ">f8"}[bitpix])
    shape = tuple(int(hdu.header[f"NAXIS{i}"]) for i in range(int(hdu.header["NAXIS"]), 0, -1))
    return np.memmap(info["file"].name, dtype=dtype, mode="r", offset=info["datLoc"], shape=shape)


def _read_window(hdu: Any, window: tuple[slice, slice], dtype: Any) -> np.ndarray:
    """Read a 2-D window of an image HDU as a native-byte-order copy."""
    lead = (0,) * (len(hdu.shape) - 2)
    key = (*lead, *window)
    if _plain_memmappable(hdu):
        # Uncompressed, unscaled data: slice a read-only memory map of the data
        # block directly; ``hdu.section`` would read row by row.
        raw = _data_memmap(hdu)[key]
    else:
        raw = np.asarray(hdu.section[key])
    if dtype is None:
        return np.array(raw, dtype=raw.dtype.newbyteorder("="))
    return np.array(raw, dtype=dtype)


def _assemble(
    data: np.ndarray,
    variance: np.ndarray | None,
    weight: np.ndarray | None,
    maskplane: np.ndarray | None,
    saturate: float | None,
) -> PixelSection:
    """Apply the masking rules to freshly read planes."""
    mask = np.zeros(data.shape, dtype=np.uint16)
    finite = np.isfinite(data)
    if not finite.all():
        mask[~finite] |= np.uint16(MaskBit.NONFINITE)
        data[~finite] = 0
    if saturate is not None:
        mask[finite & (data >= saturate)] |= np.uint16(MaskBit.SATURATED)
    if maskplane is not None:
        mask[maskplane != 0] |= np.uint16(MaskBit.BAD)
    if weight is not None:
        good = np.isfinite(weight) & (weight > 0)
        variance = np.zeros(data.shape, dtype=data.dtype)
        np.divide(1.0, weight, out=variance, where=good, casting="unsafe")
        mask[~good] |= np.uint16(MaskBit.BAD)
    elif variance is not None:
        bad = ~np.isfinite(variance) | (variance < 0)
        if bad.any():
            variance[bad] = 0
            mask[bad] |= np.uint16(MaskBit.BAD)
    return PixelSection(data=data, variance=variance, mask=mask)

"""Writing exposures: :func:`write_exposure` (plain image or SCI/VAR/MASK MEF)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits

from contracts.errors import InputError
from contracts.files import atomic_write

from .hdus import _brief, _quiet

__all__ = ["write_exposure"]


def write_exposure(
    path: str | os.PathLike[str],
    data: np.ndarray,
    header: fits.Header | Mapping[str, Any] | None = None,
    *,
    variance: np.ndarray | None = None,
    mask: np.ndarray | None = None,
    overwrite: bool = True,
) -> Path:
    """Write an exposure as a FITS file.

    With neither ``variance`` nor ``mask`` the image goes in the primary HDU;
    otherwise the file is a MEF: an empty primary HDU, then ``SCI`` (data and
    ``header``), ``VAR`` and/or ``MASK``.  The file is written atomically
    (:func:`contracts.files.atomic_write`), so readers never see a partial file.

    Parameters
    ----------
    path : str or os.PathLike
        Output file.
    data : numpy.ndarray
        2-D numeric image, written with its dtype.
    header : astropy.io.fits.Header, mapping or None, optional
        Keywords for the image HDU (WCS, GAIN, SATURATE, ...); structural
        keywords are recomputed from ``data``.
    variance : numpy.ndarray or None, optional
        Variance plane, same shape as ``data``.
    mask : numpy.ndarray or None, optional
        Mask plane (non-zero = bad), same shape; booleans are written as
        ``uint8``.
    overwrite : bool, optional
        Replace an existing file (default); otherwise an existing file is an
        error.

    Returns
    -------
    pathlib.Path
        The path written.

    Raises
    ------
    InputError
        If an array is not 2-D numeric, the shapes differ, or the file cannot
        be written.
    """
    target = Path(os.fspath(path))
    source = str(target)
    image = _as_image(data, "data", source)
    planes: list[fits.ImageHDU] = []
    if variance is not None:
        var = _as_image(variance, "variance", source)
        if var.shape != image.shape:
            cause = f"variance shape {var.shape} differs from data shape {image.shape}"
            raise InputError(source, cause)
        planes.append(fits.ImageHDU(var, name="VAR"))
    if mask is not None:
        bits = np.asarray(mask)
        if bits.dtype == bool:
            bits = bits.astype(np.uint8)
        bits = _as_image(bits, "mask", source)
        if bits.shape != image.shape:
            cause = f"mask shape {bits.shape} differs from data shape {image.shape}"
            raise InputError(source, cause)
        planes.append(fits.ImageHDU(bits, name="MASK"))
    cards = fits.Header() if header is None else _strip_structure(header)
    if planes:
        sci = fits.ImageHDU(image, header=cards, name="SCI")
        hdul = fits.HDUList([fits.PrimaryHDU(), sci, *planes])
    else:
        hdul = fits.HDUList([fits.PrimaryHDU(image, header=cards)])
    if target.exists() and not overwrite:
        raise InputError(source, "file exists (pass overwrite=True to replace it)")

    def _write(temporary: Path) -> None:
        # Through a file object: given a name ending in ".gz", astropy would
        # gzip the file, and an exposure is always written as plain FITS.
        with _quiet(), open(temporary, "wb") as stream:
            hdul.writeto(stream, output_verify="silentfix")

    try:
        atomic_write(target, _write)
    except Exception as exc:
        raise InputError(source, f"cannot write the file: {_brief(exc)}") from None
    return target


def _as_image(array: Any, name: str, source: str) -> np.ndarray:
    """A 2-D numeric array to write, else :class:`InputError`."""
    image = np.asarray(array)
    if image.ndim != 2:
        raise InputError(source, f"{name} must be a 2-D array, got shape {image.shape}")
    if image.dtype == bool or image.dtype.kind not in "iuf":
        raise InputError(source, f"{name} must be numeric, got dtype {image.dtype}")
    return image


def _strip_structure(header: fits.Header | Mapping[str, Any]) -> fits.Header:
    """Copy of ``header`` without keywords that describe the data layout."""
    if isinstance(header, fits.Header):
        cards = header.copy(strip=True)
    else:
        cards = fits.Header()
        cards.update(dict(header))
        cards.strip()
    for key in ("EXTNAME", "EXTVER", "INHERIT", "BSCALE", "BZERO", "BLANK", "CHECKSUM", "DATASUM"):
        cards.remove(key, ignore_missing=True, remove_all=True)
    return cards

"""Lazy FITS exposures: :class:`Exposure` and :func:`open_exposure`.

An :class:`Exposure` is a small, picklable description of one science image
in a FITS file: where the pixels live (file, HDU, shape, dtype), the header
(merged with the primary header), the celestial WCS and the metadata the
pipeline needs (:class:`~pipelines.io.ExposureMeta`).  It holds no pixels: a
worker reads its own tile with :meth:`Exposure.read`
(:mod:`pipelines.io.pixels`), and :meth:`Exposure.to_xarray` wraps the same
reads in a lazy, Dask-backed :class:`xarray.Dataset`
(:mod:`pipelines.io.xarray_view`).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from contracts.errors import InputError

from .hdus import (
    _MASK_NAMES,
    _VARIANCE_NAMES,
    _WEIGHT_NAMES,
    _check_data_present,
    _choose_science,
    _describe_hdu,
    _find_aux,
    _image_shape,
    _is_compressed_file,
    _opened_hdus,
    _quiet,
    _stored_dtype,
    _stored_itemsize,
)
from .header import ExposureMeta, _celestial_wcs, _exposure_meta, _merged_header
from .pixels import (
    NONFINITE_SCAN_LIMIT_BYTES,
    PixelSection,
    _all_nonfinite,
    _read_section,
    _work_dtype,
)
from .xarray_view import exposure_dataset

if TYPE_CHECKING:
    import xarray as xr

__all__ = ["Exposure", "open_exposure"]

@dataclass(frozen=True, eq=False)
class Exposure:
    """A science image in a FITS file, described but not loaded.

    Made by :func:`open_exposure`.  Small and picklable (no pixels, no open
    file): send it to workers, which call :meth:`read` for their own section.

    Attributes
    ----------
    path : pathlib.Path
        Absolute path of the FITS file.
    hdu : int
        Index (0-based) of the HDU holding the science pixels; its name, if
        any, is ``header['EXTNAME']``.
    shape : tuple of int
        ``(ny, nx)`` (leading length-1 axes of the stored array dropped).
    dtype : numpy.dtype
        Of the science pixels as stored, after ``BSCALE``/``BZERO`` scaling
        (e.g. ``float32`` for scaled ``int16``, ``uint16`` for unsigned data).
    header : astropy.io.fits.Header
        Header of the science HDU; when that is an extension, keywords missing
        from it are taken from the primary header (the ``INHERIT``
        convention; ``INHERIT = F`` in the extension turns it off, and
        primary WCS keywords are not mixed into an extension with its own).
    wcs : astropy.wcs.WCS or None
        2-D celestial WCS of the image axes; ``None`` when there is none or it
        is not celestial (e.g. blank ``CTYPE``) or not usable.
    meta : ExposureMeta
        Gain, noise, saturation, PSF size, pixel scale and more.
    variance_hdu, weight_hdu, mask_hdu : int or None
        Indices of the variance plane, the weight (inverse-variance) plane
        (only used when there is no variance plane) and the mask plane.
    """

    path: Path
    hdu: int
    shape: tuple[int, int]
    dtype: np.dtype
    header: fits.Header
    wcs: WCS | None
    meta: ExposureMeta
    variance_hdu: int | None = None
    weight_hdu: int | None = None
    mask_hdu: int | None = None

    def __dask_tokenize__(self) -> tuple[Any, ...]:
        """Dask task key: the file (path, size, mtime) and the HDUs read.

        Without it Dask would tokenize the header and WCS by pickling them,
        which costs more than the tasks' scheduling.
        """
        try:
            st = self.path.stat()
            stamp: tuple[Any, ...] = (st.st_size, st.st_mtime_ns)
        except OSError:
            stamp = ()
        return ("Exposure", str(self.path), self.hdu, self.variance_hdu, self.weight_hdu, self.mask_hdu, stamp)

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        """Pickle compactly: the header travels as its 80-character cards."""
        return (
            _rebuild_exposure,
            (
                self.path, self.hdu, self.shape, self.dtype.str,
                self.header.tostring(padding=False, endcard=False),
                self.wcs, self.meta, self.variance_hdu, self.weight_hdu, self.mask_hdu,
            ),
        )  # fmt: skip

    @property
    def has_variance(self) -> bool:
        """Whether :meth:`read` returns a variance (variance or weight plane)."""
        return self.variance_hdu is not None or self.weight_hdu is not None

    @property
    def pixel_dtype(self) -> np.dtype:
        """dtype of :attr:`PixelSection.data` (``float32`` or ``float64``)."""
        return _work_dtype(self.dtype)

    def read(self, y0: int, y1: int, x0: int, x1: int) -> PixelSection:
        """Read the section ``[y0:y1, x0:x1]`` (0-based, end-exclusive) from disk.

        Only that section is read (plus, for a tile-compressed image, the
        compressed tiles it touches).

        Parameters
        ----------
        y0, y1, x0, x1 : int
            Section bounds, ``0 <= y0 <= y1 <= ny`` and ``0 <= x0 <= x1 <= nx``.

        Returns
        -------
        PixelSection
            Data, variance (or ``None``) and mask of the section.

        Raises
        ------
        ValueError
            If the bounds are outside the image.
        InputError
            If the file can no longer be read (gone, truncated, corrupt).
        """
        return _read_section(self, y0, y1, x0, x1)

    def to_xarray(self, chunks: int = 2048) -> xr.Dataset:
        """Return the exposure as a lazy, Dask-backed :class:`xarray.Dataset`.

        Nothing is read until the dataset (or part of it) is computed; each
        chunk is then read by :meth:`read` on the worker, once for all
        variables computed together.  The task graph carries only this
        (small) :class:`Exposure`, never pixels.

        Parameters
        ----------
        chunks : int, optional
            Chunk edge in pixels (square chunks; the last ones are smaller).

        Returns
        -------
        xarray.Dataset
            Data variables ``data`` (float32/float64), ``mask`` (uint16
            :class:`~contracts.flags.MaskBit` bits, with CF ``flag_masks``
            and ``flag_meanings``) and, when the file has a variance or
            weight plane, ``variance``; dims ``('y', 'x')``, no coordinates.
            ``attrs`` hold ``path``, ``hdu``, ``shape`` and the non-``None``
            :class:`ExposureMeta` fields.
        """
        return exposure_dataset(self, chunks)


def _rebuild_exposure(
    path: Path, hdu: int, shape: tuple[int, int], dtype: str, header: str, wcs: WCS | None,
    meta: ExposureMeta, variance_hdu: int | None, weight_hdu: int | None, mask_hdu: int | None,
) -> Exposure:  # fmt: skip
    """Unpickle an :class:`Exposure` (see ``Exposure.__reduce__``)."""
    with _quiet():
        cards = fits.Header.fromstring(header)
    return Exposure(
        path=path, hdu=hdu, shape=shape, dtype=np.dtype(dtype), header=cards, wcs=wcs,
        meta=meta, variance_hdu=variance_hdu, weight_hdu=weight_hdu, mask_hdu=mask_hdu,
    )  # fmt: skip


def open_exposure(
    path: str | os.PathLike[str],
    *,
    hdu: int | str | None = None,
    check_finite: bool | None = None,
) -> Exposure:
    """Open a FITS exposure lazily: headers, WCS and metadata, no pixels.

    Parameters
    ----------
    path : str or os.PathLike
        The FITS file (plain, tile-compressed or gzip-compressed).
    hdu : int, str or None, optional
        The science HDU, by index or ``EXTNAME`` (case-insensitive).  ``None``
        chooses the primary HDU when it has data, else the first image
        extension named ``SCI``/``SCIENCE``/``IMAGE``, else the first image
        extension that is not a variance/weight/mask plane.
    check_finite : bool or None, optional
        Whether to check that not all science pixels are NaN/infinite.  The
        check streams the image in row blocks (bounded memory) and stops at
        the first block with a finite pixel, so it costs one block for any
        ordinary image.  ``None`` (default) checks floating-point images of
        at most :data:`NONFINITE_SCAN_LIMIT_BYTES` bytes; ``True`` checks
        whatever the size; ``False`` never checks (see
        :func:`check_not_all_nonfinite`).  Integer images are never checked
        (they cannot hold NaN).

    Returns
    -------
    Exposure

    Raises
    ------
    InputError
        With a one-line cause: file not found; not a (valid) FITS file;
        truncated data; no image data; not a 2-D image; a table HDU chosen; no
        such HDU; variance/weight/mask plane of another shape; all pixels NaN
        or infinite.
    """
    with _opened_hdus(path) as (source, file, hdul, hdus):
        index = _choose_science(hdus, hdu, source)
        shape = _image_shape(hdus[index], index, source)
        variance_hdu = _find_aux(hdus, index, _VARIANCE_NAMES)
        weight_hdu = None if variance_hdu is not None else _find_aux(hdus, index, _WEIGHT_NAMES)
        mask_hdu = _find_aux(hdus, index, _MASK_NAMES)
        for aux in (variance_hdu, weight_hdu, mask_hdu):
            if aux is not None:
                aux_shape = _image_shape(hdus[aux], aux, source)
                if aux_shape != shape:
                    raise InputError(
                        source,
                        f"{_describe_hdu(hdus[aux], aux)} has shape {aux_shape} but the science "
                        f"image ({_describe_hdu(hdus[index], index)}) has shape {shape}",
                    )
        compressed_file = _is_compressed_file(file)
        for i in (index, variance_hdu, weight_hdu, mask_hdu):
            if i is not None and not compressed_file:
                _check_data_present(hdul, i, file, source)
        dtype = _stored_dtype(hdus[index], source, index)
        header = _merged_header(hdus, index)
        if check_finite is None:
            nbytes = math.prod(shape) * _stored_itemsize(hdus[index])
            check_finite = nbytes <= NONFINITE_SCAN_LIMIT_BYTES
        if check_finite and dtype.kind == "f":
            if _all_nonfinite(hdus[index], shape, source):
                raise InputError(source, "all pixels are NaN or infinite")
    wcs = _celestial_wcs(header)
    meta = _exposure_meta(header, wcs)
    return Exposure(
        path=file,
        hdu=index,
        shape=shape,
        dtype=dtype,
        header=header,
        wcs=wcs,
        meta=meta,
        variance_hdu=variance_hdu,
        weight_hdu=weight_hdu,
        mask_hdu=mask_hdu,
    )

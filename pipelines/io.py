"""Open FITS exposures lazily; read PSF images; write exposures.

An :class:`Exposure` is a small, picklable description of one science image
in a FITS file: where the pixels live (file, HDU, shape, dtype), the header
(merged with the primary header), the celestial WCS and the metadata the
pipeline needs (:class:`ExposureMeta`).  It holds no pixels.  A worker reads
its own tile with :meth:`Exposure.read`, which opens the file and reads only
that section (``hdu.section``: memory-mapped for plain images, tile by tile
for tile-compressed ones, with ``BSCALE``/``BZERO``/``BLANK`` applied), and
returns a :class:`PixelSection`: data, variance (or ``None``) and mask bits.
:meth:`Exposure.to_xarray` wraps the same reads in a lazy, Dask-backed
:class:`xarray.Dataset`.

Multi-extension files (MEF) are understood by ``EXTNAME``: the science plane
(``SCI``/``SCIENCE``/``IMAGE``, or whichever HDU is chosen), a variance plane
(``VAR``/``VARIANCE``), or failing that a weight plane (``WHT``/``WEIGHT``/
``IVAR``/``INVVAR``, inverse variance) and a mask plane (``MASK``/``DQ``/
``BPM``, non-zero means bad).

Every fault with an input file is raised as
:class:`contracts.errors.InputError` whose message is one line,
``"FILE: cause"``; astropy and numpy exceptions never escape.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from astropy.io import fits
from astropy.utils.exceptions import AstropyWarning
from astropy.wcs import WCS
from astropy.wcs.utils import proj_plane_pixel_scales

from contracts.errors import InputError
from contracts.flags import MaskBit

if TYPE_CHECKING:
    import xarray as xr

__all__ = [
    "ExposureMeta",
    "PixelSection",
    "Exposure",
    "open_exposure",
    "check_not_all_nonfinite",
    "read_psf_image",
    "write_exposure",
    "NONFINITE_SCAN_LIMIT_BYTES",
]

NONFINITE_SCAN_LIMIT_BYTES: int = 256 * 2**20
"""Science planes up to this many bytes (as stored) are checked for being all
NaN/infinite when opened; larger ones only by :func:`check_not_all_nonfinite`."""

_SCAN_BLOCK_BYTES = 4 * 2**20
"""Bytes of stored pixels read per row block when scanning for finite pixels."""

_SCIENCE_NAMES = ("SCI", "SCIENCE", "IMAGE")
_VARIANCE_NAMES = ("VAR", "VARIANCE")
_WEIGHT_NAMES = ("WHT", "WEIGHT", "IVAR", "INVVAR")
_MASK_NAMES = ("MASK", "DQ", "BPM")
_AUX_NAMES = frozenset(_VARIANCE_NAMES + _WEIGHT_NAMES + _MASK_NAMES)

_IMAGE_HDU_TYPES = (fits.PrimaryHDU, fits.ImageHDU, fits.CompImageHDU)


def _is_image(hdu: Any) -> bool:
    """Whether an HDU holds an image array (not a table or random groups)."""
    return isinstance(hdu, _IMAGE_HDU_TYPES) and not isinstance(hdu, fits.GroupsHDU)


# Keywords never inherited from the primary header: they describe the
# primary HDU's own structure, data or checksum.
_NOT_INHERITED = frozenset(
    {
        "SIMPLE", "BITPIX", "NAXIS", "EXTEND", "XTENSION", "PCOUNT", "GCOUNT",
        "GROUPS", "EXTNAME", "EXTVER", "EXTLEVEL", "INHERIT", "BSCALE", "BZERO",
        "BLANK", "DATAMIN", "DATAMAX", "CHECKSUM", "DATASUM", "END", "COMMENT",
        "HISTORY", "",
    }
)  # fmt: skip
_NAXIS_KEY = re.compile(r"^NAXIS\d+$")
_WCS_KEY = re.compile(
    r"^(WCSAXES|WCSNAME|CTYPE|CRPIX|CRVAL|CDELT|CUNIT|CROTA|CD\d+_\d+|PC\d+_\d+|"
    r"PV\d+_\d+|PS\d+_\d+|LONPOLE|LATPOLE|RADESYS|RADECSYS|EQUINOX|EPOCH|"
    r"A_|B_|AP_|BP_)"
)

_OVERSAMPLING_KEYS = ("OVERSAMP", "OVERSAMPLE", "PSFOVER")
_OVERSAMPLING_TEXT = (
    # "4-times oversampling", "4x oversampled", "4 times over-sampled"
    re.compile(r"(\d+(?:\.\d+)?)\s*-?\s*(?:times|x)\s*-?\s*over-?sampl", re.IGNORECASE),
    # "oversampled by 4", "oversampling factor of 4", "oversampling: 4"
    re.compile(
        r"over-?sampl\w*\s*(?:by\s+)?(?:a\s+)?(?:factor\s*)?(?:of\s+)?[:=]?\s*(\d+(?:\.\d+)?)",
        re.IGNORECASE,
    ),
)

_GZIP_MAGIC = (b"\x1f\x8b", b"BZh", b"PK\x03\x04", b"\xfd7zXZ")


# ----------------------------------------------------------------------------
# Containers
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ExposureMeta:
    """Observation metadata read from a FITS header.

    Every value is ``None`` when the header does not carry it (or carries a
    value that is not a usable number).

    Attributes
    ----------
    gain : float or None
        Detector gain in e-/ADU (``GAIN``, else ``EGAIN``); positive.
    rdnoise : float or None
        Read noise in electrons (``RDNOISE``, ``READNOIS``, ``RON``); >= 0.
    saturate : float or None
        Saturation level in ADU, on the scaled pixel values (``SATURATE``,
        ``SATLEVEL``); positive.
    exptime : float or None
        Exposure time in seconds (``EXPTIME``, ``EXPOSURE``); >= 0.
    fwhm_px : float or None
        PSF full width at half maximum in pixels: the ``FWHM`` keyword (taken
        to be in pixels), else ``SEEING`` (arcsec) divided by ``pixscale``.
    fwhm_source : str or None
        ``'header:FWHM'`` or ``'header:SEEING'``; ``None`` when ``fwhm_px`` is.
    pixscale : float or None
        Pixel scale in arcsec/pixel: ``PIXSCALE``/``SECPIX``, else the mean of
        the celestial WCS's projection-plane pixel scales.
    magzp : float or None
        Photometric zero point in magnitudes (``MAGZP``, ``MAGZERO``, ``ZP``).
    bunit : str
        Unit of the pixel values (``BUNIT``; ``'adu'`` when absent or blank).
    obsmode : str
        Observation mode (``OBSMODE``, lower case; ``'sidereal'`` when absent).
    object_name : str or None
        Target name (``OBJECT``).
    """

    gain: float | None
    rdnoise: float | None
    saturate: float | None
    exptime: float | None
    fwhm_px: float | None
    fwhm_source: str | None
    pixscale: float | None
    magzp: float | None
    bunit: str
    obsmode: str
    object_name: str | None


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
        y0, y1, x0, x1 = (int(v) for v in (y0, y1, x0, x1))
        ny, nx = self.shape
        if not (0 <= y0 <= y1 <= ny and 0 <= x0 <= x1 <= nx):
            raise ValueError(
                f"section [{y0}:{y1}, {x0}:{x1}] is outside the image of shape {self.shape}"
            )
        work = self.pixel_dtype
        if y0 == y1 or x0 == x1:
            shape = (y1 - y0, x1 - x0)
            return PixelSection(
                data=np.zeros(shape, work),
                variance=np.zeros(shape, work) if self.has_variance else None,
                mask=np.zeros(shape, np.uint16),
            )
        window = (slice(y0, y1), slice(x0, x1))
        try:
            with _quiet(), _fits_open(self.path) as hdul:
                data = _read_window(hdul[self.hdu], window, work)
                variance = weight = maskplane = None
                if self.variance_hdu is not None:
                    variance = _read_window(hdul[self.variance_hdu], window, work)
                elif self.weight_hdu is not None:
                    weight = _read_window(hdul[self.weight_hdu], window, np.float64)
                if self.mask_hdu is not None:
                    maskplane = _read_window(hdul[self.mask_hdu], window, None)
        except FileNotFoundError:
            raise InputError(str(self.path), "file not found") from None
        except Exception as exc:  # astropy/numpy/OS faults of any kind
            raise InputError(
                str(self.path),
                f"cannot read pixels [{y0}:{y1}, {x0}:{x1}] of HDU {self.hdu}: {_brief(exc)}",
            ) from None
        return _assemble(data, variance, weight, maskplane, self.meta.saturate)

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
        import dask.array as da
        import xarray as xr
        from dask.base import tokenize

        chunks = int(chunks)
        if chunks < 1:
            raise ValueError(f"chunks must be a positive number of pixels, got {chunks}")
        ny, nx = self.shape
        block_chunks = (_split(ny, chunks), _split(nx, chunks))
        try:
            stat = os.stat(self.path)
            signature: tuple[int, int] | None = (stat.st_mtime_ns, stat.st_size)
        except OSError:
            signature = None
        token = tokenize(
            str(self.path), self.hdu, self.variance_hdu, self.weight_hdu, self.mask_hdu,
            self.shape, str(self.dtype), self.meta.saturate, block_chunks, signature,
        )  # fmt: skip
        sections = da.map_blocks(
            _read_block,
            self,
            name=f"read-fits-{token}",
            chunks=block_chunks,
            dtype=object,
            meta=np.empty((0, 0), dtype=object),
        )
        work = self.pixel_dtype

        def plane(field: str, dtype: np.dtype) -> Any:
            return sections.map_blocks(
                _section_field,
                field,
                name=f"{field}-{token}",
                dtype=dtype,
                meta=np.empty((0, 0), dtype=dtype),
            )

        flag_bits = list(MaskBit)
        data_vars: dict[str, Any] = {
            "data": (("y", "x"), plane("data", work), {"units": self.meta.bunit}),
            "mask": (
                ("y", "x"),
                plane("mask", np.dtype(np.uint16)),
                {
                    "flag_masks": [int(b.value) for b in flag_bits],
                    "flag_meanings": " ".join(str(b.name) for b in flag_bits),
                },
            ),
        }
        if self.has_variance:
            data_vars["variance"] = (
                ("y", "x"),
                plane("variance", work),
                {"units": f"({self.meta.bunit})^2"},
            )
        attrs: dict[str, Any] = {"path": str(self.path), "hdu": self.hdu, "shape": self.shape}
        for key, value in vars(self.meta).items():
            if value is not None:
                attrs[key] = value
        return xr.Dataset(data_vars, attrs=attrs)


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


# ----------------------------------------------------------------------------
# Public functions
# ----------------------------------------------------------------------------


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
    source = os.fspath(path)
    file = _existing_file(path)
    with _quiet(), _open_fits(file, source) as hdul:
        hdus = _all_hdus(hdul, source)
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


def read_psf_image(
    path: str | os.PathLike[str],
    *,
    image_pixscale: float | None = None,
) -> tuple[np.ndarray, float]:
    """Read a PSF image and its oversampling factor.

    Parameters
    ----------
    path : str or os.PathLike
        FITS file whose first 2-D image HDU holds the PSF (leading length-1
        axes are dropped).
    image_pixscale : float or None, optional
        Pixel scale of the science image in arcsec/pixel, used when the PSF
        file states only its own pixel scale.

    Returns
    -------
    psf : numpy.ndarray
        2-D ``float64`` PSF with negative and non-finite pixels set to 0,
        normalised to unit sum.
    oversampling : float
        PSF pixels per image pixel, from the first of: keyword ``OVERSAMP``/
        ``OVERSAMPLE``/``PSFOVER``; a ``COMMENT``/``HISTORY`` text such as
        ``"4-times oversampling"``; ``image_pixscale`` divided by the PSF
        pixel scale (``PIXSCALE``/``SECPIX``/``PSFSCALE``); else 1.0.

    Raises
    ------
    InputError
        Missing or invalid file, no 2-D image, or a PSF with no positive
        finite pixel.
    """
    source = os.fspath(path)
    file = _existing_file(path)
    with _quiet(), _open_fits(file, source) as hdul:
        hdus = _all_hdus(hdul, source)
        index = _choose_science(hdus, None, source)
        shape = _image_shape(hdus[index], index, source, what="PSF image")
        try:
            raw = np.asarray(hdus[index].data)
        except Exception as exc:
            raise InputError(source, f"cannot read the PSF pixels: {_brief(exc)}") from None
        header = _merged_header(hdus, index)
    psf = np.array(raw.reshape(shape), dtype=np.float64)
    psf[~np.isfinite(psf) | (psf < 0)] = 0.0
    total = float(psf.sum())
    if not (total > 0 and math.isfinite(total)):
        raise InputError(source, "PSF image has no positive finite pixel")
    psf /= total
    return psf, _oversampling(header, image_pixscale)


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
    ``header``), ``VAR`` and/or ``MASK``.  The file is written to a temporary
    name and renamed, so readers never see a partial file.

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
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with _quiet():
            hdul.writeto(temporary, overwrite=True, output_verify="silentfix")
        os.replace(temporary, target)
    except Exception as exc:
        temporary.unlink(missing_ok=True)
        raise InputError(source, f"cannot write the file: {_brief(exc)}") from None
    return target


# ----------------------------------------------------------------------------
# Private helpers: opening and choosing HDUs
# ----------------------------------------------------------------------------


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence astropy's warnings (non-standard cards, WCS fixes, truncation)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AstropyWarning)
        yield


def _brief(exc: BaseException, limit: int = 160) -> str:
    """One short line describing an exception."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _existing_file(path: str | os.PathLike[str]) -> Path:
    """Absolute path of an existing regular file, else :class:`InputError`."""
    source = os.fspath(path)
    file = Path(source).absolute()
    if not file.exists():
        raise InputError(source, "file not found")
    if file.is_dir():
        raise InputError(source, "is a directory, not a FITS file")
    return file


def _fits_open(file: Path) -> fits.HDUList:
    """Open a FITS file for section reads: headers on demand, data untouched.

    ``memmap=None`` memory-maps plain images where it can, like
    ``memmap=True``, but unlike it (strict in astropy >= 8) still allows
    sections of ``BSCALE``/``BZERO``/``BLANK`` images, which are scaled
    section by section.
    """
    return fits.open(file, memmap=None, lazy_load_hdus=True)


@contextmanager
def _open_fits(file: Path, source: str) -> Iterator[fits.HDUList]:
    """Open a FITS file lazily, turning any failure into :class:`InputError`."""
    try:
        hdul = _fits_open(file)
    except FileNotFoundError:
        raise InputError(source, "file not found") from None
    except PermissionError:
        raise InputError(source, "permission denied") from None
    except Exception as exc:
        raise InputError(source, f"not a valid FITS file ({_brief(exc, 100)})") from None
    try:
        yield hdul
    finally:
        hdul.close()


def _all_hdus(hdul: fits.HDUList, source: str) -> list[Any]:
    """Load every HDU's header (not data); corrupt structure -> InputError."""
    try:
        hdus = list(hdul)
    except Exception as exc:
        raise InputError(source, f"corrupt FITS file ({_brief(exc, 100)})") from None
    if not hdus:
        raise InputError(source, "not a valid FITS file (no HDU found)")
    return hdus


def _extname(hdu: Any) -> str:
    """Upper-case EXTNAME of an HDU ('PRIMARY' for the primary)."""
    if isinstance(hdu, fits.PrimaryHDU):
        return str(hdu.header.get("EXTNAME", "PRIMARY")).strip().upper()
    return str(hdu.name).strip().upper()


def _kind(hdu: Any) -> str:
    """What an HDU is, in words."""
    if isinstance(hdu, fits.GroupsHDU):
        return "random-groups HDU"
    if isinstance(hdu, fits.CompImageHDU):
        return "compressed image"
    if isinstance(hdu, _IMAGE_HDU_TYPES):
        return "image" if hdu.header.get("NAXIS", 0) else "empty"
    if isinstance(hdu, fits.BinTableHDU):
        return "binary table"
    if isinstance(hdu, fits.TableHDU):
        return "ASCII table"
    return type(hdu).__name__


def _describe_hdu(hdu: Any, index: int) -> str:
    """E.g. ``"HDU 2 (VAR)"``."""
    name = _extname(hdu)
    return f"HDU {index} ({name})" if name else f"HDU {index}"


def _listing(hdus: Sequence[Any]) -> str:
    """E.g. ``"0 PRIMARY (empty), 1 SCI (image)"``."""
    return ", ".join(f"{i} {_extname(h) or '-'} ({_kind(h)})" for i, h in enumerate(hdus))


def _has_pixels(hdu: Any) -> bool:
    """Whether an image HDU declares a non-empty data array."""
    try:
        shape = hdu.shape
    except Exception:
        return False
    return len(shape) > 0 and all(n > 0 for n in shape)


def _choose_science(hdus: Sequence[Any], hdu: int | str | None, source: str) -> int:
    """Index of the science HDU (validated to be an image HDU)."""
    if hdu is None:
        if _is_image(hdus[0]) and hdus[0].header.get("NAXIS", 0):
            return 0
        images = [
            i for i, h in enumerate(hdus) if i > 0 and _is_image(h) and _has_pixels(h)
        ]
        for i in images:
            if _extname(hdus[i]) in _SCIENCE_NAMES:
                return i
        for i in images:
            if _extname(hdus[i]) not in _AUX_NAMES:
                return i
        if images:
            raise InputError(
                source,
                f"no science image, only variance/weight/mask planes (HDUs: {_listing(hdus)})",
            )
        if len(hdus) == 1 or any(_is_image(h) for h in hdus[1:]):
            raise InputError(source, f"no image data (HDUs: {_listing(hdus)})")
        raise InputError(source, f"no image HDU in the file (HDUs: {_listing(hdus)})")
    if isinstance(hdu, (bool, np.bool_)):
        raise InputError(source, f"invalid HDU selector {hdu!r}")
    if isinstance(hdu, (int, np.integer)):
        index = int(hdu)
        if not -len(hdus) <= index < len(hdus):
            raise InputError(
                source, f"HDU {index} does not exist; the file has {len(hdus)} ({_listing(hdus)})"
            )
        index %= len(hdus)
    elif isinstance(hdu, str):
        wanted = hdu.strip().upper()
        matches = [i for i, h in enumerate(hdus) if _extname(h) == wanted]
        if not matches:
            raise InputError(source, f"no HDU named {hdu!r} (available: {_listing(hdus)})")
        index = matches[0]
    else:
        raise InputError(source, f"invalid HDU selector {hdu!r} (use an index or an EXTNAME)")
    if not _is_image(hdus[index]):
        raise InputError(source, f"HDU {index} is a {_kind(hdus[index])}, not an image")
    return index


def _find_aux(hdus: Sequence[Any], science: int, names: Sequence[str]) -> int | None:
    """Index of an auxiliary image plane by EXTNAME, preferring the science EXTVER."""
    candidates = [
        i
        for i, h in enumerate(hdus)
        if i != science and _is_image(h) and _extname(h) in names
    ]
    if not candidates:
        return None
    version = hdus[science].header.get("EXTVER", 1)
    same = [i for i in candidates if hdus[i].header.get("EXTVER", 1) == version]
    return (same or candidates)[0]


def _image_shape(hdu: Any, index: int, source: str, what: str = "image") -> tuple[int, int]:
    """2-D ``(ny, nx)`` of an image HDU, dropping leading length-1 axes."""
    try:
        shape = tuple(int(n) for n in hdu.shape)
    except Exception as exc:
        cause = f"HDU {index}: invalid image header ({_brief(exc, 100)})"
        raise InputError(source, cause) from None
    if len(shape) == 0 or any(n == 0 for n in shape):
        raise InputError(source, f"no image data in HDU {index}")
    squeezed = shape
    while len(squeezed) > 2 and squeezed[0] == 1:
        squeezed = squeezed[1:]
    if len(squeezed) != 2:
        raise InputError(
            source,
            f"expected a 2-D {what}, got {len(shape)}-D data with shape {shape} in HDU {index}",
        )
    return squeezed[0], squeezed[1]


def _is_compressed_file(file: Path) -> bool:
    """Whether the file is gzip/bzip2/zip/xz-compressed as a whole."""
    try:
        with open(file, "rb") as stream:
            head = stream.read(6)
    except OSError:
        return False
    return any(head.startswith(magic) for magic in _GZIP_MAGIC)


def _stored_itemsize(hdu: Any) -> int:
    """Bytes per stored pixel (from BITPIX / ZBITPIX)."""
    bitpix = hdu.header.get("BITPIX", -32)
    try:
        return max(1, abs(int(bitpix)) // 8)
    except (TypeError, ValueError):
        return 4


def _check_data_present(hdul: fits.HDUList, index: int, file: Path, source: str) -> None:
    """Raise if the file ends before the declared data of HDU ``index``."""
    try:
        info = hdul.fileinfo(index)
        start = int(info["datLoc"])
        hdu = hdul[index]
        if isinstance(hdu, fits.CompImageHDU):
            # The heap size is only known from the binary-table header; the
            # padded span minus a block is a safe lower bound.
            needed = max(0, int(info["datSpan"]) - 2879)
        else:
            needed = int(hdu.size)
        size = file.stat().st_size
    except Exception:  # cannot tell: leave it to the readers
        return
    if start + needed > size:
        raise InputError(
            source,
            f"truncated file: HDU {index} needs {start + needed} bytes but the file has {size}",
        )


def _stored_dtype(hdu: Any, source: str, index: int) -> np.dtype:
    """dtype of the (scaled) pixels, from a one-pixel section read."""
    try:
        lead = (0,) * (len(hdu.shape) - 2)
        corner = hdu.section[(*lead, slice(0, 1), slice(0, 1))]
        return np.asarray(corner).dtype.newbyteorder("=")
    except Exception as exc:
        raise InputError(source, f"cannot read pixel data of HDU {index}: {_brief(exc)}") from None


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


# ----------------------------------------------------------------------------
# Private helpers: headers, WCS, metadata
# ----------------------------------------------------------------------------


def _merged_header(hdus: Sequence[Any], index: int) -> fits.Header:
    """Header of HDU ``index`` with missing keywords inherited from the primary."""
    header = hdus[index].header.copy()
    if index == 0 or header.get("INHERIT", True) is False:
        return header
    own_wcs = any(_WCS_KEY.match(key) for key in header.keys())
    present = set(header.keys())
    for card in hdus[0].header.cards:
        try:
            key = card.keyword
        except Exception:
            continue
        if (
            key in _NOT_INHERITED
            or key in present
            or _NAXIS_KEY.match(key)
            or (own_wcs and _WCS_KEY.match(key))
        ):
            continue
        try:
            header.append(fits.Card.fromstring(card.image), end=True)
        except Exception:
            continue
        present.add(key)
    return header


def _celestial_wcs(header: fits.Header) -> WCS | None:
    """The 2-D celestial WCS of the image axes, or ``None``."""
    try:
        with _quiet():
            full = WCS(header)
            if not full.has_celestial or {full.wcs.lng, full.wcs.lat} != {0, 1}:
                return None
            celestial = full.sub([1, 2])
            scales = proj_plane_pixel_scales(celestial)
    except Exception:
        return None
    if not np.all(np.isfinite(scales)) or not np.all(scales > 0):
        return None
    return celestial


def _number(header: fits.Header, keys: Sequence[str], *, low: float | None = None,
            strict: bool = False) -> float | None:  # fmt: skip
    """First usable float among ``keys``: finite and ``> low`` (or ``>=``)."""
    for key in keys:
        try:
            value = header.get(key)
        except Exception:
            continue
        if value is None or isinstance(value, bool):
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        if not math.isfinite(number):
            continue
        if low is not None and (number <= low if strict else number < low):
            continue
        return number
    return None


def _text(header: fits.Header, key: str) -> str | None:
    """Stripped string value of ``key``, ``None`` when absent or blank."""
    try:
        value = header.get(key)
    except Exception:
        return None
    if value is None or isinstance(value, bool):
        return None
    text = str(value).strip()
    return text or None


def _exposure_meta(header: fits.Header, wcs: WCS | None) -> ExposureMeta:
    """Collect :class:`ExposureMeta` from a (merged) header and its WCS."""
    pixscale = _number(header, ("PIXSCALE", "SECPIX"), low=0.0, strict=True)
    if pixscale is None and wcs is not None:
        scales = proj_plane_pixel_scales(wcs) * 3600.0  # celestial axes are in deg
        pixscale = float(np.mean(scales))
    fwhm_px = _number(header, ("FWHM",), low=0.0, strict=True)
    fwhm_source = "header:FWHM" if fwhm_px is not None else None
    if fwhm_px is None:
        seeing = _number(header, ("SEEING",), low=0.0, strict=True)
        if seeing is not None and pixscale is not None:
            fwhm_px = seeing / pixscale
            fwhm_source = "header:SEEING"
    return ExposureMeta(
        gain=_number(header, ("GAIN", "EGAIN"), low=0.0, strict=True),
        rdnoise=_number(header, ("RDNOISE", "READNOIS", "RON"), low=0.0),
        saturate=_number(header, ("SATURATE", "SATLEVEL"), low=0.0, strict=True),
        exptime=_number(header, ("EXPTIME", "EXPOSURE"), low=0.0),
        fwhm_px=fwhm_px,
        fwhm_source=fwhm_source,
        pixscale=pixscale,
        magzp=_number(header, ("MAGZP", "MAGZERO", "ZP")),
        bunit=_text(header, "BUNIT") or "adu",
        obsmode=(_text(header, "OBSMODE") or "sidereal").lower(),
        object_name=_text(header, "OBJECT"),
    )


def _oversampling(header: fits.Header, image_pixscale: float | None) -> float:
    """PSF pixels per image pixel (see :func:`read_psf_image`)."""
    factor = _number(header, _OVERSAMPLING_KEYS, low=0.0, strict=True)
    if factor is not None:
        return factor
    texts: list[str] = []
    for key in ("COMMENT", "HISTORY"):
        try:
            texts.extend(str(t) for t in header.get(key, []))
        except Exception:
            continue
    for text in texts:
        for pattern in _OVERSAMPLING_TEXT:
            found = pattern.search(text)
            if found and float(found.group(1)) > 0:
                return float(found.group(1))
    psf_scale = _number(header, ("PIXSCALE", "SECPIX", "PSFSCALE"), low=0.0, strict=True)
    if psf_scale is not None and image_pixscale is not None and image_pixscale > 0:
        return float(image_pixscale) / psf_scale
    return 1.0


# ----------------------------------------------------------------------------
# Private helpers: pixels
# ----------------------------------------------------------------------------


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


def _split(length: int, chunk: int) -> tuple[int, ...]:
    """Chunk sizes covering ``length`` in pieces of ``chunk``."""
    full, rest = divmod(length, chunk)
    return (chunk,) * full + ((rest,) if rest else ())


def _read_block(exposure: Exposure, block_info: dict[Any, Any] | None = None) -> PixelSection:
    """Dask block function: read the block's section of the exposure."""
    if block_info is None:  # dask probing without a location
        return exposure.read(0, 0, 0, 0)
    (y0, y1), (x0, x1) = block_info[None]["array-location"]
    return exposure.read(y0, y1, x0, x1)


def _section_field(section: PixelSection, field: str) -> np.ndarray:
    """Dask block function: one plane of a :class:`PixelSection`."""
    return getattr(section, field)


# ----------------------------------------------------------------------------
# Private helpers: writing
# ----------------------------------------------------------------------------


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

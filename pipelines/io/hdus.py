"""Opening FITS files and finding their HDUs: the science image and its planes.

Multi-extension files (MEF) are understood by ``EXTNAME``: the science plane
(``SCI``/``SCIENCE``/``IMAGE``, or whichever HDU is chosen), a variance plane
(``VAR``/``VARIANCE``), or failing that a weight plane (``WHT``/``WEIGHT``/
``IVAR``/``INVVAR``, inverse variance) and a mask plane (``MASK``/``DQ``/
``BPM``, non-zero means bad).

Everything here is private to :mod:`pipelines.io`: every fault is raised as
:class:`contracts.errors.InputError` with a one-line ``"FILE: cause"``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.utils.exceptions import AstropyWarning

from contracts.errors import InputError

__all__: list[str] = []

_SCIENCE_NAMES = ("SCI", "SCIENCE", "IMAGE")
_VARIANCE_NAMES = ("VAR", "VARIANCE")
_WEIGHT_NAMES = ("WHT", "WEIGHT", "IVAR", "INVVAR")
_MASK_NAMES = ("MASK", "DQ", "BPM")
_AUX_NAMES = frozenset(_VARIANCE_NAMES + _WEIGHT_NAMES + _MASK_NAMES)

_IMAGE_HDU_TYPES = (fits.PrimaryHDU, fits.ImageHDU, fits.CompImageHDU)


def _is_image(hdu: Any) -> bool:
    """Whether an HDU holds an image array (not a table or random groups)."""
    return isinstance(hdu, _IMAGE_HDU_TYPES) and not isinstance(hdu, fits.GroupsHDU)


_GZIP_MAGIC = (b"\x1f\x8b", b"BZh", b"PK\x03\x04", b"\xfd7zXZ")


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


@contextmanager
def _opened_hdus(path: str | os.PathLike[str]) -> Iterator[tuple[str, Path, fits.HDUList, list[Any]]]:
    """Open a FITS file quietly and load its HDU headers.

    Yields
    ------
    tuple
        ``(source, file, hdul, hdus)``: the path as given (for messages), the
        absolute file, the open :class:`~astropy.io.fits.HDUList` and its HDUs.

    Raises
    ------
    InputError
        Missing file, a folder, not a (valid) FITS file, corrupt structure.
    """
    source = os.fspath(path)
    file = _existing_file(path)
    with _quiet(), _open_fits(file, source) as hdul:
        yield source, file, hdul, _all_hdus(hdul, source)


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

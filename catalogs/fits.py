"""FITS binary-table catalogs: the one place that builds, writes and reads them.

Both writers of FITS catalogs, :func:`catalogs.io.write_catalog` (one
exposure's detection catalog) and :func:`catalogs.export.write_fits` (a
selection of a dataset), build the file with :func:`catalog_hdulist` and write
it with :func:`write_hdulist`; their readers restore the column units and
descriptions with :func:`restore_columns`.

The layout: an empty primary HDU, then the binary table ``CATALOG`` with the
units in ``TUNITn`` (FITS unit syntax where possible), the descriptions in
``TCOMMn``, and the catalog metadata in these keywords:

============  =================================================================
keyword       value
============  =================================================================
``MOESCHEM``  catalog schema version
``MOEFUNIT``  unit of the flux-like columns
``MOENFILE``  catalog files (exposures) in an exported selection
``MOEPROV``   provenance (JSON)
``MOEFLAGS``  the ``flags`` bits (JSON), also one ``COMMENT`` card per bit
============  =================================================================
"""

from __future__ import annotations

import gzip
import json
import os
import warnings
from collections.abc import Mapping
from typing import Any

import astropy.units as u
import numpy as np
from astropy.io import fits
from astropy.table import MaskedColumn, Table

from .schema import parse_unit

__all__ = [
    "FITS_EXTNAME",
    "column_data",
    "catalog_hdulist",
    "write_hdulist",
    "restore_columns",
]

FITS_EXTNAME = "CATALOG"
"""Name of the binary-table extension that holds a catalog."""


def column_data(col: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """Return a column's values and its mask (``None`` when nothing is masked).

    Parameters
    ----------
    col : astropy Column, MaskedColumn, Quantity or array-like
        The column; a Quantity gives its values without the unit.

    Returns
    -------
    values : numpy.ndarray
    mask : numpy.ndarray or None
    """
    if isinstance(col, u.Quantity):
        return np.asarray(col.value), None
    if np.ma.isMaskedArray(col) or isinstance(col, MaskedColumn):
        mask = np.ma.getmaskarray(col)
        return np.asarray(np.ma.getdata(col)), (mask if mask.any() else None)
    return np.asarray(col), None


def catalog_hdulist(
    plain: Table,
    units: list[str],
    descriptions: list[str],
    *,
    schema_version: str,
    flux_unit: str | None = None,
    n_files: int | None = None,
    provenance: Mapping[str, Any] | None = None,
    flags: Mapping[str, Mapping[str, Any]] | None = None,
    extname_comment: str = "moe-imaging detection catalog",
    schema_in_primary: bool = False,
) -> fits.HDUList:
    """Build the HDUs of a FITS catalog: an empty primary HDU and the ``CATALOG`` table.

    Parameters
    ----------
    plain : astropy.table.Table
        The columns as FITS will store them (plain values, masks; no units,
        no metadata).
    units, descriptions : list of str
        One per column of ``plain``: the FITS unit text for ``TUNITn`` and
        the text for ``TCOMMn`` (``""`` for none).
    schema_version : str
        Written as ``MOESCHEM``.
    flux_unit : str, optional
        Written as ``MOEFUNIT`` unless ``None``.
    n_files : int, optional
        Written as ``MOENFILE`` unless ``None``.
    provenance : mapping, optional
        Written as JSON in ``MOEPROV`` unless ``None``.
    flags : mapping, optional
        ``{name: {"bit": value, "description": text}}``, written as JSON in
        ``MOEFLAGS`` and as one ``COMMENT`` card per bit, unless ``None``.
    extname_comment : str
        Comment of the ``EXTNAME`` card.
    schema_in_primary : bool
        Also write ``MOESCHEM`` in the primary header.

    Returns
    -------
    astropy.io.fits.HDUList
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fits.verify.VerifyWarning)
        hdu = fits.table_to_hdu(plain)
        header = hdu.header
        for i, (unit, text) in enumerate(zip(units, descriptions), start=1):
            after = f"TFORM{i}"
            if unit:
                header.set(f"TUNIT{i}", unit, after=after)
                after = f"TUNIT{i}"
            elif f"TUNIT{i}" in header:
                del header[f"TUNIT{i}"]
            if text:
                header.set(f"TCOMM{i}", text, after=after)
        header["EXTNAME"] = (FITS_EXTNAME, extname_comment)
        header["MOESCHEM"] = (schema_version, "moe-imaging catalog schema version")
        if flux_unit is not None:
            header["MOEFUNIT"] = (flux_unit, "unit of flux, flux_err, background, noise")
        if n_files is not None:
            header["MOENFILE"] = (n_files, "catalog files (exposures) in this selection")
        if provenance is not None:
            header["MOEPROV"] = json.dumps(provenance, sort_keys=True, ensure_ascii=True)
        if flags is not None:
            header["MOEFLAGS"] = json.dumps(flags, ensure_ascii=True)
            for name, info in flags.items():
                header.add_comment(f"flags bit {info['bit']} {name}: {info['description']}")
        primary = fits.PrimaryHDU()
        if schema_in_primary:
            primary.header["MOESCHEM"] = (schema_version, "moe-imaging catalog schema version")
    return fits.HDUList([primary, hdu])


def write_hdulist(
    hdul: fits.HDUList,
    path: str | os.PathLike[str],
    *,
    compress: bool = False,
    output_verify: str = "exception",
) -> None:
    """Write a catalog's HDUs, with ``CHECKSUM``/``DATASUM`` cards, to a new file.

    The file is written through a file object, so its name never decides the
    compression (astropy would compress a name ending in ``.gz``, ``.bz2``...):
    ``compress`` does.  Meant as the ``write`` of
    :func:`contracts.files.atomic_write`.

    Parameters
    ----------
    hdul : astropy.io.fits.HDUList
        From :func:`catalog_hdulist`.
    path : str or path-like
        The file to create.
    compress : bool
        Write it gzip-compressed.
    output_verify : str
        astropy's ``output_verify`` (``"exception"``, ``"silentfix"``...).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fits.verify.VerifyWarning)
        with (gzip.GzipFile(filename=path, mode="wb") if compress else open(path, "wb")) as stream:
            hdul.writeto(stream, checksum=True, output_verify=output_verify)


def restore_columns(raw: Table, header: fits.Header) -> Table:
    """Set each column's unit (``TUNITn``) and description (``TCOMMn``) from its header.

    Parameters
    ----------
    raw : astropy.table.Table
        The table as read from the HDU whose header is ``header``.
    header : astropy.io.fits.Header

    Returns
    -------
    astropy.table.Table
        ``raw``, changed in place.
    """
    for i, name in enumerate(raw.colnames, start=1):
        unit = header.get(f"TUNIT{i}")
        raw[name].unit = parse_unit(unit, fmt="fits") if unit else None
        text = header.get(f"TCOMM{i}")
        if text:
            raw[name].description = str(text)
    return raw

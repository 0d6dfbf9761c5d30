"""Writing and reading detection catalogs: Parquet, FITS and ECSV.

The format follows the file extension:

========================  ==================================================
extension                 format
========================  ==================================================
``.parquet``              Apache Parquet (pyarrow); units and descriptions in
                          field metadata, provenance, schema version and flag
                          descriptions in the schema metadata
``.fits``, ``.fit``,      FITS binary table (extension ``CATALOG``); units in
``.fits.gz``, ``.fit.gz`` ``TUNITn``, descriptions in ``TCOMMn``, provenance
                          JSON in ``MOEPROV``, schema version in ``MOESCHEM``,
                          flag bits in ``MOEFLAGS`` and ``COMMENT`` cards
``.ecsv``                 astropy ECSV; everything in the YAML header
========================  ==================================================

Every file carries the catalog's :class:`~catalogs.provenance.Provenance`, the
schema version and the descriptions of the ``flags`` bits, so it explains
itself.  Only these metadata are stored; other ``table.meta`` entries are not.
Files are written atomically (:func:`contracts.files.atomic_write`), so a
reader never sees a half-written catalog.  The FITS layout is built by
:mod:`catalogs.fits`, shared with :func:`catalogs.export.write_fits`.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import sys
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import astropy.units as u
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from astropy.io import fits
from astropy.table import Column, MaskedColumn, Table

from contracts.errors import InputError
from contracts.files import atomic_write
from contracts.flags import SourceFlag, describe

from .fits import (
    FITS_EXTNAME,
    catalog_hdulist,
    column_data,
    restore_columns,
    write_hdulist,
)
from .provenance import Provenance
from .schema import (
    COLUMNS,
    DEFAULT_FLUX_UNIT,
    SCHEMA_VERSION,
    CatalogSchemaError,
    check_schema_version,
    parse_unit,
    validate,
)

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = [
    "CATALOG_FORMATS",
    "catalog_format",
    "write_catalog",
    "read_catalog",
    "to_pandas",
    "from_pandas",
    "flag_descriptions",
]

CATALOG_FORMATS: dict[str, str] = {
    ".parquet": "parquet",
    ".fits": "fits",
    ".fit": "fits",
    ".fits.gz": "fits",
    ".fit.gz": "fits",
    ".ecsv": "ecsv",
}
"""File extension (lower case) -> catalog format."""

_PQ_PROVENANCE = b"moe_imaging.provenance"
_PQ_VERSION = b"moe_imaging.schema_version"
_PQ_FLAGS = b"moe_imaging.flags"
_PQ_FLUX_UNIT = b"moe_imaging.flux_unit"


# --------------------------------------------------------------------------- helpers


def catalog_format(path: str | os.PathLike[str]) -> str:
    """Return the catalog format (``'parquet'``, ``'fits'`` or ``'ecsv'``) of a path.

    Raises
    ------
    InputError
        If the extension is not a catalog format.
    """
    return _format_and_ext(Path(path))[0]


def _format_and_ext(path: Path) -> tuple[str, str]:
    name = path.name.lower()
    for ext in sorted(CATALOG_FORMATS, key=len, reverse=True):
        if name.endswith(ext) and len(name) > len(ext):
            return CATALOG_FORMATS[ext], ext
    raise InputError(
        str(path), f"unknown catalog format '{path.suffix}'; use .parquet, .fits or .ecsv"
    )


def flag_descriptions() -> dict[str, dict[str, Any]]:
    """Return ``{flag name: {"bit": value, "description": text}}`` for ``SourceFlag``."""
    return {
        name: {"bit": bit, "description": text}
        for name, (bit, text) in describe(SourceFlag).items()
    }


def _unit_text(unit: Any, *, fits_format: bool = False) -> str:
    """Return a unit as text ('' for none); FITS format where the unit allows."""
    parsed = parse_unit(unit)
    if parsed is None:
        return ""
    if fits_format:
        try:
            return parsed.to_string(format="fits")
        except (ValueError, u.UnitsError):
            pass
    return parsed.to_string()


def _provenance_dict(
    table: Table, provenance: Provenance | Mapping[str, Any] | None, *, source: str
) -> dict[str, Any]:
    """Return the provenance to write, as a dict, with the flux unit settled."""
    if provenance is None:
        provenance = table.meta.get("provenance") or None
    if isinstance(provenance, Provenance):
        prov = provenance.to_dict()
    elif provenance is None or isinstance(provenance, Mapping):
        prov = dict(provenance or {})
        if not prov.get("flux_unit"):
            units = {str(parse_unit(getattr(table[c.name], "unit", None)))
                     for c in COLUMNS if c.is_flux_unit and c.name in table.colnames
                     and getattr(table[c.name], "unit", None) is not None}
            prov["flux_unit"] = units.pop() if len(units) == 1 else DEFAULT_FLUX_UNIT
        try:
            prov = Provenance.from_dict(prov).to_dict()
        except (TypeError, ValueError) as exc:
            raise InputError(source, f"bad provenance: {exc}") from None
    else:
        raise TypeError(
            f"provenance: expected Provenance, mapping or None, got {type(provenance).__name__}"
        )
    prov["schema_version"] = SCHEMA_VERSION
    return prov


# --------------------------------------------------------------------------- writing


def write_catalog(
    table: Table | pd.DataFrame,
    path: str | os.PathLike[str],
    *,
    provenance: Provenance | Mapping[str, Any] | None = None,
    overwrite: bool = True,
) -> Path:
    """Write a detection catalog; the format follows the extension.

    Parameters
    ----------
    table : astropy.table.Table or pandas.DataFrame
        The catalog.  It is validated against the schema first; extra columns
        are written after the schema columns.  A DataFrame is converted with
        :func:`from_pandas` (its ``attrs`` give units and provenance).
    path : str or path-like
        Output file: ``.parquet``, ``.fits``/``.fit``/``.fits.gz`` or ``.ecsv``.
        Missing parent folders are created.
    provenance : Provenance or mapping, optional
        File-level provenance.  Defaults to ``table.meta["provenance"]``, else
        a fresh :class:`Provenance`.  Its ``flux_unit`` sets the unit of the
        flux-like columns (from the table's flux columns, else ``"adu"``, when
        a mapping lacks it).  ``schema_version`` is set to the current schema.
    overwrite : bool
        Whether an existing file may be replaced.

    Returns
    -------
    pathlib.Path
        The path written.

    Raises
    ------
    InputError
        Unknown extension, existing file with ``overwrite=False``, or a write failure.
    CatalogSchemaError
        If the table does not follow the schema, or its flux unit disagrees
        with the provenance's ``flux_unit``.
    """
    path = Path(path)
    fmt, ext = _format_and_ext(path)
    if _is_dataframe(table):
        table = from_pandas(table)
    if path.is_dir():
        raise InputError(str(path), "is a folder; expected a catalog file name")
    if path.exists() and not overwrite:
        raise InputError(str(path), "already exists; pass overwrite=True to replace it")
    prov = _provenance_dict(table, provenance, source=str(path))
    flux_unit = prov["flux_unit"]
    checked = validate(table, source=str(path), flux_unit=flux_unit)
    writer: Callable[[Table, Path, dict[str, Any], str], None] = {
        "parquet": _write_parquet,
        "fits": functools.partial(_write_fits, compress=ext.endswith(".gz")),
        "ecsv": _write_ecsv,
    }[fmt]
    return _write_file(
        path, lambda tmp: writer(checked, tmp, prov, flux_unit), failure="cannot write the catalog"
    )


def _write_file(path: Path, write: Callable[[Path], object], *, failure: str = "cannot write") -> Path:
    """Write ``path`` atomically (:func:`contracts.files.atomic_write`), making its folder.

    Parameters
    ----------
    path : pathlib.Path
        The file.
    write : callable
        Writes the whole content to the (temporary) path it is given.
    failure : str
        What the message of a write failure starts with.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    InputError
        The folder cannot be made, or the file cannot be written.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(str(path), f"cannot create the folder: {exc.strerror or exc}") from None
    try:
        atomic_write(path, write)
    except OSError as exc:
        raise InputError(str(path), f"{failure}: {exc.strerror or exc}") from None
    return path


def _write_parquet(table: Table, path: Path, prov: dict[str, Any], flux_unit: str) -> None:
    arrays: list[pa.Array] = []
    fields: list[pa.Field] = []
    for name in table.colnames:
        col = table[name]
        data, mask = column_data(col)
        meta: dict[bytes, bytes] = {}
        unit = _unit_text(getattr(col, "unit", None))
        if unit:
            meta[b"unit"] = unit.encode()
        if getattr(col, "description", None):
            meta[b"description"] = str(col.description).encode()
        if data.ndim > 1:
            meta[b"shape"] = json.dumps(list(data.shape[1:])).encode()
            size = int(np.prod(data.shape[1:]))
            flat = data.reshape(len(data), size)
            values = pa.array(_arrow_values(flat.reshape(-1)))
            rows = None if mask is None else pa.array(mask.reshape(len(data), -1).all(axis=1))
            array = pa.FixedSizeListArray.from_arrays(values, size, mask=rows)
        else:
            array = pa.array(_arrow_values(data), mask=mask)
        arrays.append(array)
        fields.append(pa.field(name, array.type, metadata=meta or None))
    schema = pa.schema(fields, metadata={
        _PQ_PROVENANCE: json.dumps(prov, sort_keys=True).encode(),
        _PQ_VERSION: SCHEMA_VERSION.encode(),
        _PQ_FLAGS: json.dumps(flag_descriptions()).encode(),
        _PQ_FLUX_UNIT: flux_unit.encode(),
    })
    pq.write_table(pa.Table.from_arrays(arrays, schema=schema), path)


def _arrow_values(data: np.ndarray) -> np.ndarray:
    """Return values pyarrow converts as intended (bytes become text)."""
    if data.dtype.kind == "S":
        return np.char.decode(data, "utf-8", errors="replace")
    return data


def _write_fits(table: Table, path: Path, prov: dict[str, Any], flux_unit: str, *,
                compress: bool = False) -> None:
    plain = Table(meta={})
    units: list[str] = []
    descriptions: list[str] = []
    for name in table.colnames:
        col = table[name]
        units.append(_unit_text(getattr(col, "unit", None), fits_format=True))
        descriptions.append(str(getattr(col, "description", None) or ""))
        data, mask = column_data(col)
        if data.dtype.kind == "U" and data.dtype.itemsize == 0:
            data = data.astype("U1")
        plain[name] = MaskedColumn(data, mask=mask) if mask is not None else Column(data)
    hdul = catalog_hdulist(
        plain, units, descriptions, schema_version=SCHEMA_VERSION, flux_unit=flux_unit,
        provenance=prov, flags=flag_descriptions(), schema_in_primary=True,
    )
    write_hdulist(hdul, path, compress=compress)


def _write_ecsv(table: Table, path: Path, prov: dict[str, Any], flux_unit: str) -> None:
    out = table.copy(copy_data=False)
    out.meta = {
        "schema_version": SCHEMA_VERSION,
        "flux_unit": flux_unit,
        "provenance": prov,
        "flags": flag_descriptions(),
    }
    for name in out.colnames:
        col = out[name]
        if isinstance(getattr(col, "unit", None), u.UnrecognizedUnit):
            col.unit = None
            col.meta["unit"] = str(table[name].unit)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", u.UnitsWarning)
        out.write(path, format="ascii.ecsv", overwrite=True)


# --------------------------------------------------------------------------- reading


def read_catalog(path: str | os.PathLike[str]) -> Table:
    """Read a detection catalog; the format follows the extension.

    Parameters
    ----------
    path : str or path-like
        A ``.parquet``, ``.fits``/``.fit``/``.fits.gz`` or ``.ecsv`` catalog.

    Returns
    -------
    astropy.table.Table
        The catalog, validated: schema columns in schema order with schema
        dtypes, units (the flux unit resolved) and descriptions, then any extra
        columns.  ``meta["provenance"]`` is the provenance dict (``{}`` if the
        file has none), ``meta["schema_version"]`` the file's schema version
        (``None`` if not recorded) and ``meta["flags"]`` the flag bits.

    Raises
    ------
    InputError
        Unknown extension, missing file, or a file that cannot be parsed.
    CatalogSchemaError
        A missing or bad column, or a file written with another major schema
        version (the message names both versions).
    """
    path = Path(path)
    fmt, _ = _format_and_ext(path)
    if not path.exists():
        raise InputError(str(path), "file not found")
    if not path.is_file():
        raise InputError(str(path), "is not a file")
    reader: Callable[[Path], tuple[Table, dict[str, Any]]] = {
        "parquet": _read_parquet,
        "fits": _read_fits,
        "ecsv": _read_ecsv,
    }[fmt]
    try:
        raw, info = reader(path)
    except (OSError, ValueError, TypeError, KeyError, pa.ArrowException) as exc:
        raise InputError(str(path), f"not a readable {fmt} catalog: {exc}") from None
    version = info.get("schema_version")
    prov = info.get("provenance") or {}
    if not isinstance(prov, Mapping):
        raise InputError(str(path), "provenance metadata is not a mapping")
    prov = dict(prov)
    if version is None:
        version = prov.get("schema_version")
    version = None if version is None else str(version)
    check_schema_version(version, source=str(path))
    flux_unit = prov.get("flux_unit") or info.get("flux_unit")
    table = validate(raw, source=str(path), flux_unit=flux_unit or None, version=version)
    table.meta = {
        "schema_version": version,
        "provenance": prov,
        "flags": info.get("flags") or flag_descriptions(),
    }
    return table


def _json_meta(blob: bytes | str | None, *, what: str) -> Any:
    if blob is None:
        return None
    try:
        return json.loads(blob)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} metadata is not valid JSON ({exc})") from None


def _read_parquet(path: Path) -> tuple[Table, dict[str, Any]]:
    pt = pq.read_table(path)
    meta = pt.schema.metadata or {}
    table = Table()
    for field, chunked in zip(pt.schema, pt.columns):
        fmeta = field.metadata or {}
        array = chunked.combine_chunks()
        if pa.types.is_dictionary(array.type):
            array = array.dictionary_decode()
        data, mask = _from_arrow(array)
        if b"shape" in fmeta:
            shape = tuple(json.loads(fmeta[b"shape"]))
            data = data.reshape((len(data),) + shape)
            if mask is not None:
                mask = np.broadcast_to(mask.reshape((-1,) + (1,) * len(shape)), data.shape).copy()
        unit = parse_unit(fmeta.get(b"unit", b"").decode() or None)
        desc = fmeta.get(b"description", b"").decode() or None
        cls = MaskedColumn if mask is not None else Column
        kwargs = {"mask": mask} if mask is not None else {}
        table[field.name] = cls(data, name=field.name, unit=unit, description=desc, **kwargs)
    info = {
        "schema_version": meta[_PQ_VERSION].decode() if _PQ_VERSION in meta else None,
        "provenance": _json_meta(meta.get(_PQ_PROVENANCE), what="provenance"),
        "flags": _json_meta(meta.get(_PQ_FLAGS), what="flags"),
        "flux_unit": meta[_PQ_FLUX_UNIT].decode() if _PQ_FLUX_UNIT in meta else None,
    }
    return table, info


def _from_arrow(array: pa.Array) -> tuple[np.ndarray, np.ndarray | None]:
    """Return numpy values and a null mask (None without nulls) of an Arrow array."""
    mask = array.is_null().to_numpy(zero_copy_only=False) if array.null_count else None
    kind = array.type
    if pa.types.is_fixed_size_list(kind):
        values, _ = _from_arrow(array.flatten() if not array.null_count else
                                array.fill_null(pa.scalar([None] * kind.list_size, kind)).flatten())
        return values.reshape(len(array), kind.list_size), mask
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        items = ["" if v is None else v for v in array.to_pylist()]
        width = max([1] + [len(v) for v in items])
        return np.array(items, dtype=f"U{width}"), mask
    if array.null_count and (pa.types.is_integer(kind) or pa.types.is_boolean(kind)):
        array = array.fill_null(pa.scalar(0 if not pa.types.is_boolean(kind) else False, kind))
    elif array.null_count and pa.types.is_floating(kind):
        array = array.fill_null(pa.scalar(float("nan"), kind))
    return np.asarray(array.to_numpy(zero_copy_only=False)), mask


def _read_fits(path: Path) -> tuple[Table, dict[str, Any]]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", u.UnitsWarning)
        warnings.simplefilter("ignore", fits.verify.VerifyWarning)
        with fits.open(path, memmap=False) as hdul:
            index = _fits_table_index(hdul)
            if index is None:
                raise ValueError("no binary table extension")
            hdu = hdul[index]
            header = hdu.header.copy()
            raw = Table.read(hdu, mask_invalid=False, character_as_bytes=False,
                             unit_parse_strict="silent")
    restore_columns(raw, header)
    prov = header.get("MOEPROV")
    flags = header.get("MOEFLAGS")
    info = {
        "schema_version": header.get("MOESCHEM"),
        "provenance": _json_meta(prov, what="provenance") if prov else None,
        "flags": _json_meta(flags, what="flags") if flags else None,
        "flux_unit": header.get("MOEFUNIT"),
    }
    return raw, info


def _fits_table_index(hdul: fits.HDUList) -> int | None:
    first = None
    for i, hdu in enumerate(hdul):
        if isinstance(hdu, (fits.BinTableHDU, fits.TableHDU)):
            if hdu.name == FITS_EXTNAME:
                return i
            first = i if first is None else first
    return first


def _read_ecsv(path: Path) -> tuple[Table, dict[str, Any]]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", u.UnitsWarning)
        raw = Table.read(path, format="ascii.ecsv")
    for name in raw.colnames:
        col = raw[name]
        if col.unit is None and "unit" in (col.meta or {}):
            col.unit = parse_unit(col.meta.pop("unit"))
        if isinstance(col, MaskedColumn) and col.dtype.kind == "U":
            # ECSV writes '' and a missing string alike; catalogs hold ''.
            raw[name] = Column(col.filled(""), name=name, unit=col.unit,
                               description=col.description, meta=col.meta)
    meta = raw.meta
    info = {
        "schema_version": meta.get("schema_version"),
        "provenance": meta.get("provenance"),
        "flags": meta.get("flags"),
        "flux_unit": meta.get("flux_unit"),
    }
    raw.meta = {}
    return raw, info


# --------------------------------------------------------------------------- pandas


def _is_dataframe(obj: object) -> bool:
    """Whether ``obj`` is a pandas DataFrame (without importing pandas)."""
    pandas = sys.modules.get("pandas")
    return pandas is not None and isinstance(obj, pandas.DataFrame)


def to_pandas(table: Table | str | os.PathLike[str]) -> pd.DataFrame:
    """Return a catalog as a pandas DataFrame (units dropped, metadata in ``attrs``).

    Parameters
    ----------
    table : astropy.table.Table or path
        A catalog table, or a catalog file (read with :func:`read_catalog`).

    Returns
    -------
    pandas.DataFrame
        One column per table column (multidimensional columns hold arrays);
        ``df.attrs`` holds ``provenance``, ``schema_version``, ``flags`` and
        ``units`` (``{column: unit string}``) so :func:`from_pandas` restores them.
    """
    import pandas as pd

    if isinstance(table, (str, os.PathLike)):
        table = read_catalog(table)
    flat = [n for n in table.colnames if len(getattr(table[n], "shape", ())) <= 1]
    if flat:
        df = table[flat].to_pandas(index=False)
    else:
        df = pd.DataFrame(index=range(len(table)))
    for name in table.colnames:
        if name not in flat:
            df[name] = pd.Series(list(np.asarray(table[name])), dtype=object)
    df = df[list(table.colnames)]
    units = {n: _unit_text(getattr(table[n], "unit", None)) for n in table.colnames}
    df.attrs = {
        "provenance": copy.deepcopy(dict(table.meta.get("provenance") or {})),
        "schema_version": table.meta.get("schema_version", SCHEMA_VERSION),
        "flags": copy.deepcopy(table.meta.get("flags") or flag_descriptions()),
        "units": {n: t for n, t in units.items() if t},
    }
    return df


def from_pandas(df: pd.DataFrame, *, flux_unit: str | None = None) -> Table:
    """Return a validated catalog Table from a DataFrame made by :func:`to_pandas`.

    Parameters
    ----------
    df : pandas.DataFrame
        The catalog; ``df.attrs`` may hold ``units`` and ``provenance``.
    flux_unit : str, optional
        Unit of the flux-like columns; default from ``attrs["provenance"]``,
        else ``attrs["units"]``.

    Raises
    ------
    CatalogSchemaError
        If a schema column is missing or has a bad dtype.
    """
    attrs = dict(getattr(df, "attrs", {}) or {})
    units = dict(attrs.get("units") or {})
    prov = copy.deepcopy(dict(attrs.get("provenance") or {}))
    try:
        raw = Table.from_pandas(df, index=False)
    except (TypeError, ValueError) as exc:
        raise CatalogSchemaError(
            f"pandas DataFrame: cannot convert to a table ({exc}) (catalog schema {SCHEMA_VERSION})"
        ) from None
    table = Table()
    for name in raw.colnames:
        col = raw[name]
        values: Any = col
        if col.dtype.kind == "f" and isinstance(col, MaskedColumn):
            values = col.filled(np.nan)  # pandas NaN, not a missing entry
        elif col.dtype.kind == "O" and len(col):
            try:
                values = np.stack([np.asarray(v) for v in col])
            except (ValueError, TypeError):
                pass
        cls = MaskedColumn if isinstance(values, MaskedColumn) else Column
        table[name] = cls(values, name=name, unit=parse_unit(units.get(name)))
    table.meta = {"provenance": prov} if prov else {}
    if attrs.get("schema_version") is not None:
        check_schema_version(str(attrs["schema_version"]), source="pandas DataFrame")
    return validate(table, source="pandas DataFrame",
                    flux_unit=flux_unit or prov.get("flux_unit") or None)

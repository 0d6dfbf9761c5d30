"""The files of a catalog dataset: partition layout, discovery and footer checks.

Many exposures' catalogs form one Parquet dataset, laid out with Hive
partitioning (read by :mod:`pyarrow.dataset`)::

    ROOT/run=<run>/exposure=<exposure>/catalog.parquet

``run`` names a batch (a configuration, e.g. ``nightly``), ``exposure`` the
input image (its file stem).  Each file is a complete, schema-validated
catalog with its provenance (:func:`catalogs.io.write_catalog`), written
atomically (:func:`contracts.files.atomic_write`), so a reader never sees
half a file.

:func:`list_catalogs` finds the files of a dataset; before any data is read,
the footer of every selected file is checked: its schema version
(:func:`catalogs.schema.check_schema_version`) and that every schema column
is there with a compatible type.  :func:`catalog_provenance` lists the files
with their provenance, one row per exposure.  Reading a selection of the
rows is :func:`catalogs.dataset.open_catalog`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from astropy.table import Table

from contracts.errors import InputError

from .io import (
    _PQ_FLAGS,
    _PQ_FLUX_UNIT,
    _PQ_PROVENANCE,
    _PQ_VERSION,
    flag_descriptions,
    read_catalog,
    write_catalog,
)
from .provenance import Provenance
from .schema import (
    COLUMNS,
    DEFAULT_FLUX_UNIT,
    SCHEMA_VERSION,
    CatalogSchemaError,
    added_after,
    check_schema_version,
)

__all__ = [
    "CATALOG_FILE",
    "PARTITION_COLUMNS",
    "PARTITION_DESCRIPTIONS",
    "CatalogFile",
    "partition_value",
    "catalog_path",
    "write_exposure_catalog",
    "list_catalogs",
    "catalog_provenance",
]

CATALOG_FILE = "catalog.parquet"
"""The file name of one exposure's catalog inside its partition folder."""

PARTITION_COLUMNS: tuple[str, ...] = ("run", "exposure")
"""The partition keys of the dataset; :func:`open_catalog` returns them as string columns."""

PARTITION_DESCRIPTIONS: dict[str, str] = {
    "run": "run (batch) the exposure's catalog belongs to (dataset partition)",
    "exposure": "exposure (input image stem) of the detection (dataset partition)",
}
"""Descriptions of the partition columns."""

_SAFE = re.compile(r"[^A-Za-z0-9._+-]")
_PARTITION_DIR = re.compile(r"^(run|exposure)=(.+)$")
_ARROW_TYPES: dict[str, tuple[pa.DataType, ...]] = {
    "int64": (pa.int64(), pa.int32(), pa.int16(), pa.int8(), pa.uint32(), pa.uint16(), pa.uint8()),
    "int32": (pa.int32(), pa.int16(), pa.int8(), pa.uint16(), pa.uint8()),
    "float64": (pa.float64(), pa.float32()),
}
_CANONICAL: dict[str, pa.DataType] = {
    "int64": pa.int64(), "int32": pa.int32(), "float64": pa.float64(), "str": pa.string(),
}


def partition_value(name: str) -> str:
    """A run or exposure name made safe for a partition folder (``/``, ``=`` and spaces become ``_``)."""
    value = _SAFE.sub("_", str(name)).strip("._")
    if not value:
        raise InputError(str(name), "is not usable as a run or exposure name")
    return value


def catalog_path(root: str | os.PathLike[str], run: str, exposure: str) -> Path:
    """Where the catalog of ``exposure`` in ``run`` lives under ``root``."""
    return Path(root) / f"run={partition_value(run)}" / f"exposure={partition_value(exposure)}" / CATALOG_FILE


def write_exposure_catalog(
    table: Table | pd.DataFrame,
    root: str | os.PathLike[str],
    *,
    run: str,
    exposure: str,
    provenance: Provenance | Mapping[str, Any] | None = None,
) -> Path:
    """Write one exposure's catalog into the dataset at ``root`` (atomically; replaces a previous one)."""
    return write_catalog(table, catalog_path(root, run, exposure), provenance=provenance, overwrite=True)


# --------------------------------------------------------------------------- discovery


@dataclasses.dataclass(frozen=True)
class CatalogFile:
    """One catalog file of a dataset.

    Attributes
    ----------
    path : pathlib.Path
        The Parquet file.
    run, exposure : str or None
        Its partition values; ``None`` for a single file outside the layout.
    """

    path: Path
    run: str | None
    exposure: str | None


def _names(value: str | Sequence[str] | None) -> set[str] | None:
    """Partition values asked for, made safe like the folder names (None: all)."""
    if value is None:
        return None
    items = [value] if isinstance(value, (str, os.PathLike)) else list(value)
    return {partition_value(str(v)) for v in items}


def _layout_of(path: Path) -> tuple[str | None, str | None]:
    """``(run, exposure)`` of a file inside the layout, else ``(None, None)``."""
    parts = [_PARTITION_DIR.match(p) for p in (path.parent.parent.name, path.parent.name)]
    if all(parts) and parts[0].group(1) == "run" and parts[1].group(1) == "exposure":  # type: ignore[union-attr]
        return parts[0].group(2), parts[1].group(2)  # type: ignore[union-attr]
    return None, None


def list_catalogs(
    path: str | os.PathLike[str],
    *,
    run: str | Sequence[str] | None = None,
    exposure: str | Sequence[str] | None = None,
) -> list[CatalogFile]:
    """Return the catalog files of a dataset (or the one file ``path``), sorted by run and exposure.

    Parameters
    ----------
    path : str or path-like
        A dataset root (``ROOT/run=*/exposure=*/catalog.parquet``), one run's
        folder, or one catalog file (Parquet, FITS or ECSV).
    run, exposure : str or sequence of str, optional
        Keep only these runs / exposures (names as given to
        :func:`write_exposure_catalog`).

    Raises
    ------
    InputError
        If ``path`` does not exist, or a folder holds no catalog (the message
        names the expected layout), or nothing matches ``run``/``exposure``.
    """
    root = Path(path)
    if not root.exists():
        raise InputError(str(root), "no such catalog file or dataset folder")
    runs, exposures = _names(run), _names(exposure)
    if root.is_file():
        r, e = _layout_of(root)
        files = [CatalogFile(root, r, e)]
    else:
        pattern = f"exposure=*/{CATALOG_FILE}" if root.name.startswith("run=") else f"run=*/exposure=*/{CATALOG_FILE}"
        found = sorted(root.glob(pattern))
        if not found:
            raise InputError(
                str(root), f"holds no catalogs (expected run=<run>/exposure=<exposure>/{CATALOG_FILE})"
            )
        files = []
        for f in found:
            r, e = _layout_of(f)
            files.append(CatalogFile(f, r, e))
    if runs is not None or exposures is not None:
        kept = [f for f in files
                if (runs is None or f.run in runs) and (exposures is None or f.exposure in exposures)]
        if not kept:
            want = ", ".join(
                f"{k}={sorted(v)}" for k, v in (("run", runs), ("exposure", exposures)) if v is not None
            )
            raise InputError(str(root), f"no catalog matches {want}")
        files = kept
    return files


# --------------------------------------------------------------------------- file checks


@dataclasses.dataclass(frozen=True)
class _FileInfo:
    file: CatalogFile
    schema: pa.Schema
    version: str | None
    flux_unit: str
    num_rows: int
    metadata: Mapping[bytes, bytes]

    def provenance(self) -> dict[str, Any]:
        blob = self.metadata.get(_PQ_PROVENANCE)
        if blob is None:
            return {}
        try:
            prov = json.loads(blob)
        except ValueError as exc:
            raise InputError(str(self.file.path), f"provenance metadata is not valid JSON ({exc})") from None
        return dict(prov) if isinstance(prov, Mapping) else {}


def _type_ok(have: pa.DataType, dtype: str) -> bool:
    if dtype == "str":
        if pa.types.is_dictionary(have):
            have = have.value_type
        return pa.types.is_string(have) or pa.types.is_large_string(have) or pa.types.is_null(have)
    return have in _ARROW_TYPES[dtype] or pa.types.is_null(have)


def _check_parquet(file: CatalogFile) -> _FileInfo:
    """Read one file's footer and check its schema version and columns."""
    path = file.path
    try:
        meta = pq.read_metadata(path)
        schema = meta.schema.to_arrow_schema()
    except (OSError, pa.ArrowException) as exc:
        raise InputError(str(path), f"not a readable Parquet catalog: {exc}") from None
    raw = schema.metadata or {}
    version = raw[_PQ_VERSION].decode() if _PQ_VERSION in raw else None
    if version is None and _PQ_PROVENANCE in raw:
        try:
            version = json.loads(raw[_PQ_PROVENANCE]).get("schema_version")
        except (ValueError, AttributeError):
            version = None
    check_schema_version(version, source=str(path))
    written = f"file schema version {version}" if version else "no schema version recorded"
    for col in COLUMNS:
        index = schema.get_field_index(col.name)
        if index < 0 and added_after(col.name, version):
            continue  # an older minor version: the dataset reads the column as missing values
        if index < 0:
            raise CatalogSchemaError(
                f"{path}: missing column {col.name!r} ({written}; "
                f"this reader's catalog schema {SCHEMA_VERSION})"
            )
        have = schema.field(index).type
        if not _type_ok(have, col.dtype):
            raise CatalogSchemaError(
                f"{path}: column {col.name!r} has type {have}; expected {col.dtype} "
                f"({written}; this reader's catalog schema {SCHEMA_VERSION})"
            )
    flux_unit = raw[_PQ_FLUX_UNIT].decode() if _PQ_FLUX_UNIT in raw else DEFAULT_FLUX_UNIT
    return _FileInfo(file, schema, version, flux_unit, meta.num_rows, raw)


def _dataset_schema(infos: Sequence[_FileInfo], partitioned: bool) -> pa.Schema:
    """The schema every file is read with: schema columns, extra columns, partition keys."""
    fields = [pa.field(c.name, _CANONICAL[c.dtype]) for c in COLUMNS]
    known = {c.name for c in COLUMNS}
    extras: dict[str, tuple[pa.DataType, Path]] = {}
    for info in infos:
        for field in info.schema:
            if field.name in known or (partitioned and field.name in PARTITION_COLUMNS):
                continue
            kind = field.type.value_type if pa.types.is_dictionary(field.type) else field.type
            seen = extras.get(field.name)
            if seen is None:
                extras[field.name] = (kind, info.file.path)
            elif seen[0] != kind and not pa.types.is_null(kind):
                if pa.types.is_null(seen[0]):
                    extras[field.name] = (kind, info.file.path)
                else:
                    raise CatalogSchemaError(
                        f"{info.file.path}: extra column {field.name!r} has type {kind} but "
                        f"{seen[1]} has {seen[0]} (catalog schema {SCHEMA_VERSION})"
                    )
    fields += [pa.field(name, kind) for name, (kind, _) in extras.items()]
    if partitioned:
        fields += [pa.field(name, pa.string()) for name in PARTITION_COLUMNS]
    return pa.schema(fields)


def _version_key(version: str) -> tuple[int, ...]:
    """Sort key of a schema version (``"1.10"`` after ``"1.9"``)."""
    return tuple(int(p) if p.isdigit() else -1 for p in str(version).split("."))


def _flags(info: _FileInfo) -> dict[str, Any]:
    """The ``flags`` bits a file records, else the current ones."""
    blob = info.metadata.get(_PQ_FLAGS)
    if blob:
        try:
            return dict(json.loads(blob))
        except (ValueError, TypeError):
            pass
    return flag_descriptions()


def _check_files(files: Sequence[CatalogFile]) -> list[_FileInfo]:
    """Check the footer of every file (all must be Parquet) before any data is read."""
    infos = []
    for f in files:
        if f.path.suffix.lower() != ".parquet":
            raise InputError(str(f.path), "open_catalog reads Parquet catalogs and datasets of them")
        infos.append(_check_parquet(f))
    return infos


def _read_other(file: CatalogFile) -> tuple[pa.Table, _FileInfo]:
    """A FITS or ECSV catalog read whole (validated by read_catalog) as an Arrow table."""
    table = read_catalog(file.path)
    arrays, fields = [], []
    for name in table.colnames:
        data = np.asarray(table[name])
        if data.ndim != 1:
            continue
        array = pa.array(data)
        arrays.append(array)
        fields.append(pa.field(name, array.type))
    prov = table.meta.get("provenance") or {}
    meta = {_PQ_PROVENANCE: json.dumps(prov).encode()}
    if table.meta.get("schema_version"):
        meta[_PQ_VERSION] = str(table.meta["schema_version"]).encode()
    schema = pa.schema(fields, metadata=meta)
    flux_unit = str(prov.get("flux_unit") or DEFAULT_FLUX_UNIT)
    info = _FileInfo(file, schema, table.meta.get("schema_version"), flux_unit, len(table), meta)
    return pa.Table.from_arrays(arrays, schema=schema), info


# --------------------------------------------------------------------------- provenance


_PROVENANCE_FIELDS = (
    "created", "package_version", "schema_version", "config_hash", "model_version",
    "input_path", "input_checksum", "flux_unit", "threshold", "n_tiles", "tile_size", "runtime_s",
)


def catalog_provenance(
    path: str | os.PathLike[str],
    *,
    run: str | Sequence[str] | None = None,
    exposure: str | Sequence[str] | None = None,
) -> pd.DataFrame:
    """One row per catalog file: where it is, how many rows, and its provenance.

    Only the files' footers are read (and checked as by :func:`open_catalog`).

    Returns
    -------
    pandas.DataFrame
        Columns ``run``, ``exposure``, ``path``, ``n_rows``, ``schema_version``,
        the main provenance fields (``created``, ``package_version``,
        ``config_hash``, ``model_version``, ``input_path``, ``input_checksum``,
        ``flux_unit``, ``threshold``, ``n_tiles``, ``tile_size``,
        ``runtime_s``), ``psf_fwhm`` (the PSF prior's FWHM, px) and
        ``provenance`` (the whole provenance dict).
    """
    files = list_catalogs(path, run=run, exposure=exposure)
    rows = []
    for f in files:
        if f.path.suffix.lower() == ".parquet":
            info = _check_parquet(f)
        else:
            info = _read_other(f)[1]
        prov = info.provenance()
        row: dict[str, Any] = {"run": f.run, "exposure": f.exposure, "path": str(f.path),
                               "n_rows": info.num_rows}
        for key in _PROVENANCE_FIELDS:
            row[key] = prov.get(key)
        row["schema_version"] = info.version or prov.get("schema_version")
        psf = prov.get("psf") or {}
        row["psf_fwhm"] = psf.get("fwhm_px") if isinstance(psf, Mapping) else None
        row["provenance"] = prov
        rows.append(row)
    return pd.DataFrame(rows)

"""Catalogs of many exposures as one Parquet dataset.

Layout (Hive partitioning, read by :mod:`pyarrow.dataset`)::

    ROOT/run=<run>/exposure=<exposure>/catalog.parquet

``run`` names a batch (a configuration, e.g. ``nightly``), ``exposure`` the
input image (its file stem).  Each file is a complete, schema-validated
catalog with its provenance (:func:`catalogs.io.write_catalog`), written
atomically (temporary file + rename), so a reader never sees half a file.

:func:`open_catalog` reads a selection of such a dataset (or of one catalog
file) with the column selection and the row filter pushed down to
:mod:`pyarrow.dataset`: only the requested columns (and those the filter
needs) are read from disk, so millions of rows open in well under a second
when a few columns are asked for.  Before any data is read, the footer of
every selected file is checked: its schema version
(:func:`catalogs.schema.check_schema_version`) and that every schema column
is there with a compatible type.  :func:`catalog_provenance` lists the files
with their provenance, one row per exposure.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import json
import operator
import os
import re
from collections.abc import Mapping, Sequence
from functools import reduce
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from astropy.table import Column as _AstropyColumn
from astropy.table import MaskedColumn, QTable, Table

from contracts.errors import InputError

from .io import (
    _PQ_FLAGS,
    _PQ_FLUX_UNIT,
    _PQ_PROVENANCE,
    _PQ_VERSION,
    flag_descriptions,
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
    column_descriptions,
    column_units,
    parse_unit,
)

if TYPE_CHECKING:  # pragma: no cover
    import xarray as xr

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
    "parse_filter",
    "open_catalog",
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
_OUTPUTS = ("pandas", "qtable", "xarray")


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


# --------------------------------------------------------------------------- filters


_COMPARE: dict[type, Any] = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt,
    ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge,
}
_FUNCTIONS = {
    "isnan": lambda e: pc.is_nan(e),
    "isnull": lambda e: e.is_null(),
    "isna": lambda e: e.is_null(nan_is_null=True),
    "notnull": lambda e: e.is_valid(),
    "abs": lambda e: pc.abs(e),
}


def _unknown_column(name: str, names: Sequence[str], where: str) -> CatalogSchemaError:
    close = difflib.get_close_matches(name, list(names), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return CatalogSchemaError(f"{where}: no column {name!r} in the catalog (catalog schema {SCHEMA_VERSION}){hint}")


class _FilterBuilder:
    """Turns a parsed filter string into a :class:`pyarrow.dataset.Expression`."""

    def __init__(self, text: str, names: Sequence[str]) -> None:
        self.text = text
        self.names = list(names)

    def fail(self, cause: str) -> InputError:
        return InputError(f"filter {self.text!r}", cause)

    def value(self, node: ast.AST) -> Any:
        if isinstance(node, ast.Constant) and isinstance(node.value, (str, int, float, bool)):
            return node.value
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            inner = self.value(node.operand)
            if isinstance(inner, (int, float)) and not isinstance(inner, bool):
                return -inner if isinstance(node.op, ast.USub) else inner
        if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            return [self.value(v) for v in node.elts]
        raise self.fail(f"expected a number, string or list, got {ast.unparse(node)!r}")

    def operand(self, node: ast.AST) -> Any:
        if isinstance(node, ast.Name):
            if node.id not in self.names:
                raise _unknown_column(node.id, self.names, f"filter {self.text!r}")
            return ds.field(node.id)
        if isinstance(node, ast.Call):
            return self.expr(node)
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub, ast.Mult, ast.Div)):
            ops = {ast.Add: pc.add, ast.Sub: pc.subtract, ast.Mult: pc.multiply, ast.Div: pc.divide}
            return ops[type(node.op)](self.operand(node.left), self.operand(node.right))
        return self.value(node)

    def compare(self, left: ast.AST, op: ast.cmpop, right: ast.AST) -> Any:
        lhs = self.operand(left)
        if isinstance(op, (ast.In, ast.NotIn)):
            values = self.value(right)
            if not isinstance(values, list):
                raise self.fail(f"'in' needs a list, got {ast.unparse(right)!r}")
            out = lhs.isin(values)
            return ~out if isinstance(op, ast.NotIn) else out
        if isinstance(op, (ast.Is, ast.IsNot)):
            if not (isinstance(right, ast.Constant) and right.value is None):
                raise self.fail("'is' compares with None only")
            return lhs.is_null() if isinstance(op, ast.Is) else lhs.is_valid()
        if isinstance(right, ast.Constant) and right.value is None:
            raise self.fail("compare with None using 'is None' / 'is not None'")
        fn = _COMPARE.get(type(op))
        if fn is None:  # pragma: no cover - every cmpop is handled above
            raise self.fail(f"unsupported comparison {type(op).__name__}")
        return fn(lhs, self.operand(right))

    def expr(self, node: ast.AST) -> Any:
        if isinstance(node, ast.BoolOp):
            parts = [self.expr(v) for v in node.values]
            return reduce(operator.and_ if isinstance(node.op, ast.And) else operator.or_, parts)
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.BitAnd, ast.BitOr)):
            combine = operator.and_ if isinstance(node.op, ast.BitAnd) else operator.or_
            return combine(self.expr(node.left), self.expr(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.Not, ast.Invert)):
            return ~self.expr(node.operand)
        if isinstance(node, ast.Compare):
            lefts = [node.left] + list(node.comparators[:-1])
            parts = [self.compare(a, op, b) for a, op, b in zip(lefts, node.ops, node.comparators)]
            return reduce(operator.and_, parts)
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in _FUNCTIONS:
                raise self.fail(
                    f"unknown function {ast.unparse(node.func)!r}; use one of {sorted(_FUNCTIONS)}"
                )
            if len(node.args) != 1 or node.keywords:
                raise self.fail(f"{node.func.id}() takes one column")
            return _FUNCTIONS[node.func.id](self.operand(node.args[0]))
        if isinstance(node, ast.Name):  # a boolean column
            return self.operand(node)
        raise self.fail(f"cannot use {ast.unparse(node)!r} as a condition")


def parse_filter(text: str, names: Sequence[str]) -> ds.Expression:
    """Turn a filter such as ``"kind == 'galaxy' and snr > 20"`` into a pyarrow expression.

    The syntax is a Python expression over column names: comparisons
    (``== != < <= > >=``, chained ``1 < snr < 5``), ``in`` / ``not in`` a
    list, ``is None`` / ``is not None``, ``and`` / ``or`` / ``not`` (or
    ``& | ~``), arithmetic ``+ - * /`` between columns and numbers, and the
    functions ``isnan``, ``isnull``, ``isna``, ``notnull`` and ``abs``.
    Nothing is evaluated by Python: the tree is translated node by node.

    Parameters
    ----------
    text : str
        The filter.
    names : sequence of str
        The columns it may use.

    Raises
    ------
    InputError
        If the text is not such an expression.
    CatalogSchemaError
        If it names a column that is not in ``names`` (the message suggests a
        close name).
    """
    try:
        tree = ast.parse(str(text).strip(), mode="eval")
    except SyntaxError as exc:
        raise InputError(f"filter {text!r}", f"not a valid expression ({exc.msg})") from None
    builder = _FilterBuilder(str(text), names)
    expr = builder.expr(tree.body)
    if not isinstance(expr, ds.Expression):
        raise builder.fail("is not a condition on columns")
    return expr


def _filter_expression(filters: Any, names: Sequence[str]) -> ds.Expression | None:
    """Return ``filters`` (expression, DNF list of tuples or string) as an expression."""
    if filters is None:
        return None
    if isinstance(filters, ds.Expression):
        return filters
    if isinstance(filters, str):
        return parse_filter(filters, names)
    if isinstance(filters, Sequence):
        groups = filters if filters and all(isinstance(g, list) for g in filters) else [filters]
        for group in groups:
            for term in group:
                if not isinstance(term, tuple) or len(term) != 3:
                    raise InputError("filters", f"expected (column, op, value) tuples, got {term!r}")
                if term[0] not in names:
                    raise _unknown_column(str(term[0]), names, "filters")
        try:
            return pq.filters_to_expression(list(filters))
        except (TypeError, ValueError) as exc:
            raise InputError("filters", str(exc)) from None
    raise InputError(
        "filters", f"expected a string, a pyarrow expression or a list of tuples, got {type(filters).__name__}"
    )


# --------------------------------------------------------------------------- opening


def _check_files(files: Sequence[CatalogFile]) -> list[_FileInfo]:
    infos = []
    for f in files:
        if f.path.suffix.lower() != ".parquet":
            raise InputError(str(f.path), "open_catalog reads Parquet catalogs and datasets of them")
        infos.append(_check_parquet(f))
    return infos


def _read_other(file: CatalogFile) -> tuple[pa.Table, _FileInfo]:
    """A FITS or ECSV catalog read whole (validated by read_catalog) as an Arrow table."""
    from .io import read_catalog

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


def _select_columns(columns: Sequence[str] | str | None, names: Sequence[str]) -> list[str]:
    if columns is None:
        return list(names)
    wanted = [columns] if isinstance(columns, str) else list(columns)
    for name in wanted:
        if name not in names:
            raise _unknown_column(str(name), names, "columns")
    return list(dict.fromkeys(wanted))


def _flux_unit(infos: Sequence[_FileInfo], columns: Sequence[str]) -> str:
    units = {info.flux_unit for info in infos}
    flux_cols = [c.name for c in COLUMNS if c.is_flux_unit and c.name in columns]
    if len(units) > 1 and flux_cols:
        by_unit = {u_: next(i.file.path for i in infos if i.flux_unit == u_) for u_ in sorted(units)}
        listing = "; ".join(f"'{u_}' in {p}" for u_, p in by_unit.items())
        raise CatalogSchemaError(
            f"catalogs: the flux columns {flux_cols} are in different units ({listing}); "
            f"open the exposures separately (run=/exposure=) or leave these columns out"
        )
    return units.pop() if len(units) == 1 else DEFAULT_FLUX_UNIT


def _units(schema: pa.Schema, infos: Sequence[_FileInfo], flux_unit: str) -> dict[str, str]:
    """Unit text of every column: from the schema, else the files' field metadata."""
    units = {k: v for k, v in column_units(flux_unit).items() if v}
    for info in infos:
        for field in info.schema:
            if field.name in units or field.name not in schema.names:
                continue
            text = (field.metadata or {}).get(b"unit", b"").decode()
            if text:
                units[field.name] = text
    return units


def _descriptions(schema: pa.Schema, infos: Sequence[_FileInfo]) -> dict[str, str]:
    out = column_descriptions()
    for info in infos:
        for field in info.schema:
            if field.name not in out:
                text = (field.metadata or {}).get(b"description", b"").decode()
                if text:
                    out[field.name] = text
    for name, text in PARTITION_DESCRIPTIONS.items():
        out.setdefault(name, text)
    return out


@overload
def open_catalog(path: str | os.PathLike[str], *, columns: Sequence[str] | str | None = ...,
                 filters: Any = ..., as_: Literal["pandas"] = ..., run: str | Sequence[str] | None = ...,
                 exposure: str | Sequence[str] | None = ...) -> pd.DataFrame: ...
@overload
def open_catalog(path: str | os.PathLike[str], *, columns: Sequence[str] | str | None = ...,
                 filters: Any = ..., as_: Literal["qtable"], run: str | Sequence[str] | None = ...,
                 exposure: str | Sequence[str] | None = ...) -> QTable: ...
@overload
def open_catalog(path: str | os.PathLike[str], *, columns: Sequence[str] | str | None = ...,
                 filters: Any = ..., as_: Literal["xarray"], run: str | Sequence[str] | None = ...,
                 exposure: str | Sequence[str] | None = ...) -> xr.Dataset: ...


def open_catalog(
    path: str | os.PathLike[str],
    *,
    columns: Sequence[str] | str | None = None,
    filters: Any = None,
    as_: str = "pandas",
    run: str | Sequence[str] | None = None,
    exposure: str | Sequence[str] | None = None,
) -> pd.DataFrame | QTable | xr.Dataset:
    """Open a catalog dataset (or one catalog file) with columns and filters pushed down.

    Parameters
    ----------
    path : str or path-like
        A dataset root (``ROOT/run=<run>/exposure=<exposure>/catalog.parquet``),
        one ``run=`` folder, or a single catalog file.  A FITS or ECSV file is
        read whole (:func:`catalogs.io.read_catalog`) and then selected.
    columns : sequence of str or str, optional
        Columns to return, in this order (default: every schema column, the
        extra columns, then ``run`` and ``exposure``).  Only these and the
        columns the filter uses are read from disk.
    filters : str, pyarrow expression or list of tuples, optional
        Rows to keep: a string such as ``"kind == 'galaxy' and snr > 20"``
        (see :func:`parse_filter`), a :class:`pyarrow.dataset.Expression`
        (``pyarrow.dataset.field("snr") > 20``), or a list of
        ``(column, op, value)`` tuples ANDed together (a list of such lists is
        ORed, as in :func:`pyarrow.parquet.read_table`).
    as_ : {"pandas", "qtable", "xarray"}
        What to return.  The row order is the files' (sorted by run and
        exposure), then each file's own.
    run, exposure : str or sequence of str, optional
        Read only these runs / exposures (the other files are not opened).

    Returns
    -------
    pandas.DataFrame, astropy.table.QTable or xarray.Dataset
        ``"pandas"``: plain columns; ``attrs`` holds ``units``
        (``{column: unit}``), ``schema_version``, ``flags``, ``n_files`` and
        ``provenance`` (the file's provenance when one file was read, else
        ``{}``: see :func:`catalog_provenance`).  ``"qtable"``: columns with a
        unit are :class:`~astropy.units.Quantity` (flux columns in the files'
        flux unit), with descriptions; ``meta`` as the pandas ``attrs``.
        ``"xarray"``: one variable per column along dimension ``source``, with
        ``units`` and ``description`` attributes; the dataset attributes hold
        ``schema_version``, ``n_files`` and ``provenance`` as JSON text.

    Raises
    ------
    InputError
        A missing path, a folder without catalogs, an unreadable file, a bad
        filter, or an unknown ``as_``.
    CatalogSchemaError
        A file written with another major schema version, or missing a schema
        column, or with a column of the wrong type (the message names the file,
        the column and both versions); an unknown column in ``columns`` or the
        filter; flux columns in different units across the selected files.
    """
    if as_ not in _OUTPUTS:
        raise InputError("as_", f"must be one of {list(_OUTPUTS)}, got {as_!r}")
    files = list_catalogs(path, run=run, exposure=exposure)
    partitioned = all(f.run is not None for f in files)
    if len(files) == 1 and files[0].path.suffix.lower() != ".parquet":
        table, info = _read_other(files[0])
        infos = [info]
        if partitioned:
            table = table.append_column("run", pa.array([files[0].run] * len(table), pa.string()))
            table = table.append_column("exposure", pa.array([files[0].exposure] * len(table), pa.string()))
        schema = table.schema
        names = schema.names
        cols = _select_columns(columns, names)
        expr = _filter_expression(filters, names)
        try:
            if expr is not None:
                table = table.filter(expr)
            table = table.select(cols)
        except pa.ArrowException as exc:
            raise InputError(f"filter {filters!r}", f"cannot be applied: {exc}") from None
    else:
        infos = _check_files(files)
        schema = _dataset_schema(infos, partitioned)
        names = schema.names
        cols = _select_columns(columns, names)
        expr = _filter_expression(filters, names)
        paths = [str(f.path) for f in files]
        if partitioned:
            dataset = ds.FileSystemDataset.from_paths(
                paths, schema=schema, format=ds.ParquetFileFormat(),
                filesystem=pafs.LocalFileSystem(),
                partitions=[(ds.field("run") == f.run) & (ds.field("exposure") == f.exposure) for f in files],
            )
        else:
            dataset = ds.dataset(paths, schema=schema, format="parquet")
        try:
            table = dataset.to_table(columns=cols, filter=expr)
        except OSError as exc:  # includes pyarrow's ArrowIOError: a file changed or broke since its check
            raise InputError(str(path), f"cannot read the catalogs: {exc}") from None
        except pa.ArrowException as exc:
            if expr is None:
                raise InputError(str(path), f"cannot read the catalogs: {exc}") from None
            text = filters if isinstance(filters, str) else str(expr)
            raise InputError(f"filter {text!r}", f"cannot be applied: {exc}") from None
    flux_unit = _flux_unit(infos, cols)
    units = {k: v for k, v in _units(schema, infos, flux_unit).items() if k in cols}
    versions = sorted({i.version for i in infos if i.version}, key=_version_key)
    meta: dict[str, Any] = {
        "schema_version": versions[-1] if versions else SCHEMA_VERSION,
        "flux_unit": flux_unit,
        "provenance": infos[0].provenance() if len(infos) == 1 else {},
        "flags": _flags(infos[0]),
        "n_files": len(infos),
        "units": units,
    }
    if as_ == "pandas":
        return _to_pandas(table, meta)
    descriptions = _descriptions(schema, infos)
    if as_ == "qtable":
        return _to_qtable(table, meta, descriptions)
    return _to_xarray(table, meta, descriptions)


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) if p.isdigit() else -1 for p in str(version).split("."))


def _flags(info: _FileInfo) -> dict[str, Any]:
    blob = info.metadata.get(_PQ_FLAGS)
    if blob:
        try:
            return dict(json.loads(blob))
        except (ValueError, TypeError):
            pass
    return flag_descriptions()


def _to_pandas(table: pa.Table, meta: dict[str, Any]) -> pd.DataFrame:
    df = table.to_pandas()
    df.attrs = meta
    return df


def _numpy(array: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray | None]:
    """Values and null mask (None without nulls) of an Arrow column as numpy."""
    array = array.combine_chunks() if array.num_chunks != 1 else array.chunk(0)
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    mask = array.is_null().to_numpy(zero_copy_only=False) if array.null_count else None
    kind = array.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_null(kind):
        values = np.asarray(array.fill_null("").to_numpy(zero_copy_only=False) if array.null_count
                            else array.to_numpy(zero_copy_only=False))
        return (values.astype(str) if len(values) else np.zeros(0, "U1")), mask
    if array.null_count and pa.types.is_floating(kind):
        return array.fill_null(float("nan")).to_numpy(), None
    if array.null_count and (pa.types.is_integer(kind) or pa.types.is_boolean(kind)):
        array = array.fill_null(pa.scalar(0 if pa.types.is_integer(kind) else False, kind))
    return array.to_numpy(zero_copy_only=False), mask


def _to_qtable(table: pa.Table, meta: dict[str, Any], descriptions: Mapping[str, str]) -> QTable:
    out = QTable(meta={k: v for k, v in meta.items() if k != "units"})
    for name in table.column_names:
        values, mask = _numpy(table.column(name))
        unit = parse_unit(meta["units"].get(name))
        desc = descriptions.get(name)
        if unit is not None and values.dtype.kind in "iuf" and mask is None:
            out[name] = values * unit
            out[name].info.description = desc
        elif mask is not None:
            out[name] = MaskedColumn(values, mask=mask, name=name, unit=unit, description=desc)
        else:
            out[name] = _AstropyColumn(values, name=name, unit=unit, description=desc)
    return out


def _to_xarray(table: pa.Table, meta: dict[str, Any], descriptions: Mapping[str, str]) -> xr.Dataset:
    import xarray as xr

    data = {}
    for name in table.column_names:
        values, mask = _numpy(table.column(name))
        if mask is not None and values.dtype.kind in "iu":
            values = np.where(mask, np.nan, values.astype(np.float64))
        attrs = {"description": descriptions.get(name, "")}
        if meta["units"].get(name):
            attrs["units"] = meta["units"][name]
        data[name] = xr.Variable(("source",), values, attrs=attrs)
    return xr.Dataset(
        data,
        attrs={
            "schema_version": meta["schema_version"],
            "flux_unit": meta["flux_unit"],
            "n_files": meta["n_files"],
            "provenance": json.dumps(meta["provenance"], sort_keys=True),
        },
    )


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

"""Reading a selection of a catalog dataset: :func:`open_catalog` and its filter language.

A dataset is many exposures' catalogs laid out as
``ROOT/run=<run>/exposure=<exposure>/catalog.parquet`` (:mod:`catalogs.layout`,
whose names this module re-exports: :func:`write_exposure_catalog`,
:func:`list_catalogs`, :func:`catalog_provenance`...).

:func:`open_catalog` reads a selection of such a dataset (or of one catalog
file) with the column selection and the row filter pushed down to
:mod:`pyarrow.dataset`: only the requested columns (and those the filter
needs) are read from disk, so millions of rows open in well under a second
when a few columns are asked for.  Before any data is read, the footer of
every selected file is checked (:mod:`catalogs.layout`).  Filters are
strings such as ``"kind == 'galaxy' and snr > 20"`` (:func:`parse_filter`),
pyarrow expressions or lists of ``(column, op, value)`` tuples.
"""

from __future__ import annotations

import ast
import difflib
import json
import operator
import os
from collections.abc import Mapping, Sequence
from functools import reduce
from typing import TYPE_CHECKING, Any, Literal, overload

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from astropy.table import Column as _AstropyColumn
from astropy.table import MaskedColumn, QTable

from contracts.errors import InputError

from .layout import (
    CATALOG_FILE,
    PARTITION_COLUMNS,
    PARTITION_DESCRIPTIONS,
    CatalogFile,
    _check_files,
    _dataset_schema,
    _FileInfo,
    _flags,
    _read_other,
    _version_key,
    catalog_path,
    catalog_provenance,
    list_catalogs,
    partition_value,
    write_exposure_catalog,
)
from .schema import (
    COLUMNS,
    DEFAULT_FLUX_UNIT,
    SCHEMA_VERSION,
    CatalogSchemaError,
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

_OUTPUTS = ("pandas", "qtable", "xarray")


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

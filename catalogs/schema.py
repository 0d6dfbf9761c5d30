"""The detection-catalog schema: the one source of truth for columns.

Every column of a detection catalog is declared once here, in order, with its
numpy dtype, unit, description and fill value.  Writers, readers, loaders and
the pipeline's stitching step all take their column list from :data:`COLUMNS`,
so a column is added or renamed in exactly one place.

The flux-like columns (``flux``, ``flux_err``, ``background``, ``noise``) are
in the unit of the *image* they were measured on, which is only known at write
time.  Their unit is the placeholder :data:`FLUX_UNIT_PLACEHOLDER` (``"image"``)
here and is resolved with :func:`column_units` (the writer takes it from the
provenance key ``flux_unit``, default :data:`DEFAULT_FLUX_UNIT`).

Pixel coordinates are 0-based with the centre of the first pixel at ``0.0``
(numpy / astropy ``origin=0`` convention).  FITS and DS9 count from 1: add 1.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import astropy.units as u
import numpy as np
from astropy.table import Column as _AstropyColumn
from astropy.table import MaskedColumn, Table

from contracts.errors import MoeImagingError

__all__ = [
    "SCHEMA_VERSION",
    "FLUX_UNIT_PLACEHOLDER",
    "DEFAULT_FLUX_UNIT",
    "CatalogSchemaError",
    "Column",
    "COLUMNS",
    "COLUMN_NAMES",
    "get_column",
    "column_units",
    "column_descriptions",
    "parse_unit",
    "check_schema_version",
    "COLUMN_ADDED",
    "added_after",
    "empty_catalog",
    "validate",
]

SCHEMA_VERSION = "1.6"
"""Version of the catalog schema, ``"major.minor"``.

The major number changes when a column is removed, renamed or changes meaning
or dtype (old readers cannot read new files); the minor number when a column is
added.
"""

COLUMN_ADDED: dict[str, str] = {
    "subtype": "1.1",
    "psf_fwhm": "1.2",
    **{name: "1.3" for name in ("p_star", "p_galaxy", "p_streak", "p_artifact", "confidence", "decision",
                                "review_reason")},
    "triage_stratum": "1.4",
    "p_nucleus": "1.5",
    "spread_model": "1.6",
    "spread_model_err": "1.6",
}
"""The minor schema version that added each column (columns of 1.0 are not listed).

A file written with an older minor version of the same major version lacks
these columns; readers fill them with the column's fill value (missing values
in a dataset) instead of refusing the file."""


def _version_tuple(version: str) -> tuple[int, int]:
    major, _, minor = str(version).strip().partition(".")
    return int(major), int(minor or 0)


def added_after(name: str, version: str | None) -> bool:
    """Whether column ``name`` was added to the schema after ``version`` (same major version).

    ``False`` when ``version`` is unknown (``None``) or malformed: then a missing
    column is an error, as for a file of the current version.
    """
    if version is None or name not in COLUMN_ADDED:
        return False
    try:
        return _version_tuple(version) < _version_tuple(COLUMN_ADDED[name])
    except ValueError:
        return False


FLUX_UNIT_PLACEHOLDER = "image"
"""Unit placeholder of the flux-like columns: "the unit of the image"."""

DEFAULT_FLUX_UNIT = "adu"
"""Flux unit used when none is given at write time."""


class CatalogSchemaError(MoeImagingError):
    """A catalog does not follow the detection-catalog schema.

    The message is one line naming the offending column (or version) and the
    schema version, e.g. ``"cat.parquet: missing column 'flux' (catalog schema
    1.0)"``.
    """


@dataclasses.dataclass(frozen=True)
class Column:
    """One column of the detection-catalog schema.

    Parameters
    ----------
    name : str
        Column name.
    dtype : str
        Numpy dtype name: ``"int64"``, ``"int32"``, ``"float64"`` or ``"str"``
        (a unicode string of any width).
    unit : str or None
        Unit string understood by :mod:`astropy.units`, ``None`` for a
        dimensionless quantity or a label, or :data:`FLUX_UNIT_PLACEHOLDER` for
        "the unit of the image".
    description : str
        One-line description, written into the catalog files.
    fill : int, float or str
        Value of a missing entry (NaN for floats, ``0`` or ``-1`` for integers,
        ``''`` for strings).
    """

    name: str
    dtype: str
    unit: str | None
    description: str
    fill: Any

    def __post_init__(self) -> None:
        if self.dtype not in ("int64", "int32", "float64", "str"):
            raise ValueError(f"column {self.name!r}: unsupported schema dtype {self.dtype!r}")

    @property
    def numpy_dtype(self) -> np.dtype:
        """The numpy dtype of the column (``<U1`` for strings)."""
        return np.dtype("U1") if self.dtype == "str" else np.dtype(self.dtype)

    @property
    def is_flux_unit(self) -> bool:
        """Whether the column is in the image's (flux) unit."""
        return self.unit == FLUX_UNIT_PLACEHOLDER

    def resolved_unit(self, flux_unit: str | None = DEFAULT_FLUX_UNIT) -> str | None:
        """Return the column's unit with the flux placeholder resolved.

        Parameters
        ----------
        flux_unit : str or None
            The image's unit; ``None`` leaves flux-like columns without a unit.
        """
        return flux_unit if self.is_flux_unit else self.unit


def _c(name: str, dtype: str, unit: str | None, description: str, fill: Any = None) -> Column:
    if fill is None:
        fill = {"float64": math.nan, "str": ""}.get(dtype, 0)
    return Column(name, dtype, unit, description, fill)


COLUMNS: tuple[Column, ...] = (
    _c("source_id", "int64", None,
       "deterministic source id: y_peak * image width + x_peak (the same for any tiling)"),
    _c("x", "float64", "pix",
       "centroid x, 0-based pixel coordinate (pixel centre at integer values; "
       "FITS/DS9 1-based = x + 1)"),
    _c("y", "float64", "pix",
       "centroid y, 0-based pixel coordinate (pixel centre at integer values; "
       "FITS/DS9 1-based = y + 1)"),
    _c("x_peak", "int64", "pix",
       "0-based integer pixel x of the detection peak (decides tile ownership)", -1),
    _c("y_peak", "int64", "pix",
       "0-based integer pixel y of the detection peak (decides tile ownership)", -1),
    _c("ra", "float64", "deg",
       "right ascension (ICRS) from the WCS at (x, y); NaN where the image has no celestial WCS"),
    _c("dec", "float64", "deg",
       "declination (ICRS) from the WCS at (x, y); NaN where the image has no celestial WCS"),
    _c("flux", "float64", FLUX_UNIT_PLACEHOLDER,
       "PSF flux (matched-filter maximum-likelihood estimate), in the image unit"),
    _c("flux_err", "float64", FLUX_UNIT_PLACEHOLDER,
       "1-sigma error of the PSF flux, in the image unit"),
    _c("snr", "float64", None, "signal-to-noise ratio of the PSF flux: flux / flux_err"),
    _c("det_snr", "float64", None,
       "peak of the matched-filter detection S/N map (background noise only)"),
    _c("mag", "float64", "mag",
       "magnitude magzp - 2.5 log10(flux); NaN where there is no zero point or flux <= 0"),
    _c("mag_err", "float64", "mag",
       "1-sigma magnitude error; NaN where mag is NaN"),
    _c("a", "float64", "pix",
       "windowed second-moment semi-major axis (RMS), PSF included"),
    _c("b", "float64", "pix",
       "windowed second-moment semi-minor axis (RMS), PSF included"),
    _c("theta", "float64", "deg",
       "position angle of the major axis, counter-clockwise from +x, in (-90, 90]"),
    _c("sharpness", "float64", None,
       "peak pixel relative to the PSF expectation (1 point source, >1 sharper, <1 extended)"),
    _c("roundness", "float64", None, "1 - b/a (0 for a round source)"),
    _c("spread_model", "float64", None,
       "resolved-ness relative to the PSF (SExtractor's SPREAD_MODEL): 0 point source, >0 resolved, "
       "<0 sharper than the PSF; survey mode, NaN elsewhere"),
    _c("spread_model_err", "float64", None, "1-sigma error of spread_model from the pixel noise"),
    _c("background", "float64", FLUX_UNIT_PLACEHOLDER,
       "local background level per pixel at the peak, in the image unit"),
    _c("noise", "float64", FLUX_UNIT_PLACEHOLDER,
       "background RMS per pixel at the peak, in the image unit"),
    _c("psf_fwhm", "float64", "pix",
       "FWHM of the PSF prior used for this detection (varies over the field with psf.vary)"),
    _c("kind", "str", None,
       "proposed object class: star, galaxy, streak, artifact or nucleus ('' if none)"),
    _c("subtype", "str", None,
       "artifact sub-type: cosmic_ray, hot_pixel, saturation or bleed ('' for other kinds)"),
    _c("expert", "str", None, "name of the expert that proposed the detection (e.g. 'point')"),
    _c("flags", "int32", None, "quality bit flags (contracts.flags.SourceFlag)"),
    _c("p_star", "float64", None,
       "probability of a star: the gate's, calibrated (or the learned expert's own without the gate; NaN if neither)"),
    _c("p_galaxy", "float64", None, "gate: calibrated probability of a galaxy"),
    _c("p_streak", "float64", None, "gate: calibrated probability of a streak (fast mover)"),
    _c("p_artifact", "float64", None,
       "gate: calibrated probability of an artifact or spurious detection (microscopy: spurious, split or merged)"),
    _c("p_nucleus", "float64", None,
       "microscopy gate (nucleus triage): calibrated probability of exactly one real nucleus (NaN in survey mode)"),
    _c("confidence", "float64", None, "gate: calibrated probability of the chosen kind"),
    _c("decision", "str", None,
       "gate: accepted / rejected (decided automatically under the certified risk) or review ('' without the gate)"),
    _c("review_reason", "str", None, "gate: why a human must review it, in words ('' when decided)"),
    _c("triage_stratum", "str", None,
       "gate: the certified-triage stratum (mode, PSF-size bin, crowding) whose thresholds decided the row"),
)
"""The detection-catalog columns, in file order."""

COLUMN_NAMES: tuple[str, ...] = tuple(c.name for c in COLUMNS)
"""Names of :data:`COLUMNS`, in order."""

_BY_NAME: Mapping[str, Column] = {c.name: c for c in COLUMNS}


def get_column(name: str) -> Column:
    """Return the schema column called ``name``.

    Raises
    ------
    CatalogSchemaError
        If the schema has no such column.
    """
    try:
        return _BY_NAME[name]
    except KeyError:
        raise CatalogSchemaError(
            f"no column {name!r} in the catalog schema {SCHEMA_VERSION}"
        ) from None


def column_units(flux_unit: str | None = DEFAULT_FLUX_UNIT) -> dict[str, str | None]:
    """Return ``{column name: unit string or None}`` with the flux unit resolved.

    Parameters
    ----------
    flux_unit : str or None
        The image's unit, used for the flux-like columns.
    """
    return {c.name: c.resolved_unit(flux_unit) for c in COLUMNS}


def column_descriptions() -> dict[str, str]:
    """Return ``{column name: description}`` for the schema columns."""
    return {c.name: c.description for c in COLUMNS}


def parse_unit(unit: str | u.UnitBase | None, *, fmt: str | None = None) -> u.UnitBase | None:
    """Return ``unit`` as an astropy unit; unknown strings become ``UnrecognizedUnit``.

    Parameters
    ----------
    unit : str, astropy unit or None
        The unit; ``None`` or ``""`` gives ``None``.
    fmt : str, optional
        Astropy unit format to try first (e.g. ``"fits"``); the generic format is
        the fallback.
    """
    if unit is None:
        return None
    if isinstance(unit, u.UnitBase):
        return unit
    text = str(unit).strip()
    if not text:
        return None
    for f in ((fmt,) if fmt else ()) + ("generic",):
        try:
            return u.Unit(text, format=f)
        except ValueError:
            continue
    return u.Unit(text, parse_strict="silent")


def check_schema_version(version: str | None, *, source: str = "catalog") -> None:
    """Raise unless ``version`` has the same major number as :data:`SCHEMA_VERSION`.

    Parameters
    ----------
    version : str or None
        The schema version recorded in a file; ``None`` (not recorded) passes.
    source : str
        Name of the catalog, used in the message.

    Raises
    ------
    CatalogSchemaError
        Naming both versions, if the major numbers differ or ``version`` is malformed.
    """
    if version is None:
        return
    text = str(version).strip()
    major = text.split(".", 1)[0]
    if not major.isdigit():
        raise CatalogSchemaError(
            f"{source}: malformed catalog schema version {text!r} "
            f"(this reader has schema {SCHEMA_VERSION})"
        )
    if int(major) != int(SCHEMA_VERSION.split(".", 1)[0]):
        raise CatalogSchemaError(
            f"{source}: catalog schema version {text} is incompatible with this reader's "
            f"schema version {SCHEMA_VERSION} (major versions differ)"
        )


def empty_catalog(*, flux_unit: str | None = None) -> Table:
    """Return a detection catalog with every schema column and zero rows.

    Parameters
    ----------
    flux_unit : str, optional
        Unit of the flux-like columns; ``None`` leaves them without a unit (the
        writer resolves it from the provenance).

    Returns
    -------
    astropy.table.Table
        Columns in schema order, with schema dtypes, units and descriptions.
    """
    table = Table()
    for col in COLUMNS:
        table[col.name] = _AstropyColumn(
            np.zeros(0, dtype=col.numpy_dtype),
            name=col.name,
            unit=parse_unit(col.resolved_unit(flux_unit)),
            description=col.description,
        )
    return table


def _bad(source: str, name: str, what: str) -> CatalogSchemaError:
    """Return the one-line error for a bad column."""
    return CatalogSchemaError(
        f"{source}: column {name!r} {what} (catalog schema {SCHEMA_VERSION})"
    )


def _values(col: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """Return the plain values of a table column and its mask (or None)."""
    if isinstance(col, u.Quantity):
        return np.asarray(col.value), None
    if isinstance(col, MaskedColumn) or np.ma.isMaskedArray(col):
        mask = np.ma.getmaskarray(col)
        return np.asarray(np.ma.getdata(col)), (mask if mask.any() else None)
    return np.asarray(col), None


def _cast(values: np.ndarray, mask: np.ndarray | None, col: Column, source: str) -> np.ndarray:
    """Cast ``values`` to the schema dtype of ``col``; masked entries get the fill value."""
    if values.ndim != 1:
        raise _bad(source, col.name, f"has shape {values.shape[1:]} per row; expected a scalar")
    valid = np.ones(values.shape, dtype=bool) if mask is None else ~mask
    if col.dtype == "str":
        return _cast_str(values, valid, col, source)
    target = np.dtype(col.dtype)
    if values.dtype.kind == "O":
        try:
            values = np.array([0 if not ok else v for v, ok in zip(values.tolist(), valid)])
        except (TypeError, ValueError):
            raise _bad(source, col.name, f"has dtype object; expected {col.dtype}") from None
    kind = values.dtype.kind
    if kind not in "biuf" or values.ndim != 1:
        raise _bad(source, col.name, f"has dtype {values.dtype}; expected {col.dtype}")
    good = values[valid]
    if target.kind == "i" and good.size:
        if kind == "f" and not (np.isfinite(good) & (good == np.round(good))).all():
            raise _bad(source, col.name, f"has non-integer values; expected {col.dtype}")
        info = np.iinfo(target)
        if good.min() < info.min or good.max() > info.max:
            raise _bad(source, col.name, f"has values outside the {col.dtype} range")
    out = np.full(values.shape, col.fill, dtype=target)
    out[valid] = good.astype(target)
    return out


def _cast_str(values: np.ndarray, valid: np.ndarray, col: Column, source: str) -> np.ndarray:
    """Cast a string-like column to unicode, filling invalid entries."""
    kind = values.dtype.kind
    if values.size == 0:
        return np.zeros(0, dtype="U1")  # e.g. an empty pandas column reads back as float
    if kind == "U":
        items = values.tolist()
    elif kind == "S":
        items = [v.decode("utf-8", "replace") for v in values.tolist()]
    elif kind == "O" and all(
        v is None or isinstance(v, (str, bytes)) for v, ok in zip(values.tolist(), valid) if ok
    ):
        items = [v.decode("utf-8", "replace") if isinstance(v, bytes) else v
                 for v in values.tolist()]
    else:
        raise _bad(source, col.name, f"has dtype {values.dtype}; expected {col.dtype}")
    items = [v if ok and v is not None else col.fill for v, ok in zip(items, valid)]
    width = max([1] + [len(v) for v in items])
    return np.array(items, dtype=f"U{width}")


def _resolve_unit(
    table_col: Any, col: Column, flux_unit: str | None, source: str
) -> tuple[u.UnitBase | None, float | None]:
    """Return the unit the validated column carries and a factor for its values."""
    have = parse_unit(getattr(table_col, "unit", None))
    if col.is_flux_unit:
        if flux_unit is None:
            return have, None
        want = parse_unit(flux_unit)
        if have is not None and have != want:
            raise _bad(source, col.name, f"is in unit '{have}' but the flux unit is '{want}'")
        return want, None
    want = parse_unit(col.unit)
    if have is None or want is None or have == want:
        return want, None
    try:
        factor = float(have.to(want))
    except (u.UnitsError, ValueError, TypeError):
        raise _bad(source, col.name, f"has unit '{have}'; expected '{want}'") from None
    if col.dtype != "float64":
        raise _bad(source, col.name, f"has unit '{have}'; expected '{want}'")
    return want, factor


def validate(table: Table, *, source: str = "catalog", flux_unit: str | None = None,
             version: str | None = None) -> Table:
    """Check a table against the schema and return it cast to the schema.

    Every schema column must be present with a dtype that casts to the schema
    dtype without loss (e.g. ``int32`` to ``int64``, integral floats to integers,
    bytes to ``str``).  Masked entries are replaced by the column's fill value.
    Columns with a convertible unit (e.g. ``arcsec`` for ``ra``) are converted.

    Parameters
    ----------
    table : astropy.table.Table
        The catalog (a ``QTable`` is accepted too).
    source : str
        Name of the catalog (a file name) used in error messages.
    flux_unit : str, optional
        Unit of the flux-like columns.  ``None`` keeps the table's own unit.
    version : str, optional
        The schema version the table was written with: columns added in a
        later minor version (:data:`COLUMN_ADDED`) may be missing and are
        filled with their fill value.

    Returns
    -------
    astropy.table.Table
        A new table: the schema columns in schema order, with schema dtypes,
        units and descriptions, followed by any extra columns (kept unchanged);
        ``meta`` is copied.

    Raises
    ------
    CatalogSchemaError
        Naming the missing or bad column and the schema version.
    """
    if not isinstance(table, Table):
        raise CatalogSchemaError(
            f"{source}: expected an astropy Table, got {type(table).__name__} "
            f"(catalog schema {SCHEMA_VERSION})"
        )
    for col in COLUMNS:
        if col.name not in table.colnames and not added_after(col.name, version):
            written = f"file schema version {version}; " if version else ""
            raise CatalogSchemaError(
                f"{source}: missing column {col.name!r} ({written}catalog schema {SCHEMA_VERSION})"
            )
    out = Table(meta=dict(table.meta))
    for col in COLUMNS:
        if col.name not in table.colnames:  # added after the file's version: all missing
            n = len(table)
            filler = np.full(n, "", dtype="U1") if col.dtype == "str" else np.zeros(n)
            data = _cast(filler, np.ones(n, dtype=bool), col, source)
            out[col.name] = _AstropyColumn(data, name=col.name, unit=col.unit, description=col.description)
            continue
        values, mask = _values(table[col.name])
        unit, factor = _resolve_unit(table[col.name], col, flux_unit, source)
        data = _cast(values, mask, col, source)
        if factor is not None:
            data = data * factor
        out[col.name] = _AstropyColumn(data, name=col.name, unit=unit, description=col.description)
    for name in table.colnames:
        if name not in _BY_NAME:
            extra = table[name]
            out[name] = extra.copy() if hasattr(extra, "copy") else extra
    return out

"""Exporting catalog selections: FITS and VOTable (TOPCAT), DS9 regions, HATS (LSDB).

Every writer takes a selection as :func:`catalogs.open_catalog` returns it - a
:class:`pandas.DataFrame` (units in ``attrs["units"]``), an astropy
``Table``/``QTable`` - and keeps the columns, their units and descriptions:

* :func:`write_fits` - a FITS binary table (``TUNITn`` units, ``TCOMMn``
  descriptions; the schema version, flux unit and, for a single exposure, the
  provenance JSON in the header);
* :func:`write_votable` - a VOTable (binary2 serialisation) with UCDs on the
  sky position so TOPCAT and Aladin recognise it;
* :func:`read_export` - reads either back as a ``QTable`` (the round trip);
* :func:`write_ds9` - a DS9 region file (plain DS9 syntax, image or ICRS
  coordinates, colour by kind);
* :func:`write_hats` - a HATS catalog for LSDB (needs the optional ``hats``
  and ``lsdb`` packages: ``pip install moe-imaging[hats]``), for
  survey-sized catalogs;
* :func:`export_catalog` - opens a dataset selection and writes it in one of
  :data:`EXPORT_FORMATS` (the ``moe-imaging catalog export`` command).

FITS strings are ASCII: a text value with other characters is rejected with
the column named.  Missing values: float NaN stays NaN both ways; VOTable
integers have no NaN, so a masked integer is written as VOTable null.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import astropy.units as u
import numpy as np
import pandas as pd
from astropy.io import fits
from astropy.table import Column, MaskedColumn, QTable, Table

from contracts.errors import InputError

from .fits import (
    FITS_EXTNAME,
    catalog_hdulist,
    column_data,
    restore_columns,
    write_hdulist,
)
from .io import _write_file
from .schema import SCHEMA_VERSION, CatalogSchemaError, column_descriptions, parse_unit

__all__ = [
    "EXPORT_FORMATS",
    "export_format",
    "to_qtable",
    "write_fits",
    "write_votable",
    "read_export",
    "write_ds9",
    "write_hats",
    "export_catalog",
]

EXPORT_FORMATS: dict[str, str] = {
    ".fits": "fits",
    ".fit": "fits",
    ".vot": "votable",
    ".votable": "votable",
    ".xml": "votable",
    ".reg": "ds9",
    ".hats": "hats",
}
"""File extension (lower case) -> export format; a folder without extension is ``hats``."""

_KIND_COLORS = {
    "star": "green", "galaxy": "cyan", "streak": "magenta", "artifact": "red", "nucleus": "yellow", "": "white",
}
_UCDS = {
    "ra": "pos.eq.ra;meta.main", "dec": "pos.eq.dec;meta.main", "source_id": "meta.id;meta.main",
    "x": "pos.cartesian.x;instr.det", "y": "pos.cartesian.y;instr.det", "mag": "phot.mag",
    "mag_err": "stat.error;phot.mag", "flux": "phot.flux", "flux_err": "stat.error;phot.flux",
    "snr": "stat.snr", "kind": "src.class", "flags": "meta.code.qual",
}


def export_format(path: str | os.PathLike[str], fmt: str | None = None) -> str:
    """The export format of ``path`` (``fmt`` wins when given).

    Raises
    ------
    InputError
        For an unknown format or extension.
    """
    formats = sorted(set(EXPORT_FORMATS.values()))
    if fmt is not None:
        if fmt not in formats:
            raise InputError(str(path), f"unknown export format {fmt!r}; use one of {formats}")
        return fmt
    p = Path(path)
    ext = p.suffix.lower()
    if ext in EXPORT_FORMATS:
        return EXPORT_FORMATS[ext]
    if not ext:
        return "hats"
    raise InputError(str(path), f"unknown export extension {ext!r}; use one of {sorted(EXPORT_FORMATS)}")


# --------------------------------------------------------------------------- tables


def to_qtable(data: Any) -> QTable:
    """A selection as a ``QTable``: columns with a unit become Quantities, descriptions kept.

    Parameters
    ----------
    data : pandas.DataFrame, astropy Table or QTable
        A DataFrame takes its units from ``attrs["units"]`` and its metadata
        (``schema_version``, ``flux_unit``, ``provenance``) from ``attrs``;
        descriptions come from the schema.
    """
    from .dataset import PARTITION_DESCRIPTIONS

    descriptions = {**PARTITION_DESCRIPTIONS, **column_descriptions()}
    if isinstance(data, pd.DataFrame):
        attrs = dict(data.attrs or {})
        units = dict(attrs.get("units") or {})
        out = QTable(meta={k: attrs[k] for k in ("schema_version", "flux_unit", "provenance", "n_files")
                           if k in attrs})
        for name in data.columns:
            series = data[name]
            if pd.api.types.is_string_dtype(series.dtype) or series.dtype == object:
                values = np.asarray(series.astype(str).where(series.notna(), ""), dtype=str)
                if not len(values):
                    values = np.zeros(0, dtype="U1")
            elif pd.api.types.is_bool_dtype(series.dtype):
                values = series.to_numpy(dtype=bool)
            elif series.hasnans and pd.api.types.is_integer_dtype(series.dtype):
                mask = series.isna().to_numpy()
                out[name] = MaskedColumn(series.fillna(0).to_numpy(np.int64), mask=mask, name=name,
                                         unit=parse_unit(units.get(name)), description=descriptions.get(name))
                continue
            else:
                values = series.to_numpy()
            unit = parse_unit(units.get(name))
            if unit is not None and values.dtype.kind in "iuf":
                out[name] = values * unit
                out[name].info.description = descriptions.get(name)
            else:
                out[name] = Column(values, name=name, unit=unit, description=descriptions.get(name))
        return out
    if isinstance(data, Table):
        out = QTable(data, copy=False)
        for name in out.colnames:
            if not getattr(out[name].info, "description", None) and name in descriptions:
                out[name].info.description = descriptions[name]
        return out
    raise InputError("catalog", f"expected a pandas DataFrame or an astropy Table, got {type(data).__name__}")


def _plain(col: Any) -> tuple[np.ndarray, np.ndarray | None, u.UnitBase | None]:
    """Values, mask (None without masked entries) and unit of a table column."""
    return (*column_data(col), getattr(col, "unit", None))


def _unit_text(unit: u.UnitBase | None, fmt: str) -> str:
    if unit is None or unit == u.dimensionless_unscaled:
        return ""
    try:
        return unit.to_string(format=fmt)
    except (ValueError, u.UnitsError):
        return unit.to_string()


def _atomic(path: Path, overwrite: bool, write: Callable[[Path], object]) -> Path:
    """Write ``path`` atomically (:func:`catalogs.io._write_file`) unless it exists and ``overwrite`` is off.

    Raises
    ------
    InputError
        ``path`` exists (``overwrite=False``) or is a folder, its folder
        cannot be made, or the file cannot be written.
    """
    if path.exists() and not overwrite:
        raise InputError(str(path), "already exists; pass overwrite=True to replace it")
    if path.is_dir():
        raise InputError(str(path), "is a folder; expected a file name")
    return _write_file(path, write)


def _meta(table: QTable) -> dict[str, Any]:
    """The selection's metadata as written: ``schema_version``, ``flux_unit``, ``n_files``, ``provenance``.

    ``schema_version`` is always there; the others are ``None`` when the
    selection does not have them.
    """
    meta = table.meta or {}
    return {
        "schema_version": str(meta.get("schema_version") or SCHEMA_VERSION),
        "flux_unit": str(meta["flux_unit"]) if meta.get("flux_unit") else None,
        "n_files": int(meta["n_files"]) if meta.get("n_files") is not None else None,
        "provenance": meta.get("provenance") or None,
    }


# --------------------------------------------------------------------------- FITS


def write_fits(data: Any, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """Write a selection as a FITS binary table (extension ``CATALOG``).

    Units go to ``TUNITn`` (FITS unit syntax where possible), descriptions to
    ``TCOMMn``; the header holds ``MOESCHEM`` (schema version), ``MOEFUNIT``
    (flux unit) and, when the selection has one provenance, ``MOEPROV``
    (JSON).

    Raises
    ------
    InputError
        The file exists (``overwrite=False``) or cannot be written.
    CatalogSchemaError
        A text column holds non-ASCII characters (FITS text is ASCII) or a
        column is neither numeric nor text.
    """
    table = to_qtable(data)
    plain = Table()
    units, descriptions = [], []
    for name in table.colnames:
        values, mask, unit = _plain(table[name])
        if values.ndim != 1:
            raise CatalogSchemaError(f"{path}: column {name!r} is not one value per row (FITS export)")
        if values.dtype.kind == "U":
            if values.dtype.itemsize == 0 or not len(values):
                values = values.astype("U1")
            try:
                values = np.char.encode(values, "ascii")
            except UnicodeEncodeError:
                raise CatalogSchemaError(
                    f"{path}: column {name!r} holds non-ASCII text, which FITS cannot store; "
                    f"export it as VOTable"
                ) from None
        elif values.dtype.kind not in "biuf":
            raise CatalogSchemaError(f"{path}: column {name!r} has dtype {values.dtype}; cannot write it to FITS")
        plain[name] = MaskedColumn(values, mask=mask) if mask is not None else Column(values)
        units.append(_unit_text(unit, "fits"))
        descriptions.append(str(getattr(table[name].info, "description", None) or ""))
    hdul = catalog_hdulist(plain, units, descriptions,
                           extname_comment="moe-imaging detection catalog selection", **_meta(table))
    return _atomic(Path(path), overwrite, lambda tmp: write_hdulist(hdul, tmp, output_verify="silentfix"))


# --------------------------------------------------------------------------- VOTable


def write_votable(data: Any, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """Write a selection as a VOTable 1.4 (binary2 serialisation) for TOPCAT / Aladin.

    Units are written in VOUnit syntax where possible, descriptions in each
    FIELD's DESCRIPTION, and UCDs mark the sky position (``pos.eq.ra;meta.main``,
    ``pos.eq.dec;meta.main``), magnitudes, S/N and the class.  The schema
    version, flux unit and (single-exposure) provenance are INFO elements.
    """
    from astropy.io.votable import from_table
    from astropy.io.votable.tree import Info

    table = to_qtable(data)
    plain = Table()
    for name in table.colnames:
        values, mask, unit = _plain(table[name])
        if values.ndim != 1:
            raise CatalogSchemaError(f"{path}: column {name!r} is not one value per row (VOTable export)")
        if values.dtype.kind == "U" and (values.dtype.itemsize == 0 or not len(values)):
            values = values.astype("U1")
        plain[name] = MaskedColumn(values, mask=mask, unit=unit) if mask is not None else Column(values, unit=unit)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", u.UnitsWarning)
        votable = from_table(plain)
    resource_table = votable.get_first_table()
    resource_table.name = "catalog"
    for field in resource_table.fields:
        text = getattr(table[field.name].info, "description", None)
        if text:
            field.description = str(text)
        if field.name in _UCDS:
            field.ucd = _UCDS[field.name]
        unit = _plain(table[field.name])[2]
        if unit is not None and unit != u.dimensionless_unscaled:
            field.unit = _unit_text(unit, "vounit")
    meta = _meta(table)
    for key, name in (("schema_version", "moeschem"), ("flux_unit", "moefunit"), ("n_files", "moenfile")):
        if meta[key] is not None:
            votable.resources[0].infos.append(Info(name=name, value=str(meta[key])))
    if meta["provenance"] is not None:
        votable.resources[0].infos.append(
            Info(name="provenance", value=json.dumps(meta["provenance"], sort_keys=True))
        )

    def _write(tmp: Path) -> None:
        # A text stream, as astropy opens for a name: the name's suffixes
        # (".gz") never switch on compression.
        with warnings.catch_warnings(), open(tmp, "w", encoding="utf8") as stream:
            warnings.simplefilter("ignore", u.UnitsWarning)
            votable.to_xml(stream, tabledata_format="binary2")

    return _atomic(Path(path), overwrite, _write)


# --------------------------------------------------------------------------- reading back


def read_export(path: str | os.PathLike[str]) -> QTable:
    """Read a FITS or VOTable written by :func:`write_fits` / :func:`write_votable`.

    Returns
    -------
    astropy.table.QTable
        Columns with a unit as Quantities (float NaN where the file has a
        null), text as unicode, masked integers as ``MaskedColumn``;
        descriptions restored; ``meta`` holds ``schema_version``, ``flux_unit``
        and ``provenance`` where the file has them.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(str(path), "file not found")
    fmt = export_format(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", u.UnitsWarning)
            warnings.simplefilter("ignore", fits.verify.VerifyWarning)
            if fmt == "fits":
                raw, meta = _read_fits(path)
            elif fmt == "votable":
                raw, meta = _read_votable(path)
            else:
                raise InputError(str(path), f"read_export reads FITS and VOTable files, not {fmt}")
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(str(path), f"not a readable {fmt} table: {exc}") from None
    out = QTable(meta=meta)
    for name in raw.colnames:
        col = raw[name]
        values, mask, unit = _plain(col)
        desc = getattr(col, "description", None) or None
        if desc:
            desc = " ".join(str(desc).split())  # VOTable writers wrap long DESCRIPTION text
        if values.dtype.kind == "S":
            values = np.char.decode(values, "ascii")
        if values.dtype.kind == "U" and mask is not None:
            values, mask = np.where(mask, "", values), None
        if values.dtype.kind == "f" and mask is not None:
            values, mask = np.where(mask, np.nan, values), None
        if mask is not None:
            out[name] = MaskedColumn(values, mask=mask, name=name, unit=unit, description=desc)
        elif unit is not None and unit != u.dimensionless_unscaled and values.dtype.kind in "iuf":
            out[name] = values * unit
            out[name].info.description = desc
        else:
            out[name] = Column(values, name=name, unit=unit, description=desc)
    return out


def _read_fits(path: Path) -> tuple[Table, dict[str, Any]]:
    with fits.open(path, memmap=False) as hdul:
        hdu = hdul[FITS_EXTNAME] if FITS_EXTNAME in hdul else hdul[1]
        header = hdu.header.copy()
        raw = Table.read(hdu, mask_invalid=False, character_as_bytes=False, unit_parse_strict="silent")
    restore_columns(raw, header)
    meta: dict[str, Any] = {}
    if "MOESCHEM" in header:
        meta["schema_version"] = str(header["MOESCHEM"])
    if "MOEFUNIT" in header:
        meta["flux_unit"] = str(header["MOEFUNIT"])
    if "MOEPROV" in header:
        meta["provenance"] = json.loads(header["MOEPROV"])
    return raw, meta


def _read_votable(path: Path) -> tuple[Table, dict[str, Any]]:
    from astropy.io.votable import parse

    votable = parse(str(path))
    vt = votable.get_first_table()
    raw = vt.to_table(use_names_over_ids=True)
    for field in vt.fields:
        name = field.name
        if name in raw.colnames:
            raw[name].unit = parse_unit(str(field.unit), fmt="vounit") if field.unit is not None else None
            if field.description:
                raw[name].description = str(field.description)
    meta: dict[str, Any] = {}
    for info in votable.resources[0].infos:
        if info.name == "moeschem":
            meta["schema_version"] = str(info.value)
        elif info.name == "moefunit":
            meta["flux_unit"] = str(info.value)
        elif info.name == "provenance":
            meta["provenance"] = json.loads(info.value)
    return raw, meta


# --------------------------------------------------------------------------- DS9


def _column(table: QTable, name: str, unit: u.UnitBase | None = None) -> np.ndarray:
    col = table[name]
    if isinstance(col, u.Quantity):
        return col.to_value(unit) if unit is not None else col.value
    return np.asarray(np.ma.filled(np.ma.asarray(col), np.nan) if np.asarray(col).dtype.kind == "f" else col)


def write_ds9(
    data: Any,
    path: str | os.PathLike[str],
    *,
    system: str = "image",
    shape: str = "circle",
    radius: float | None = None,
    label: str | None = "kind",
    color_by: str | None = "kind",
    overwrite: bool = False,
) -> Path:
    """Write a DS9 region file (DS9 version 4.1 syntax), one region per row.

    Parameters
    ----------
    data : DataFrame or Table
        With ``x``/``y`` (``system="image"``) or ``ra``/``dec``
        (``system="icrs"``).
    system : {"image", "icrs"}
        ``image``: 1-based pixel coordinates (``x + 1``, ``y + 1``: the
        catalog is 0-based); ``icrs``: degrees.  Rows with non-finite
        coordinates are skipped.
    shape : {"circle", "ellipse"}
        ``ellipse`` uses ``a``, ``b``, ``theta`` (3 sigma of the second
        moments) in image coordinates; on the sky it is drawn as circles.
    radius : float, optional
        Circle radius: pixels for ``image``, arcsec for ``icrs``; default
        ``1.5 * psf_fwhm`` when the column exists, else 5 px / 1".
    label : str, optional
        Column whose value becomes each region's text (with ``confidence``
        appended when present); ``None`` for none.
    color_by : str, optional
        Colour by this column's value (``kind``: star green, galaxy cyan,
        streak magenta, artifact red); ``None`` for all green.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    if system not in ("image", "icrs"):
        raise InputError("system", f"must be 'image' or 'icrs', got {system!r}")
    if shape not in ("circle", "ellipse"):
        raise InputError("shape", f"must be 'circle' or 'ellipse', got {shape!r}")
    table = to_qtable(data)
    cols = ("x", "y") if system == "image" else ("ra", "dec")
    for name in cols + (("a", "b", "theta") if shape == "ellipse" and system == "image" else ()):
        if name not in table.colnames:
            raise CatalogSchemaError(f"{path}: missing column {name!r} for DS9 regions (catalog schema {SCHEMA_VERSION})")
    for name in (label, color_by):
        if name is not None and name not in table.colnames:
            raise CatalogSchemaError(f"{path}: no column {name!r} for DS9 labels/colours (catalog schema {SCHEMA_VERSION})")
    n = len(table)
    if system == "image":
        p = _column(table, "x", u.pix) + 1.0, _column(table, "y", u.pix) + 1.0
    else:
        p = _column(table, "ra", u.deg), _column(table, "dec", u.deg)
    if radius is not None:
        r = np.full(n, float(radius))
    elif "psf_fwhm" in table.colnames:
        fwhm = _column(table, "psf_fwhm", u.pix)
        r = 1.5 * np.where(np.isfinite(fwhm), fwhm, 3.0)
        r = r if system == "image" else r * 0.2  # arcsec at a nominal 0.2"/px when no WCS is at hand
    else:
        r = np.full(n, 5.0 if system == "image" else 1.0)
    conf = _column(table, "confidence") if "confidence" in table.colnames else None
    labels = np.asarray(table[label]).astype(str) if label is not None else None
    colors = np.asarray(table[color_by]).astype(str) if color_by is not None else None
    lines = [
        "# Region file format: DS9 version 4.1",
        f"# moe-imaging catalog export: {n} rows, schema {table.meta.get('schema_version', SCHEMA_VERSION)}",
        'global color=green dashlist=8 3 width=1 font="helvetica 10 normal roman" select=1 highlite=1 '
        "dash=0 fixed=0 edit=1 move=1 delete=1 include=1 source=1",
        "image" if system == "image" else "icrs",
    ]
    a = b = th = None
    if shape == "ellipse" and system == "image":
        a, b, th = (_column(table, c) for c in ("a", "b", "theta"))
    for i in range(n):
        if not (np.isfinite(p[0][i]) and np.isfinite(p[1][i])):
            continue
        if a is not None and np.isfinite(a[i]) and np.isfinite(b[i]) and a[i] > 0:
            region = f"ellipse({p[0][i]:.3f},{p[1][i]:.3f},{3 * a[i]:.3f},{3 * max(b[i], 0.1):.3f},{th[i]:.2f})"
        elif system == "image":
            region = f"circle({p[0][i]:.3f},{p[1][i]:.3f},{r[i]:.3f})"
        else:
            region = f'circle({p[0][i]:.7f},{p[1][i]:+.7f},{r[i]:.3f}")'
        props = []
        if colors is not None:
            props.append(f"color={_KIND_COLORS.get(colors[i], 'white')}")
        if labels is not None:
            text = labels[i]
            if conf is not None and np.isfinite(conf[i]):
                text = f"{text} {conf[i]:.2f}"
            props.append("text={" + text.replace("{", "(").replace("}", ")") + "}")
        lines.append(region + (" # " + " ".join(props) if props else ""))
    text = "\n".join(lines) + "\n"

    def _write(tmp: Path) -> None:
        tmp.write_text(text, encoding="ascii", errors="replace")

    return _atomic(Path(path), overwrite, _write)


# --------------------------------------------------------------------------- HATS


def write_hats(
    data: Any,
    path: str | os.PathLike[str],
    *,
    catalog_name: str | None = None,
    highest_order: int = 7,
    partition_rows: int | None = None,
    margin_arcsec: float | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a selection as a HATS catalog (HEALPix-partitioned Parquet) for LSDB.

    Uses ``lsdb.from_dataframe(...).to_hats(...)``; open it again with
    ``lsdb.open_catalog(path)``.  Rows without finite ``ra``/``dec`` cannot be
    placed on the sky and are left out (their number is in the returned
    folder's ``moe_imaging.json``, with the schema version and flux unit).

    Parameters
    ----------
    data : DataFrame or Table
        With ``ra`` and ``dec`` in degrees.
    path : str or path-like
        The catalog folder to create.
    catalog_name : str, optional
        HATS catalog name (default: the folder name).
    highest_order : int
        Highest HEALPix order of the partitions.
    partition_rows : int, optional
        Rows per partition LSDB aims for (default LSDB's).
    margin_arcsec : float, optional
        Also write a margin cache of this width, which LSDB cross-matches
        need to find pairs across partition boundaries.  Off by default: the
        margin computation compiles numba code on first use (about 20 s).
    overwrite : bool
        Replace an existing folder.

    Raises
    ------
    InputError
        ``hats``/``lsdb`` are not installed, the folder exists, or no row has
        sky coordinates.
    """
    try:
        import lsdb
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise InputError(
            str(path), f"HATS export needs lsdb and hats (pip install 'moe-imaging[hats]'): {exc}"
        ) from None
    path = Path(path)
    if path.exists() and not overwrite:
        raise InputError(str(path), "already exists; pass overwrite=True to replace it")
    if isinstance(data, pd.DataFrame):
        df, attrs = data, dict(data.attrs or {})
    else:
        table = to_qtable(data)
        df = pd.DataFrame({n: _plain(table[n])[0] for n in table.colnames if _plain(table[n])[0].ndim == 1})
        attrs = dict(table.meta or {})
    for name in ("ra", "dec"):
        if name not in df.columns:
            raise CatalogSchemaError(f"{path}: missing column {name!r} for HATS (catalog schema {SCHEMA_VERSION})")
    ok = np.isfinite(df["ra"].to_numpy(dtype=float)) & np.isfinite(df["dec"].to_numpy(dtype=float))
    if not ok.any():
        raise InputError(str(path), "no row has finite ra/dec: a HATS catalog needs sky coordinates")
    frame = df.loc[ok].reset_index(drop=True)
    frame.attrs = {}
    name = catalog_name or path.name
    kwargs: dict[str, Any] = {"ra_column": "ra", "dec_column": "dec", "highest_order": highest_order,
                              "margin_threshold": margin_arcsec}
    if partition_rows is not None:
        kwargs["partition_rows"] = partition_rows
    try:
        catalog = lsdb.from_dataframe(frame, catalog_name=name, **kwargs)
        # lsdb >= 0.7.3 names it write_catalog (to_hats is deprecated)
        write = getattr(catalog, "write_catalog", None) or catalog.to_hats
        write(path, catalog_name=name, overwrite=overwrite, progress_bar=False)
    except (ValueError, TypeError, OSError) as exc:
        raise InputError(str(path), f"cannot write the HATS catalog: {exc}") from None
    units = dict(attrs.get("units") or {})
    info = {
        "schema_version": attrs.get("schema_version", SCHEMA_VERSION),
        "flux_unit": attrs.get("flux_unit"),
        "n_rows": int(ok.sum()),
        "n_left_out_without_sky_position": int((~ok).sum()),
        "units": {k: v for k, v in units.items() if k in frame.columns},
    }
    (path / "moe_imaging.json").write_text(json.dumps(info, indent=2, sort_keys=True))
    return path


# --------------------------------------------------------------------------- one call


def export_catalog(
    source: Any,
    out: str | os.PathLike[str],
    *,
    format: str | None = None,
    columns: Sequence[str] | None = None,
    filters: Any = None,
    run: str | Sequence[str] | None = None,
    exposure: str | Sequence[str] | None = None,
    overwrite: bool = False,
    options: Mapping[str, Any] | None = None,
) -> Path:
    """Open a selection of a catalog dataset (or take a table) and export it.

    Parameters
    ----------
    source : path, DataFrame or Table
        A dataset root or catalog file (opened with
        :func:`catalogs.open_catalog` with ``columns``, ``filters``, ``run``,
        ``exposure``), or a table already selected.
    out : str or path-like
        Output file (``.fits``, ``.vot``/``.xml``, ``.reg``) or HATS folder.
    format : {"fits", "votable", "ds9", "hats"}, optional
        Overrides the choice from ``out``'s extension.
    options : mapping, optional
        Extra keyword arguments of the writer (e.g. ``{"system": "icrs"}``
        for DS9).

    Returns
    -------
    pathlib.Path
        What was written.
    """
    fmt = export_format(out, format)
    if isinstance(source, (str, os.PathLike)):
        from .dataset import open_catalog

        data: Any = open_catalog(source, columns=columns, filters=filters, run=run, exposure=exposure)
    else:
        if columns is not None or filters is not None or run is not None or exposure is not None:
            raise InputError("export", "columns/filters/run/exposure apply to a path; select the table yourself")
        data = source
    writer = {"fits": write_fits, "votable": write_votable, "ds9": write_ds9, "hats": write_hats}[fmt]
    return writer(data, out, overwrite=overwrite, **dict(options or {}))

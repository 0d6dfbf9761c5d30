"""Tests of catalogs.schema: the column list, empty catalogs and validation."""

from __future__ import annotations

import astropy.units as u
import numpy as np
import pytest
from astropy.table import MaskedColumn, QTable, Table

from catalogs import (
    COLUMN_NAMES,
    COLUMNS,
    FLUX_UNIT_PLACEHOLDER,
    SCHEMA_VERSION,
    CatalogSchemaError,
    check_schema_version,
    column_descriptions,
    column_units,
    empty_catalog,
    get_column,
    validate,
)
from contracts.errors import MoeImagingError

EXPECTED = [
    "source_id", "x", "y", "x_peak", "y_peak", "ra", "dec", "flux", "flux_err", "snr",
    "det_snr", "mag", "mag_err", "a", "b", "theta", "sharpness", "roundness", "spread_model", "spread_model_err",
    "background", "noise", "psf_fwhm", "kind", "subtype", "expert", "flags",
    "p_star", "p_galaxy", "p_streak", "p_artifact", "p_nucleus", "confidence", "decision", "review_reason",
    "triage_stratum",
]


def test_schema_version_is_major_minor():
    major, minor = SCHEMA_VERSION.split(".")
    assert major.isdigit() and minor.isdigit()


def test_columns_unique_ordered_and_documented():
    assert list(COLUMN_NAMES) == EXPECTED
    assert len(set(COLUMN_NAMES)) == len(COLUMNS)
    for col in COLUMNS:
        assert col.description and len(col.description) > 10, col.name
        assert col.dtype in ("int64", "int32", "float64", "str")
        if col.unit not in (None, FLUX_UNIT_PLACEHOLDER):
            u.Unit(col.unit)  # parseable


def test_column_dtypes_units_and_fills():
    assert get_column("source_id").dtype == "int64"
    assert get_column("flags").dtype == "int32"
    assert get_column("x_peak").fill == -1 and get_column("y_peak").fill == -1
    assert get_column("kind").fill == "" and get_column("kind").dtype == "str"
    assert np.isnan(get_column("flux").fill)
    assert "1-based" in get_column("x").description
    flux_cols = {c.name for c in COLUMNS if c.is_flux_unit}
    assert flux_cols == {"flux", "flux_err", "background", "noise"}
    assert get_column("ra").unit == "deg" and get_column("mag").unit == "mag"


def test_column_units_resolves_flux_unit():
    units = column_units("electron/s")
    assert units["flux"] == "electron/s" and units["noise"] == "electron/s"
    assert units["x"] == "pix" and units["snr"] is None
    assert column_units()["flux"] == "adu"
    assert set(column_descriptions()) == set(COLUMN_NAMES)


def test_get_column_unknown():
    with pytest.raises(CatalogSchemaError, match="nope"):
        get_column("nope")


def test_column_is_frozen():
    with pytest.raises(AttributeError):
        COLUMNS[0].name = "other"  # type: ignore[misc]


def test_empty_catalog_has_every_column_and_zero_rows():
    table = empty_catalog()
    assert table.colnames == list(COLUMN_NAMES)
    assert len(table) == 0
    for col in COLUMNS:
        if col.dtype == "str":
            assert table[col.name].dtype.kind == "U"
        else:
            assert table[col.name].dtype == np.dtype(col.dtype)
        assert table[col.name].description == col.description
    assert table["flux"].unit is None
    assert table["x"].unit == u.pix
    assert empty_catalog(flux_unit="adu")["flux"].unit == u.adu


def test_validate_casts_and_orders(catalog):
    shuffled = Table()
    for name in reversed(catalog.colnames):
        shuffled[name] = catalog[name]
    shuffled["flags"] = shuffled["flags"].astype(np.int64)
    shuffled["x_peak"] = shuffled["x_peak"].astype(np.int32)
    shuffled["source_id"] = shuffled["source_id"].astype(np.float64)  # integral floats
    shuffled["kind"] = np.char.encode(np.asarray(catalog["kind"]), "ascii")  # bytes
    shuffled["extra"] = np.arange(len(catalog))
    out = validate(shuffled)
    assert out.colnames == list(COLUMN_NAMES) + ["extra"]
    assert out["flags"].dtype == np.int32
    assert out["x_peak"].dtype == np.int64
    assert out["source_id"].dtype == np.int64
    assert out["kind"].dtype.kind == "U"
    assert list(out["kind"]) == list(catalog["kind"])
    np.testing.assert_array_equal(out["source_id"], catalog["source_id"])
    assert out is not shuffled


def test_validate_fills_masked_entries(catalog):
    table = catalog.copy()
    table["x_peak"] = MaskedColumn(table["x_peak"], mask=[True] + [False] * (len(table) - 1))
    table["flux"] = MaskedColumn(table["flux"], mask=[False, True] + [False] * (len(table) - 2))
    table["kind"] = MaskedColumn(table["kind"], mask=[True] + [False] * (len(table) - 1))
    out = validate(table)
    assert out["x_peak"][0] == -1
    assert np.isnan(out["flux"][1])
    assert out["kind"][0] == ""
    assert not isinstance(out["flux"], MaskedColumn)


def test_validate_missing_column_names_column_and_version(catalog):
    catalog.remove_column("flux_err")
    with pytest.raises(CatalogSchemaError) as info:
        validate(catalog, source="cat.parquet")
    message = str(info.value)
    assert "'flux_err'" in message and SCHEMA_VERSION in message and "cat.parquet" in message
    assert "\n" not in message
    assert isinstance(info.value, MoeImagingError)


@pytest.mark.parametrize(
    ("name", "values"),
    [
        ("x", np.array(["a", "b", "c", "d", "e"])),
        ("source_id", np.array([1.5, 2, 3, 4, 5])),
        ("flags", np.array([2**40] * 5)),
        ("kind", np.arange(5)),
    ],
)
def test_validate_bad_dtype_names_column(catalog, name, values):
    catalog[name] = values
    with pytest.raises(CatalogSchemaError, match=f"'{name}'.*{SCHEMA_VERSION}"):
        validate(catalog)


def test_validate_units(catalog):
    out = validate(catalog, flux_unit="adu")
    assert out["flux"].unit == u.adu
    with pytest.raises(CatalogSchemaError, match="'flux'.*electron"):
        validate(catalog, flux_unit="electron/s")
    arcsec = catalog.copy()
    arcsec["ra"] = np.full(len(arcsec), 3600.0)
    arcsec["ra"].unit = u.arcsec
    assert validate(arcsec)["ra"][0] == pytest.approx(1.0)
    assert validate(arcsec)["ra"].unit == u.deg
    arcsec["x"].unit = u.s
    with pytest.raises(CatalogSchemaError, match="'x'"):
        validate(arcsec)


def test_validate_accepts_qtable(catalog):
    q = QTable(catalog)
    out = validate(q, flux_unit="adu")
    assert type(out) is Table
    assert out["x"].unit == u.pix and out["flux"].unit == u.adu


def test_validate_rejects_non_table():
    with pytest.raises(CatalogSchemaError, match="astropy Table"):
        validate({"x": [1.0]})  # type: ignore[arg-type]


def test_check_schema_version():
    check_schema_version(SCHEMA_VERSION)
    check_schema_version(SCHEMA_VERSION.split(".")[0] + ".99")
    check_schema_version(None)
    with pytest.raises(CatalogSchemaError) as info:
        check_schema_version("2.0", source="old.fits")
    assert "2.0" in str(info.value) and SCHEMA_VERSION in str(info.value)
    with pytest.raises(CatalogSchemaError, match="malformed"):
        check_schema_version("banana")

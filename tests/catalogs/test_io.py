"""Round trips of catalogs through Parquet, FITS and ECSV."""

from __future__ import annotations

import json

import astropy.units as u
import numpy as np
import pyarrow.parquet as pq
import pytest
from astropy.io import fits
from astropy.table import Table

from catalogs import (
    COLUMN_NAMES,
    COLUMNS,
    SCHEMA_VERSION,
    CatalogSchemaError,
    Provenance,
    catalog_format,
    empty_catalog,
    read_catalog,
    write_catalog,
)
from contracts.errors import InputError

EXTENSIONS = [".parquet", ".fits", ".fit", ".fits.gz", ".ecsv"]


def _assert_same(read: Table, written: Table) -> None:
    assert read.colnames[: len(COLUMN_NAMES)] == list(COLUMN_NAMES)
    assert len(read) == len(written)
    for col in COLUMNS:
        a, b = read[col.name], written[col.name]
        if col.dtype == "str":
            assert a.dtype.kind == "U", col.name
            assert list(a) == list(b), col.name
        else:
            assert a.dtype == np.dtype(col.dtype), col.name
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=col.name)
        assert a.description == col.description, col.name


@pytest.mark.parametrize("ext", EXTENSIONS)
def test_catalog_format(ext):
    assert catalog_format(f"dir.v2/cat{ext}") in ("parquet", "fits", "ecsv")
    assert catalog_format(f"CAT{ext.upper()}") == catalog_format(f"cat{ext}")


@pytest.mark.parametrize("ext", EXTENSIONS)
def test_empty_catalog_round_trips(tmp_path, ext):
    path = write_catalog(empty_catalog(), tmp_path / f"empty{ext}")
    read = read_catalog(path)
    assert len(read) == 0
    assert read.colnames == list(COLUMN_NAMES)
    for col in COLUMNS:
        if col.dtype != "str":
            assert read[col.name].dtype == np.dtype(col.dtype)
        else:
            assert read[col.name].dtype.kind == "U"
    assert read["flux"].unit == u.adu


@pytest.mark.parametrize("ext", EXTENSIONS)
@pytest.mark.parametrize("flux_unit", ["adu", "electron/s"])
def test_round_trip_values_units_provenance(tmp_path, ext, flux_unit, catalog_factory, provenance):
    import dataclasses

    table = catalog_factory(7, flux_unit=flux_unit)
    prov = dataclasses.replace(provenance, flux_unit=flux_unit)
    path = write_catalog(table, tmp_path / f"cat{ext}", provenance=prov)
    assert path == tmp_path / f"cat{ext}"
    read = read_catalog(path)
    _assert_same(read, table)
    assert np.isnan(read["mag"][0]) and np.isnan(read["ra"]).all()
    for col in COLUMNS:
        unit = col.resolved_unit(flux_unit)
        if unit is None:
            assert read[col.name].unit is None, col.name
        else:
            assert read[col.name].unit == u.Unit(unit), col.name
    assert read.meta["provenance"] == prov.to_dict()
    assert Provenance.from_dict(read.meta["provenance"]) == prov
    assert read.meta["schema_version"] == SCHEMA_VERSION
    assert read.meta["flags"]["EDGE"]["bit"] == 1
    assert list(tmp_path.iterdir()) == [path]  # no temp file left behind


@pytest.mark.parametrize("ext", EXTENSIONS)
def test_extra_columns_kept(tmp_path, ext, catalog):
    catalog["w_point"] = np.linspace(0, 1, len(catalog))
    catalog["w_point"].description = "gate weight of the point expert"
    catalog["gate_reason"] = ["", "low confidence", "", "edge", ""]
    read = read_catalog(write_catalog(catalog, tmp_path / f"cat{ext}"))
    assert read.colnames == list(COLUMN_NAMES) + ["w_point", "gate_reason"]
    np.testing.assert_allclose(read["w_point"], catalog["w_point"])
    assert list(read["gate_reason"]) == list(catalog["gate_reason"])


def test_parquet_multidim_extra_column(tmp_path, catalog):
    catalog["ends"] = np.arange(len(catalog) * 4, dtype=float).reshape(-1, 2, 2)
    read = read_catalog(write_catalog(catalog, tmp_path / "cat.parquet"))
    np.testing.assert_array_equal(read["ends"], catalog["ends"])


def test_parquet_metadata_layout(tmp_path, catalog, provenance):
    path = write_catalog(catalog, tmp_path / "cat.parquet", provenance=provenance)
    schema = pq.read_schema(path)
    meta = schema.metadata
    assert json.loads(meta[b"moe_imaging.provenance"]) == provenance.to_dict()
    assert meta[b"moe_imaging.schema_version"].decode() == SCHEMA_VERSION
    field = schema.field("flux")
    assert field.metadata[b"unit"] == b"adu"
    assert field.metadata[b"description"].decode() == COLUMNS[7].description
    # readable by plain pandas too
    import pandas as pd

    assert list(pd.read_parquet(path).columns) == list(COLUMN_NAMES)


def test_fits_header_layout(tmp_path, catalog, provenance):
    path = write_catalog(catalog, tmp_path / "cat.fits", provenance=provenance)
    with fits.open(path) as hdul:
        header = hdul["CATALOG"].header
        names = [header[f"TTYPE{i}"] for i in range(1, header["TFIELDS"] + 1)]
        i = names.index("flux") + 1
        assert header[f"TUNIT{i}"] == "adu"
        assert header[f"TCOMM{i}"] == COLUMNS[7].description
        assert header["MOESCHEM"] == SCHEMA_VERSION
        assert json.loads(header["MOEPROV"]) == provenance.to_dict()
        assert "EDGE" in json.loads(header["MOEFLAGS"])
        assert any("TOO_SHARP" in str(c) for c in header["COMMENT"])


def test_fits_strings_strip_padding(tmp_path, catalog):
    catalog["kind"] = ["star", "", "galaxy", "artifact", "nucleus"]
    catalog["expert"] = ["point", "", "x", "extended", "p"]
    read = read_catalog(write_catalog(catalog, tmp_path / "cat.fits"))
    assert list(read["kind"]) == ["star", "", "galaxy", "artifact", "nucleus"]
    assert list(read["expert"]) == ["point", "", "x", "extended", "p"]
    assert read["kind"].dtype.kind == "U"


def test_provenance_from_table_meta_and_rewrite(tmp_path, catalog, provenance):
    first = read_catalog(write_catalog(catalog, tmp_path / "a.fits", provenance=provenance))
    second = read_catalog(write_catalog(first, tmp_path / "b.parquet"))
    assert second.meta["provenance"] == provenance.to_dict()


def test_default_provenance_uses_table_flux_unit(tmp_path, catalog_factory):
    table = catalog_factory(flux_unit="electron/s")
    read = read_catalog(write_catalog(table, tmp_path / "cat.ecsv"))
    assert read["flux"].unit == u.Unit("electron/s")
    assert read.meta["provenance"]["flux_unit"] == "electron / s"


def test_flux_unit_conflict(tmp_path, catalog_factory):
    table = catalog_factory(flux_unit="electron/s")
    with pytest.raises(CatalogSchemaError, match="'flux'"):
        write_catalog(table, tmp_path / "cat.parquet", provenance=Provenance(flux_unit="adu"))
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("ext", [".parquet", ".fits", ".ecsv"])
def test_missing_column_on_read(tmp_path, ext, catalog):
    path = tmp_path / f"cat{ext}"
    partial = Table(catalog, copy=True)
    partial.remove_column("snr")
    partial.meta = {}
    if ext == ".parquet":
        pq.write_table(__import__("pyarrow").Table.from_pandas(partial.to_pandas()), path)
    else:
        partial.write(path, overwrite=True)
    with pytest.raises(CatalogSchemaError) as info:
        read_catalog(path)
    assert "'snr'" in str(info.value) and SCHEMA_VERSION in str(info.value)
    assert str(path) in str(info.value)


def _rewrite_version(path, ext, version):
    if ext == ".parquet":
        table = pq.read_table(path)
        meta = dict(table.schema.metadata)
        meta[b"moe_imaging.schema_version"] = version.encode()
        prov = json.loads(meta[b"moe_imaging.provenance"])
        prov["schema_version"] = version
        meta[b"moe_imaging.provenance"] = json.dumps(prov).encode()
        pq.write_table(table.replace_schema_metadata(meta), path)
    elif ext == ".fits":
        with fits.open(path, mode="update") as hdul:
            hdul["CATALOG"].header["MOESCHEM"] = version
    else:
        text = path.read_text().replace(f"schema_version: '{SCHEMA_VERSION}'",
                                        f"schema_version: '{version}'")
        assert version in text
        path.write_text(text)


@pytest.mark.parametrize("ext", [".parquet", ".fits", ".ecsv"])
def test_other_major_schema_version_rejected(tmp_path, ext, catalog):
    path = write_catalog(catalog, tmp_path / f"cat{ext}")
    _rewrite_version(path, ext, "2.0")
    with pytest.raises(CatalogSchemaError) as info:
        read_catalog(path)
    message = str(info.value)
    assert "2.0" in message and SCHEMA_VERSION in message


@pytest.mark.parametrize("ext", [".parquet", ".fits", ".ecsv"])
def test_newer_minor_schema_version_accepted(tmp_path, ext, catalog):
    path = write_catalog(catalog, tmp_path / f"cat{ext}")
    newer = SCHEMA_VERSION.split(".")[0] + ".7"
    _rewrite_version(path, ext, newer)
    assert read_catalog(path).meta["schema_version"] == newer


def test_unknown_extension(tmp_path, catalog):
    with pytest.raises(InputError) as info:
        write_catalog(catalog, tmp_path / "cat.xyz")
    assert str(info.value).endswith(
        "unknown catalog format '.xyz'; use .parquet, .fits or .ecsv"
    )
    with pytest.raises(InputError, match=r"'\.csv'"):
        read_catalog(tmp_path / "cat.csv")


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_catalog(tmp_path / "nothing.parquet")


def test_corrupt_file(tmp_path):
    path = tmp_path / "bad.parquet"
    path.write_bytes(b"not parquet at all")
    with pytest.raises(InputError, match="not a readable parquet catalog"):
        read_catalog(path)


def test_overwrite_false(tmp_path, catalog):
    path = write_catalog(catalog, tmp_path / "cat.parquet")
    with pytest.raises(InputError, match="overwrite"):
        write_catalog(catalog, path, overwrite=False)
    write_catalog(catalog[:2], path)  # overwrite=True by default
    assert len(read_catalog(path)) == 2


def test_creates_parent_folder(tmp_path, catalog):
    path = write_catalog(catalog, tmp_path / "a" / "b" / "cat.ecsv")
    assert path.is_file()


def test_schema_error_on_write_leaves_nothing(tmp_path, catalog):
    catalog.remove_column("flags")
    with pytest.raises(CatalogSchemaError, match="'flags'"):
        write_catalog(catalog, tmp_path / "cat.fits")
    assert not any(tmp_path.iterdir())


def test_large_provenance_in_fits_header(tmp_path, catalog):
    config = {f"key{i}": "x&'\"{}" * 40 + str(i) for i in range(50)}
    prov = Provenance(config=config, psf={"source": "bright stars", "fwhm_px": 2.0})
    read = read_catalog(write_catalog(catalog, tmp_path / "cat.fits", provenance=prov))
    assert read.meta["provenance"]["config"] == config


@pytest.mark.parametrize("ext", [".parquet", ".ecsv"])
def test_masked_extra_columns(tmp_path, ext, catalog):
    from astropy.table import MaskedColumn

    catalog["n_peaks"] = MaskedColumn([1, 2, 3, 4, 5], mask=[0, 1, 0, 0, 1])
    read = read_catalog(write_catalog(catalog, tmp_path / f"cat{ext}"))
    assert list(read["n_peaks"].mask) == [False, True, False, False, True]
    assert read["n_peaks"][0] == 1

"""Tests of the pandas loader."""

from __future__ import annotations

import astropy.units as u
import numpy as np

from catalogs import COLUMN_NAMES, from_pandas, read_catalog, to_pandas, write_catalog


def test_to_pandas_keeps_attrs(tmp_path, catalog, provenance):
    path = write_catalog(catalog, tmp_path / "cat.parquet", provenance=provenance)
    df = to_pandas(read_catalog(path))
    assert list(df.columns) == list(COLUMN_NAMES)
    assert df.attrs["provenance"] == provenance.to_dict()
    assert df.attrs["units"]["flux"] == "adu"
    assert df.attrs["units"]["ra"] == "deg"
    assert df["flags"].dtype == np.int32
    assert df["source_id"].dtype == np.int64
    assert np.isnan(df["mag"].iloc[0])
    assert list(df["kind"]) == list(catalog["kind"])
    # the same from a path
    assert to_pandas(path).attrs["provenance"] == provenance.to_dict()
    # attrs follow a selection
    assert df[df["flux"] > 0].attrs["provenance"] == provenance.to_dict()


def test_pandas_round_trip(tmp_path, catalog_factory, provenance):
    import dataclasses

    prov = dataclasses.replace(provenance, flux_unit="electron/s")
    table = catalog_factory(flux_unit="electron/s")
    path = write_catalog(table, tmp_path / "cat.fits", provenance=prov)
    table = read_catalog(path)
    back = from_pandas(to_pandas(table))
    assert back.colnames == table.colnames
    assert back["flux"].unit == u.Unit("electron/s")
    assert back.meta["provenance"] == prov.to_dict()
    for name in table.colnames:
        assert back[name].dtype == table[name].dtype or back[name].dtype.kind == "U"
        if table[name].dtype.kind == "f":
            np.testing.assert_array_equal(back[name], table[name])
    # a DataFrame can be written directly
    again = read_catalog(write_catalog(to_pandas(table), tmp_path / "again.ecsv"))
    assert again.meta["provenance"] == prov.to_dict()
    assert again["flux"].unit == u.Unit("electron/s")


def test_empty_catalog_through_pandas():
    from catalogs import empty_catalog

    df = to_pandas(empty_catalog(flux_unit="adu"))
    assert df.shape == (0, len(COLUMN_NAMES))
    back = from_pandas(df)
    assert back.colnames == list(COLUMN_NAMES) and len(back) == 0
    assert back["flux"].unit == u.adu and back["flags"].dtype == np.int32

"""The Parquet dataset of many exposures: layout, open_catalog, filters, schema checks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import astropy.units as u
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from astropy.table import QTable

from catalogs import (
    COLUMN_NAMES,
    SCHEMA_VERSION,
    CatalogSchemaError,
    catalog_path,
    catalog_provenance,
    list_catalogs,
    open_catalog,
    parse_filter,
    read_catalog,
    write_catalog,
    write_exposure_catalog,
)
from contracts.errors import InputError
from moe_cli import main as cli_main
from tests.catalogs.demo_data import RUN, build_demo

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def demo(tmp_path_factory):
    return build_demo(tmp_path_factory.getbasetemp() / "moe_demo_survey")


@pytest.fixture
def dataset(tmp_path, catalog_factory):
    """Two runs, four exposures of synthetic schema catalogs (sizes 7, 11, 13, 5)."""
    root = tmp_path / "ds"
    parts = [("night1", "exp_a", 7, 1), ("night1", "exp_b", 11, 2), ("night2", "exp_a", 13, 3), ("night2", "exp c/2", 5, 4)]
    tables = {}
    for run, exp, n, seed in parts:
        cat = catalog_factory(n, seed=seed)
        cat["snr"] = np.linspace(1.0, 40.0, n)
        cat["kind"] = np.array(["star", "galaxy", "artifact", "streak", ""] * n)[:n]
        write_exposure_catalog(cat, root, run=run, exposure=exp,
                               provenance={"config_hash": f"h{seed}", "flux_unit": "adu"})
        tables[(run, exp)] = cat
    return root, tables


def _rewrite(path: Path, *, drop: str | None = None, version: str | None = None, cast: tuple[str, pa.DataType] | None = None) -> None:
    """Rewrite a catalog file with a column dropped, another schema version, or a column cast."""
    table = pq.read_table(path)
    meta = dict(table.schema.metadata)
    if drop is not None:
        table = table.drop_columns([drop])
    if cast is not None:
        name, kind = cast
        i = table.schema.get_field_index(name)
        table = table.set_column(i, pa.field(name, kind), table.column(name).cast(kind))
    if version is not None:
        meta[b"moe_imaging.schema_version"] = version.encode()
        prov = json.loads(meta[b"moe_imaging.provenance"])
        prov["schema_version"] = version
        meta[b"moe_imaging.provenance"] = json.dumps(prov).encode()
    pq.write_table(table.replace_schema_metadata(meta), path)


# --------------------------------------------------------------------------- layout


def test_layout_and_listing(dataset):
    root, _ = dataset
    files = list_catalogs(root)
    assert [(f.run, f.exposure) for f in files] == [
        ("night1", "exp_a"), ("night1", "exp_b"), ("night2", "exp_a"), ("night2", "exp_c_2")]
    assert files[0].path == catalog_path(root, "night1", "exp_a")
    assert [f.exposure for f in list_catalogs(root, run="night2")] == ["exp_a", "exp_c_2"]
    assert [f.run for f in list_catalogs(root, exposure="exp_a")] == ["night1", "night2"]
    assert len(list_catalogs(root / "run=night1")) == 2  # one run's folder
    assert len(list_catalogs(files[1].path)) == 1  # one file
    # a reader never sees a temporary file of an interrupted write
    (files[0].path.parent / ".catalog.parquet.123.tmp.parquet").write_bytes(b"junk")
    assert len(list_catalogs(root)) == 4
    with pytest.raises(InputError, match="no catalog matches run="):
        list_catalogs(root, run="night9")


def test_open_whole_dataset_in_file_order(dataset):
    root, tables = dataset
    df = open_catalog(root)
    assert list(df.columns) == list(COLUMN_NAMES) + ["run", "exposure"]
    assert len(df) == 7 + 11 + 13 + 5
    expected = pd.concat([
        pd.DataFrame({"run": r, "exposure": e.replace(" ", "_").replace("/", "_"),
                      "source_id": np.asarray(t["source_id"]), "x": np.asarray(t["x"])})
        for (r, e), t in sorted(tables.items(), key=lambda kv: (kv[0][0], kv[0][1].replace(" ", "_").replace("/", "_")))
    ], ignore_index=True)
    pd.testing.assert_frame_equal(df[["run", "exposure", "source_id", "x"]], expected, check_dtype=False)
    assert df["source_id"].dtype == np.int64 and df["flags"].dtype == np.int32 and df["x"].dtype == np.float64
    assert df.attrs["n_files"] == 4 and df.attrs["schema_version"] == SCHEMA_VERSION
    assert df.attrs["units"]["ra"] == "deg" and df.attrs["units"]["flux"] == "adu"
    assert df.attrs["provenance"] == {}  # several files: see catalog_provenance
    # the same call twice gives the same rows in the same order
    pd.testing.assert_frame_equal(df, open_catalog(root))


@pytest.mark.parametrize("filters", [
    "kind == 'galaxy' and snr > 20",
    "(kind == 'galaxy') & (snr > 20)",
    [("kind", "==", "galaxy"), ("snr", ">", 20)],
    (ds.field("kind") == "galaxy") & (ds.field("snr") > 20),
])
def test_filters_in_every_form_select_the_same_rows(dataset, filters):
    root, _ = dataset
    full = open_catalog(root)
    want = full[(full["kind"] == "galaxy") & (full["snr"] > 20)][["source_id", "snr"]].reset_index(drop=True)
    got = open_catalog(root, columns=["source_id", "snr"], filters=filters)
    assert list(got.columns) == ["source_id", "snr"]
    assert len(want) > 0
    pd.testing.assert_frame_equal(got, want)


@pytest.mark.parametrize("text,query", [
    ("snr > 20 or kind in ['star', 'streak']", "snr > 20 or kind in ['star', 'streak']"),
    ("not (flags == 0)", "not (flags == 0)"),
    ("10 < snr <= 30", "10 < snr <= 30"),
    ("kind not in ('star', '') and x_peak >= 100", "kind not in ('star', '') and x_peak >= 100"),
    ("isnan(mag)", "mag != mag"),
    ("abs(theta - 10) < 2", "abs(theta - 10) < 2"),
    ("snr * 2 > flux", "snr * 2 > flux"),
    ("~(snr < 5) | (kind == 'galaxy')", "~(snr < 5) | (kind == 'galaxy')"),
    ("run == 'night2' and exposure != 'exp_a'", "run == 'night2' and exposure != 'exp_a'"),
])
def test_filter_strings_agree_with_pandas_query(dataset, text, query):
    root, _ = dataset
    full = open_catalog(root)
    want = full.query(query).reset_index(drop=True)
    got = open_catalog(root, filters=text)
    pd.testing.assert_frame_equal(got, want)


@pytest.mark.parametrize("text,match", [
    ("snr >", "not a valid expression"),
    ("__import__('os').system('true')", "unknown function"),
    ("snr.real > 1", "expected a number, string or list"),
    ("snr > 1 if kind else 0", "cannot use"),
    ("kind in 'star'", "'in' needs a list"),
    ("snr == None", "is None"),
    ("snr", None),  # a float column is not a condition: pyarrow refuses it
])
def test_bad_filters_fail_in_one_line(dataset, text, match):
    root, _ = dataset
    with pytest.raises(InputError, match=match) as info:
        open_catalog(root, filters=text)
    assert "\n" not in str(info.value)
    assert text in str(info.value)


def test_unknown_columns_are_named_with_a_suggestion(dataset):
    root, _ = dataset
    with pytest.raises(CatalogSchemaError, match=r"no column 'snrr'.*did you mean 'snr'"):
        open_catalog(root, filters="snrr > 3")
    with pytest.raises(CatalogSchemaError, match=r"columns: no column 'magg'.*'mag'"):
        open_catalog(root, columns=["ra", "magg"])
    with pytest.raises(CatalogSchemaError, match=r"filters: no column 'knd'"):
        open_catalog(root, filters=[("knd", "==", "star")])


def test_run_and_exposure_selection_reads_only_those_files(dataset):
    root, tables = dataset
    df = open_catalog(root, run="night2", columns=["exposure", "source_id"])
    assert sorted(df["exposure"].unique()) == ["exp_a", "exp_c_2"]
    assert len(df) == 13 + 5
    one = open_catalog(root, run="night1", exposure="exp_b")
    assert len(one) == 11
    assert one.attrs["provenance"]["config_hash"] == "h2"  # one file: its provenance
    np.testing.assert_array_equal(one["source_id"], tables[("night1", "exp_b")]["source_id"])
    # a corrupt file in another run is never opened
    bad = catalog_path(root, "night2", "exp_a")
    bad.write_bytes(b"not parquet")
    assert len(open_catalog(root, run="night1")) == 18
    with pytest.raises(InputError, match="not a readable Parquet catalog"):
        open_catalog(root)


def test_qtable_has_schema_units_and_descriptions(dataset):
    root, _ = dataset
    q = open_catalog(root, as_="qtable", columns=["x", "ra", "flux", "mag", "snr", "kind", "flags", "exposure"],
                     filters="snr > 5")
    assert isinstance(q, QTable)
    assert q["x"].unit == u.pix and q["ra"].unit == u.deg and q["flux"].unit == u.adu and q["mag"].unit == u.mag
    assert isinstance(q["x"], u.Quantity) and not isinstance(q["snr"], u.Quantity)
    assert q["kind"].dtype.kind == "U" and q["flags"].dtype == np.int32
    assert "0-based" in q["x"].info.description
    assert q["exposure"].info.description.startswith("exposure")
    assert q.meta["schema_version"] == SCHEMA_VERSION and q.meta["flux_unit"] == "adu"
    df = open_catalog(root, columns=["x", "snr"], filters="snr > 5")
    np.testing.assert_array_equal(q["x"].to_value(u.pix), df["x"].to_numpy())


def test_xarray_dataset_has_units_attributes(dataset):
    root, _ = dataset
    x = open_catalog(root, as_="xarray", columns=["x", "flux", "kind", "run"])
    assert x.sizes["source"] == 36
    assert x["x"].attrs["units"] == "pix" and x["flux"].attrs["units"] == "adu"
    assert "units" not in x["kind"].attrs and x["kind"].dtype.kind == "U"
    assert x.attrs["schema_version"] == SCHEMA_VERSION and json.loads(x.attrs["provenance"]) == {}


def test_empty_selection_keeps_columns(dataset):
    root, _ = dataset
    df = open_catalog(root, columns=["ra", "kind"], filters="snr > 1e9")
    assert len(df) == 0 and list(df.columns) == ["ra", "kind"]
    q = open_catalog(root, columns=["ra", "kind"], filters="snr > 1e9", as_="qtable")
    assert len(q) == 0 and q["ra"].unit == u.deg


def test_single_files_parquet_fits_ecsv(tmp_path, catalog_factory, provenance):
    cat = catalog_factory(9, seed=5)
    loose = write_catalog(cat, tmp_path / "loose.parquet", provenance=provenance)
    df = open_catalog(loose)
    assert list(df.columns) == list(COLUMN_NAMES)  # outside the layout: no run/exposure
    assert df.attrs["provenance"]["config_hash"] == provenance.config_hash
    for ext in (".fits", ".ecsv"):
        other = write_catalog(cat, tmp_path / f"cat{ext}", provenance=provenance)
        got = open_catalog(other, columns=["source_id", "flux"], filters="flux > 10")
        want = df[df["flux"] > 10][["source_id", "flux"]].reset_index(drop=True)
        pd.testing.assert_frame_equal(got, want, check_dtype=False)
        assert got.attrs["units"]["flux"] == "adu"


def test_extra_columns_missing_from_some_files_are_null(tmp_path, catalog_factory):
    root = tmp_path / "ds"
    a = catalog_factory(4, seed=1)
    a["w_point"] = np.full(4, 0.25)
    write_exposure_catalog(a, root, run="r", exposure="a")
    write_exposure_catalog(catalog_factory(3, seed=2), root, run="r", exposure="b")
    df = open_catalog(root, columns=["exposure", "w_point"])
    np.testing.assert_array_equal(df["w_point"].to_numpy()[:4], 0.25)
    assert df["w_point"].isna().to_numpy()[4:].all()


def test_flux_units_must_agree_when_flux_columns_are_read(tmp_path, catalog_factory):
    root = tmp_path / "ds"
    write_exposure_catalog(catalog_factory(4, seed=1), root, run="r", exposure="a", provenance={"flux_unit": "adu"})
    cat = catalog_factory(4, seed=2, flux_unit="electron")
    write_exposure_catalog(cat, root, run="r", exposure="b", provenance={"flux_unit": "electron"})
    with pytest.raises(CatalogSchemaError, match=r"different units \('adu' in .*'electron' in "):
        open_catalog(root, columns=["flux"])
    assert len(open_catalog(root, columns=["snr", "ra"])) == 8  # no flux column: fine
    assert open_catalog(root, exposure="b", as_="qtable")["flux"].unit == u.electron


# --------------------------------------------------------------------------- bad input


def test_missing_column_names_column_file_and_versions(dataset):
    root, _ = dataset
    path = catalog_path(root, "night1", "exp_b")
    _rewrite(path, drop="snr")
    with pytest.raises(CatalogSchemaError) as info:
        open_catalog(root, columns=["ra"])
    msg = str(info.value)
    assert str(path) in msg and "missing column 'snr'" in msg
    assert f"file schema version {SCHEMA_VERSION}" in msg and f"catalog schema {SCHEMA_VERSION}" in msg
    assert "\n" not in msg


def test_wrong_major_version_names_file_and_versions(dataset):
    root, _ = dataset
    path = catalog_path(root, "night2", "exp_a")
    _rewrite(path, version="2.0")
    with pytest.raises(CatalogSchemaError) as info:
        open_catalog(root)
    msg = str(info.value)
    assert str(path) in msg and "2.0" in msg and SCHEMA_VERSION in msg and "incompatible" in msg
    assert len(open_catalog(root, run="night1")) == 18  # the other run is fine
    _rewrite(path, version="one")
    with pytest.raises(CatalogSchemaError, match="malformed catalog schema version 'one'"):
        open_catalog(root)


def test_older_minor_versions_open_with_the_new_columns_missing(dataset):
    root, tables = dataset
    path = catalog_path(root, "night1", "exp_a")
    _rewrite(path, drop="triage_stratum", version="1.3")  # written before schema 1.4 added it
    df = open_catalog(root, columns=["kind", "triage_stratum", "run", "exposure"], filters="snr > 0")
    old = df["exposure"] == "exp_a"
    assert old.any() and (~old).any()
    assert df.loc[old & (df["run"] == "night1"), "triage_stratum"].isna().all()
    assert not df.loc[~old, "triage_stratum"].isna().any()
    assert open_catalog(root, filters="isnull(triage_stratum)")["exposure"].eq("exp_a").all()
    back = read_catalog(path)  # the single-file reader fills the column with its fill value
    assert back.meta["schema_version"] == "1.3" and set(back["triage_stratum"]) == {""}
    assert len(back) == len(tables[("night1", "exp_a")])
    # a column that already existed in the file's version is still required, naming both versions
    _rewrite(path, drop="decision", version="1.2")  # decision came with 1.3: fine
    assert len(read_catalog(path)) == len(back)
    _rewrite(path, drop="psf_fwhm")  # psf_fwhm came with 1.2, which this file claims
    with pytest.raises(CatalogSchemaError, match=r"missing column 'psf_fwhm' \(file schema version 1.2"):
        open_catalog(root)
    with pytest.raises(CatalogSchemaError, match=r"missing column 'psf_fwhm' \(file schema version 1.2"):
        read_catalog(path)


def test_wrong_column_type_is_named(dataset):
    root, _ = dataset
    path = catalog_path(root, "night1", "exp_a")
    _rewrite(path, cast=("snr", pa.string()))
    with pytest.raises(CatalogSchemaError, match=r"column 'snr' has type string; expected float64"):
        open_catalog(root)


def test_missing_paths_and_empty_folders(tmp_path):
    with pytest.raises(InputError, match="no such catalog file or dataset folder"):
        open_catalog(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=r"holds no catalogs \(expected run=<run>/exposure=<exposure>/catalog.parquet\)"):
        open_catalog(tmp_path / "empty")
    with pytest.raises(InputError, match="as_"):
        open_catalog(tmp_path / "empty", as_="polars")


def test_parse_filter_returns_a_pyarrow_expression():
    expr = parse_filter("kind == 'star' and 3 < snr", ["kind", "snr"])
    assert isinstance(expr, ds.Expression)
    table = pa.table({"kind": ["star", "star", "galaxy"], "snr": [2.0, 4.0, 9.0]})
    assert table.filter(expr).column("snr").to_pylist() == [4.0]


# --------------------------------------------------------------------------- provenance and CLI


def test_catalog_provenance_lists_files(dataset):
    root, _ = dataset
    prov = catalog_provenance(root)
    assert list(prov["exposure"]) == ["exp_a", "exp_b", "exp_a", "exp_c_2"]
    assert list(prov["n_rows"]) == [7, 11, 13, 5]
    assert list(prov["config_hash"]) == ["h1", "h2", "h3", "h4"]
    assert (prov["schema_version"] == SCHEMA_VERSION).all()


def test_cli_info_and_error_line(dataset, tmp_path, capsys):
    root, _ = dataset
    assert cli_main(["catalog", "info", str(root)]) == 0
    out = capsys.readouterr().out
    assert "4 catalog file(s), 36 rows" in out and "run=night2 exposure=exp_c_2: 5 rows" in out
    assert cli_main(["catalog", "info", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("moe-imaging: error: ") and "missing" in err and "\n" not in err


# --------------------------------------------------------------------------- real catalogs


def test_demo_dataset_from_detect_image(demo):
    prov = catalog_provenance(demo.catalogs)
    assert list(prov["run"].unique()) == [RUN] and sorted(prov["exposure"]) == demo.exposures
    assert (prov["psf_fwhm"] > 0).all() and prov["input_checksum"].str.len().eq(64).all()
    df = open_catalog(demo.catalogs, columns=["exposure", "kind", "snr", "confidence"],
                      filters="kind == 'star' and snr > 20")
    assert len(df) > 30 and (df["kind"] == "star").all() and (df["snr"] > 20).all()
    assert df["confidence"].between(0, 1).all()  # the gate ran
    assert set(df["exposure"]) == set(demo.exposures)


# --------------------------------------------------------------------------- benchmark


@pytest.mark.slow
def test_benchmark_one_million_rows_under_a_second(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_catalogs.py"), "--out", str(tmp_path), "--strict"],
        check=False, capture_output=True, text=True, timeout=900,
    )
    print(proc.stdout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "1,000,000 rows in 50 exposures" in proc.stdout and "target: filtered open < 1 s cold and warm: met" in proc.stdout

"""Exports: FITS and VOTable round trips, DS9 regions, HATS for LSDB, the export command."""

from __future__ import annotations

import json
import re

import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits
from astropy.io.votable import parse_single_table
from astropy.table import QTable, Table

from catalogs import (
    COLUMN_NAMES,
    SCHEMA_VERSION,
    CatalogSchemaError,
    export_catalog,
    open_catalog,
    read_export,
    write_ds9,
    write_exposure_catalog,
    write_fits,
    write_votable,
)
from contracts.errors import InputError
from moe_cli import main as cli_main
from tests.catalogs.demo_data import build_demo


@pytest.fixture(scope="session")
def demo(tmp_path_factory):
    return build_demo(tmp_path_factory.getbasetemp() / "moe_demo_survey")


@pytest.fixture
def odd_dataset(tmp_path, catalog_factory):
    """Two exposures with NaNs, empty strings, negative and large integers, a masked extra."""
    root = tmp_path / "ds"
    for i, exp in enumerate(("e1", "e2")):
        cat = catalog_factory(6, seed=i, flux_unit="electron")
        cat["source_id"][0] = 2**40 + i
        cat["flags"][1] = -5
        cat["mag"][2] = np.nan
        cat["ra"] = np.linspace(150, 150.01, 6)
        cat["dec"] = np.linspace(2, 2.01, 6)
        cat["ra"][3] = np.nan
        cat["review_reason"] = ["", "low confidence", "", "a, b; c", "x" * 80, ""]
        if i == 0:
            cat["w_point"] = np.arange(6) / 10
        write_exposure_catalog(cat, root, run="r", exposure=exp, provenance={"flux_unit": "electron"})
    return root


def _assert_same(back: QTable, ref: QTable) -> None:
    """Same columns (order), units and values (NaN equal to NaN, masked entries compared as masked)."""
    assert back.colnames == ref.colnames
    for name in ref.colnames:
        a, b = back[name], ref[name]
        assert getattr(a, "unit", None) == getattr(b, "unit", None), name
        av = a.value if isinstance(a, u.Quantity) else np.ma.getdata(a)
        bv = b.value if isinstance(b, u.Quantity) else np.ma.getdata(b)
        am, bm = np.ma.getmaskarray(a), np.ma.getmaskarray(b)
        np.testing.assert_array_equal(am, bm, err_msg=name)
        if np.asarray(bv).dtype.kind == "U":
            assert list(np.asarray(av)[~am]) == list(np.asarray(bv)[~bm]), name
        else:
            assert np.asarray(av).dtype.kind == np.asarray(bv).dtype.kind, name
            np.testing.assert_array_equal(np.asarray(av)[~am], np.asarray(bv)[~bm], err_msg=name)
        if getattr(b.info, "description", None):
            assert a.info.description == b.info.description, name


@pytest.mark.parametrize("writer,ext", [(write_fits, ".fits"), (write_votable, ".vot")])
def test_round_trip_parquet_to_file_and_back(odd_dataset, tmp_path, writer, ext):
    ref = open_catalog(odd_dataset, as_="qtable")
    assert "w_point" in ref.colnames and np.isnan(ref["w_point"][6:]).all()
    path = writer(ref, tmp_path / f"out{ext}")
    back = read_export(path)
    _assert_same(back, ref)
    assert back["flux"].unit == u.electron and back["x"].unit == u.pix and back["ra"].unit == u.deg
    assert back.meta["schema_version"] == SCHEMA_VERSION and back.meta["flux_unit"] == "electron"
    assert list(back.colnames[: len(COLUMN_NAMES)]) == list(COLUMN_NAMES)
    # from the pandas form (units from attrs) the file is the same
    df = open_catalog(odd_dataset)
    path2 = writer(df, tmp_path / f"from_pandas{ext}")
    _assert_same(read_export(path2), ref)


def test_round_trip_of_a_filtered_selection_of_real_catalogs(demo, tmp_path):
    sel = open_catalog(demo.catalogs, as_="qtable", columns=["source_id", "ra", "dec", "flux", "mag", "kind",
                                                             "confidence", "exposure"], filters="snr > 10")
    assert len(sel) > 50
    for writer, ext in ((write_fits, ".fits"), (write_votable, ".xml")):
        back = read_export(writer(sel, tmp_path / f"sel{ext}"))
        _assert_same(back, sel)


def test_single_exposure_keeps_its_provenance(demo, tmp_path):
    one = open_catalog(demo.catalogs, exposure="survey_512_seed2")
    prov = one.attrs["provenance"]
    assert prov["input_checksum"]
    for writer, ext in ((write_fits, ".fits"), (write_votable, ".vot")):
        assert read_export(writer(one, tmp_path / f"one{ext}")).meta["provenance"] == prov


def test_files_are_what_topcat_reads(odd_dataset, tmp_path):
    ref = open_catalog(odd_dataset, as_="qtable", columns=["source_id", "ra", "dec", "flux", "kind"])
    fpath = write_fits(ref, tmp_path / "t.fits")
    with fits.open(fpath) as hdul:
        hdr = hdul["CATALOG"].header
        assert hdul["CATALOG"].verify_checksum() == 1
        assert hdr["TUNIT2"] == "deg" and hdr["TUNIT4"] == "electron" and "right ascension" in hdr["TCOMM2"]
        assert hdr["MOESCHEM"] == SCHEMA_VERSION
    with pytest.warns(u.UnitsWarning, match="'electron' did not parse as fits unit"):
        plain = Table.read(fpath, hdu="CATALOG")  # astropy's own reader: units from TUNIT
    assert plain["ra"].unit == u.deg and str(plain["flux"].unit) == "electron"  # not a FITS-standard unit: kept as text
    vpath = write_votable(ref, tmp_path / "t.vot")
    vt = parse_single_table(str(vpath))  # validates against the VOTable schema as it parses
    fields = {f.name: f for f in vt.fields}
    assert fields["ra"].ucd == "pos.eq.ra;meta.main" and fields["dec"].ucd == "pos.eq.dec;meta.main"
    assert str(fields["ra"].unit) == "deg" and "right ascension" in str(fields["ra"].description)
    assert fields["source_id"].datatype == "long"


def test_fits_rejects_non_ascii_text_votable_keeps_it(odd_dataset, tmp_path):
    df = open_catalog(odd_dataset, columns=["source_id", "review_reason"])
    df.loc[0, "review_reason"] = "S/N ≥ 5 — café"
    with pytest.raises(CatalogSchemaError, match="column 'review_reason' holds non-ASCII text"):
        write_fits(df, tmp_path / "x.fits")
    back = read_export(write_votable(df, tmp_path / "x.vot"))
    assert back["review_reason"][0] == "S/N ≥ 5 — café"


def test_existing_files_are_not_replaced_without_overwrite(odd_dataset, tmp_path):
    ref = open_catalog(odd_dataset, columns=["source_id", "ra", "dec"])
    path = write_fits(ref, tmp_path / "a.fits")
    with pytest.raises(InputError, match="already exists"):
        write_fits(ref, path)
    write_fits(ref.iloc[:2], path, overwrite=True)
    assert len(read_export(path)) == 2


# --------------------------------------------------------------------------- DS9

_REGION = re.compile(r"^(circle|ellipse)\(([^)]*)\)(?: # (.*))?$")


def _regions(path):
    lines = path.read_text().splitlines()
    assert lines[0] == "# Region file format: DS9 version 4.1"
    system = next(line for line in lines if line in ("image", "icrs", "fk5"))
    regs = [_REGION.match(line) for line in lines[lines.index(system) + 1:]]
    assert all(regs)
    return system, regs


def test_ds9_image_regions_are_one_based(demo, tmp_path):
    df = open_catalog(demo.catalogs, exposure="survey_512_seed1")
    path = write_ds9(df, tmp_path / "a.reg")
    system, regs = _regions(path)
    assert system == "image" and len(regs) == len(df)
    xy = np.array([[float(v) for v in m.group(2).split(",")[:2]] for m in regs])
    np.testing.assert_allclose(xy[:, 0], df["x"] + 1, atol=1e-3)
    np.testing.assert_allclose(xy[:, 1], df["y"] + 1, atol=1e-3)
    colors = [re.search(r"color=(\w+)", m.group(3)).group(1) for m in regs]
    expect = {"star": "green", "galaxy": "cyan", "artifact": "red", "streak": "magenta"}
    assert colors == [expect[k] for k in df["kind"]]
    texts = [re.search(r"text=\{([^}]*)\}", m.group(3)).group(1) for m in regs]
    assert texts[0] == f"{df['kind'].iloc[0]} {df['confidence'].iloc[0]:.2f}"
    _, ell = _regions(write_ds9(df, tmp_path / "e.reg", shape="ellipse", label=None, color_by=None))
    assert all(m.group(1) == "ellipse" and m.group(3) is None for m in ell)


def test_ds9_sky_regions_skip_rows_without_coordinates(odd_dataset, tmp_path):
    df = open_catalog(odd_dataset)
    system, regs = _regions(write_ds9(df, tmp_path / "s.reg", system="icrs", radius=1.5, label="exposure"))
    assert system == "icrs" and len(regs) == int(np.isfinite(df["ra"]).sum()) == 10
    first = regs[0].group(2).split(",")
    assert float(first[0]) == pytest.approx(df["ra"].iloc[0], abs=1e-7) and first[2] == '1.500"'
    with pytest.raises(CatalogSchemaError, match="missing column 'ra'"):
        write_ds9(df[["x", "y"]], tmp_path / "n.reg", system="icrs")


# --------------------------------------------------------------------------- HATS


@pytest.mark.filterwarnings("ignore:The inplace keyword")
def test_hats_catalog_opens_in_lsdb_with_the_same_rows(demo, tmp_path):
    lsdb = pytest.importorskip("lsdb")
    df = open_catalog(demo.catalogs, columns=["source_id", "exposure", "ra", "dec", "kind", "snr", "mag", "flux"])
    out = export_catalog(df, tmp_path / "demo_hats", format="hats")
    cat = lsdb.open_catalog(out)
    assert cat.hc_structure.catalog_info.total_rows == len(df)
    back = cat.compute()
    for col in df.columns:
        assert col in back.columns
    key = ["exposure", "source_id"]
    a = df.sort_values(key).reset_index(drop=True)
    b = back[list(df.columns)].sort_values(key).reset_index(drop=True)
    for col in df.columns:
        np.testing.assert_array_equal(b[col].to_numpy(), a[col].to_numpy(), err_msg=col)
    info = json.loads((out / "moe_imaging.json").read_text())
    assert info["n_rows"] == len(df) and info["units"]["flux"] == "adu" and info["schema_version"] == SCHEMA_VERSION
    # a cone search through LSDB finds the rows near the field centre
    near = cat.cone_search(ra=150.0, dec=2.0, radius_arcsec=20).compute()
    d = np.hypot((df["ra"] - 150.0) * np.cos(np.radians(2.0)), df["dec"] - 2.0) * 3600
    assert len(near) == int((d < 20).sum()) > 0


@pytest.mark.filterwarnings("ignore:The inplace keyword")
def test_hats_leaves_out_rows_without_sky_position(odd_dataset, tmp_path):
    pytest.importorskip("lsdb")
    out = export_catalog(odd_dataset, tmp_path / "odd_hats", format="hats", columns=["source_id", "ra", "dec"])
    info = json.loads((out / "moe_imaging.json").read_text())
    assert info["n_rows"] == 10 and info["n_left_out_without_sky_position"] == 2
    with pytest.raises(InputError, match="already exists"):
        export_catalog(odd_dataset, out, format="hats")


# --------------------------------------------------------------------------- one call and CLI


def test_export_catalog_from_a_path_with_a_filter(demo, tmp_path):
    path = export_catalog(demo.catalogs, tmp_path / "gal.vot", columns=["ra", "dec", "kind"],
                          filters="kind == 'galaxy'")
    back = read_export(path)
    assert back.colnames == ["ra", "dec", "kind"] and set(back["kind"]) == {"galaxy"}
    assert len(back) == len(open_catalog(demo.catalogs, filters="kind == 'galaxy'"))
    with pytest.raises(InputError, match="unknown export extension"):
        export_catalog(demo.catalogs, tmp_path / "x.csv")


def test_cli_export(demo, tmp_path, capsys):
    out = tmp_path / "stars.fits"
    rc = cli_main(["catalog", "export", str(demo.catalogs), "--out", str(out), "--columns", "ra,dec,snr,kind",
                   "--where", "kind == 'star' and snr > 20", "--exposure", "survey_512_seed2"])
    assert rc == 0 and "fits:" in capsys.readouterr().out
    back = read_export(out)
    assert back.colnames == ["ra", "dec", "snr", "kind"] and (back["snr"] > 20).all() and len(back) > 5
    reg = tmp_path / "stars.reg"
    assert cli_main(["catalog", "export", str(demo.catalogs), "--out", str(reg), "--system", "icrs"]) == 0
    assert "icrs" in reg.read_text().splitlines()
    rc = cli_main(["catalog", "export", str(demo.catalogs), "--out", str(out), "--where", "snr >"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("moe-imaging: error: filter 'snr >'") and "\n" not in err
    rc = cli_main(["catalog", "export", str(demo.catalogs), "--out", str(out)])
    assert rc == 2 and "already exists" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:The inplace keyword")
def test_hats_with_a_margin_cache(demo, tmp_path):
    lsdb = pytest.importorskip("lsdb")
    df = open_catalog(demo.catalogs, columns=["source_id", "exposure", "ra", "dec"])
    out = export_catalog(df, tmp_path / "with_margin", format="hats", options={"margin_arcsec": 5.0})
    cat = lsdb.open_catalog(out)
    assert cat.margin is not None
    assert len(cat.compute()) == len(df)


def test_empty_selections_export(odd_dataset, tmp_path):
    empty = open_catalog(odd_dataset, columns=["source_id", "ra", "kind"], filters="snr > 1e9")
    for writer, ext in ((write_fits, ".fits"), (write_votable, ".vot")):
        back = read_export(writer(empty, tmp_path / f"empty{ext}"))
        assert back.colnames == ["source_id", "ra", "kind"] and len(back) == 0 and back["ra"].unit == u.deg
    _, regs = _regions(write_ds9(open_catalog(odd_dataset, filters="snr > 1e9"), tmp_path / "empty.reg"))
    assert regs == []

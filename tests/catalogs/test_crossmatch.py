"""Cross-matching: sky and pixel radii, pairing rules, between exposures, against a reference."""

from __future__ import annotations

import astropy.units as u
import numpy as np
import pandas as pd
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.table import QTable, Table
from astropy.wcs import WCS

from catalogs import (
    CatalogSchemaError,
    crossmatch,
    crossmatch_exposures,
    match_summary,
    open_catalog,
    pixel_to_icrs,
)
from catalogs.analysis import read_truth
from contracts.errors import InputError
from tests.catalogs.demo_data import DITHER, build_demo


@pytest.fixture(scope="session")
def demo(tmp_path_factory):
    return build_demo(tmp_path_factory.getbasetemp() / "moe_demo_survey")


def _offset(ra, dec, d_arcsec, angle_deg):
    c = SkyCoord(ra * u.deg, dec * u.deg).directional_offset_by(angle_deg * u.deg, d_arcsec * u.arcsec)
    return c.ra.deg, c.dec.deg


@pytest.fixture
def pair():
    rng = np.random.default_rng(3)
    n = 200
    ra = 150 + rng.uniform(-0.05, 0.05, n)
    dec = 2 + rng.uniform(-0.05, 0.05, n)
    off = rng.uniform(0, 0.8, n)  # arcsec: all within 1"
    ra2, dec2 = _offset(ra, dec, off, rng.uniform(0, 360, n))
    left = pd.DataFrame({"ra": ra, "dec": dec, "id": np.arange(n), "x": ra * 1000, "y": dec * 1000})
    order = rng.permutation(n)
    right = pd.DataFrame({"ra": ra2[order], "dec": dec2[order], "ref_id": np.arange(n)[order]})
    return left, right, off


def test_nearest_sky_match_recovers_the_pairs(pair):
    left, right, off = pair
    m = crossmatch(left, right, radius=1.0)
    assert len(m) == len(left)
    assert (m["id_1"].to_numpy() == m["ref_id_2"].to_numpy()).all()
    np.testing.assert_allclose(m["separation_arcsec"], off[m["index_1"]], atol=1e-6)
    assert list(m.columns[:3]) == ["index_1", "index_2", "separation_arcsec"]
    assert m.attrs["unit"] == "arcsec" and m.attrs["how"] == "nearest"
    s = match_summary(m)
    assert s["n_pairs"] == 200 and s["fraction_1"] == 1.0 and s["median_sep"] < 0.8


def test_radius_units_and_quantities(pair):
    left, right, off = pair
    small = crossmatch(left, right, radius=0.4)
    assert len(small) == int((off <= 0.4).sum())
    assert len(crossmatch(left, right, radius=0.4 * u.arcsec)) == len(small)
    assert len(crossmatch(left, right, radius=0.4 / 3600, unit="deg")) == len(small)
    assert len(crossmatch(left, right, radius=(0.4 * u.arcsec).to(u.mas))) == len(small)
    with pytest.raises(InputError, match="neither an angle nor pixels"):
        crossmatch(left, right, radius=3 * u.m)
    with pytest.raises(InputError, match="must be positive"):
        crossmatch(left, right, radius=0)
    with pytest.raises(InputError, match="how"):
        crossmatch(left, right, how="best")


def test_all_pairs_agree_with_brute_force():
    rng = np.random.default_rng(1)
    a = pd.DataFrame({"ra": 10 + rng.uniform(0, 0.002, 60), "dec": -30 + rng.uniform(0, 0.002, 60)})
    b = pd.DataFrame({"ra": 10 + rng.uniform(0, 0.002, 50), "dec": -30 + rng.uniform(0, 0.002, 50)})
    m = crossmatch(a, b, radius=1.5, how="all")
    ca = SkyCoord(a["ra"].to_numpy() * u.deg, a["dec"].to_numpy() * u.deg)
    cb = SkyCoord(b["ra"].to_numpy() * u.deg, b["dec"].to_numpy() * u.deg)
    sep = ca[:, None].separation(cb[None, :]).arcsec
    want = {(i, j) for i, j in zip(*np.nonzero(sep <= 1.5))}
    assert {(int(i), int(j)) for i, j in zip(m["index_1"], m["index_2"])} == want
    np.testing.assert_allclose(m["separation_arcsec"], sep[m["index_1"], m["index_2"]], atol=1e-6)
    # within one left row, pairs are sorted by separation
    assert (m.groupby("index_1")["separation_arcsec"].apply(lambda s: s.is_monotonic_increasing)).all()


def test_nearest_versus_mutual_on_a_shared_neighbour():
    # two left sources near one reference source: nearest gives both, mutual only the closer
    a = pd.DataFrame({"x": [0.0, 1.5, 50.0], "y": [0.0, 0.0, 50.0]})
    b = pd.DataFrame({"x": [0.5, 100.0], "y": [0.0, 0.0]})
    near = crossmatch(a, b, radius=2, unit="pix")
    assert list(near["index_1"]) == [0, 1] and list(near["index_2"]) == [0, 0]
    np.testing.assert_allclose(near["separation_px"], [0.5, 1.0])
    mutual = crossmatch(a, b, radius=2, unit="pix", how="mutual")
    assert list(mutual["index_1"]) == [0] and list(mutual["index_2"]) == [0]
    assert len(crossmatch(a, b, radius=2 * u.pix, how="all")) == 2


def test_rows_without_coordinates_never_match(pair):
    left, right, _ = pair
    left = left.copy()
    left.loc[:9, "ra"] = np.nan
    m = crossmatch(left, right, radius=1.0)
    assert len(m) == 190 and m["index_1"].min() == 10
    assert len(crossmatch(left.assign(ra=np.nan), right, radius=1.0)) == 0


def test_astropy_tables_and_quantity_columns(pair):
    left, right, _ = pair
    q = QTable({"ra": (left["ra"].to_numpy() * u.deg).to(u.arcmin), "dec": left["dec"].to_numpy() * u.deg,
                "id": left["id"].to_numpy()})
    t = Table.from_pandas(right)
    m = crossmatch(q, t, radius=1.0, columns1=["id"], columns2=["ref_id"])
    assert list(m.columns) == ["index_1", "index_2", "separation_arcsec", "id_1", "ref_id_2"]
    assert (m["id_1"] == m["ref_id_2"]).all() and len(m) == 200


def test_missing_columns_are_named(pair):
    left, right, _ = pair
    with pytest.raises(CatalogSchemaError, match=r"table2: missing column 'RAJ2000'"):
        crossmatch(left, right, sky_columns2=("RAJ2000", "DEJ2000"))
    with pytest.raises(CatalogSchemaError, match=r"table1: no column 'mag' to carry"):
        crossmatch(left, right, columns1=["mag"])
    ok = crossmatch(left, right.rename(columns={"ra": "RAJ2000", "dec": "DEJ2000"}),
                    sky_columns2=("RAJ2000", "DEJ2000"))
    assert len(ok) == 200


def test_exposures_of_the_same_field_match_with_the_dither(demo):
    cat = open_catalog(demo.catalogs)
    seed1, revisit, seed2 = "survey_512_seed1", "survey_512_seed1_revisit", "survey_512_seed2"
    m = crossmatch_exposures(cat, radius=0.5, columns=["x", "y", "snr", "kind"])
    assert m.attrs["exposures"] == sorted(demo.exposures)
    same = m[(m["exposure_1"] == seed1) & (m["exposure_2"] == revisit)]
    n1 = int((cat["exposure"] == seed1).sum())
    assert len(same) >= 0.8 * n1  # the same sky: most detections pair up one-to-one
    assert same["separation_arcsec"].median() < 0.05  # 0.2"/px: a quarter pixel
    # the pixel offsets are the dither (the revisit is shifted by (13, 7) pixels)
    dx = (same["x_1"] - same["x_2"]).median()
    dy = (same["y_1"] - same["y_2"]).median()
    assert abs(dx - DITHER[0]) < 0.1 and abs(dy - DITHER[1]) < 0.1
    # the row indices point into the catalog
    assert (cat["exposure"].to_numpy()[same["index_1"]] == seed1).all()
    np.testing.assert_array_equal(cat["x"].to_numpy()[same["index_2"]], same["x_2"].to_numpy())
    # different fields (seed 2) at the same pointing match only by chance
    other = m[(m["exposure_1"] == seed1) & (m["exposure_2"] == seed2)]
    assert len(other) < 0.15 * n1
    ref = crossmatch_exposures(cat, radius=0.5, reference=seed1)
    assert (ref["exposure_1"] == seed1).all() and len(ref) == len(same) + len(other)
    with pytest.raises(InputError, match="not in the catalog"):
        crossmatch_exposures(cat, reference="nope")


def test_against_a_reference_catalog_from_the_truth(demo):
    stem = "survey_512_seed1"
    truth = read_truth(demo.truths[stem])
    wcs = WCS(fits.getheader(demo.images[stem]))
    ra, dec = pixel_to_icrs(np.asarray(truth["x"]), np.asarray(truth["y"]), wcs)
    ref = pd.DataFrame({"RAJ2000": ra, "DEJ2000": dec, "kind": np.asarray(truth["kind"]).astype(str),
                        "mf_snr": np.asarray(truth["mf_snr"])})
    cat = open_catalog(demo.catalogs, exposure=stem, columns=["ra", "dec", "kind", "snr"])
    m = crossmatch(cat, ref, radius=0.3, sky_columns2=("RAJ2000", "DEJ2000"), how="mutual")
    bright = (ref["kind"].isin(["star", "galaxy"])) & (ref["mf_snr"] > 20)
    found = np.isin(np.flatnonzero(bright), m["index_2"].to_numpy())
    assert found.mean() > 0.9
    # carried columns belong to the matched rows
    np.testing.assert_array_equal(m["kind_2"].to_numpy(), ref["kind"].to_numpy()[m["index_2"]])
    np.testing.assert_array_equal(m["snr_1"].to_numpy(), cat["snr"].to_numpy()[m["index_1"]])
    stars = m[m["kind_2"] == "star"]
    assert stars["separation_arcsec"].median() < 0.05  # centroids within a quarter pixel of the truth

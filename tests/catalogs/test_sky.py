"""Tests of catalogs.sky: RA/Dec from a WCS."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.table import Table
from astropy.wcs import WCS

from catalogs import CatalogSchemaError, add_sky_coordinates, pixel_to_icrs


def _tan_wcs(radesys: str = "ICRS") -> WCS:
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [150.1, 2.2]
    wcs.wcs.crpix = [512.5, 256.0]
    wcs.wcs.cd = [[-7.0e-5, 1.0e-6], [2.0e-6, 7.0e-5]]
    wcs.wcs.radesys = radesys
    if radesys == "FK5":
        wcs.wcs.equinox = 2000.0
    return wcs


def test_tan_wcs_matches_skycoord(catalog):
    wcs = _tan_wcs()
    out = add_sky_coordinates(catalog, wcs)
    expected = wcs.pixel_to_world(np.asarray(catalog["x"]), np.asarray(catalog["y"]))
    got = SkyCoord(out["ra"], out["dec"], unit="deg", frame="icrs")
    assert got.separation(expected).arcsec.max() < 1e-6
    # 0-based: the FITS reference pixel CRPIX (1-based) is pixel CRPIX - 1 here
    ra, dec = pixel_to_icrs(np.array([511.5]), np.array([255.0]), wcs)
    assert ra[0] == pytest.approx(150.1) and dec[0] == pytest.approx(2.2)
    assert out["ra"].unit == "deg" and out["ra"].dtype == np.float64
    assert np.isnan(catalog["ra"]).all()  # input untouched


def test_fk5_wcs_is_converted_to_icrs(catalog):
    wcs = _tan_wcs("FK5")
    out = add_sky_coordinates(catalog, wcs)
    fk5 = wcs.pixel_to_world(np.asarray(catalog["x"]), np.asarray(catalog["y"]))
    assert fk5.frame.name == "fk5"
    got = SkyCoord(out["ra"], out["dec"], unit="deg", frame="icrs")
    assert got.separation(fk5.icrs).arcsec.max() < 1e-6
    assert np.abs(out["ra"] - fk5.ra.deg).max() * 3600 > 1e-3  # the frames do differ


def test_no_wcs_gives_nan(catalog):
    out = add_sky_coordinates(catalog, None)
    assert np.isnan(out["ra"]).all() and np.isnan(out["dec"]).all()
    linear = WCS(naxis=2)
    linear.wcs.ctype = ["LINEAR", "LINEAR"]
    out = add_sky_coordinates(catalog, linear)
    assert np.isnan(out["ra"]).all()


def test_empty_and_nonfinite(catalog):
    assert len(add_sky_coordinates(catalog[:0], _tan_wcs())) == 0
    catalog["x"][1] = np.nan
    out = add_sky_coordinates(catalog, _tan_wcs())
    assert np.isnan(out["ra"][1]) and np.isfinite(out["ra"][0])


def test_adds_missing_columns_and_requires_xy():
    table = Table({"x": [10.0], "y": [20.0]})
    out = add_sky_coordinates(table, _tan_wcs())
    assert out.colnames == ["x", "y", "ra", "dec"]
    with pytest.raises(CatalogSchemaError, match="'y'"):
        add_sky_coordinates(Table({"x": [1.0]}), None)

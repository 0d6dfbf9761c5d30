"""Shared fixtures for the catalogs tests."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.table import Table

from catalogs import COLUMNS, Provenance, empty_catalog


def make_catalog(n: int = 5, *, flux_unit: str | None = "adu", seed: int = 0) -> Table:
    """Return a small catalog following the schema, with NaNs and odd strings."""
    rng = np.random.default_rng(seed)
    width = 4096
    x_peak = rng.integers(0, width, n)
    y_peak = rng.integers(0, 4000, n)
    template = empty_catalog(flux_unit=flux_unit)
    rows = Table()
    for col in COLUMNS:
        if col.dtype == "float64":
            rows[col.name] = rng.normal(10.0, 3.0, n)
        elif col.dtype == "str":
            rows[col.name] = np.array(["star", "", "galaxy", "streak", "nucleus"] * n)[:n]
        else:
            rows[col.name] = np.zeros(n, dtype=col.dtype)
    rows["x_peak"] = x_peak
    rows["y_peak"] = y_peak
    rows["source_id"] = y_peak.astype(np.int64) * width + x_peak
    rows["x"] = x_peak + rng.uniform(-0.5, 0.5, n)
    rows["y"] = y_peak + rng.uniform(-0.5, 0.5, n)
    rows["expert"] = np.array(["point", "extended", "point", "streak", "point"] * n)[:n]
    rows["flags"] = np.array([0, 1, 2 | 8, 16, 31] * n, dtype=np.int32)[:n]
    rows["mag"][0] = np.nan
    rows["ra"][:] = np.nan
    rows["dec"][:] = np.nan
    out = Table()
    for col in COLUMNS:
        out[col.name] = rows[col.name]
        out[col.name].unit = template[col.name].unit
        out[col.name].description = col.description
    return out


@pytest.fixture
def catalog() -> Table:
    return make_catalog()


@pytest.fixture
def provenance() -> Provenance:
    return Provenance(
        config_hash="0123456789abcdef",
        config={"detect": {"threshold": 5.0, "tile": 1024}, "seed": 42, "name": "café & 'quoted'"},
        input_path="/data/exposure.fits",
        input_checksum="ab" * 32,
        psf={"source": "header:FWHM", "fwhm_px": 3.25, "model": "moffat"},
        flux_unit="adu",
        image_shape=(4000, 4096),
        tile_size=1024,
        n_tiles=16,
        threshold=5.0,
        runtime_s=12.5,
        created="2025-01-02T03:04:05+00:00",
    )


@pytest.fixture
def catalog_factory():
    """Return :func:`make_catalog` so tests can build catalogs with options."""
    return make_catalog

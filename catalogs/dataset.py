"""Catalogs of many exposures as one Parquet dataset.

Layout (Hive partitioning, read by :mod:`pyarrow.dataset`)::

    ROOT/run=<run>/exposure=<exposure>/catalog.parquet

``run`` names a batch (a configuration, e.g. ``nightly``), ``exposure`` the
input image (its file stem).  Each file is a complete, schema-validated
catalog with its provenance (:func:`catalogs.io.write_catalog`), written
atomically (temporary file + rename), so a reader never sees half a file.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Mapping

import pandas as pd
from astropy.table import Table

from moe_imaging.errors import InputError

from .io import write_catalog
from .provenance import Provenance

__all__ = ["CATALOG_FILE", "partition_value", "catalog_path", "write_exposure_catalog"]

CATALOG_FILE = "catalog.parquet"
"""The file name of one exposure's catalog inside its partition folder."""

_SAFE = re.compile(r"[^A-Za-z0-9._+-]")


def partition_value(name: str) -> str:
    """A run or exposure name made safe for a partition folder (``/``, ``=`` and spaces become ``_``)."""
    value = _SAFE.sub("_", str(name)).strip("._")
    if not value:
        raise InputError(str(name), "is not usable as a run or exposure name")
    return value


def catalog_path(root: str | os.PathLike[str], run: str, exposure: str) -> Path:
    """Where the catalog of ``exposure`` in ``run`` lives under ``root``."""
    return Path(root) / f"run={partition_value(run)}" / f"exposure={partition_value(exposure)}" / CATALOG_FILE


def write_exposure_catalog(
    table: Table | pd.DataFrame,
    root: str | os.PathLike[str],
    *,
    run: str,
    exposure: str,
    provenance: Provenance | Mapping[str, Any] | None = None,
) -> Path:
    """Write one exposure's catalog into the dataset at ``root`` (atomically; replaces a previous one)."""
    return write_catalog(table, catalog_path(root, run, exposure), provenance=provenance, overwrite=True)

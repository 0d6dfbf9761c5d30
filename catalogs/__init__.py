"""Detection catalogs: the schema, writers and readers, provenance, sky coordinates.

The schema (:data:`COLUMNS`) is the one source of truth for the catalog's
columns, dtypes, units and descriptions.  :func:`write_catalog` and
:func:`read_catalog` handle Parquet, FITS and ECSV (chosen by the file
extension) with the provenance stored in the file's metadata.

Many exposures' catalogs form one Parquet dataset (:mod:`catalogs.dataset`):
:func:`write_exposure_catalog` adds one, :func:`open_catalog` reads a
selection (columns and filters pushed down) as pandas, an astropy ``QTable``
or an xarray ``Dataset``.  :mod:`catalogs.crossmatch` matches catalogs,
:mod:`catalogs.export` writes FITS, VOTable, DS9 regions and HATS,
:mod:`catalogs.analysis` evaluates against truth and labels, and
:mod:`catalogs.plots` draws for notebooks (imported on demand: it needs
matplotlib).
"""

from .crossmatch import crossmatch, crossmatch_exposures, match_summary
from .dataset import (
    CATALOG_FILE,
    PARTITION_COLUMNS,
    CatalogFile,
    catalog_path,
    catalog_provenance,
    list_catalogs,
    open_catalog,
    parse_filter,
    partition_value,
    write_exposure_catalog,
)
from .export import (
    EXPORT_FORMATS,
    export_catalog,
    read_export,
    write_ds9,
    write_fits,
    write_hats,
    write_votable,
)
from .io import (
    CATALOG_FORMATS,
    catalog_format,
    flag_descriptions,
    from_pandas,
    read_catalog,
    to_pandas,
    write_catalog,
)
from .provenance import Provenance, config_hash, file_checksum, make_provenance, utc_now
from .schema import (
    COLUMN_NAMES,
    COLUMNS,
    DEFAULT_FLUX_UNIT,
    FLUX_UNIT_PLACEHOLDER,
    SCHEMA_VERSION,
    CatalogSchemaError,
    Column,
    check_schema_version,
    column_descriptions,
    column_units,
    empty_catalog,
    get_column,
    parse_unit,
    validate,
)
from .sky import add_sky_coordinates, pixel_to_icrs

__all__ = [
    "SCHEMA_VERSION",
    "FLUX_UNIT_PLACEHOLDER",
    "DEFAULT_FLUX_UNIT",
    "CatalogSchemaError",
    "Column",
    "COLUMNS",
    "COLUMN_NAMES",
    "get_column",
    "column_units",
    "column_descriptions",
    "parse_unit",
    "check_schema_version",
    "empty_catalog",
    "validate",
    "Provenance",
    "make_provenance",
    "file_checksum",
    "config_hash",
    "utc_now",
    "CATALOG_FORMATS",
    "catalog_format",
    "write_catalog",
    "read_catalog",
    "to_pandas",
    "from_pandas",
    "flag_descriptions",
    "add_sky_coordinates",
    "pixel_to_icrs",
    "CATALOG_FILE",
    "PARTITION_COLUMNS",
    "CatalogFile",
    "partition_value",
    "catalog_path",
    "write_exposure_catalog",
    "list_catalogs",
    "catalog_provenance",
    "parse_filter",
    "open_catalog",
    "crossmatch",
    "crossmatch_exposures",
    "match_summary",
    "EXPORT_FORMATS",
    "export_catalog",
    "write_fits",
    "write_votable",
    "read_export",
    "write_ds9",
    "write_hats",
]

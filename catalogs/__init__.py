"""Detection catalogs: the schema, writers and readers, provenance, sky coordinates.

The schema (:data:`COLUMNS`) is the one source of truth for the catalog's
columns, dtypes, units and descriptions.  :func:`write_catalog` and
:func:`read_catalog` handle Parquet, FITS and ECSV (chosen by the file
extension) with the provenance stored in the file's metadata.
"""

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
]

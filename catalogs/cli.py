"""``moe-imaging catalog ...``: look at and export catalog datasets.

::

    moe-imaging catalog info DATASET [--run R] [--exposure E]
    moe-imaging catalog export DATASET --out PATH [--format fits|votable|ds9|hats]
                               [--columns a,b,...] [--where "kind == 'galaxy' and snr > 20"]
                               [--run R] [--exposure E] [--system image|icrs] [--overwrite]

``moe_cli`` imports this module and calls :func:`register`.
"""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add the ``catalog`` command and its sub-commands to ``moe-imaging``."""
    cat = subparsers.add_parser("catalog", help="look at and export catalog datasets (Parquet, many exposures)")
    sub = cat.add_subparsers(dest="catalog_command", required=True)

    info = sub.add_parser("info", help="list the exposures of a dataset with rows, schema version and provenance")
    info.add_argument("dataset", help="dataset root (run=*/exposure=*/catalog.parquet) or one catalog file")
    info.add_argument("--run", action="append", default=None, help="only this run (repeatable)")
    info.add_argument("--exposure", action="append", default=None, help="only this exposure (repeatable)")
    info.set_defaults(func=_cmd_info)

    ex = sub.add_parser("export", help="export a selection as FITS, VOTable, DS9 regions or HATS")
    ex.add_argument("dataset", help="dataset root (run=*/exposure=*/catalog.parquet) or one catalog file")
    ex.add_argument("--out", required=True, help="output: .fits, .vot/.xml, .reg, or a folder for HATS")
    ex.add_argument("--format", choices=("fits", "votable", "ds9", "hats"), default=None,
                    help="default: from the extension of --out")
    ex.add_argument("--columns", default=None, help="comma-separated columns (default: all)")
    ex.add_argument("--where", default=None, help="row filter, e.g. \"kind == 'galaxy' and snr > 20\"")
    ex.add_argument("--run", action="append", default=None, help="only this run (repeatable)")
    ex.add_argument("--exposure", action="append", default=None, help="only this exposure (repeatable)")
    ex.add_argument("--system", choices=("image", "icrs"), default="image", help="DS9: coordinate system")
    ex.add_argument("--overwrite", action="store_true", help="replace an existing output")
    ex.set_defaults(func=_cmd_export)


def _cmd_info(args: argparse.Namespace) -> int:
    from .dataset import catalog_provenance

    table = catalog_provenance(args.dataset, run=args.run, exposure=args.exposure)
    total = int(table["n_rows"].sum())
    print(f"{args.dataset}: {len(table)} catalog file(s), {total:,} rows")
    for row in table.itertuples(index=False):
        where = f"run={row.run} exposure={row.exposure}" if row.run is not None else str(row.path)
        print(f"  {where}: {row.n_rows:,} rows, schema {row.schema_version}, "
              f"config {row.config_hash or '-'}, model {row.model_version or '-'}, created {row.created or '-'}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from .export import export_catalog, export_format

    fmt = export_format(args.out, args.format)
    columns = [c.strip() for c in args.columns.split(",") if c.strip()] if args.columns else None
    options = {"system": args.system} if fmt == "ds9" else None
    path = export_catalog(args.dataset, args.out, format=fmt, columns=columns, filters=args.where,
                          run=args.run, exposure=args.exposure, overwrite=args.overwrite, options=options)
    print(f"{fmt}: {path}")
    return 0

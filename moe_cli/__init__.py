"""The ``moe-imaging`` command line: one entry point above every package.

Each package adds its own sub-commands with ``register(subparsers)``; this
module composes them with plain imports and runs the chosen one::

    moe-imaging detect IMAGE --out CATALOG        # pipelines
    moe-imaging simulate survey|microscopy ...    # pipelines
    moe-imaging train learned|gate|nucleus-triage # training
    moe-imaging calibrate --labels FILE --out NEW # training
    moe-imaging run / flows ...                   # flows
    moe-imaging review ...                        # review
    moe-imaging catalog ...                       # catalogs

Expected faults (bad input, bad configuration) print one line,
``moe-imaging: error: FILE: cause``, and exit with status 2; no traceback.
"""

from __future__ import annotations

from .main import build_parser, main

__all__ = ["build_parser", "main"]

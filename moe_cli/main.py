"""Build the ``moe-imaging`` parser from every package's sub-commands, and run one."""

from __future__ import annotations

import argparse
import sys

import catalogs.cli
import flows.cli
import pipelines.cli
import review.cli
import training.cli
from contracts import __version__
from contracts.errors import MoeImagingError
from pipelines.runtime import tune_allocator

__all__ = ["COMMAND_MODULES", "build_parser", "main"]

COMMAND_MODULES = (pipelines.cli, training.cli, review.cli, flows.cli, catalogs.cli)
"""The packages' command modules, in the order their sub-commands are listed; each has
``register(subparsers)``, whose parsers ``set_defaults(func=...)`` a function ``(args) -> exit code``."""

_EXIT_ERROR = 2


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for documentation and tests)."""
    parser = argparse.ArgumentParser(
        prog="moe-imaging",
        description="Detect and classify sources in survey and microscopy images.",
    )
    parser.add_argument("--version", action="version", version=f"moe-imaging {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in COMMAND_MODULES:
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``moe-imaging`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    tune_allocator()
    func = getattr(args, "func", None)
    if func is None:
        parser.error(f"unknown command {args.command!r}")
    try:
        return int(func(args))
    except MoeImagingError as exc:
        print(f"moe-imaging: error: {exc}", file=sys.stderr)
        return _EXIT_ERROR
    except KeyboardInterrupt:
        print("moe-imaging: interrupted", file=sys.stderr)
        return 130

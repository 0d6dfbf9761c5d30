"""``moe-imaging run`` and ``moe-imaging flows serve``.

::

    moe-imaging run --input 'DIR/*.fits' --output DIR     # the simple case, no file
    moe-imaging run --config run.toml                     # everything from one file
    moe-imaging flows serve --config run.toml             # the [[schedules]] as cron deployments

With no ``PREFECT_API_URL`` the flow runs on Prefect's temporary local API
(SQLite under ``PREFECT_HOME``, by default the project-local
``.moe-imaging/prefect``); with no Dask address, on a local cluster; the
review queue is an SQLite file in the output folder.  ``run`` ends with the
catalogs' path, the number of items waiting for review and the command that
opens the review app.  Exit status: 0, 1 when some inputs failed (each named
with its reason), 2 when the run could not start (bad configuration,
unreachable scheduler or database).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

__all__ = ["register", "prefect_environment", "preflight", "review_command", "PREFECT_HOME_DEFAULT"]

PREFECT_HOME_DEFAULT = Path(".moe-imaging") / "prefect"
"""Prefect's home (temporary API database, settings) when ``PREFECT_HOME`` is not set: project-local."""


def prefect_environment(*, verbose: bool = False, environ: dict[str, str] | None = None) -> dict[str, str]:
    """Defaults for Prefect's settings, set before Prefect is imported (existing values win).

    * ``PREFECT_HOME``: ``./.moe-imaging/prefect`` unless a server (``PREFECT_API_URL``) or a home is set;
    * ``PREFECT_SERVER_ANALYTICS_ENABLED=false`` (offline machines);
    * ``PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS=90`` (a busy machine needs more than 20 s);
    * console logs at WARNING unless ``verbose`` (the API still gets every log line).

    Returns
    -------
    dict
        The variables that were set.
    """
    env = os.environ if environ is None else environ
    wanted = {
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
    }
    if not env.get("PREFECT_API_URL") and not env.get("PREFECT_HOME"):
        wanted["PREFECT_HOME"] = str(PREFECT_HOME_DEFAULT.resolve())
    if not verbose:
        wanted["PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL"] = "WARNING"
    changed = {k: v for k, v in wanted.items() if not env.get(k)}
    env.update(changed)
    if "PREFECT_HOME" in changed:
        Path(changed["PREFECT_HOME"]).mkdir(parents=True, exist_ok=True)
    return changed


def register(subparsers: Any) -> None:
    """Add ``run`` and ``flows`` to the ``moe-imaging`` command."""
    run = subparsers.add_parser(
        "run", help="run the batch flow: detect on new exposures, write catalogs, fill the review queue",
        description="Run the survey (or microscopy) batch flow once. Without --config: embedded defaults "
                    "(local Dask cluster, temporary Prefect API, SQLite review queue in the output folder).",
    )
    run.add_argument("--config", help="run configuration (TOML): [inputs] [outputs] [detection] [review] [dask] [flow]")
    src = run.add_mutually_exclusive_group()
    src.add_argument("--input", help="input files, a quoted glob: 'DIR/*.fits' (overrides [inputs])")
    src.add_argument("--manifest", help="a file listing the inputs, one path a line or a CSV with a 'path' column")
    run.add_argument("--output", help="output folder of the catalogs (overrides [outputs] folder)")
    run.add_argument("--run", dest="run_name", help="run name: the catalogs' partition (default 'default')")
    run.add_argument("--mode", choices=("survey", "microscopy"), default=None,
                     help="force the mode (default: FITS survey, TIFF/OME-TIFF microscopy)")
    run.add_argument("--dask", dest="dask_address", help="existing Dask scheduler, tcp://HOST:8786 (or MOE_DASK_ADDRESS)")
    run.add_argument("--workers", type=int, default=None, help="local Dask cluster: worker processes")
    run.add_argument("--max-concurrent", type=int, default=None, help="exposures in flight at once")
    run.add_argument("--tile", type=int, default=None, help="tile core size in pixels")
    run.add_argument("--review-url", default=None, help="review queue database URL (default: SQLite in the output folder)")
    run.add_argument("--no-review", action="store_true", help="do not enqueue review items")
    run.add_argument("--quiet", action="store_true", help="no progress bar; only the final lines")
    run.add_argument("--verbose", action="store_true", help="Prefect and Dask logs on the terminal")
    run.set_defaults(func=_cmd_run)

    flows = subparsers.add_parser("flows", help="Prefect deployments of the batch flows")
    fsub = flows.add_subparsers(dest="flows_command", required=True)
    serve = fsub.add_parser("serve", help="serve the configuration's [[schedules]] as cron deployments (blocks)")
    serve.add_argument("--config", required=True, help="run configuration (TOML) with [[schedules]]")
    serve.add_argument("--limit", type=int, default=1, help="flow runs at once (default 1)")
    serve.add_argument("--dry-run", action="store_true", help="list the deployments and their schedules, serve nothing")
    serve.set_defaults(func=_cmd_serve)


def _positive(name: str, value: int | None) -> None:
    from contracts.errors import ConfigError

    if value is not None and value < 1:
        raise ConfigError(f"{name}: must be >= 1, got {value}")


def _run_config(args: argparse.Namespace):
    """The run configuration: the file (or defaults) with the command-line options on top."""
    from contracts.errors import ConfigError

    from .config import RunConfig, load_run_config
    from .errors import FlowError

    for name in ("workers", "max_concurrent", "tile"):
        _positive(f"--{name.replace('_', '-')}", getattr(args, name))
    config = load_run_config(args.config) if args.config else RunConfig()
    cwd = Path.cwd()
    try:
        if args.input is not None:
            config = config.replace(inputs=config.inputs.replace(glob=str(cwd / os.path.expanduser(args.input)), manifest=None))
        if args.manifest is not None:
            config = config.replace(inputs=config.inputs.replace(manifest=str(cwd / os.path.expanduser(args.manifest)), glob=None))
        if args.mode is not None:
            config = config.replace(inputs=config.inputs.replace(mode=args.mode))
        outputs = config.outputs
        if args.output is not None:
            outputs = outputs.replace(folder=str(cwd / os.path.expanduser(args.output)))
        elif not args.config:
            outputs = outputs.replace(folder=str(cwd / outputs.folder))
        if args.run_name is not None:
            outputs = outputs.replace(run=args.run_name)
        config = config.replace(outputs=outputs)
        if args.dask_address is not None:
            config = config.replace(dask=config.dask.replace(address=args.dask_address))
        if args.workers is not None:
            config = config.replace(dask=config.dask.replace(n_workers=args.workers))
        if args.max_concurrent is not None:
            config = config.replace(flow=config.flow.replace(max_concurrent=args.max_concurrent))
        if args.tile is not None:
            detection = config.detection
            config = config.replace(detection=detection.replace(tiling=detection.tiling.replace(tile_size=args.tile)))
        if args.review_url is not None:
            config = config.replace(review=config.review.replace(url=args.review_url))
        if args.no_review:
            config = config.replace(review=config.review.replace(enqueue=False))
    except ConfigError as exc:
        raise ConfigError(f"command line: {exc}") from None
    if not config.inputs.given:
        raise FlowError("moe-imaging run", "no inputs: give --input 'DIR/*.fits' (or --manifest FILE), "
                                           "or a --config file with [inputs] glob or manifest")
    return config


def _choose_flow(config) -> str:
    """``microscopy`` when the inputs say so or every input is a TIFF, else ``survey``."""
    if config.inputs.mode is not None:
        return config.inputs.mode
    from contracts.errors import InputError
    from pipelines.detect import image_mode

    from .batch import discover_inputs

    modes = set()
    for item in discover_inputs(config.inputs):
        try:
            modes.add(image_mode(item.path))
        except InputError:
            continue
    return "microscopy" if modes == {"microscopy"} else "survey"


def _quiet_dask_logs() -> None:
    import logging

    for name in ("distributed", "distributed.scheduler", "distributed.worker", "distributed.nanny"):
        logging.getLogger(name).setLevel(logging.WARNING)


def preflight(config) -> None:
    """Fail fast, before Prefect starts, when the Dask scheduler or the review database cannot be reached.

    Raises
    ------
    FlowError, review.errors.StoreConnectionError
        Naming the address or URL (password hidden) and the cause.
    """
    from .dask import dask_client, scheduler_address

    if scheduler_address(config.dask) is not None:
        with dask_client(config.dask):
            pass
    if config.review.enqueue:
        from .batch import open_review_store

        open_review_store(config).close()


def _cmd_run(args: argparse.Namespace) -> int:
    config = _run_config(args)
    prefect_environment(verbose=args.verbose)
    if not args.verbose:
        _quiet_dask_logs()
    preflight(config)
    which = _choose_flow(config)
    if which == "microscopy":
        from .microscopy import run_microscopy as run
    else:
        from .survey import run_survey as run
    progress = not args.quiet and sys.stderr.isatty()
    summary = run(config, progress=progress)
    _print_summary(summary, config, quiet=args.quiet)
    return 1 if summary.failed else 0


def review_command(config) -> str:
    """The command that opens the review app on the run's queue."""
    import shlex

    from .batch import safe_url

    # the review commands take a URL (sqlite:////abs/file.sqlite); a server's password is not printed
    return f"moe-imaging review serve --db {shlex.quote(safe_url(config.review_url))}"


def _print_summary(summary, config, *, quiet: bool) -> None:
    from .report import summary_path

    failed = summary.failed
    if not quiet:
        kinds = summary.kinds()
        print(f"{summary.flow} run '{summary.run}' ({summary.flow_run_name}): {len(summary.outcomes)} input(s), "
              f"{len(summary.done)} processed, {len(summary.skipped)} skipped (done before), {len(failed)} failed; "
              f"{summary.rows_written} rows ({', '.join(f'{k} {v}' for k, v in kinds.items()) or 'none'}), "
              f"{summary.enqueued} review item(s) enqueued in {summary.wall_s:.1f} s")
        for o in failed:
            print(f"failed: {o.reason if o.reason.startswith(o.input_path) else f'{o.input_path}: {o.reason}'}")
        print(f"summary: {summary_path(summary, summary.output_folder)}")
    elif failed:
        for o in failed:
            print(f"failed: {o.input_path}: {o.reason}", file=sys.stderr)
    print(f"catalogs: {Path(summary.output_folder) / f'run={summary.run}'}")
    if summary.pending_review is not None:
        print(f"waiting for review: {summary.pending_review}")
        print(f"open the review app: {review_command(config)}")
    else:
        print("waiting for review: (review queue off)")


def _cmd_serve(args: argparse.Namespace) -> int:
    from .config import load_run_config
    from .errors import FlowError

    config = load_run_config(args.config)
    if args.limit is not None and args.limit < 1:
        raise FlowError("--limit", f"must be >= 1, got {args.limit}")
    if args.dry_run:
        from .deploy import flow_for

        if not config.schedules:
            raise FlowError(args.config, "no [[schedules]] to serve (each needs name and cron)")
        for s in config.schedules:
            rc = config.for_schedule(s)
            print(f"{flow_for(config, s).name}/{s.name}: cron '{s.cron}' ({s.timezone}), "
                  f"inputs {rc.inputs.describe()}, output {rc.outputs.folder} run={rc.outputs.run}")
        return 0
    prefect_environment(verbose=True)
    if not os.environ.get("PREFECT_API_URL"):
        print("moe-imaging: note: PREFECT_API_URL is not set; serving on a temporary local API "
              "(runs happen, but no UI outlives this process). See README: Prefect server.", file=sys.stderr)
    from .deploy import serve_deployments

    serve_deployments(config, source=args.config, limit=args.limit)
    return 0

"""The batch engine both flows share: discover, skip what is done, process, report.

A run:

1. **discover** the inputs (a glob or a manifest, :func:`discover_inputs`);
2. **plan**: hash every input (SHA-256) and skip those the done-ledger
   already has for this run and science configuration (:func:`plan_inputs`);
3. per exposure, one Prefect task (:func:`process_exposure`, at most
   ``flow.max_concurrent`` at once): ``detect_image`` with its tiles as Dask
   tasks on the run's cluster, the catalog written atomically into the
   dataset, the review rows enqueued, the ledger updated.  A bad input is
   recorded with its reason and the others go on; a transient error (a lost
   worker, an I/O hiccup) is retried with exponential backoff;
4. **report**: the run summary as a Prefect Markdown artifact, files in
   ``<output>/_runs/`` and a ledger row.

No pixels pass through Prefect: a task receives a path and returns an
:class:`~flows.report.ExposureOutcome` (a few numbers); Dask workers read
their own tiles from the file.
"""

from __future__ import annotations

import concurrent.futures
import csv
import dataclasses
import glob as _glob
import hashlib
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from catalogs.dataset import partition_value, write_exposure_catalog
from catalogs.provenance import file_checksum, utc_now
from contracts.errors import ConfigError, InputError, MoeImagingError, PSFError

from .config import InputsConfig, RunConfig
from .errors import FlowError
from .report import ExposureOutcome, RunSummary, publish_artifact, write_summary
from .state import DoneRecord, Ledger

__all__ = [
    "InputItem",
    "PlannedInput",
    "exposure_name",
    "discover_inputs",
    "science_key",
    "plan_inputs",
    "process_exposure",
    "open_review_store",
    "safe_url",
    "run_batch",
    "PERMANENT_ERRORS",
    "is_permanent",
]

PERMANENT_ERRORS: tuple[type[BaseException], ...] = (InputError, PSFError, ConfigError)
"""Faults that another attempt cannot fix (a bad file, a bad option): recorded, never retried."""


def is_permanent(exc: BaseException) -> bool:
    """Whether retrying cannot help: :data:`PERMANENT_ERRORS`, or the review queue refusing a
    catalog (a :class:`review.errors.ReviewError` other than a connection failure)."""
    if isinstance(exc, PERMANENT_ERRORS):
        return True
    try:
        from review.errors import ReviewError, StoreConnectionError
    except ModuleNotFoundError:
        return False
    return isinstance(exc, ReviewError) and not isinstance(exc, StoreConnectionError)

_SUFFIXES = (".ome.tiff", ".ome.tif", ".fits.fz", ".fits.gz", ".fit.gz", ".fits", ".fit", ".fts", ".fz",
             ".tiff", ".tif")


@dataclasses.dataclass(frozen=True)
class InputItem:
    """One input file of a run.

    Attributes
    ----------
    path : str
        Absolute path.
    exposure : str
        Its name in the dataset (the file name without the image suffix).
    plate, well : str or None
        Microscopy plate and well (manifest columns; for a glob the plate is
        the parent folder's name).
    """

    path: str
    exposure: str
    plate: str | None = None
    well: str | None = None


@dataclasses.dataclass(frozen=True)
class PlannedInput:
    """An input to process, with its checksum and mode."""

    item: InputItem
    checksum: str
    mode: str
    config_hash: str


def exposure_name(path: str | os.PathLike) -> str:
    """The exposure's dataset name: the file name without its image suffix, made folder-safe."""
    name = Path(path).name
    lower = name.lower()
    for suffix in _SUFFIXES:
        if lower.endswith(suffix) and len(name) > len(suffix):
            name = name[: -len(suffix)]
            break
    return partition_value(name)


def _manifest_items(path: Path) -> list[tuple[str, str | None, str | None]]:
    """``(path, plate, well)`` rows of a manifest (text: one path a line; CSV: a ``path`` column)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FlowError(str(path), "manifest not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise FlowError(str(path), f"manifest cannot be read: {exc}") from None
    rows: list[tuple[str, str | None, str | None]] = []
    if path.suffix.lower() == ".csv":
        reader = csv.DictReader(line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#"))
        fields = [f.strip().lower() for f in (reader.fieldnames or [])]
        if "path" not in fields:
            raise FlowError(str(path), f"a CSV manifest needs a 'path' column (found {fields})")
        for row in reader:
            row = {str(k).strip().lower(): (v or "").strip() for k, v in row.items() if k is not None}
            if row.get("path"):
                rows.append((row["path"], row.get("plate") or None, row.get("well") or None))
        return rows
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            rows.append((line, None, None))
    return rows


def discover_inputs(inputs: InputsConfig) -> list[InputItem]:
    """The run's input files, sorted by path (glob) or in manifest order.

    A glob that matches nothing gives an empty list (a quiet night);
    files that do not exist in a manifest are kept (they fail with
    "file not found", so the report names them).

    Raises
    ------
    FlowError
        No glob or manifest, or an unreadable manifest.
    """
    if inputs.glob is not None:
        pattern = os.path.expanduser(inputs.glob)
        paths = sorted(p for p in _glob.glob(pattern, recursive=True) if os.path.isfile(p))
        return [
            InputItem(path=str(Path(p).resolve()), exposure=exposure_name(p), plate=Path(p).resolve().parent.name or None)
            for p in paths
        ]
    if inputs.manifest is not None:
        manifest = Path(os.path.expanduser(inputs.manifest))
        out = []
        for value, plate, well in _manifest_items(manifest):
            p = Path(os.path.expanduser(value))
            p = p if p.is_absolute() else manifest.parent / p
            out.append(InputItem(path=str(p.resolve()), exposure=exposure_name(p), plate=plate, well=well))
        return out
    raise FlowError("inputs", "no input given: set [inputs] glob or manifest (or --input 'DIR/*.fits')")


def science_key(config: RunConfig, mode: str) -> str:
    """What makes a catalog differ: the detection configuration's science hash and the mode (16 hex)."""
    blob = f"{config.detection.science_hash()}:{mode}".encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _failure(item: InputItem, reason: str, *, mode: str = "survey") -> ExposureOutcome:
    return ExposureOutcome(exposure=item.exposure, input_path=item.path, status="failed", reason=reason,
                           plate=item.plate, well=item.well, mode=mode, attempts=0)


def plan_inputs(
    items: Sequence[InputItem],
    config: RunConfig,
    ledger: Ledger,
    *,
    mode: str | None,
    threads: int = 4,
) -> tuple[list[PlannedInput], dict[str, ExposureOutcome]]:
    """Hash the inputs and split them into work and settled outcomes.

    Returns
    -------
    todo : list of PlannedInput
        Inputs to process.
    settled : dict of str to ExposureOutcome
        By input path: ``skipped`` (done before for the same checksum, science
        configuration and run, and the catalog is still there) and ``failed``
        (unreadable, unknown type, or an exposure name already taken by
        another input of the run).
    """
    from pipelines.detect import image_mode

    settled: dict[str, ExposureOutcome] = {}
    todo: list[PlannedInput] = []
    seen: dict[str, str] = {}

    def digest(item: InputItem) -> str | MoeImagingError:
        try:
            return file_checksum(item.path)
        except MoeImagingError as exc:
            return exc

    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        digests = list(pool.map(digest, items))
    run = config.outputs.run
    for item, sha in zip(items, digests):
        try:
            item_mode = image_mode(item.path, mode)
        except InputError as exc:
            settled[item.path] = _failure(item, str(exc))
            continue
        if isinstance(sha, MoeImagingError):
            settled[item.path] = _failure(item, str(sha), mode=item_mode)
            continue
        if item.exposure in seen:
            settled[item.path] = _failure(
                item, f"exposure name {item.exposure!r} is already used by {seen[item.exposure]}", mode=item_mode)
            continue
        seen[item.exposure] = item.path
        key = science_key(config, item_mode)
        record = ledger.done(run, sha, key)
        if record is not None:
            settled[item.path] = ExposureOutcome(
                exposure=item.exposure, input_path=item.path, status="skipped",
                reason=f"done by flow run {record.flow_run} at {record.finished_at}", catalog=record.catalog,
                n_rows=record.n_rows, decisions={"review": record.n_review} if record.n_review else {},
                plate=item.plate, well=item.well, mode=item_mode, attempts=0,
            )
            continue
        todo.append(PlannedInput(item=item, checksum=sha, mode=item_mode, config_hash=key))
    return todo, settled


def safe_url(url: str) -> str:
    """A database URL with its password hidden."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a SQLAlchemy URL: show it as given
        return url


class _Queue:
    """The review store of a run, shared by the exposure tasks (the store is thread-safe:
    one pooled connection per transaction, SQLite writes serialised by its lock)."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def enqueue(self, *args: Any, **kwargs: Any) -> Any:
        return self.store.enqueue(*args, **kwargs)

    def pending_count(self) -> int:
        return int(self.store.pending_count())

    def close(self) -> None:
        close = getattr(self.store, "close", None)
        if close is not None:
            close()


def open_review_store(config: RunConfig) -> Any:
    """Open the run's review queue (:class:`review.store.ReviewStore`; migrations run on open).

    Raises
    ------
    FlowError
        When the review package is not installed.
    review.errors.ReviewError
        When the database cannot be reached (the URL, password hidden, and the cause).
    """
    try:
        from review.store import ReviewStore
    except ModuleNotFoundError as exc:
        raise FlowError("review", f"the review queue is not available ({exc}); set [review] enqueue = false") from None
    return ReviewStore(config.review_url)


def process_exposure(
    planned: PlannedInput,
    config: RunConfig,
    *,
    client: Any,
    queue: _Queue | None,
    ledger: Ledger,
    flow_run: str,
    attempt: int = 1,
) -> ExposureOutcome:
    """Detect, write the catalog, enqueue review rows and record one exposure (the task's body).

    Raises whatever ``detect_image``, the writer or the store raise; the
    caller decides what is permanent (:data:`PERMANENT_ERRORS`).
    """
    from pipelines.detect import detect_image

    item = planned.item
    t0 = time.perf_counter()
    result = detect_image(item.path, config=config.detection, client=client, mode=planned.mode,
                          checksum=False, progress=False)
    t1 = time.perf_counter()
    run = config.outputs.run
    provenance = dataclasses.replace(
        result.provenance,
        input_checksum=planned.checksum,
        extra={**result.provenance.extra, "run": run, "exposure": item.exposure, "flow_run": flow_run,
               "flow_config_hash": planned.config_hash},
    )
    catalog = result.catalog
    catalog.meta["provenance"] = provenance.to_dict()
    path = write_exposure_catalog(catalog, config.outputs.folder, run=run, exposure=item.exposure,
                                  provenance=provenance)
    t2 = time.perf_counter()
    decisions = Counter(str(d) for d in catalog["decision"] if str(d)) if "decision" in catalog.colnames else Counter()
    kinds = Counter(str(k) for k in catalog["kind"])
    added = existing = 0
    notes: list[str] = []
    queued = catalog
    ids = np.asarray(catalog["source_id"])
    _, first = np.unique(ids, return_index=True)
    if len(first) < len(ids):
        # the queue's key is (catalog, source_id): a repeated id would be refused for the whole catalog
        keep = np.zeros(len(ids), dtype=bool)
        keep[first] = True
        queued = catalog[keep]
        notes.append(f"{len(ids) - len(first)} catalog row(s) repeat another row's source_id (two detections "
                     f"with the same peak pixel); only the first row of each id went to the review queue")
    if queue is not None and decisions.get("review", 0) > 0:
        exposure = result.exposure
        image = None
        if config.review.cutouts:
            ny, nx = exposure.shape
            image = np.asarray(exposure.read(0, ny, 0, nx).data)
        optics = getattr(exposure, "optics", None)
        pixel_scale = optics.pixel_size_um if optics is not None else exposure.meta.pixscale
        outcome = queue.enqueue(
            queued, exposure=item.exposure,
            catalog_id=f"{run}/{item.exposure}@{planned.checksum[:12]}.{planned.config_hash[:8]}",
            image=image, wcs=getattr(exposure, "wcs", None), mode=planned.mode, pixel_scale=pixel_scale,
        )
        added, existing = int(outcome.added), int(outcome.existing)
    t3 = time.perf_counter()
    ledger.record_done(DoneRecord(
        run=run, input_checksum=planned.checksum, config_hash=planned.config_hash, exposure=item.exposure,
        input_path=item.path, catalog=str(path), n_rows=len(catalog), n_review=int(decisions.get("review", 0)),
        flow_run=flow_run, finished_at=utc_now(),
    ))
    return ExposureOutcome(
        exposure=item.exposure, input_path=item.path, status="done", catalog=str(path), n_rows=len(catalog),
        kinds=dict(sorted(kinds.items())), decisions=dict(sorted(decisions.items())), enqueued=added,
        already_queued=existing,
        timings={"detect": t1 - t0, "write": t2 - t1, "enqueue": t3 - t2, "total": time.perf_counter() - t0},
        plate=item.plate, well=item.well, mode=planned.mode, n_tiles=int(result.provenance.n_tiles or 0),
        attempts=attempt, notes=tuple(notes),
    )


def _describe_dask(config: RunConfig) -> str:
    from .dask import scheduler_address

    address = scheduler_address(config.dask)
    if address:
        return address
    d = config.dask
    return (f"local({d.n_workers or os.cpu_count()} worker(s) x {d.threads_per_worker} thread(s), "
            f"{'processes' if d.processes else 'threads'})")


def run_batch(
    config: RunConfig,
    *,
    flow_name: str,
    mode: str | None,
    submit: Callable[..., Any],
    progress: bool = False,
    logger: Any = None,
) -> RunSummary:
    """Run a batch inside a flow (the body of both flows).

    Parameters
    ----------
    config : RunConfig
        The run.
    flow_name : str
        ``survey-batch`` or ``microscopy-batch`` (for the report).
    mode : str or None
        Forced mode, else from the configuration / the file names.
    submit : callable
        ``submit(planned, queue=..., ledger=..., client=..., flow_run=...)``
        returning a Prefect future of an :class:`ExposureOutcome` (the
        flow's exposure task; see :mod:`flows.survey`).
    progress : bool
        A progress bar over exposures on stderr.
    logger : logging.Logger, optional
        The flow-run logger.
    """
    from prefect.futures import as_completed
    from prefect.runtime import flow_run as runtime_flow_run

    from .dask import dask_client

    started, t0 = utc_now(), time.perf_counter()
    flow_run = str(runtime_flow_run.id or "local")
    flow_run_name = str(runtime_flow_run.name or flow_run)
    folder = config.output_folder
    folder.mkdir(parents=True, exist_ok=True)
    ledger = Ledger(folder)
    items = discover_inputs(config.inputs)
    if logger is not None:
        logger.info("%d input(s) from %s", len(items), config.inputs.describe())
        if not items:
            logger.warning("no input file matches %s", config.inputs.describe())
    todo, settled = plan_inputs(items, config, ledger, mode=mode)
    plan_s = time.perf_counter() - t0
    if logger is not None:
        logger.info("%d to process, %d done before, %d failed before processing",
                    len(todo), sum(o.status == "skipped" for o in settled.values()),
                    sum(o.status == "failed" for o in settled.values()))
    queue = None
    if config.review.enqueue and todo:
        queue = _Queue(open_review_store(config))
    results: dict[str, ExposureOutcome] = {}
    try:
        if todo:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(todo), unit="exposure", desc=config.outputs.run, disable=not progress, leave=True)
            with dask_client(config.dask) as client:
                waiting = list(todo)
                pending: dict[Any, PlannedInput] = {}
                while waiting or pending:
                    while waiting and len(pending) < config.flow.max_concurrent:
                        planned = waiting.pop(0)
                        future = submit(planned, queue=queue, ledger=ledger, client=client, flow_run=flow_run)
                        pending[future] = planned
                    done = next(iter(as_completed(list(pending))))
                    planned = pending.pop(done)
                    outcome = _outcome(done, planned, attempts=config.flow.retries + 1)
                    if outcome.status == "failed":
                        ledger.record_failure(config.outputs.run, planned.item.path, planned.checksum,
                                              planned.config_hash, outcome.reason, flow_run)
                        if logger is not None:
                            logger.warning("%s failed: %s", planned.item.exposure, outcome.reason)
                    elif logger is not None:
                        for note in outcome.notes:
                            logger.warning("%s: %s", outcome.exposure, note)
                        logger.info("%s: %d rows (%s), %d to review, %d enqueued, %.1f s", outcome.exposure,
                                    outcome.n_rows, ", ".join(f"{k} {v}" for k, v in outcome.kinds.items()) or "none",
                                    outcome.n_review, outcome.enqueued, outcome.timings.get("total", 0.0))
                    results[planned.item.path] = outcome
                    bar.update(1)
                    bar.set_postfix(failed=sum(o.status == "failed" for o in results.values()), refresh=False)
            bar.close()
    except BaseException:
        if queue is not None:
            queue.close()
        raise
    for path, outcome in settled.items():
        if outcome.status == "failed":
            ledger.record_failure(config.outputs.run, path, "", science_key(config, outcome.mode),
                                  outcome.reason, flow_run)
    outcomes = tuple(results.get(i.path) or settled[i.path] for i in items)
    pending_review = None
    if config.review.enqueue:
        if queue is None:
            try:
                queue = _Queue(open_review_store(config))
            except MoeImagingError as exc:  # nothing was enqueued; the count is a courtesy
                if logger is not None:
                    logger.warning("review queue: %s", exc)
        if queue is not None:
            pending_review = queue.pending_count()
            queue.close()
    summary = RunSummary(
        run=config.outputs.run, flow=flow_name, flow_run=flow_run, flow_run_name=flow_run_name,
        inputs=config.inputs.describe(), output_folder=str(folder), review_url=safe_url(config.review_url)
        if config.review.enqueue else "(off)", dask=_describe_dask(config), started_at=started,
        finished_at=utc_now(), wall_s=time.perf_counter() - t0, plan_s=plan_s, outcomes=outcomes,
        pending_review=pending_review,
    )
    write_summary(summary, folder)
    ledger.record_run(flow_run, summary.run, summary.started_at, summary.finished_at, summary.to_dict())
    publish_artifact(summary)
    return summary


def _outcome(future: Any, planned: PlannedInput, *, attempts: int) -> ExposureOutcome:
    """The outcome of a finished exposure task (a failed state becomes a failed outcome with its reason)."""
    future.wait()  # keeps the final state (with its data) on the future
    state = future.state
    value = state.result(raise_on_failure=False) if state.is_final() else None
    if state.is_completed() and isinstance(value, ExposureOutcome):
        return value
    item = planned.item
    if isinstance(value, ExposureOutcome):  # a permanent failure returned as a Failed state
        return value
    if isinstance(value, BaseException):
        reason = str(value) if isinstance(value, MoeImagingError) else f"{type(value).__name__}: {value}"
    else:
        reason = state.message or f"task ended in state {state.type.value}"
    return ExposureOutcome(exposure=item.exposure, input_path=item.path, status="failed", reason=reason,
                           plate=item.plate, well=item.well, mode=planned.mode, attempts=attempts)

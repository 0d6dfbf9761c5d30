"""The batch run's configuration: one TOML file, validated into frozen objects.

Example ``run.toml`` (every section and key optional; unknown keys are errors
naming the key; relative paths are relative to the file's folder)::

    [inputs]
    glob = "/data/night/*.fits"     # or: manifest = "tonight.txt" (one path a line, or a CSV with a 'path' column)
    mode = "survey"                 # "survey" or "microscopy"; default: from the file names

    [outputs]
    folder = "/data/catalogs"       # Parquet dataset ROOT/run=<run>/exposure=<stem>/catalog.parquet
    run = "nightly"

    [detection]                     # the detection configuration (pipelines.config), embedded
    experts = ["point", "extended", "artifact", "streak", "learned"]
    [detection.gate]
    enabled = true
    alpha = 0.01                    # the risk level: largest error rate among automatic decisions
    [detection.tiling]
    tile_size = 2048

    [review]
    url = "postgresql+psycopg://moe@db/review"   # default: sqlite file <outputs.folder>/_review.sqlite
    enqueue = true
    cutouts = true

    [dask]
    address = "tcp://scheduler:8786"  # default: $MOE_DASK_ADDRESS, else a local cluster
    n_workers = 4                   # local cluster only
    threads_per_worker = 1
    processes = true
    timeout = 30.0                  # seconds to wait for the scheduler

    [flow]
    max_concurrent = 2              # exposures in flight at once
    retries = 2                     # transient errors only; bad files fail at once
    retry_delay = 10.0              # seconds, doubled at every retry

    [[schedules]]
    name = "nightly"
    cron = "0 7 * * *"
    timezone = "UTC"
    inputs = { glob = "/data/night/*.fits" }

The flows' detection defaults differ from ``moe-imaging detect``'s: every
survey expert runs and the gate is on (:data:`FLOW_DETECTION_DEFAULTS`), so
the review queue gets the detections the gate cannot decide; a
``[detection]`` section is applied on top of these defaults.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self

from contracts.config import Config, check_choice, check_int, check_range
from contracts.errors import ConfigError
from contracts.vocabulary import SURVEY_EXPERTS
from pipelines.config import DetectionConfig

__all__ = [
    "FLOW_DETECTION_DEFAULTS",
    "REVIEW_FILE",
    "InputsConfig",
    "OutputsConfig",
    "QueueConfig",
    "DaskConfig",
    "FlowOptions",
    "ScheduleConfig",
    "RunConfig",
    "load_run_config",
    "detection_from_mapping",
    "validate_cron",
]

FLOW_DETECTION_DEFAULTS: dict[str, Any] = {
    "experts": list(SURVEY_EXPERTS),
    "gate": {"enabled": True},
}
"""What the flows run when ``[detection]`` says nothing: every survey expert (the
set the gate was trained on) and the gate, whose undecided rows go to review."""

REVIEW_FILE = "_review.sqlite"
"""The default review queue, in the output folder (the ``_`` keeps it out of the Parquet dataset)."""

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


def _string(name: str, value: object, *, allow_none: bool = False, empty: bool = False) -> None:
    if value is None and allow_none:
        return
    if not isinstance(value, str) or (not empty and not value.strip()):
        raise ConfigError(f"{name}: expected a non-empty string, got {value!r}")


def _boolean(name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"{name}: expected true or false, got {value!r}")


def _identifier(name: str, value: object) -> None:
    _string(name, value)
    if not _NAME.match(str(value)):
        raise ConfigError(
            f"{name}: {value!r} may hold only letters, digits and . _ + - (it names a folder)"
        )


# ---------------------------------------------------------------------------
# cron
# ---------------------------------------------------------------------------

_CRON_FIELDS = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, {m: i + 1 for i, m in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"))}),
    ("day of week", 0, 7, {d: i for i, d in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}),
)
_CRON_ALIASES = {
    "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *",
}


def validate_cron(name: str, value: object) -> str:
    """Check a five-field cron expression (``@daily`` and friends allowed); return it.

    Raises
    ------
    ConfigError
        Naming ``name`` and the field that is wrong.
    """
    _string(name, value)
    text = " ".join(str(value).split())
    expr = _CRON_ALIASES.get(text.lower(), text)
    parts = expr.split(" ")
    if len(parts) != 5:
        raise ConfigError(f"{name}: {value!r} is not a cron expression (five fields: minute hour day month weekday)")

    def number(token: str, low: int, high: int, names: dict[str, int], field: str) -> int:
        key = token.lower()
        if key in names:
            return names[key]
        if not token.isdigit():
            raise ConfigError(f"{name}: {value!r}: {field} {token!r} is not a number")
        n = int(token)
        if not low <= n <= high:
            raise ConfigError(f"{name}: {value!r}: {field} {n} is outside {low}-{high}")
        return n

    for part, (field, low, high, names) in zip(parts, _CRON_FIELDS):
        for item in part.split(","):
            base, _, step = item.partition("/")
            if step and (not step.isdigit() or int(step) == 0):
                raise ConfigError(f"{name}: {value!r}: {field} step {step!r} is not a positive number")
            if base == "*":
                continue
            lo, dash, hi = base.partition("-")
            a = number(lo, low, high, names, field)
            if dash:
                b = number(hi, low, high, names, field)
                if b < a:
                    raise ConfigError(f"{name}: {value!r}: {field} range {base!r} runs backwards")
    return expr


# ---------------------------------------------------------------------------
# sections
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class InputsConfig(Config):
    """Where the exposures come from.

    Attributes
    ----------
    glob : str or None
        A file pattern (``*``, ``?``, ``[...]``, ``**`` for sub-folders).
    manifest : str or None
        A text file with one input path a line (``#`` comments), or a CSV file
        with a ``path`` column and optional ``plate``/``well`` columns
        (microscopy plates).  Relative paths are relative to the manifest.
    mode : str or None
        ``"survey"`` or ``"microscopy"``; ``None``: from the file names (FITS
        survey, TIFF/OME-TIFF microscopy).
    """

    glob: str | None = None
    manifest: str | None = None
    mode: str | None = None

    def __post_init__(self) -> None:
        _string("inputs.glob", self.glob, allow_none=True)
        _string("inputs.manifest", self.manifest, allow_none=True)
        if self.glob is not None and self.manifest is not None:
            raise ConfigError("inputs: give glob or manifest, not both")
        if self.mode is not None:
            check_choice("inputs.mode", self.mode, ("survey", "microscopy"))

    @property
    def given(self) -> bool:
        """Whether a glob or a manifest is set."""
        return self.glob is not None or self.manifest is not None

    def describe(self) -> str:
        """The glob or ``manifest:<path>`` (for messages and reports)."""
        if self.glob is not None:
            return self.glob
        if self.manifest is not None:
            return f"manifest:{self.manifest}"
        return "(no inputs)"


@dataclasses.dataclass(frozen=True)
class OutputsConfig(Config):
    """Where the catalogs go.

    Attributes
    ----------
    folder : str
        Root of the Parquet dataset (``ROOT/run=<run>/exposure=<stem>/catalog.parquet``);
        the done-ledger, the run summaries and (by default) the review queue's
        SQLite file live there too.
    run : str
        Names the batch (a partition of the dataset), e.g. ``nightly``.
    """

    folder: str = "moe-imaging-out"
    run: str = "default"

    def __post_init__(self) -> None:
        _string("outputs.folder", self.folder)
        _identifier("outputs.run", self.run)


@dataclasses.dataclass(frozen=True)
class QueueConfig(Config):
    """The review queue (``[review]``).

    Attributes
    ----------
    url : str or None
        SQLAlchemy URL of the queue; ``None``: an SQLite file
        ``<outputs.folder>/_review.sqlite``.  A team uses
        ``postgresql+psycopg://user@host/db``.
    enqueue : bool
        Put the rows the gate routes to review (``decision == "review"``) into the queue.
    cutouts : bool
        Cut and render image stamps of the queued rows at enqueue time.
    """

    url: str | None = None
    enqueue: bool = True
    cutouts: bool = True

    def __post_init__(self) -> None:
        _string("review.url", self.url, allow_none=True)
        _boolean("review.enqueue", self.enqueue)
        _boolean("review.cutouts", self.cutouts)


@dataclasses.dataclass(frozen=True)
class DaskConfig(Config):
    """The Dask cluster the tiles run on.

    Attributes
    ----------
    address : str or None
        An existing scheduler (``tcp://host:8786``); ``None``: the
        ``MOE_DASK_ADDRESS`` environment variable, else a local cluster.
    n_workers : int or None
        Local cluster only: worker processes (``None``: one per core).
    threads_per_worker : int
        Local cluster only.
    processes : bool
        Local cluster only: worker processes (true parallelism) or threads in
        this process (cheaper to start; the science releases the GIL only in part).
    timeout : float
        Seconds to wait for an existing scheduler before the run fails.
    """

    address: str | None = None
    n_workers: int | None = None
    threads_per_worker: int = 1
    processes: bool = True
    timeout: float = 30.0

    def __post_init__(self) -> None:
        _string("dask.address", self.address, allow_none=True)
        check_int("dask.n_workers", self.n_workers, allow_none=True)
        check_range("dask.n_workers", self.n_workers, low=1, high=4096, allow_none=True)
        check_int("dask.threads_per_worker", self.threads_per_worker)
        check_range("dask.threads_per_worker", self.threads_per_worker, low=1, high=1024)
        _boolean("dask.processes", self.processes)
        check_range("dask.timeout", self.timeout, low=0.1, high=3600.0)


@dataclasses.dataclass(frozen=True)
class FlowOptions(Config):
    """How the flow schedules exposures (``[flow]``).

    Attributes
    ----------
    max_concurrent : int
        Exposures in flight at once (Prefect tasks on a thread pool); their
        tiles share the Dask cluster.
    retries : int
        Retries of an exposure after a transient error (a lost worker, an I/O
        hiccup); a bad input file is recorded at once, never retried.
    retry_delay : float
        Seconds before the first retry; doubled at each further one.
    """

    max_concurrent: int = 2
    retries: int = 2
    retry_delay: float = 10.0

    def __post_init__(self) -> None:
        check_int("flow.max_concurrent", self.max_concurrent)
        check_range("flow.max_concurrent", self.max_concurrent, low=1, high=1024)
        check_int("flow.retries", self.retries)
        check_range("flow.retries", self.retries, low=0, high=50)
        check_range("flow.retry_delay", self.retry_delay, low=0.0, high=86400.0)


@dataclasses.dataclass(frozen=True)
class ScheduleConfig(Config):
    """One scheduled deployment (``[[schedules]]``).

    Attributes
    ----------
    name : str
        The deployment's name.
    cron : str
        Five-field cron expression (or ``@daily``, ``@hourly``, ...).
    timezone : str
        IANA time zone of the cron expression.
    inputs : InputsConfig or None
        Inputs of this schedule (else the file's ``[inputs]``).
    run : str or None
        Run name of this schedule's catalogs (else ``outputs.run``).
    """

    name: str = ""
    cron: str = ""
    timezone: str = "UTC"
    inputs: InputsConfig | None = None
    run: str | None = None

    def __post_init__(self) -> None:
        _identifier("schedules.name", self.name)
        object.__setattr__(self, "cron", validate_cron(f"schedules[{self.name}].cron", self.cron))
        _string("schedules.timezone", self.timezone)
        try:
            import zoneinfo

            zoneinfo.ZoneInfo(self.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ConfigError(f"schedules[{self.name}].timezone: unknown time zone {self.timezone!r}") from None
        if self.inputs is not None and not isinstance(self.inputs, InputsConfig):
            raise ConfigError(f"schedules[{self.name}].inputs: expected a table of inputs")
        if self.run is not None:
            _identifier(f"schedules[{self.name}].run", self.run)


_SECTIONS: dict[str, type[Config]] = {
    "inputs": InputsConfig,
    "outputs": OutputsConfig,
    "review": QueueConfig,
    "dask": DaskConfig,
    "flow": FlowOptions,
}


@dataclasses.dataclass(frozen=True)
class RunConfig(Config):
    """Everything a batch run needs, one section per concern (see module docs)."""

    inputs: InputsConfig = InputsConfig()
    outputs: OutputsConfig = OutputsConfig()
    detection: DetectionConfig = dataclasses.field(default_factory=lambda: detection_from_mapping(None))
    review: QueueConfig = QueueConfig()
    dask: DaskConfig = DaskConfig()
    flow: FlowOptions = FlowOptions()
    schedules: tuple[ScheduleConfig, ...] = ()

    def __post_init__(self) -> None:
        names = [s.name for s in self.schedules]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ConfigError(f"schedules: names must be unique, {dupes} repeated")

    # -- mapping round trip (flow parameters are plain JSON) -----------------

    def to_mapping(self) -> dict[str, Any]:
        """The configuration as the plain nested mapping a TOML file would give.

        ``RunConfig.from_file_mapping(config.to_mapping())`` gives the same
        configuration; this is what a Prefect deployment stores as its parameters
        (JSON: unset values are ``None``, which a TOML file cannot write but
        :meth:`from_file_mapping` accepts).
        """
        out: dict[str, Any] = {name: _jsonable(dataclasses.asdict(getattr(self, name))) for name in _SECTIONS}
        out["detection"] = _jsonable(self.detection.to_dict())
        out["schedules"] = [_jsonable(dataclasses.asdict(s)) for s in self.schedules]
        return out

    @classmethod
    def from_file_mapping(
        cls, mapping: Mapping[str, Any] | None, *, source: str = "configuration", base: str | os.PathLike | None = None
    ) -> Self:
        """Validate a parsed TOML mapping (see :func:`load_run_config`).

        Parameters
        ----------
        mapping : mapping or None
            Sections ``inputs``, ``outputs``, ``detection``, ``review``,
            ``dask``, ``flow``, ``schedules``.
        source : str
            Names the file (or origin) in error messages.
        base : path-like, optional
            Folder that relative paths are resolved against (``None``: left as given).

        Raises
        ------
        ConfigError
            ``<source>: [section] unknown key 'name'``, or the invalid value with its key.
        """
        data = dict(mapping or {})
        known = [*_SECTIONS, "detection", "schedules"]
        unknown = [k for k in data if k not in known]
        if unknown:
            raise ConfigError(f"{source}: unknown section [{unknown[0]}] (known: {', '.join(known)})")
        kwargs: dict[str, Any] = {}
        try:
            for name, klass in _SECTIONS.items():
                if name in data:
                    kwargs[name] = _section(klass, data[name], name)
            if "detection" in data:
                kwargs["detection"] = detection_from_mapping(_table(data["detection"], "detection"))
            if "schedules" in data:
                kwargs["schedules"] = tuple(_schedule(s, i) for i, s in enumerate(_list(data["schedules"], "schedules")))
            config = cls(**kwargs)
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None
        if base is not None:
            config = config.resolved(base)
        return config

    def resolved(self, base: str | os.PathLike) -> Self:
        """Relative input/output paths made absolute against ``base`` (URLs and addresses untouched)."""
        base = Path(base)

        def fix_inputs(inputs: InputsConfig | None) -> InputsConfig | None:
            if inputs is None:
                return None
            return inputs.replace(
                glob=None if inputs.glob is None else str(_absolute(base, inputs.glob)),
                manifest=None if inputs.manifest is None else str(_absolute(base, inputs.manifest)),
            )

        return self.replace(
            inputs=fix_inputs(self.inputs),
            outputs=self.outputs.replace(folder=str(_absolute(base, self.outputs.folder))),
            schedules=tuple(s.replace(inputs=fix_inputs(s.inputs)) for s in self.schedules),
        )

    # -- derived values ------------------------------------------------------

    @property
    def output_folder(self) -> Path:
        """The output folder as a path."""
        return Path(self.outputs.folder)

    @property
    def review_url(self) -> str:
        """The queue's SQLAlchemy URL (default: SQLite in the output folder)."""
        if self.review.url:
            return self.review.url
        return f"sqlite:///{self.review_path}"

    @property
    def review_path(self) -> Path | None:
        """The queue's SQLite file when it is one (default ``<outputs.folder>/_review.sqlite``), else ``None``."""
        if self.review.url:
            if self.review.url.startswith("sqlite:///"):
                return Path(self.review.url[len("sqlite:///"):])
            return None
        return (self.output_folder / REVIEW_FILE).resolve()

    def for_schedule(self, schedule: ScheduleConfig) -> Self:
        """This configuration with a schedule's inputs and run name applied (schedules dropped)."""
        return self.replace(
            inputs=schedule.inputs if schedule.inputs is not None else self.inputs,
            outputs=self.outputs.replace(run=schedule.run or self.outputs.run),
            schedules=(),
        )


def _absolute(base: Path, value: str) -> Path:
    path = Path(os.path.expanduser(value))
    return path if path.is_absolute() else base / path


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _table(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"[{where}] expected a table of keys, got {value!r}")
    return dict(value)


def _list(value: object, where: str) -> list[Any]:
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"[[{where}]] expected a list of tables, got {value!r}")
    return list(value)


def _section(klass: type[Config], value: object, where: str) -> Config:
    data = _table(value, where)
    fields = [f.name for f in dataclasses.fields(klass)]
    for key in data:
        if key not in fields:
            raise ConfigError(f"[{where}] unknown key {key!r} (known: {', '.join(fields)})")
    try:
        return klass(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items()})
    except TypeError as exc:  # pragma: no cover - keys are checked above
        raise ConfigError(f"[{where}] {exc}") from None


def _schedule(value: object, index: int) -> ScheduleConfig:
    data = _table(value, f"schedules[{index}]")
    fields = [f.name for f in dataclasses.fields(ScheduleConfig)]
    for key in data:
        if key not in fields:
            raise ConfigError(f"[[schedules]] #{index + 1} unknown key {key!r} (known: {', '.join(fields)})")
    for required in ("name", "cron"):
        if required not in data:
            raise ConfigError(f"[[schedules]] #{index + 1}: {required!r} is required")
    if data.get("inputs") is not None:
        data["inputs"] = _section(InputsConfig, data["inputs"], f"schedules.{data['name']}.inputs")
    return ScheduleConfig(**data)


def _merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def detection_from_mapping(mapping: Mapping[str, Any] | None) -> DetectionConfig:
    """The ``[detection]`` section on top of :data:`FLOW_DETECTION_DEFAULTS`.

    Parsed by :meth:`pipelines.config.DetectionConfig.from_mapping` (the same
    keys as a ``moe-imaging detect --config`` file), errors prefixed ``[detection...]``.
    """
    merged = _merge(FLOW_DETECTION_DEFAULTS, dict(mapping or {}))
    try:
        return DetectionConfig.from_mapping(merged, _path="detection")
    except ConfigError as exc:
        text = str(exc)
        raise ConfigError(text if text.startswith("[detection") else f"[detection] {text}") from None


def load_run_config(path: str | os.PathLike | None) -> RunConfig:
    """Read and validate a run configuration (TOML); ``None`` gives the defaults.

    Relative paths in the file are relative to the file's folder.

    Raises
    ------
    ConfigError
        ``run.toml: [dask] unknown key 'adress' (known: ...)``, an invalid value
        with its key, a missing file or a TOML syntax error.
    """
    if path is None:
        return RunConfig()
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: configuration file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder, not a configuration file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    return RunConfig.from_file_mapping(data, source=str(path), base=path.resolve().parent)

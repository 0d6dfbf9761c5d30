"""The done-ledger: which inputs a run has already turned into catalogs.

An input is done for a run when a catalog was written for the same input
bytes (SHA-256) and the same science configuration (hash of the detection
configuration, tiling excluded, and the mode), and that catalog is still on
disk.  The ledger is a small SQLite file in the output folder
(``<folder>/.moe-imaging/ledger.sqlite``), next to the catalogs it
describes, not in Prefect: moving or copying the output folder keeps it, and
a run with a different Prefect server still skips what is done.  Every write
is one SQLite transaction (atomic); several flows may share a folder.

Failures are kept too (the last reason per input), for the report; a failed
input is tried again on the next run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from catalogs.provenance import utc_now

__all__ = ["LEDGER_FILE", "DoneRecord", "Ledger"]

LEDGER_FILE = Path(".moe-imaging") / "ledger.sqlite"
"""Where the ledger lives, relative to the output folder."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS done (
    run TEXT NOT NULL,
    input_checksum TEXT NOT NULL,
    config_hash TEXT NOT NULL,
    exposure TEXT NOT NULL,
    input_path TEXT NOT NULL,
    catalog TEXT NOT NULL,
    n_rows INTEGER NOT NULL,
    n_review INTEGER NOT NULL,
    flow_run TEXT NOT NULL,
    finished_at TEXT NOT NULL,
    PRIMARY KEY (run, input_checksum, config_hash)
);
CREATE TABLE IF NOT EXISTS failures (
    run TEXT NOT NULL,
    input_path TEXT NOT NULL,
    input_checksum TEXT NOT NULL,
    config_hash TEXT NOT NULL,
    reason TEXT NOT NULL,
    flow_run TEXT NOT NULL,
    failed_at TEXT NOT NULL,
    PRIMARY KEY (run, input_path, config_hash)
);
CREATE TABLE IF NOT EXISTS runs (
    flow_run TEXT PRIMARY KEY,
    run TEXT NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT NOT NULL,
    summary TEXT NOT NULL
);
"""


@dataclasses.dataclass(frozen=True)
class DoneRecord:
    """One input turned into a catalog.

    Attributes
    ----------
    run : str
        The run name (dataset partition).
    input_checksum : str
        SHA-256 of the input file.
    config_hash : str
        Hash of the science configuration and mode.
    exposure : str
        The exposure's name in the dataset (the file stem).
    input_path : str
        The input file when it was processed.
    catalog : str
        The catalog file written.
    n_rows : int
        Catalog rows.
    n_review : int
        Rows routed to review (``decision == "review"``).
    flow_run : str
        The Prefect flow run that made it.
    finished_at : str
        ISO 8601 UTC time.
    """

    run: str
    input_checksum: str
    config_hash: str
    exposure: str
    input_path: str
    catalog: str
    n_rows: int
    n_review: int
    flow_run: str
    finished_at: str


class Ledger:
    """The done-ledger of an output folder (see module docs).

    Parameters
    ----------
    folder : path-like
        The output folder; the ledger file is created under it.
    """

    def __init__(self, folder: str | Path) -> None:
        self.path = Path(folder) / LEDGER_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.executescript(_SCHEMA)

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=60.0, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA busy_timeout=60000")
            yield db
        finally:
            db.close()

    def done(self, run: str, input_checksum: str, config_hash: str) -> DoneRecord | None:
        """The record of a finished input whose catalog still exists, else ``None``."""
        with self._connect() as db:
            row = db.execute(
                "SELECT run, input_checksum, config_hash, exposure, input_path, catalog, n_rows, n_review,"
                " flow_run, finished_at FROM done WHERE run=? AND input_checksum=? AND config_hash=?",
                (run, input_checksum, config_hash),
            ).fetchone()
        if row is None:
            return None
        record = DoneRecord(*row)
        return record if Path(record.catalog).is_file() else None

    def record_done(self, record: DoneRecord) -> None:
        """Mark an input done (replaces an older record of the same key; clears its failure)."""
        values = dataclasses.astuple(record)
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT OR REPLACE INTO done VALUES (?,?,?,?,?,?,?,?,?,?)", values)
            db.execute(
                "DELETE FROM failures WHERE run=? AND input_path=? AND config_hash=?",
                (record.run, record.input_path, record.config_hash),
            )
            db.execute("COMMIT")

    def record_failure(
        self, run: str, input_path: str, input_checksum: str, config_hash: str, reason: str, flow_run: str
    ) -> None:
        """Keep the latest failure of an input (it is tried again next run)."""
        with self._connect() as db:
            db.execute(
                "INSERT OR REPLACE INTO failures VALUES (?,?,?,?,?,?,?)",
                (run, input_path, input_checksum, config_hash, reason, flow_run, utc_now()),
            )

    def failures(self, run: str | None = None) -> list[dict[str, Any]]:
        """Inputs whose last attempt failed (``input_path``, ``reason``, ``failed_at``, ...)."""
        query = "SELECT run, input_path, input_checksum, config_hash, reason, flow_run, failed_at FROM failures"
        args: tuple[Any, ...] = ()
        if run is not None:
            query += " WHERE run=?"
            args = (run,)
        with self._connect() as db:
            rows = db.execute(query + " ORDER BY input_path", args).fetchall()
        keys = ("run", "input_path", "input_checksum", "config_hash", "reason", "flow_run", "failed_at")
        return [dict(zip(keys, r)) for r in rows]

    def records(self, run: str | None = None) -> list[DoneRecord]:
        """Every done record (of one run), by exposure name."""
        query = ("SELECT run, input_checksum, config_hash, exposure, input_path, catalog, n_rows, n_review,"
                 " flow_run, finished_at FROM done")
        args: tuple[Any, ...] = ()
        if run is not None:
            query += " WHERE run=?"
            args = (run,)
        with self._connect() as db:
            return [DoneRecord(*r) for r in db.execute(query + " ORDER BY exposure", args).fetchall()]

    def record_run(self, flow_run: str, run: str, started_at: str, finished_at: str, summary: dict[str, Any]) -> None:
        """Keep a run's summary (JSON)."""
        with self._connect() as db:
            db.execute(
                "INSERT OR REPLACE INTO runs VALUES (?,?,?,?,?)",
                (flow_run, run, started_at, finished_at, json.dumps(summary, sort_keys=True, default=str)),
            )

    def runs(self) -> list[dict[str, Any]]:
        """Every recorded run's summary, oldest first."""
        with self._connect() as db:
            rows = db.execute("SELECT summary FROM runs ORDER BY started_at").fetchall()
        return [json.loads(r[0]) for r in rows]

"""The store's database: URL handling, the engine, transactions, migrations, connection errors.

:class:`StoreEngine` is the base of :class:`review.store.ReviewStore`: it opens
the database (SQLite in WAL mode, or PostgreSQL through psycopg 3), migrates it
to the newest schema once under a lock, and hands out short transactions.  A
database that cannot be reached or opened raises
:class:`~review.errors.StoreConnectionError` with the URL (password hidden).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, make_url

from .. import models as m
from ..config import ReviewConfig
from ..errors import ReviewError, StoreConnectionError

__all__ = ["StoreEngine"]

_PG_MIGRATION_LOCK = 0x6D6F6572  # "moer": advisory lock key held while migrating


class StoreEngine:
    """Connection plumbing and migrations of a review store (the base of :class:`~review.store.ReviewStore`).

    Attributes
    ----------
    config : ReviewConfig
        The store's configuration.
    url : str
        The database URL with the password hidden (safe to print).
    dialect : str
        ``"sqlite"`` or ``"postgresql"``.
    engine : sqlalchemy.Engine
        The connection pool.
    """

    config: ReviewConfig
    url: str
    dialect: str
    engine: sa.Engine

    def _connect(self, raw: str | os.PathLike[str]) -> None:
        """Open the database at ``raw`` (a URL) and migrate it; :class:`StoreConnectionError` if impossible."""
        self._url = _parse_url(raw)
        self.url = self._url.render_as_string(hide_password=True)
        """The database URL with the password hidden (safe to print)."""
        self.dialect = self._url.get_backend_name()
        try:
            self.engine = self._make_engine()
            self._migrate()
        except StoreConnectionError:
            raise
        except (sa.exc.DBAPIError, OSError) as exc:
            engine = getattr(self, "engine", None)
            if engine is not None:
                engine.dispose()
            raise StoreConnectionError(f"{self.url}: cannot connect: {_cause(exc)}") from None

    def _make_engine(self) -> sa.Engine:
        if self.dialect == "sqlite":
            return _sqlite_engine(self._url, self.url, self.config.busy_timeout_s)
        connect_args = {"connect_timeout": 5, "application_name": "moe-imaging-review"}
        return sa.create_engine(self._url, connect_args=connect_args, pool_pre_ping=True)

    @contextmanager
    def _raw_tx(self, *, write: bool) -> Iterator[Connection]:
        """One transaction; SQLite write transactions take the write lock up front."""
        with self.engine.connect() as conn:
            if self.dialect == "sqlite":
                conn.execution_options(moe_sqlite_begin="IMMEDIATE" if write else "DEFERRED")
            with conn.begin():
                yield conn

    @contextmanager
    def _tx(self, *, write: bool) -> Iterator[Connection]:
        """:meth:`_raw_tx`, with a lost connection or a lock timeout as a :class:`ReviewError`."""
        try:
            with self._raw_tx(write=write) as conn:
                yield conn
        except sa.exc.OperationalError as exc:
            raise ReviewError(f"{self.url}: {_cause(exc)}") from None

    def _migrate(self) -> None:
        """Upgrade the database to the newest revision, once, under a lock.

        An up-to-date database costs one query (the version table against
        :data:`review.migrations.HEAD`); otherwise the migration runs in one
        write transaction (SQLite) or under an advisory lock (PostgreSQL), so
        many processes opening a new database at once migrate it once.
        """
        from ..migrations import HEAD

        with self._raw_tx(write=False) as conn:
            if _current_revision(conn) == HEAD:
                return
        from alembic.runtime.migration import MigrationContext

        head = _head_revision()
        with self._raw_tx(write=True) as conn:
            if self.dialect == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
            context = MigrationContext.configure(conn, opts={"version_table": m.VERSION_TABLE})
            current = context.get_current_revision()
            if current == head:
                return
            if current is not None and current not in _known_revisions():
                raise StoreConnectionError(
                    f"{self.url}: the review database is at revision {current!r}, unknown to this "
                    f"moe-imaging (a newer version wrote it); upgrade moe-imaging"
                )
            from alembic import command

            from ..migrations import alembic_config

            command.upgrade(alembic_config(connection=conn), "head")

    def close(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _insert(self, table: sa.Table):
        """An INSERT of the store's dialect (it has ``on_conflict_do_nothing``)."""
        if self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        return insert(table)


def _sqlite_engine(url: URL, shown: str, busy_timeout_s: float) -> sa.Engine:
    """A SQLite engine: WAL, busy timeout, foreign keys, and our own ``BEGIN`` (``shown``: the URL for errors)."""
    database = url.database or ""
    memory = database in ("", ":memory:")
    if not memory and not database.startswith("file:"):
        folder = Path(database).expanduser().resolve().parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreConnectionError(
                f"{shown}: cannot connect: cannot create the folder {folder}: {exc.strerror or exc}"
            ) from None
    kwargs: dict[str, Any] = {
        "connect_args": {"timeout": busy_timeout_s, "check_same_thread": False},
    }
    if memory:
        kwargs["poolclass"] = sa.pool.StaticPool
    engine = sa.create_engine(url, **kwargs)
    busy_ms = int(busy_timeout_s * 1000)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):  # pragma: no cover - exercised by every test
        dbapi_conn.isolation_level = None  # the driver issues no BEGIN: we do (below)
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {busy_ms}")
        if not memory:
            cur.execute("PRAGMA journal_mode = WAL")
        cur.execute("PRAGMA synchronous = NORMAL")
        cur.execute("PRAGMA foreign_keys = ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):  # pragma: no cover - exercised by every test
        mode = conn.get_execution_options().get("moe_sqlite_begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine


@functools.lru_cache(maxsize=1)
def _script_directory():
    from alembic.script import ScriptDirectory

    from ..migrations import alembic_config

    return ScriptDirectory.from_config(alembic_config())


def _current_revision(conn: Connection) -> str | None:
    """The revision recorded in the database (``None`` for a new database)."""
    if not conn.dialect.has_table(conn, m.VERSION_TABLE):
        return None
    return conn.execute(sa.text(f"SELECT version_num FROM {m.VERSION_TABLE}")).scalar()


def _head_revision() -> str:
    return _script_directory().get_current_head()


def _known_revisions() -> set[str]:
    return {s.revision for s in _script_directory().walk_revisions()}


def _parse_url(raw: str | os.PathLike[str]) -> URL:
    """A SQLAlchemy URL from text or a path (``postgresql://`` means psycopg 3); checks the backend."""
    if isinstance(raw, os.PathLike):
        raw = "sqlite:///" + os.path.abspath(os.fspath(raw))
    if not isinstance(raw, str) or not raw.strip():
        raise StoreConnectionError(f"database URL: expected text, got {raw!r}")
    try:
        url = make_url(raw.strip())
    except sa.exc.ArgumentError:
        shown = raw if "@" not in raw else "<url with credentials>"
        raise StoreConnectionError(
            f"{shown}: not a database URL (expected sqlite:///FILE or postgresql+psycopg://USER@HOST/DB)"
        ) from None
    backend = url.get_backend_name()
    if backend in ("postgresql", "postgres"):
        if url.get_driver_name() in ("psycopg2", "postgres", None, "") or "+" not in url.drivername:
            url = url.set(drivername="postgresql+psycopg")
    elif backend != "sqlite":
        raise StoreConnectionError(
            f"{url.render_as_string(hide_password=True)}: unsupported database {backend!r} "
            f"(the review store runs on sqlite or postgresql)"
        )
    return url


def _cause(exc: BaseException) -> str:
    """The first two lines of a database error's cause, for a one-line message."""
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip() or type(orig).__name__
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("(Background")]
    return " ".join(lines[:2])[:300]

"""Alembic migrations of the review store (run by :class:`review.store.ReviewStore`).

The store opens a connection, takes a migration lock (SQLite's write lock, or a
PostgreSQL advisory lock) and upgrades to ``head`` in one transaction, so many
processes opening a fresh database at once migrate it exactly once.  No
``alembic.ini`` is needed: :func:`alembic_config` points Alembic here.

To write a new revision (a developer's task)::

    python -c "from review.migrations import alembic_config; from alembic import command; \\
        command.revision(alembic_config('sqlite:///tmp.sqlite'), 'what changed', autogenerate=True)"
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from alembic.config import Config as AlembicConfig

__all__ = ["HEAD", "MIGRATIONS_DIR", "alembic_config"]

HEAD = "0002"
"""The newest revision in ``versions/`` (a test checks it), so opening an
up-to-date store needs one query and no Alembic import.  Update it with every
new revision."""

MIGRATIONS_DIR = Path(__file__).resolve().parent
"""The Alembic script directory (``env.py``, ``versions/``), shipped in the package."""


def alembic_config(url: str | None = None, connection=None) -> AlembicConfig:
    """An Alembic configuration for the review store, without any ini file.

    Parameters
    ----------
    url : str, optional
        Database URL (used when no ``connection`` is given, e.g. offline SQL).
    connection : sqlalchemy.engine.Connection, optional
        An open connection, already in the transaction to migrate in.
    """
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg

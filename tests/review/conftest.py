"""Fixtures of the review-queue tests: the same suite on SQLite and PostgreSQL.

PostgreSQL is real: a throwaway cluster (:class:`review.testing.TemporaryPostgres`:
``initdb`` + ``pg_ctl`` in a temporary folder, on a free port on 127.0.0.1),
started once per test session; each test gets a fresh database in it.  As root
the server runs as the ``postgres`` user (PostgreSQL refuses to run as root).
Where to find the binaries: ``$MOE_POSTGRES_BIN``, else ``initdb`` on the
``PATH``, else the newest ``/usr/lib/postgresql/*/bin``.
``$MOE_TEST_POSTGRES_URL`` points the tests at an existing server instead (a
maintenance database URL; the tests create and drop their own databases in it).

Only when the binaries are missing are the PostgreSQL tests skipped, saying
why, and never when ``MOE_REQUIRE_POSTGRES=1`` (CI): then they fail.  A server
that is installed but does not start is always a failure.
"""

from __future__ import annotations

import contextlib
import itertools
import os

import pytest

from review import ReviewConfig, ReviewStore
from review.testing import TemporaryPostgres, find_postgres_bin
from tests.review._helpers import review_catalog

BACKENDS = ("sqlite", "postgresql")


@pytest.fixture(scope="session")
def postgres_server():
    """URL of the maintenance database of a running PostgreSQL server (skips only without binaries)."""
    existing = os.environ.get("MOE_TEST_POSTGRES_URL")
    if existing:
        yield existing
        return
    required = os.environ.get("MOE_REQUIRE_POSTGRES", "") not in ("", "0")
    if find_postgres_bin() is None:
        why = ("PostgreSQL binaries (initdb, pg_ctl) not found: install the Debian package 'postgresql' "
               "(.ci/postgres.sh) or set MOE_POSTGRES_BIN")
        if required:
            pytest.fail(f"MOE_REQUIRE_POSTGRES is set but {why}")
        pytest.skip(why)
    cluster = TemporaryPostgres().start()  # installed but not starting: an error, never a skip
    try:
        yield cluster.url
    finally:
        cluster.stop()


_db_counter = itertools.count()


def _admin_exec(server_url: str, sql: str) -> None:
    import psycopg
    from sqlalchemy.engine import make_url

    u = make_url(server_url)
    with psycopg.connect(host=u.host, port=u.port, user=u.username, password=u.password,
                         dbname=u.database or "postgres", autocommit=True) as conn:
        conn.execute(sql)


@pytest.fixture
def postgres_url(postgres_server):
    """A fresh, empty PostgreSQL database for one test (dropped afterwards)."""
    from sqlalchemy.engine import make_url

    name = f"moe_review_test_{os.getpid()}_{next(_db_counter)}"
    _admin_exec(postgres_server, f'CREATE DATABASE "{name}"')
    url = make_url(postgres_server).set(database=name).render_as_string(hide_password=False)
    yield url
    with contextlib.suppress(Exception):
        _admin_exec(postgres_server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=BACKENDS)
def store_url(request, tmp_path):
    """A database URL for an empty store, once per backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'review.sqlite'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def make_store(store_url):
    """``make_store(**config)``: a store on this test's database with these config options."""
    opened: list[ReviewStore] = []

    def make(**options) -> ReviewStore:
        store = ReviewStore(store_url, config=ReviewConfig(**options))
        opened.append(store)
        return store

    yield make
    for s in opened:
        s.close()


@pytest.fixture
def store(make_store) -> ReviewStore:
    """An empty store (k = 1, majority), on SQLite and on PostgreSQL."""
    return make_store()


@pytest.fixture
def catalog():
    return review_catalog()

"""A throwaway PostgreSQL server for tests and benchmarks of the review store.

:class:`TemporaryPostgres` runs ``initdb`` and ``pg_ctl`` from the Debian
package (or ``$MOE_POSTGRES_BIN``) in a temporary folder, on a free port on
127.0.0.1, with durability switched off for speed; as root it runs the server
as the ``postgres`` user (PostgreSQL refuses to run as root).  Nothing here is
used by the store itself.

Example::

    with TemporaryPostgres() as pg:
        store = ReviewStore(pg.create_database("bench"))
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Self

__all__ = ["TemporaryPostgres", "find_postgres_bin"]


def find_postgres_bin() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl``, or ``None``.

    ``$MOE_POSTGRES_BIN``, else ``initdb`` on the ``PATH``, else the newest
    ``/usr/lib/postgresql/<version>/bin`` (Debian does not put them on the PATH).
    """
    env = os.environ.get("MOE_POSTGRES_BIN")
    if env:
        return Path(env) if (Path(env) / "initdb").exists() else None
    found = shutil.which("initdb")
    if found:
        return Path(found).parent

    def version(p: str) -> int:
        name = Path(p).parent.parent.name
        return int(name) if name.isdigit() else 0

    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=version)
    return Path(candidates[-1]).parent if candidates else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TemporaryPostgres:
    """A PostgreSQL cluster in a temporary folder; :meth:`stop` deletes it.

    Parameters
    ----------
    bindir : path, optional
        Where ``initdb`` and ``pg_ctl`` are (default :func:`find_postgres_bin`).

    Raises
    ------
    RuntimeError
        The binaries are missing, or the server does not start (the message
        holds the end of its log).
    """

    def __init__(self, bindir: str | os.PathLike | None = None) -> None:
        found = Path(bindir) if bindir is not None else find_postgres_bin()
        if found is None or not (found / "initdb").exists() or not (found / "pg_ctl").exists():
            raise RuntimeError("PostgreSQL binaries (initdb, pg_ctl) not found: install the Debian package "
                               "'postgresql' (.ci/postgres.sh) or set MOE_POSTGRES_BIN")
        self.bindir = found
        self.port = _free_port()
        self.root = Path(tempfile.mkdtemp(prefix="moe-review-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self._as_user: list[str] = []
        self._started = False
        if os.geteuid() == 0:
            import pwd

            try:
                pw = pwd.getpwnam("postgres")
            except KeyError:
                shutil.rmtree(self.root, ignore_errors=True)
                raise RuntimeError("running as root and there is no 'postgres' user to run the server as") from None
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
            os.chmod(self.root, 0o700)
            self._as_user = [shutil.which("runuser") or "/usr/sbin/runuser", "-u", "postgres", "--"]

    def _run(self, *args: str, timeout: float = 120) -> None:
        cmd = [*self._as_user, *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        if proc.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]} {log}")

    def start(self) -> Self:
        """initdb and start the server; returns ``self``."""
        try:
            self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
                      "-E", "UTF8", "--no-sync", "--locale=C")
            options = (f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} -c fsync=off "
                       "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", options,
                      "-w", "-t", "60", "start")
        except Exception:
            self.stop()
            raise
        self._started = True
        return self

    def stop(self) -> None:
        """Stop the server (immediately) and delete its folder."""
        if self._started:
            with contextlib.suppress(Exception):
                self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop",
                          timeout=60)
            self._started = False
        shutil.rmtree(self.root, ignore_errors=True)

    @property
    def url(self) -> str:
        """URL of the maintenance database ``postgres`` (user ``postgres``, no password)."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def execute(self, sql: str) -> None:
        """Run one statement in the maintenance database (autocommit)."""
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres",
                             autocommit=True) as conn:
            conn.execute(sql)

    def create_database(self, name: str) -> str:
        """Create an empty database; returns its URL."""
        if not name.replace("_", "").isalnum():
            raise ValueError(f"database name {name!r}: letters, digits and _ only")
        self.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

"""The durable review queue: items to review, leases, decisions, accounts, cutouts.

A :class:`ReviewStore` wraps one database (SQLite by default, PostgreSQL by
URL); every method is one short transaction, safe to call from many processes
and machines at once.  Opening a store migrates its database to the newest
schema (Alembic, :mod:`review.migrations`).

The rules
---------
**Enqueue** (:meth:`ReviewStore.enqueue`) takes a detection catalog and adds
one *item* per row whose gate ``decision`` is ``"review"``.  Items are unique
per ``(catalog_id, source_id)``: enqueueing the same catalog again adds
nothing, so a flow may be re-run safely.  Each item gets a *priority*,
``uncertainty ** uncertainty_power * value(kind)``, where the uncertainty is
the normalized entropy of the class probabilities (``1 - confidence`` when they
are missing) and the value is :attr:`ReviewConfig.kind_values` of the gate's
kind.  Cutouts are rendered at enqueue when the image is given.

**Claim** (:meth:`ReviewStore.claim`) hands a reviewer the ``n`` pending items
of highest priority and gives them a *lease* on each, for ``lease_seconds``.
An item needs ``k = required_reviews`` decisions from ``k`` *distinct*
reviewers, so it can be leased to up to ``k`` reviewers at once, but:

* never twice to the same reviewer, and never to a reviewer who has already
  decided it;
* never to more reviewers than it still needs: ``n_decisions + n_leases <=
  required`` holds at all times (a CHECK constraint of the database enforces it).

A lease that expires returns its slot: the next claim (or
:meth:`ReviewStore.expire_leases`) deletes expired leases, so a reviewer who
walked away (or whose process was killed) holds nothing for ever.  Claims
are safe under concurrency: on PostgreSQL the candidate rows are locked with
``SELECT ... FOR UPDATE SKIP LOCKED`` (concurrent claimers skip each other's
rows instead of waiting); on SQLite every write transaction starts with
``BEGIN IMMEDIATE`` (one writer at a time, others wait up to
``busy_timeout_s``).

**Decide** (:meth:`ReviewStore.decide`) needs a live lease of this reviewer on
the item, else :class:`~review.errors.NotClaimedError` and nothing changes.
The actions and the label each one gives:

==============  ===============================================================
``accept``      the gate's kind is right: label = the item's kind
``reject``      not a real source: label = ``"artifact"``
``relabel``     the reviewer names the kind (survey: star, galaxy, streak,
                artifact; microscopy: nucleus, artifact): label = that kind
``uncertain``   the reviewer cannot tell: label = ``"uncertain"``
==============  ===============================================================

When the item has its ``k`` decisions the *consensus rule* combines their
labels: ``majority`` (a label given by more than half) or ``unanimous``.  With
a consensus on a kind the item is ``decided`` with that label; otherwise (no
consensus, or a consensus of "uncertain") it is ``disputed`` with label
``"uncertain"``.  ``agreement`` is the share of decisions giving the most
common label.

**Undo** (:meth:`ReviewStore.undo_last`) takes back a reviewer's most recent
decision (only that one): the decision is marked undone (never deleted), the
item returns to ``pending`` and the reviewer holds a fresh lease on it, so
they can decide it again.  Every decision, undo, claim, release, expiry and
enqueue is written to the audit trail (:meth:`ReviewStore.audit_trail`).

**Accounts**: :meth:`ReviewStore.add_reviewer` stores an scrypt hash of the
password (random salt) and a SHA-256 hash of a random token; the token is
returned once and never stored in the clear.  The store itself identifies
reviewers by name; the web app authenticates them first.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import functools
import hashlib
import hmac
import math
import numbers
import os
import re
import secrets
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, make_url

from contracts.vocabulary import CLASSES_BY_MODE, KINDS, MODES, UNCERTAIN

from . import models as m
from .config import ReviewConfig
from .errors import (
    NotClaimedError,
    ReviewError,
    StoreConnectionError,
    UnknownCutoutError,
    UnknownItemError,
)

__all__ = [
    "ACTIONS",
    "UNCERTAIN",
    "AuditEvent",
    "Decision",
    "EnqueueResult",
    "Item",
    "Lease",
    "ReviewStore",
    "Reviewer",
    "consensus",
    "hash_password",
    "relabel_kinds",
    "valid_digest",
    "verify_password",
]

ACTIONS: tuple[str, ...] = ("accept", "reject", "relabel", "uncertain")
"""What a reviewer may decide (see the module docstring for the labels)."""

_MEASUREMENTS: tuple[str, ...] = (
    "snr", "det_snr", "flux", "flux_err", "mag", "a", "b", "theta", "sharpness", "roundness",
    "flags", "subtype", "expert", "gate_reason",
)
"""Catalog columns kept in the item's evidence besides every ``ev_*`` column."""

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@+-]{0,99}$")
_DIGEST_RE = re.compile(r"^[0-9a-f]{64}$")
_INSERT_CHUNK = 5000
_MAX_CLAIM = 1000
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}
_PG_MIGRATION_LOCK = 0x6D6F6572  # "moer": advisory lock key held while migrating


def relabel_kinds(mode: str) -> tuple[str, ...]:
    """The kinds a reviewer may relabel an item of ``mode`` to."""
    return CLASSES_BY_MODE[mode] if mode in CLASSES_BY_MODE else CLASSES_BY_MODE["survey"]


def valid_digest(digest: object) -> bool:
    """Whether ``digest`` is a SHA-256 hex digest (64 lowercase hex characters).

    Only such strings are ever looked up, so a digest can never name a path.
    """
    return isinstance(digest, str) and _DIGEST_RE.fullmatch(digest) is not None


# ---------------------------------------------------------------- values


@dataclasses.dataclass(frozen=True)
class Lease:
    """A reviewer's claim on an item, valid until ``expires_at``."""

    reviewer: str
    claimed_at: dt.datetime
    expires_at: dt.datetime


@dataclasses.dataclass(frozen=True)
class Item:
    """One source waiting for (or having had) human review.  A plain value.

    ``probs`` maps class -> calibrated probability, ``weights`` expert ->
    gating weight, ``evidence`` catalog column -> value (every expert's
    ``ev_*`` score and a few measurements such as ``snr``), ``cutouts`` name
    -> SHA-256 digest (``"fits"``, ``"png_zoom1"``, ``"png_zoom4"``; empty
    when no image was given).  ``lease_owner``/``lease_expires``: for an item
    returned by :meth:`ReviewStore.claim`, the claimant's lease; otherwise the
    live lease that ends last (``None`` if none).  ``leases`` lists every lease
    row (an item needing ``k`` reviews may have up to ``k``).  ``label`` and
    ``agreement`` are set once the item is ``decided`` or ``disputed``.
    """

    id: int
    catalog_id: str
    source_id: int
    exposure: str
    x: float
    y: float
    ra: float | None
    dec: float | None
    kind: str
    probs: dict[str, float]
    evidence: dict[str, Any]
    weights: dict[str, float]
    reason: str
    confidence: float | None
    priority: float
    status: str
    n_decisions: int
    required: int
    lease_owner: str | None
    lease_expires: dt.datetime | None
    created_at: dt.datetime
    updated_at: dt.datetime
    cutouts: dict[str, str]
    mode: str
    label: str | None = None
    agreement: float | None = None
    psf_fwhm: float | None = None
    pixel_scale: float | None = None
    decided_at: dt.datetime | None = None
    leases: tuple[Lease, ...] = ()
    triage_stratum: str | None = None

    @property
    def relabel_kinds(self) -> tuple[str, ...]:
        """The kinds a reviewer may relabel this item to."""
        return relabel_kinds(self.mode)


@dataclasses.dataclass(frozen=True)
class Decision:
    """One reviewer's decision on one item (``undone_at`` set once undone)."""

    id: int
    item_id: int
    reviewer: str
    action: str
    kind: str | None
    label: str
    comment: str | None
    created_at: dt.datetime
    undone_at: dt.datetime | None = None


@dataclasses.dataclass(frozen=True)
class Reviewer:
    """A reviewer account (no secrets: those are only stored hashed)."""

    id: int
    name: str
    admin: bool
    disabled: bool
    created_at: dt.datetime
    has_password: bool = False


@dataclasses.dataclass(frozen=True)
class AuditEvent:
    """One line of the audit trail."""

    id: int
    at: dt.datetime
    event: str
    reviewer: str | None
    item_id: int | None
    detail: dict[str, Any] | None


@dataclasses.dataclass(frozen=True)
class EnqueueResult:
    """What :meth:`ReviewStore.enqueue` did.

    Attributes
    ----------
    added : int
        New items.
    existing : int
        Rows for review that were already queued (same catalog and source).
    skipped : int
        Catalog rows not for review (their decision was not selected).
    """

    added: int
    existing: int
    skipped: int = 0


# ---------------------------------------------------------------- passwords


def hash_password(password: str) -> str:
    """An scrypt hash of ``password`` with a random 16-byte salt (stdlib only).

    The result is ``scrypt$n$r$p$salt$hash`` (base64), so the parameters can be
    raised later without invalidating stored hashes.
    """
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, dklen=32, **_SCRYPT)
    b64 = base64.b64encode
    return f"scrypt${_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, stored: str | None) -> bool:
    """Whether ``password`` matches a hash made by :func:`hash_password` (constant time)."""
    if not stored or not isinstance(password, str):
        return False
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        want = base64.b64decode(digest)
        got = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
                             dklen=len(want))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, want)


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# ---------------------------------------------------------------- the store


class ReviewStore:
    """The review queue in one database.  See the module docstring for the rules.

    Parameters
    ----------
    url : str, optional
        SQLAlchemy URL: ``sqlite:///path.sqlite`` or
        ``postgresql+psycopg://user:password@host:port/db`` (``postgresql://``
        means psycopg 3).  ``None``: ``config.url``, else the SQLite file at
        ``config.path`` (its folder is created).
    config : ReviewConfig, optional
        Lease length, required reviews, consensus rule, priority weights,
        cutout rendering.

    Raises
    ------
    StoreConnectionError
        ``"<url without password>: cannot connect: <cause>"`` when the
        database cannot be reached or opened.

    Notes
    -----
    SQLite runs in WAL mode (readers never block the writer) with a busy
    timeout; every write transaction begins with ``BEGIN IMMEDIATE``.  The
    store holds a connection pool: call :meth:`close` (or use it as a context
    manager) when done.  Do not share one store across ``fork``: open one per
    process.
    """

    def __init__(self, url: str | None = None, *, config: ReviewConfig | None = None) -> None:
        if config is not None and not isinstance(config, ReviewConfig):
            raise ReviewError(f"config: expected a ReviewConfig, got {type(config).__name__}")
        self.config = config if config is not None else ReviewConfig()
        raw = url if url is not None else self.config.database_url()
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

    # -- connection plumbing

    def _make_engine(self) -> sa.Engine:
        if self.dialect == "sqlite":
            database = self._url.database or ""
            memory = database in ("", ":memory:")
            if not memory and not database.startswith("file:"):
                folder = Path(database).expanduser().resolve().parent
                try:
                    folder.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise StoreConnectionError(
                        f"{self.url}: cannot connect: cannot create the folder {folder}: {exc.strerror or exc}"
                    ) from None
            kwargs: dict[str, Any] = {
                "connect_args": {"timeout": self.config.busy_timeout_s, "check_same_thread": False},
            }
            if memory:
                kwargs["poolclass"] = sa.pool.StaticPool
            engine = sa.create_engine(self._url, **kwargs)
            busy_ms = int(self.config.busy_timeout_s * 1000)

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
        from .migrations import HEAD

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

            from .migrations import alembic_config

            command.upgrade(alembic_config(connection=conn), "head")

    def close(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ReviewStore({self.url!r})"

    def _insert(self, table: sa.Table):
        if self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        return insert(table)

    # -- enqueue

    def enqueue(
        self,
        catalog,
        *,
        exposure: str,
        catalog_id: str,
        image=None,
        wcs=None,
        mode: str = "survey",
        pixel_scale: float | None = None,
        decisions: Sequence[str] = ("review",),
    ) -> EnqueueResult:
        """Queue a catalog's rows for review; idempotent.

        Parameters
        ----------
        catalog : astropy.table.Table or pandas.DataFrame
            A detection catalog (:mod:`catalogs.schema`): ``source_id`` (or
            ``id``), ``x``, ``y``, ``kind`` and ``decision`` are required;
            ``ra``, ``dec``, ``p_<class>``, ``confidence``, ``review_reason``,
            ``triage_stratum``, ``psf_fwhm``, ``w_<expert>`` and ``ev_*`` are
            kept when present.
        exposure : str
            The exposure (e.g. its file name), for filtering and display.
        catalog_id : str
            Identifies the catalog; ``(catalog_id, source_id)`` is the item's
            unique key, so enqueueing the same catalog again adds nothing.
        image : 2-D array, optional
            The image the catalog was measured on; when given, every new item
            gets cutouts (a FITS stamp and PNGs, :mod:`review.cutouts`).
        wcs : astropy.wcs.WCS, optional
            The image's WCS, cut with the stamp into its FITS header.
        mode : str
            ``"survey"`` or ``"microscopy"`` (relabel classes and display stretch).
        pixel_scale : float, optional
            Arcsec (survey) or microns (microscopy) per pixel, kept for display.
        decisions : sequence of str
            Which ``decision`` values to queue (default ``("review",)``; a
            microscopy catalog without a gate has ``""``).

        Returns
        -------
        EnqueueResult
            ``(added, existing, skipped)``.

        Raises
        ------
        ReviewError
            A required column is missing, a position is not finite, a
            parameter is invalid; nothing is queued.
        """
        where = f"catalog {catalog_id!r}"
        if not isinstance(catalog_id, str) or not catalog_id.strip() or len(catalog_id) > 200:
            raise ReviewError(f"catalog_id: expected a non-empty string of at most 200 characters, got {catalog_id!r}")
        if not isinstance(exposure, str) or not exposure.strip() or len(exposure) > 500:
            raise ReviewError(f"{where}: exposure: expected a non-empty string, got {exposure!r}")
        if mode not in MODES:
            raise ReviewError(f"{where}: mode must be one of {list(MODES)}, got {mode!r}")
        if pixel_scale is not None and not (_is_number(pixel_scale) and pixel_scale > 0):
            raise ReviewError(f"{where}: pixel_scale must be a positive number, got {pixel_scale!r}")
        import numpy as np

        from ._catalog import CatalogColumns, json_value, priority, tiebreak

        cols = CatalogColumns(catalog, where)
        source_ids = cols.int64(cols.first_of("source_id", "id"))
        decision = np.char.strip(cols.text(cols.require("decision")))
        chosen = np.isin(decision, np.asarray(list(decisions), dtype=str))
        skipped = int(len(decision) - chosen.sum())
        idx = np.flatnonzero(chosen)
        if len(idx) == 0:
            return EnqueueResult(0, 0, skipped)
        x = cols.float(cols.require("x"))[idx]
        y = cols.float(cols.require("y"))[idx]
        bad = ~(np.isfinite(x) & np.isfinite(y))
        if bad.any():
            raise ReviewError(f"{where}: row {int(idx[bad][0])}: x and y must be finite")
        kinds = cols.text(cols.require("kind"))[idx]
        sids = source_ids[idx]
        if len(np.unique(sids)) != len(sids):
            dup = sids[np.flatnonzero(np.diff(np.sort(sids)) == 0)[0]]
            raise ReviewError(f"{where}: source_id {int(dup)} appears twice")
        if image is not None:
            ndim = getattr(image, "ndim", None)
            if ndim != 2:
                raise ReviewError(f"{where}: image must be a 2-D array, got ndim={ndim}")

        with self._tx(write=False) as conn:
            have = set(conn.execute(sa.select(m.items.c.source_id).where(m.items.c.catalog_id == catalog_id)).scalars())
        new = np.array([int(s) not in have for s in sids], dtype=bool)
        existing = int((~new).sum())
        idx, x, y, kinds, sids = idx[new], x[new], y[new], kinds[new], sids[new]
        if len(idx) == 0:
            return EnqueueResult(0, existing, skipped)

        optional = lambda name: cols.float(name)[idx] if name in cols else np.full(len(idx), np.nan)
        ra, dec = optional("ra"), optional("dec")
        confidence, psf_fwhm = optional("confidence"), optional("psf_fwhm")
        reason = cols.text("review_reason")[idx] if "review_reason" in cols else np.full(len(idx), "")
        stratum = cols.text("triage_stratum")[idx] if "triage_stratum" in cols else np.full(len(idx), "")
        prob_cols = [c for c in KINDS if f"p_{c}" in cols]
        probs = np.column_stack([cols.float(f"p_{c}")[idx] for c in prob_cols]) if prob_cols else np.zeros((len(idx), 0))
        weight_cols = [c for c in cols.names if c.startswith("w_")]
        evidence_cols = [c for c in cols.names if c.startswith("ev_")] + [c for c in _MEASUREMENTS if c in cols]
        weight_values = {c: cols.values(c)[idx] for c in weight_cols}
        evidence_values = {c: cols.values(c)[idx] for c in evidence_cols}
        prio = priority(probs, confidence, kinds, self.config) + 1e-6 * tiebreak(self.config.seed, catalog_id, sids)

        stamps: list[dict[str, str]] = [{} for _ in idx]
        blobs: dict[str, tuple[bytes, str]] = {}
        if image is not None:
            from .cutouts import as_float_image, render_cutouts

            image = as_float_image(image)
            for i in range(len(idx)):
                rendered = render_cutouts(image, float(x[i]), float(y[i]), wcs=wcs, mode=mode, config=self.config,
                                          pixel_scale=pixel_scale)
                for name, blob in rendered.items():
                    stamps[i][name] = blob.digest
                    blobs[blob.digest] = (blob.content, blob.media_type)

        now = _now()
        required = self.config.required_reviews
        rows = []
        for i in range(len(idx)):
            rows.append({
                "catalog_id": catalog_id,
                "source_id": int(sids[i]),
                "exposure": exposure,
                "mode": mode,
                "x": float(x[i]),
                "y": float(y[i]),
                "ra": _float_or_none(ra[i]),
                "dec": _float_or_none(dec[i]),
                "kind": str(kinds[i])[:16],
                "probs": {c: _float_or_none(probs[i, j]) for j, c in enumerate(prob_cols)
                          if math.isfinite(probs[i, j])},
                "evidence": {c: json_value(v[i]) for c, v in evidence_values.items()},
                "weights": {c[2:]: json_value(v[i]) for c, v in weight_values.items()},
                "reason": str(reason[i]),
                "triage_stratum": str(stratum[i])[:64] or None,
                "confidence": _float_or_none(confidence[i]),
                "psf_fwhm": _float_or_none(psf_fwhm[i]),
                "pixel_scale": float(pixel_scale) if pixel_scale is not None else None,
                "priority": float(prio[i]),
                "required": required,
                "n_decisions": 0,
                "n_leases": 0,
                "status": "pending",
                "label": None,
                "agreement": None,
                "cutouts": stamps[i],
                "created_at": now,
                "updated_at": now,
                "decided_at": None,
            })
        added = 0
        if blobs:
            blob_rows = [{"digest": d, "media_type": t, "content": c, "size": len(c), "created_at": now}
                         for d, (c, t) in blobs.items()]
            for start in range(0, len(blob_rows), 500):
                with self._tx(write=True) as conn:
                    conn.execute(self._insert(m.cutouts).on_conflict_do_nothing(index_elements=["digest"]),
                                 blob_rows[start:start + 500])
        for start in range(0, len(rows), _INSERT_CHUNK):
            chunk = rows[start:start + _INSERT_CHUNK]
            # a plain executemany (pipelined by psycopg; no RETURNING, whose huge multi-row statements
            # psycopg re-parses per batch), counted before and after under a per-catalog lock
            stmt = self._insert(m.items).on_conflict_do_nothing(index_elements=["catalog_id", "source_id"])
            count = sa.select(sa.func.count()).select_from(m.items).where(m.items.c.catalog_id == catalog_id)
            with self._tx(write=True) as conn:
                if self.dialect == "postgresql":  # SQLite's write lock already serializes writers
                    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _catalog_lock(catalog_id)})
                before = conn.execute(count).scalar_one()
                conn.execute(stmt, chunk)
                n_new = conn.execute(count).scalar_one() - before
                added += n_new
                self._audit(conn, now, "enqueue", None, None,
                            {"catalog_id": catalog_id, "exposure": exposure, "added": n_new,
                             "existing": len(chunk) - n_new})
        if self.dialect == "postgresql" and added >= 500:
            # fresh statistics, so the planner serves claims from the queue index at once
            # (autovacuum would only catch up within a minute or so)
            with self._tx(write=False) as conn:
                conn.execute(sa.text("ANALYZE review_items"))
        return EnqueueResult(added, existing + (len(rows) - added), skipped)

    # -- reading

    def pending_count(self, exposure: str | None = None) -> int:
        """How many items still need decisions (status ``pending``)."""
        q = sa.select(sa.func.count()).select_from(m.items).where(m.items.c.status == "pending")
        if exposure is not None:
            q = q.where(m.items.c.exposure == exposure)
        with self._tx(write=False) as conn:
            return int(conn.execute(q).scalar_one())

    def get_item(self, item_id: int) -> Item:
        """The item with this id.

        Raises
        ------
        UnknownItemError
            No item has this id.
        """
        item_id = _check_id(item_id)
        with self._tx(write=False) as conn:
            found = self._load_items(conn, [item_id])
        if item_id not in found:
            raise UnknownItemError(item_id)
        return found[item_id]

    def list_items(
        self,
        *,
        status: str | None = None,
        exposure: str | None = None,
        kind: str | None = None,
        reason: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Item]:
        """Items in queue order (priority, highest first), filtered.

        Parameters
        ----------
        status : str, optional
            ``pending``, ``decided`` or ``disputed``.
        exposure, kind : str, optional
            Exact matches.
        reason : str, optional
            Items whose review reason contains this text.
        limit, offset : int
            Paging (``limit`` at most 10000).
        """
        _check_int_range("limit", limit, 1, 10000)
        _check_int_range("offset", offset, 0, None)
        q = self._filtered(sa.select(m.items.c.id), status=status, exposure=exposure, kind=kind, reason=reason)
        q = q.order_by(m.items.c.priority.desc(), m.items.c.id).limit(limit).offset(offset)
        with self._tx(write=False) as conn:
            ids = list(conn.execute(q).scalars())
            found = self._load_items(conn, ids)
        return [found[i] for i in ids]

    def count_items(self, *, status: str | None = None, exposure: str | None = None, kind: str | None = None,
                    reason: str | None = None) -> int:
        """How many items :meth:`list_items` would list without paging."""
        q = self._filtered(sa.select(sa.func.count()).select_from(m.items), status=status, exposure=exposure,
                           kind=kind, reason=reason)
        with self._tx(write=False) as conn:
            return int(conn.execute(q).scalar_one())

    def leased_to(self, reviewer: str) -> list[Item]:
        """The items this reviewer holds a live lease on, in queue order."""
        reviewer = _check_name(reviewer, "reviewer")
        now = _now()
        q = (sa.select(m.leases.c.item_id).join(m.items, m.items.c.id == m.leases.c.item_id)
             .where(m.leases.c.reviewer == reviewer, m.leases.c.expires_at > now)
             .order_by(m.items.c.priority.desc(), m.items.c.id))
        with self._tx(write=False) as conn:
            ids = list(conn.execute(q).scalars())
            found = self._load_items(conn, ids, owner=reviewer)
        return [found[i] for i in ids]

    def decisions(self, item_id: int) -> list[Decision]:
        """Every decision on an item, undone ones included, oldest first.

        Raises
        ------
        UnknownItemError
            No item has this id.
        """
        item_id = _check_id(item_id)
        with self._tx(write=False) as conn:
            if conn.execute(sa.select(m.items.c.id).where(m.items.c.id == item_id)).first() is None:
                raise UnknownItemError(item_id)
            rows = conn.execute(sa.select(m.decisions).where(m.decisions.c.item_id == item_id)
                                .order_by(m.decisions.c.id)).all()
        return [_decision(r) for r in rows]

    def reviewer_decisions(self, reviewer: str, *, limit: int = 100) -> list[Decision]:
        """A reviewer's decisions, newest first (undone ones included)."""
        reviewer = _check_name(reviewer, "reviewer")
        _check_int_range("limit", limit, 1, 10000)
        with self._tx(write=False) as conn:
            rows = conn.execute(sa.select(m.decisions).where(m.decisions.c.reviewer == reviewer)
                                .order_by(m.decisions.c.id.desc()).limit(limit)).all()
        return [_decision(r) for r in rows]

    def audit_trail(self, *, item_id: int | None = None, limit: int = 1000) -> list[AuditEvent]:
        """The audit trail (oldest first), of one item or of everything."""
        _check_int_range("limit", limit, 1, 1_000_000)
        q = sa.select(m.audit).order_by(m.audit.c.id).limit(limit)
        if item_id is not None:
            q = q.where(m.audit.c.item_id == _check_id(item_id))
        with self._tx(write=False) as conn:
            rows = conn.execute(q).all()
        return [AuditEvent(r.id, r.at, r.event, r.reviewer, r.item_id, r.detail) for r in rows]

    # -- work: claim, decide, undo, release, expire

    def claim(
        self,
        reviewer: str,
        *,
        n: int = 1,
        lease_seconds: float | None = None,
        exposure: str | None = None,
        kind: str | None = None,
        reason: str | None = None,
        status: str | None = None,
        item_id: int | None = None,
    ) -> list[Item]:
        """Lease the ``n`` most urgent items this reviewer may review.

        An item is offered when it is ``pending``, still has a free slot
        (``n_decisions + n_leases < required``) and this reviewer neither holds
        a lease on it nor has decided it.  Expired leases are returned first.

        Parameters
        ----------
        reviewer : str
            Who claims.
        n : int
            How many items at most (1..1000).
        lease_seconds : float, optional
            Lease length (default :attr:`ReviewConfig.lease_seconds`).
        exposure, kind, reason : str, optional
            Only items of this exposure / gate kind / whose reason contains this text.
        status : str, optional
            Only ``"pending"`` items can be claimed (the default).
        item_id : int, optional
            Claim this one item (e.g. opened from the queue page) if it is
            offered under the same rules; empty when it is not.

        Returns
        -------
        list of Item
            Highest priority first, each with ``lease_owner == reviewer``;
            empty when nothing is available.
        """
        reviewer = _check_name(reviewer, "reviewer")
        _check_int_range("n", n, 1, _MAX_CLAIM)
        lease = self.config.lease(lease_seconds)
        if status not in (None, "pending"):
            raise ReviewError(f"status: only pending items can be claimed, got {status!r}")
        it, ls, dc = m.items.c, m.leases.c, m.decisions.c
        # OFFSET 0 keeps each NOT EXISTS a per-row index probe on PostgreSQL (no anti-join planned on
        # stale statistics); with the queue index the scan then stops after the n rows it returns
        mine_lease = sa.select(sa.literal(1)).where(ls.item_id == it.id, ls.reviewer == reviewer).offset(0).exists()
        mine_decision = (sa.select(sa.literal(1))
                         .where(dc.item_id == it.id, dc.reviewer == reviewer, dc.undone_at.is_(None))
                         .offset(0).exists())
        q = self._filtered(sa.select(it.id), status="pending", exposure=exposure, kind=kind, reason=reason)
        if item_id is not None:
            q = q.where(it.id == int(item_id))
        q = (q.where(it.n_decisions + it.n_leases < it.required, ~mine_lease, ~mine_decision)
             .order_by(it.priority.desc(), it.id).limit(n)
             .with_for_update(skip_locked=True, of=m.items))
        for attempt in range(3):
            try:
                return self._claim(q, reviewer, lease)
            except sa.exc.IntegrityError:
                # only the same reviewer claiming in two sessions at once can collide on a lease
                # row (PostgreSQL); the loser's transaction is rolled back and simply tried again
                if attempt == 2:
                    raise ReviewError(f"reviewer {reviewer!r}: concurrent claims by the same reviewer; "
                                      f"try again") from None
        return []  # pragma: no cover

    def _claim(self, q, reviewer: str, lease: float) -> list[Item]:
        it = m.items.c
        with self._tx(write=True) as conn:
            now = _now()
            self._expire(conn, now)
            ids = list(conn.execute(q).scalars())
            if not ids:
                return []
            expires = now + dt.timedelta(seconds=lease)
            conn.execute(sa.insert(m.leases), [
                {"item_id": i, "reviewer": reviewer, "claimed_at": now, "expires_at": expires} for i in ids
            ])
            conn.execute(sa.update(m.items).where(it.id.in_(ids))
                         .values(n_leases=it.n_leases + 1, updated_at=now))
            conn.execute(_ADD_AUDIT, [
                {"at": now, "event": "claim", "reviewer": reviewer, "item_id": i,
                 "detail": {"expires_at": expires.isoformat()}} for i in ids
            ])
            found = self._load_items(conn, ids, owner=reviewer)
        return [found[i] for i in ids]

    def decide(
        self,
        item_id: int,
        reviewer: str,
        action: str,
        *,
        kind: str | None = None,
        comment: str | None = None,
    ) -> Decision:
        """Record a reviewer's decision on an item they hold a live lease on.

        Parameters
        ----------
        item_id : int
            The item.
        reviewer : str
            Who decides; must hold a live lease on the item.
        action : str
            ``accept``, ``reject``, ``relabel`` or ``uncertain`` (:data:`ACTIONS`).
        kind : str, optional
            With ``relabel`` only: the right kind (:func:`relabel_kinds` of the
            item's mode).
        comment : str, optional
            Free text (at most 5000 characters).

        Returns
        -------
        Decision

        Raises
        ------
        UnknownItemError
            No item has this id.
        NotClaimedError
            The reviewer holds no lease on the item (never claimed, leased to
            someone else, already decided) or the lease has expired.
        ReviewError
            An unknown action, a missing or unknown relabel kind.
        In every case nothing is changed.
        """
        item_id = _check_id(item_id)
        reviewer = _check_name(reviewer, "reviewer")
        if action not in ACTIONS:
            raise ReviewError(f"review item {item_id}: action must be one of {list(ACTIONS)}, got {action!r}")
        if comment is not None:
            if not isinstance(comment, str) or len(comment) > 5000:
                raise ReviewError(f"review item {item_id}: comment must be text of at most 5000 characters")
            comment = comment.strip() or None
        with self._tx(write=True) as conn:
            now = _now()
            row = conn.execute(_LOCK_ITEM, {"item_id": item_id}).first()
            if row is None:
                raise UnknownItemError(item_id)
            label, kind = _label(row, action, kind)
            expires = conn.execute(_DROP_LEASE, {"item_id": item_id, "reviewer": reviewer}).scalar()
            if expires is None:
                mine = conn.execute(_LIVE_DECISION, {"item_id": item_id, "reviewer": reviewer}).first()
                cause = "already decided by this reviewer" if mine is not None else "not claimed by this reviewer"
                raise NotClaimedError(item_id, reviewer, cause)
            if expires <= now:  # raising rolls the lease's deletion back
                raise NotClaimedError(item_id, reviewer, f"the lease expired at {expires.isoformat()}")
            decision_id = conn.execute(_ADD_DECISION, {
                "item_id": item_id, "reviewer": reviewer, "action": action, "kind": kind, "label": label,
                "comment": comment, "created_at": now, "undone_at": None}).scalar_one()
            values: dict[str, Any] = {"n_decisions": row.n_decisions + 1, "n_leases": row.n_leases - 1,
                                      "updated_at": now}
            if row.n_decisions + 1 >= row.required:
                labels = list(conn.execute(_LIVE_LABELS, {"item_id": item_id}).scalars())
                status, final, agreement = consensus(labels, self.config.consensus)
                values.update(status=status, label=final, agreement=agreement, decided_at=now)
            else:
                values.update(status="pending", label=None, agreement=None, decided_at=None)
            conn.execute(_UPDATE_ITEM, {"b_id": item_id, **values})
            detail = {"decision_id": decision_id, "action": action, "kind": kind, "label": label, "comment": comment}
            if values["status"] != "pending":
                detail.update(status=values["status"], item_label=values["label"])
            self._audit(conn, now, "decide", reviewer, item_id, detail)
        return Decision(decision_id, item_id, reviewer, action, kind, label, comment, now, None)

    def undo_last(self, reviewer: str) -> Decision | None:
        """Take back this reviewer's most recent decision.

        The decision is kept, marked undone; the item returns to ``pending``
        (its label and agreement cleared) and the reviewer holds a fresh lease
        on it so they can decide again.  Only the latest decision can be
        undone: if it is already undone (or there is none) nothing happens.

        Returns
        -------
        Decision or None
            The undone decision (``undone_at`` set), or ``None``.
        """
        reviewer = _check_name(reviewer, "reviewer")
        it, dc = m.items.c, m.decisions.c
        latest = sa.select(m.decisions).where(dc.reviewer == reviewer).order_by(dc.id.desc()).limit(1)
        with self._tx(write=True) as conn:
            now = _now()
            last = conn.execute(latest).first()
            if last is None or last.undone_at is not None:
                return None
            row = conn.execute(sa.select(m.items).where(it.id == last.item_id).with_for_update()).first()
            last = conn.execute(latest).first()  # again, under the item's lock
            if last is None or last.undone_at is not None or last.item_id != row.id:
                return None
            conn.execute(sa.update(m.decisions).where(dc.id == last.id).values(undone_at=now))
            conn.execute(sa.update(m.items).where(it.id == row.id).values(
                n_decisions=row.n_decisions - 1, n_leases=row.n_leases + 1, status="pending", label=None,
                agreement=None, decided_at=None, updated_at=now))
            expires = now + dt.timedelta(seconds=self.config.lease_seconds)
            conn.execute(sa.insert(m.leases).values(item_id=row.id, reviewer=reviewer, claimed_at=now,
                                                    expires_at=expires))
            self._audit(conn, now, "undo", reviewer, row.id,
                        {"decision_id": last.id, "action": last.action, "label": last.label})
        return dataclasses.replace(_decision(last), undone_at=now)

    def release(self, item_id: int, reviewer: str) -> None:
        """Give an item back without deciding it (the lease is deleted).

        Raises
        ------
        UnknownItemError
            No item has this id.
        NotClaimedError
            The reviewer holds no lease on it.
        """
        item_id = _check_id(item_id)
        reviewer = _check_name(reviewer, "reviewer")
        it, ls = m.items.c, m.leases.c
        with self._tx(write=True) as conn:
            now = _now()
            row = conn.execute(sa.select(it.id, it.n_leases).where(it.id == item_id).with_for_update()).first()
            if row is None:
                raise UnknownItemError(item_id)
            gone = conn.execute(sa.delete(m.leases).where(ls.item_id == item_id, ls.reviewer == reviewer)).rowcount
            if not gone:
                raise NotClaimedError(item_id, reviewer, "not claimed by this reviewer")
            conn.execute(sa.update(m.items).where(it.id == item_id).values(n_leases=row.n_leases - 1, updated_at=now))
            self._audit(conn, now, "release", reviewer, item_id, None)

    def expire_leases(self) -> int:
        """Delete every expired lease, returning its item's slot; the number deleted.

        :meth:`claim` does this itself; call it to keep ``stats`` exact, e.g.
        from a periodic task.
        """
        total = 0
        while True:
            with self._tx(write=True) as conn:
                n = self._expire(conn, _now())
            total += n
            if n == 0:
                return total

    def _expire(self, conn: Connection, now: dt.datetime, batch: int = 1000) -> int:
        """Delete expired leases (up to ``batch`` items' worth) in this transaction."""
        it, ls = m.items.c, m.leases.c
        ids = list(conn.execute(sa.select(ls.item_id).where(ls.expires_at <= now).distinct().limit(batch)).scalars())
        if not ids:
            return 0
        # lock the items first (every lease change holds the item's lock); skip those being worked on
        locked = list(conn.execute(sa.select(it.id).where(it.id.in_(ids)).with_for_update(skip_locked=True))
                      .scalars())
        if not locked:
            return 0
        gone = conn.execute(sa.delete(m.leases).where(ls.item_id.in_(locked), ls.expires_at <= now)
                            .returning(ls.item_id, ls.reviewer)).all()
        if not gone:
            return 0
        per_item = Counter(item for item, _ in gone)
        conn.execute(
            sa.update(m.items).where(it.id == sa.bindparam("b_id"))
            .values(n_leases=it.n_leases - sa.bindparam("b_n"), updated_at=now),
            [{"b_id": i, "b_n": c} for i, c in per_item.items()],
        )
        conn.execute(sa.insert(m.audit), [
            {"at": now, "event": "expire", "reviewer": reviewer, "item_id": item, "detail": None}
            for item, reviewer in gone
        ])
        return len(gone)

    # -- statistics and export

    def stats(self) -> dict[str, Any]:
        """Queue statistics as plain values.

        Keys: ``items`` (total), ``backlog`` (pending items), ``by_status``,
        ``pending_by_kind``, ``labels`` (decided/disputed items per label),
        ``decisions`` (live), ``undone``, ``throughput`` (decisions in the last
        hour and day), ``by_reviewer`` (live decisions each),
        ``agreement`` (mean agreement and share of unanimous items among
        decided+disputed ones), ``active_leases``, ``expired_leases``,
        ``oldest_pending`` (timestamp or ``None``), ``required_per_item``
        (the distinct ``k`` of the queued items, fixed at enqueue),
        ``required_reviews`` and ``consensus`` (this store's configuration:
        ``k`` for new items, the rule applied to decisions made through it).
        """
        it, dc, ls = m.items.c, m.decisions.c, m.leases.c
        now = _now()
        count = sa.func.count()
        done = it.status.in_(("decided", "disputed"))
        with self._tx(write=False) as conn:
            by_status = {s: 0 for s in m.ITEM_STATUSES}
            by_status.update({s: int(n) for s, n in conn.execute(sa.select(it.status, count).group_by(it.status))})
            pending_by_kind = {k: int(n) for k, n in conn.execute(
                sa.select(it.kind, count).where(it.status == "pending").group_by(it.kind))}
            labels = {k: int(n) for k, n in conn.execute(sa.select(it.label, count).where(done).group_by(it.label))}
            live = dc.undone_at.is_(None)
            n_live = int(conn.execute(sa.select(count).select_from(m.decisions).where(live)).scalar_one())
            n_undone = int(conn.execute(sa.select(count).select_from(m.decisions).where(~live)).scalar_one())
            hour = int(conn.execute(sa.select(count).select_from(m.decisions)
                                    .where(live, dc.created_at > now - dt.timedelta(hours=1))).scalar_one())
            day = int(conn.execute(sa.select(count).select_from(m.decisions)
                                   .where(live, dc.created_at > now - dt.timedelta(days=1))).scalar_one())
            by_reviewer = {r: int(n) for r, n in conn.execute(
                sa.select(dc.reviewer, count).where(live).group_by(dc.reviewer).order_by(dc.reviewer))}
            mean_agree, n_done, n_unanimous = conn.execute(
                sa.select(sa.func.avg(it.agreement), count, sa.func.sum(sa.case((it.agreement >= 1.0, 1), else_=0)))
                .where(done)).one()
            active = int(conn.execute(sa.select(count).select_from(m.leases).where(ls.expires_at > now)).scalar_one())
            expired = int(conn.execute(sa.select(count).select_from(m.leases).where(ls.expires_at <= now)).scalar_one())
            # ids grow with time: the oldest pending item is the one with the smallest id
            first = sa.select(sa.func.min(it.id)).where(it.status == "pending").scalar_subquery()
            oldest = conn.execute(sa.select(it.created_at).where(it.id == first)).scalar()
            required = sorted(int(k) for k in conn.execute(sa.select(it.required).distinct()).scalars())
        return {
            "items": sum(by_status.values()),
            "backlog": by_status["pending"],
            "by_status": by_status,
            "pending_by_kind": pending_by_kind,
            "labels": labels,
            "decisions": n_live,
            "undone": n_undone,
            "throughput": {"last_hour": hour, "last_day": day},
            "by_reviewer": by_reviewer,
            "agreement": {
                "items": int(n_done or 0),
                "mean": float(mean_agree) if mean_agree is not None else None,
                "unanimous_fraction": (int(n_unanimous or 0) / n_done) if n_done else None,
            },
            "active_leases": active,
            "expired_leases": expired,
            "oldest_pending": oldest,
            "required_reviews": self.config.required_reviews,
            "required_per_item": required,
            "consensus": self.config.consensus,
        }

    def iter_labels(self, *, chunk: int = 5000) -> Iterator[list[dict[str, Any]]]:
        """Decided and disputed items as label rows, in chunks (for :meth:`export_labels`)."""
        it = m.items.c
        cols = [it.id, it.catalog_id, it.source_id, it.exposure, it.x, it.y, it.ra, it.dec, it.mode, it.kind,
                it.label, it.n_decisions, it.agreement, it.probs, it.confidence, it.psf_fwhm, it.reason,
                it.triage_stratum, it.decided_at]
        last = -1
        while True:
            with self._tx(write=False) as conn:
                rows = conn.execute(sa.select(*cols).where(it.status.in_(("decided", "disputed")), it.id > last)
                                    .order_by(it.id).limit(chunk)).all()
            if not rows:
                return
            last = rows[-1].id
            yield [dict(r._mapping) for r in rows]

    def export_labels(self, path: str | os.PathLike) -> Path:
        """Write the consensus labels as Parquet (see :func:`review.labels.write_labels`)."""
        from .labels import write_labels

        return write_labels(self, path)

    # -- accounts

    def add_reviewer(self, name: str, password: str | None = None, *, admin: bool = False,
                     replace: bool = False) -> str:
        """Create a reviewer account; return its API token (shown once, stored hashed).

        Parameters
        ----------
        name : str
            Letters, digits and ``_ . @ + -``, at most 100 characters.
        password : str, optional
            For the web login (at least 8 characters); stored as an scrypt hash.
            Without one the account logs in with its token only.
        admin : bool
            May manage the queue.
        replace : bool
            Reset an existing account's password and token instead of failing.

        Raises
        ------
        ReviewError
            A bad name, a short password, or the name exists (without ``replace``).
        """
        name = _check_name(name, "reviewer name")
        if password is not None and (not isinstance(password, str) or len(password) < 8):
            raise ReviewError(f"reviewer {name!r}: the password must have at least 8 characters")
        token = secrets.token_urlsafe(32)
        values = {"password_hash": hash_password(password) if password is not None else None,
                  "token_hash": _token_hash(token), "admin": bool(admin), "disabled": False}
        rv = m.reviewers.c
        with self._tx(write=True) as conn:
            now = _now()
            exists = conn.execute(sa.select(rv.id).where(rv.name == name)).first()
            if exists is not None and not replace:
                raise ReviewError(f"reviewer {name!r} exists (use replace to reset the password and token)")
            if exists is None:
                conn.execute(sa.insert(m.reviewers).values(name=name, created_at=now, **values))
            else:
                conn.execute(sa.update(m.reviewers).where(rv.id == exists.id).values(**values))
            self._audit(conn, now, "account", name, None, {"admin": bool(admin), "replaced": exists is not None})
        return token

    def authenticate(self, name: str, password: str) -> Reviewer | None:
        """The reviewer if ``name`` and ``password`` match an enabled account, else ``None``."""
        if not isinstance(name, str) or not isinstance(password, str):
            return None
        rv = m.reviewers.c
        with self._tx(write=False) as conn:
            row = conn.execute(sa.select(m.reviewers).where(rv.name == name)).first()
        if row is None or row.disabled or not verify_password(password, row.password_hash):
            return None
        return _reviewer(row)

    def reviewer_by_token(self, token: str) -> Reviewer | None:
        """The enabled reviewer whose API token this is, else ``None``."""
        if not isinstance(token, str) or not token or len(token) > 512:
            return None
        rv = m.reviewers.c
        with self._tx(write=False) as conn:
            row = conn.execute(sa.select(m.reviewers).where(rv.token_hash == _token_hash(token))).first()
        if row is None or row.disabled:
            return None
        return _reviewer(row)

    def get_reviewer(self, name: str) -> Reviewer | None:
        """The account called ``name``, or ``None``."""
        rv = m.reviewers.c
        with self._tx(write=False) as conn:
            row = conn.execute(sa.select(m.reviewers).where(rv.name == name)).first()
        return _reviewer(row) if row is not None else None

    def list_reviewers(self) -> list[Reviewer]:
        """Every account, by name."""
        with self._tx(write=False) as conn:
            rows = conn.execute(sa.select(m.reviewers).order_by(m.reviewers.c.name)).all()
        return [_reviewer(r) for r in rows]

    def set_reviewer_disabled(self, name: str, disabled: bool = True) -> None:
        """Disable (or enable again) an account; a disabled one cannot log in."""
        rv = m.reviewers.c
        with self._tx(write=True) as conn:
            n = conn.execute(sa.update(m.reviewers).where(rv.name == name).values(disabled=bool(disabled))).rowcount
            if not n:
                raise ReviewError(f"reviewer {name!r}: no such account")
            self._audit(conn, _now(), "account", name, None, {"disabled": bool(disabled)})

    # -- cutouts

    def cutout(self, digest: str) -> tuple[bytes, str]:
        """A stored cutout's ``(content, media type)``.

        Raises
        ------
        UnknownCutoutError
            ``digest`` is not 64 lowercase hex characters, or nothing is stored under it.
        """
        if not valid_digest(digest):
            raise UnknownCutoutError(f"cutout {str(digest)[:80]!r}: not a SHA-256 hex digest")
        cu = m.cutouts.c
        with self._tx(write=False) as conn:
            row = conn.execute(sa.select(cu.content, cu.media_type).where(cu.digest == digest)).first()
        if row is None:
            raise UnknownCutoutError(f"cutout {digest}: not stored")
        return bytes(row.content), row.media_type

    # -- helpers

    def _filtered(self, q, *, status, exposure, kind, reason):
        it = m.items.c
        if status is not None:
            if status not in m.ITEM_STATUSES:
                raise ReviewError(f"status must be one of {list(m.ITEM_STATUSES)}, got {status!r}")
            q = q.where(it.status == status)
        if exposure is not None:
            q = q.where(it.exposure == str(exposure))
        if kind is not None:
            q = q.where(it.kind == str(kind))
        if reason is not None and str(reason):
            q = q.where(it.reason.contains(str(reason), autoescape=True))
        return q

    def _load_items(self, conn: Connection, ids: Sequence[int], owner: str | None = None) -> dict[int, Item]:
        if not ids:
            return {}
        found: dict[int, Item] = {}
        for start in range(0, len(ids), 500):
            part = list(ids[start:start + 500])
            rows = conn.execute(sa.select(m.items).where(m.items.c.id.in_(part))).all()
            lease_rows = conn.execute(sa.select(m.leases).where(m.leases.c.item_id.in_(part))
                                      .order_by(m.leases.c.claimed_at)).all()
            by_item: dict[int, list[Lease]] = {}
            for lr in lease_rows:
                by_item.setdefault(lr.item_id, []).append(Lease(lr.reviewer, lr.claimed_at, lr.expires_at))
            now = _now()
            for r in rows:
                found[r.id] = _item(r, tuple(by_item.get(r.id, ())), owner, now)
        return found

    @staticmethod
    def _audit(conn: Connection, now: dt.datetime, event_name: str, reviewer: str | None, item_id: int | None,
               detail: Mapping[str, Any] | None) -> None:
        conn.execute(_ADD_AUDIT, {"at": now, "event": event_name, "reviewer": reviewer, "item_id": item_id,
                                  "detail": dict(detail) if detail is not None else None})


# ---------------------------------------------------------------- hot statements, built once
# (plain SQL constructs with bound parameters: building them per call costs more than running them)

_LOCK_ITEM = (sa.select(m.items.c.id, m.items.c.mode, m.items.c.kind, m.items.c.n_decisions, m.items.c.n_leases,
                        m.items.c.required)
              .where(m.items.c.id == sa.bindparam("item_id")).with_for_update())
_DROP_LEASE = (sa.delete(m.leases)
               .where(m.leases.c.item_id == sa.bindparam("item_id"), m.leases.c.reviewer == sa.bindparam("reviewer"))
               .returning(m.leases.c.expires_at))
_LIVE_DECISION = sa.select(m.decisions.c.id).where(
    m.decisions.c.item_id == sa.bindparam("item_id"), m.decisions.c.reviewer == sa.bindparam("reviewer"),
    m.decisions.c.undone_at.is_(None))
_ADD_DECISION = sa.insert(m.decisions).returning(m.decisions.c.id)
_LIVE_LABELS = sa.select(m.decisions.c.label).where(m.decisions.c.item_id == sa.bindparam("item_id"),
                                                    m.decisions.c.undone_at.is_(None))
_UPDATE_ITEM = sa.update(m.items).where(m.items.c.id == sa.bindparam("b_id")).values(
    n_decisions=sa.bindparam("n_decisions"), n_leases=sa.bindparam("n_leases"), updated_at=sa.bindparam("updated_at"),
    status=sa.bindparam("status"), label=sa.bindparam("label"), agreement=sa.bindparam("agreement"),
    decided_at=sa.bindparam("decided_at"))
_ADD_AUDIT = sa.insert(m.audit)


# ---------------------------------------------------------------- the consensus rule


def consensus(labels: Sequence[str], rule: str) -> tuple[str, str, float]:
    """Combine the live decisions' labels on an item.

    Parameters
    ----------
    labels : sequence of str
        One label per live decision (a kind, or ``"uncertain"``).
    rule : str
        ``"majority"``: the most common label wins if more than half of the
        decisions give it; ``"unanimous"``: only if all do.

    Returns
    -------
    status, label, agreement : str, str, float
        ``("decided", kind, a)`` with a consensus on a kind, else
        ``("disputed", "uncertain", a)``; ``a`` is the share of decisions
        giving the most common label.
    """
    if not labels:
        raise ValueError("consensus of no decisions")
    counts = Counter(labels).most_common()
    top, n_top = counts[0]
    tied = len(counts) > 1 and counts[1][1] == n_top
    agreement = n_top / len(labels)
    if rule == "unanimous":
        agreed = n_top == len(labels)
    elif rule == "majority":
        agreed = 2 * n_top > len(labels) and not tied
    else:
        raise ValueError(f"unknown consensus rule {rule!r}")
    if agreed and top != UNCERTAIN:
        return "decided", top, agreement
    return "disputed", UNCERTAIN, agreement


def _label(row, action: str, kind: str | None) -> tuple[str, str | None]:
    """The label a decision gives an item (validating ``kind``)."""
    if action == "relabel":
        allowed = relabel_kinds(row.mode)
        if kind not in allowed:
            raise ReviewError(f"review item {row.id}: relabel needs a kind, one of {list(allowed)}; got {kind!r}")
        return kind, kind
    if kind not in (None, ""):
        raise ReviewError(f"review item {row.id}: a kind is only given with relabel, not with {action}")
    if action == "accept":
        return (row.kind or UNCERTAIN), None
    if action == "reject":
        return "artifact", None
    return UNCERTAIN, None


# ---------------------------------------------------------------- small helpers


@functools.lru_cache(maxsize=1)
def _script_directory():
    from alembic.script import ScriptDirectory

    from .migrations import alembic_config

    return ScriptDirectory.from_config(alembic_config())


def _catalog_lock(catalog_id: str) -> int:
    """A PostgreSQL advisory-lock key for one catalog (signed 64-bit)."""
    return int.from_bytes(hashlib.sha256(f"moe-review-enqueue:{catalog_id}".encode()).digest()[:8], "big",
                          signed=True)


def _current_revision(conn: Connection) -> str | None:
    """The revision recorded in the database (``None`` for a new database)."""
    if not conn.dialect.has_table(conn, m.VERSION_TABLE):
        return None
    return conn.execute(sa.text(f"SELECT version_num FROM {m.VERSION_TABLE}")).scalar()


def _head_revision() -> str:
    return _script_directory().get_current_head()


def _known_revisions() -> set[str]:
    return {s.revision for s in _script_directory().walk_revisions()}


def _parse_url(raw: str) -> URL:
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
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip() or type(orig).__name__
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("(Background")]
    return " ".join(lines[:2])[:300]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _is_number(v: object) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def _check_id(item_id: object) -> int:
    if isinstance(item_id, bool) or type(item_id).__name__ == "bool_":
        raise UnknownItemError(item_id)
    if isinstance(item_id, numbers.Integral):
        return int(item_id)
    if isinstance(item_id, str) and item_id.strip().isdigit():
        return int(item_id.strip())
    raise UnknownItemError(item_id)


def _check_name(name: object, what: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise ReviewError(f"{what}: expected 1-100 letters, digits or _.@+- (starting with a letter or digit), "
                          f"got {name!r}")
    return name


def _check_int_range(what: str, value: object, low: int, high: int | None) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low or (
            high is not None and value > high):
        bounds = f"{low}..{high}" if high is not None else f">= {low}"
        raise ReviewError(f"{what}: expected an integer {bounds}, got {value!r}")


def _float_or_none(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _item(r, leases: tuple[Lease, ...], owner: str | None, now: dt.datetime) -> Item:
    if owner is not None:
        mine = [lease for lease in leases if lease.reviewer == owner]
        lease_owner, lease_expires = (owner, mine[0].expires_at) if mine else (None, None)
    else:
        live = [lease for lease in leases if lease.expires_at > now]
        last = max(live, key=lambda lease: lease.expires_at) if live else None
        lease_owner, lease_expires = (last.reviewer, last.expires_at) if last else (None, None)
    return Item(
        id=r.id, catalog_id=r.catalog_id, source_id=r.source_id, exposure=r.exposure, x=r.x, y=r.y,
        ra=r.ra, dec=r.dec, kind=r.kind, probs=dict(r.probs or {}), evidence=dict(r.evidence or {}),
        weights=dict(r.weights or {}), reason=r.reason, confidence=r.confidence, priority=r.priority,
        status=r.status, n_decisions=r.n_decisions, required=r.required, lease_owner=lease_owner,
        lease_expires=lease_expires, created_at=r.created_at, updated_at=r.updated_at,
        cutouts=dict(r.cutouts or {}), mode=r.mode, label=r.label, agreement=r.agreement, psf_fwhm=r.psf_fwhm,
        pixel_scale=r.pixel_scale, decided_at=r.decided_at, leases=leases, triage_stratum=r.triage_stratum,
    )


def _decision(r) -> Decision:
    return Decision(r.id, r.item_id, r.reviewer, r.action, r.kind, r.label, r.comment, r.created_at, r.undone_at)


def _reviewer(r) -> Reviewer:
    return Reviewer(r.id, r.name, bool(r.admin), bool(r.disabled), r.created_at, r.password_hash is not None)

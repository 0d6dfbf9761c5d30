"""The review queue's tables (SQLAlchemy 2 Core / declarative metadata).

Six tables; the Alembic migrations in :mod:`review.migrations` create exactly
these (a test compares them):

``review_items``
    One row per source to review, unique per ``(catalog_id, source_id)`` so
    enqueueing the same catalog twice adds nothing.  Besides the source (pixel
    and sky position, the gate's kind, class probabilities, expert weights and
    evidence, the reason) it carries the queue state: ``required`` (``k``
    decisions needed), ``n_decisions`` (live decisions), ``n_leases`` (live
    claims), ``status`` (``pending`` / ``decided`` / ``disputed``) and, once
    decided, ``label`` and ``agreement``.
``review_leases``
    One row per claim, keyed ``(item_id, reviewer)``: a reviewer holds an item
    at most once.  ``n_leases`` on the item always equals its number of lease
    rows; both change only in a transaction that holds the item's row lock.
``review_decisions``
    Every decision ever made (the audit trail of decisions); an undone decision
    keeps its row with ``undone_at`` set.  A partial unique index allows one
    live decision per ``(item_id, reviewer)``.
``review_audit``
    Every event (enqueue, claim, decide, undo, release, expire) with who, when
    and what.
``review_reviewers``
    Accounts: scrypt password hashes and SHA-256 hashes of API tokens; no
    secret is stored in the clear.
``review_cutouts``
    Content-addressed blobs (FITS stamps, PNG renderings) keyed by their
    SHA-256 hex digest.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

__all__ = [
    "ITEM_STATUSES",
    "VERSION_TABLE",
    "UTCDateTime",
    "audit",
    "cutouts",
    "decisions",
    "items",
    "leases",
    "metadata",
    "reviewers",
]

VERSION_TABLE = "review_alembic_version"
"""Alembic's version table (named so it cannot clash in a shared database)."""

ITEM_STATUSES: tuple[str, ...] = ("pending", "decided", "disputed")
"""``pending``: fewer live decisions than required; ``decided``: the required
decisions reached a consensus label; ``disputed``: they did not (label
``uncertain``)."""

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # SQLite: INTEGER PRIMARY KEY is the rowid


class UTCDateTime(sa.TypeDecorator):
    """A timezone-aware UTC timestamp on every backend.

    PostgreSQL stores ``timestamptz``; SQLite stores naive UTC text, made
    aware again when read.  Values written must be aware (any zone).
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("UTCDateTime needs an aware datetime")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

items = sa.Table(
    "review_items",
    metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("catalog_id", sa.String(200), nullable=False),
    sa.Column("source_id", sa.BigInteger(), nullable=False),
    sa.Column("exposure", sa.String(500), nullable=False),
    sa.Column("mode", sa.String(16), nullable=False),
    sa.Column("x", sa.Float(), nullable=False),
    sa.Column("y", sa.Float(), nullable=False),
    sa.Column("ra", sa.Float(), nullable=True),
    sa.Column("dec", sa.Float(), nullable=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("probs", sa.JSON(), nullable=False),
    sa.Column("evidence", sa.JSON(), nullable=False),
    sa.Column("weights", sa.JSON(), nullable=False),
    sa.Column("reason", sa.Text(), nullable=False),
    sa.Column("confidence", sa.Float(), nullable=True),
    sa.Column("psf_fwhm", sa.Float(), nullable=True),
    sa.Column("pixel_scale", sa.Float(), nullable=True),
    sa.Column("priority", sa.Float(), nullable=False),
    sa.Column("required", sa.Integer(), nullable=False),
    sa.Column("n_decisions", sa.Integer(), nullable=False),
    sa.Column("n_leases", sa.Integer(), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("label", sa.String(16), nullable=True),
    sa.Column("agreement", sa.Float(), nullable=True),
    sa.Column("triage_stratum", sa.String(64), nullable=True),  # revision 0002
    sa.Column("cutouts", sa.JSON(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Column("decided_at", UTCDateTime(), nullable=True),
    sa.UniqueConstraint("catalog_id", "source_id"),
    sa.CheckConstraint("n_decisions >= 0 AND n_leases >= 0", name="counts"),
    sa.CheckConstraint("n_decisions + n_leases <= required", name="capacity"),
    sa.Index(None, "exposure"),
    sa.Index(None, "status", "kind"),
)
# the queue order (priority high to low, then id), so a claim reads only the rows it returns
sa.Index("ix_review_items_queue", items.c.status, items.c.priority.desc(), items.c.id)

leases = sa.Table(
    "review_leases",
    metadata,
    sa.Column("item_id", _ID, sa.ForeignKey("review_items.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("reviewer", sa.String(100), primary_key=True),
    sa.Column("claimed_at", UTCDateTime(), nullable=False),
    sa.Column("expires_at", UTCDateTime(), nullable=False),
    sa.Index(None, "expires_at"),
    sa.Index(None, "reviewer"),
)

decisions = sa.Table(
    "review_decisions",
    metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("item_id", _ID, sa.ForeignKey("review_items.id", ondelete="CASCADE"), nullable=False),
    sa.Column("reviewer", sa.String(100), nullable=False),
    sa.Column("action", sa.String(16), nullable=False),
    sa.Column("kind", sa.String(16), nullable=True),
    sa.Column("label", sa.String(16), nullable=False),
    sa.Column("comment", sa.Text(), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("undone_at", UTCDateTime(), nullable=True),
    sa.Index(None, "item_id"),
    sa.Index(None, "reviewer", "id"),
    sa.Index(
        "uq_review_decisions_live",
        "item_id",
        "reviewer",
        unique=True,
        sqlite_where=sa.text("undone_at IS NULL"),
        postgresql_where=sa.text("undone_at IS NULL"),
    ),
)

audit = sa.Table(
    "review_audit",
    metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("at", UTCDateTime(), nullable=False),
    sa.Column("event", sa.String(16), nullable=False),
    sa.Column("reviewer", sa.String(100), nullable=True),
    sa.Column("item_id", sa.BigInteger(), nullable=True),
    sa.Column("detail", sa.JSON(), nullable=True),
    sa.Index(None, "item_id"),
)

reviewers = sa.Table(
    "review_reviewers",
    metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(100), nullable=False, unique=True),
    sa.Column("password_hash", sa.String(255), nullable=True),
    sa.Column("token_hash", sa.String(64), nullable=True, unique=True),
    sa.Column("admin", sa.Boolean(), nullable=False),
    sa.Column("disabled", sa.Boolean(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
)

cutouts = sa.Table(
    "review_cutouts",
    metadata,
    sa.Column("digest", sa.String(64), primary_key=True),
    sa.Column("media_type", sa.String(64), nullable=False),
    sa.Column("content", sa.LargeBinary(), nullable=False),
    sa.Column("size", sa.Integer(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
)

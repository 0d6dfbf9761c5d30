"""The review queue: items, leases, decisions, audit, reviewers, cutouts.

Revision ID: 0001
Revises:
Create Date: 2026-11-20
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _ts(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "review_items",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
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
        sa.Column("cutouts", sa.JSON(), nullable=False),
        _ts("created_at"),
        _ts("updated_at"),
        _ts("decided_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_review_items"),
        sa.UniqueConstraint("catalog_id", "source_id", name="uq_review_items_catalog_id_source_id"),
        sa.CheckConstraint("n_decisions >= 0 AND n_leases >= 0", name="ck_review_items_counts"),
        sa.CheckConstraint("n_decisions + n_leases <= required", name="ck_review_items_capacity"),
    )
    op.create_index("ix_review_items_queue", "review_items", ["status", sa.text("priority DESC"), "id"])
    op.create_index("ix_review_items_exposure", "review_items", ["exposure"])
    op.create_index("ix_review_items_status_kind", "review_items", ["status", "kind"])

    op.create_table(
        "review_leases",
        sa.Column("item_id", _ID, nullable=False),
        sa.Column("reviewer", sa.String(100), nullable=False),
        _ts("claimed_at"),
        _ts("expires_at"),
        sa.ForeignKeyConstraint(["item_id"], ["review_items.id"], ondelete="CASCADE",
                                name="fk_review_leases_item_id_review_items"),
        sa.PrimaryKeyConstraint("item_id", "reviewer", name="pk_review_leases"),
    )
    op.create_index("ix_review_leases_expires_at", "review_leases", ["expires_at"])
    op.create_index("ix_review_leases_reviewer", "review_leases", ["reviewer"])

    op.create_table(
        "review_decisions",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("item_id", _ID, nullable=False),
        sa.Column("reviewer", sa.String(100), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("kind", sa.String(16), nullable=True),
        sa.Column("label", sa.String(16), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        _ts("created_at"),
        _ts("undone_at", nullable=True),
        sa.ForeignKeyConstraint(["item_id"], ["review_items.id"], ondelete="CASCADE",
                                name="fk_review_decisions_item_id_review_items"),
        sa.PrimaryKeyConstraint("id", name="pk_review_decisions"),
    )
    op.create_index("ix_review_decisions_item_id", "review_decisions", ["item_id"])
    op.create_index("ix_review_decisions_reviewer_id", "review_decisions", ["reviewer", "id"])
    op.create_index(
        "uq_review_decisions_live",
        "review_decisions",
        ["item_id", "reviewer"],
        unique=True,
        sqlite_where=sa.text("undone_at IS NULL"),
        postgresql_where=sa.text("undone_at IS NULL"),
    )

    op.create_table(
        "review_audit",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        _ts("at"),
        sa.Column("event", sa.String(16), nullable=False),
        sa.Column("reviewer", sa.String(100), nullable=True),
        sa.Column("item_id", sa.BigInteger(), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_review_audit"),
    )
    op.create_index("ix_review_audit_item_id", "review_audit", ["item_id"])

    op.create_table(
        "review_reviewers",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=True),
        sa.Column("token_hash", sa.String(64), nullable=True),
        sa.Column("admin", sa.Boolean(), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        _ts("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_review_reviewers"),
        sa.UniqueConstraint("name", name="uq_review_reviewers_name"),
        sa.UniqueConstraint("token_hash", name="uq_review_reviewers_token_hash"),
    )

    op.create_table(
        "review_cutouts",
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("media_type", sa.String(64), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        _ts("created_at"),
        sa.PrimaryKeyConstraint("digest", name="pk_review_cutouts"),
    )


def downgrade() -> None:
    op.drop_table("review_cutouts")
    op.drop_table("review_reviewers")
    op.drop_index("ix_review_audit_item_id", table_name="review_audit")
    op.drop_table("review_audit")
    op.drop_index("uq_review_decisions_live", table_name="review_decisions")
    op.drop_index("ix_review_decisions_reviewer_id", table_name="review_decisions")
    op.drop_index("ix_review_decisions_item_id", table_name="review_decisions")
    op.drop_table("review_decisions")
    op.drop_index("ix_review_leases_reviewer", table_name="review_leases")
    op.drop_index("ix_review_leases_expires_at", table_name="review_leases")
    op.drop_table("review_leases")
    op.drop_index("ix_review_items_status_kind", table_name="review_items")
    op.drop_index("ix_review_items_exposure", table_name="review_items")
    op.drop_index("ix_review_items_queue", table_name="review_items")
    op.drop_table("review_items")

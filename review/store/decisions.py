"""Decisions: deciding an item, undoing the last decision, the consensus rule, the audit trail.

A decision needs a live lease of its reviewer on the item.  When an item has
its ``k`` decisions, :func:`consensus` combines their labels (``majority`` or
``unanimous``) into ``decided`` with a kind, or ``disputed`` with
``"uncertain"``.  Every change is written to the audit trail.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import Counter
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from contracts.vocabulary import UNCERTAIN

from .. import models as m
from ..errors import NotClaimedError, ReviewError, UnknownItemError
from ._common import _audit, _check_id, _check_int_range, _check_name, _now
from .engine import StoreEngine
from .values import AuditEvent, Decision, relabel_kinds

__all__ = ["ACTIONS", "DecisionsMixin", "consensus"]

ACTIONS: tuple[str, ...] = ("accept", "reject", "relabel", "uncertain")
"""What a reviewer may decide (see :mod:`review.store` for the labels)."""

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


class DecisionsMixin(StoreEngine):
    """Decide, undo, and the decision history and audit trail of :class:`~review.store.ReviewStore`."""

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
        comment = _check_comment(item_id, comment)
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
            _audit(conn, now, "decide", reviewer, item_id, detail)
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
            _audit(conn, now, "undo", reviewer, row.id,
                   {"decision_id": last.id, "action": last.action, "label": last.label})
        return dataclasses.replace(_decision(last), undone_at=now)

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


def _check_comment(item_id: int, comment: object) -> str | None:
    """A decision's comment, stripped (``None`` when empty); :class:`ReviewError` if not short text."""
    if comment is None:
        return None
    if not isinstance(comment, str) or len(comment) > 5000:
        raise ReviewError(f"review item {item_id}: comment must be text of at most 5000 characters")
    return comment.strip() or None


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


def _decision(r) -> Decision:
    """A :class:`Decision` from its row."""
    return Decision(r.id, r.item_id, r.reviewer, r.action, r.kind, r.label, r.comment, r.created_at, r.undone_at)

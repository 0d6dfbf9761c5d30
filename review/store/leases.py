"""Leases: claiming items, giving them back, and the expiry of abandoned claims.

An item needing ``k`` decisions may be leased to up to ``k`` distinct
reviewers at once, never twice to the same one and never to one who already
decided it; ``n_decisions + n_leases <= required`` always holds.  Expired
leases are deleted by the next claim (or :meth:`LeasesMixin.expire_leases`),
returning their slots.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .. import models as m
from ..errors import NotClaimedError, ReviewError, UnknownItemError
from ._common import _ADD_AUDIT, _audit, _check_id, _check_int_range, _check_name, _now
from .items import ItemsMixin
from .values import Item

__all__ = ["LeasesMixin"]

_MAX_CLAIM = 1000


class LeasesMixin(ItemsMixin):
    """Claim, release, leased items and lease expiry of :class:`~review.store.ReviewStore`."""

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
        q = self._claimable(reviewer, n, exposure=exposure, kind=kind, reason=reason, item_id=item_id)
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

    def _claimable(self, reviewer: str, n: int, *, exposure, kind, reason, item_id):
        """The query of the ``n`` items ``reviewer`` may claim, locked (skipping rows others lock)."""
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
        return (q.where(it.n_decisions + it.n_leases < it.required, ~mine_lease, ~mine_decision)
                .order_by(it.priority.desc(), it.id).limit(n)
                .with_for_update(skip_locked=True, of=m.items))

    def _claim(self, q, reviewer: str, lease: float) -> list[Item]:
        """Lease the items ``q`` selects to ``reviewer`` in one transaction."""
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
            _audit(conn, now, "release", reviewer, item_id, None)

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

    @staticmethod
    def _expire(conn: Connection, now: dt.datetime, batch: int = 1000) -> int:
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

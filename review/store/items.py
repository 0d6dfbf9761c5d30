"""Reading the queue: items by id, filtered lists and counts, stored cutouts."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .. import models as m
from ..errors import ReviewError, UnknownCutoutError, UnknownItemError
from ._common import _check_id, _check_int_range, _now
from .engine import StoreEngine
from .values import Item, Lease

__all__ = ["ItemsMixin", "valid_digest"]

_DIGEST_RE = re.compile(r"^[0-9a-f]{64}$")


def valid_digest(digest: object) -> bool:
    """Whether ``digest`` is a SHA-256 hex digest (64 lowercase hex characters).

    Only such strings are ever looked up, so a digest can never name a path.
    """
    return isinstance(digest, str) and _DIGEST_RE.fullmatch(digest) is not None


class ItemsMixin(StoreEngine):
    """The reading side of :class:`~review.store.ReviewStore`: items and cutouts."""

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

    # -- helpers shared with claiming

    @staticmethod
    def _filtered(q, *, status, exposure, kind, reason):
        """``q`` restricted to items of this status / exposure / kind / reason text (``None``: any)."""
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

    @staticmethod
    def _load_items(conn: Connection, ids: Sequence[int], owner: str | None = None) -> dict[int, Item]:
        """The items with these ids (with their leases), by id; missing ids are left out."""
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


def _item(r, leases: tuple[Lease, ...], owner: str | None, now: dt.datetime) -> Item:
    """An :class:`Item` from its row and lease rows (``owner``: whose lease to report)."""
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

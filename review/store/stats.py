"""Queue statistics and the label rows behind the Parquet export."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .. import models as m
from ._common import _now
from .engine import StoreEngine

__all__ = ["StatsMixin"]

_DONE = tuple(s for s in m.ITEM_STATUSES if s != "pending")
"""The statuses of items that have all their decisions (``decided``, ``disputed``: they have a label)."""

_LABEL_ROW = ("id", "catalog_id", "source_id", "exposure", "x", "y", "ra", "dec", "mode", "kind", "label",
              "n_decisions", "agreement", "probs", "confidence", "psf_fwhm", "reason", "triage_stratum",
              "decided_at")
"""The item columns of a label row (:meth:`StatsMixin.iter_labels`), in order."""


class StatsMixin(StoreEngine):
    """Statistics and label export of :class:`~review.store.ReviewStore`."""

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
        now = _now()
        with self._tx(write=False) as conn:
            items = _item_stats(conn, now)
            decisions = _decision_stats(conn, now)
        by_status = items["by_status"]
        return {
            "items": sum(by_status.values()),
            "backlog": by_status["pending"],
            "by_status": by_status,
            "pending_by_kind": items["pending_by_kind"],
            "labels": items["labels"],
            **decisions,
            "agreement": items["agreement"],
            "active_leases": items["active_leases"],
            "expired_leases": items["expired_leases"],
            "oldest_pending": items["oldest_pending"],
            "required_reviews": self.config.required_reviews,
            "required_per_item": items["required_per_item"],
            "consensus": self.config.consensus,
        }

    def iter_labels(self, *, chunk: int = 5000) -> Iterator[list[dict[str, Any]]]:
        """Decided and disputed items as label rows, in chunks (for :meth:`export_labels`)."""
        it = m.items.c
        cols = [it[name] for name in _LABEL_ROW]
        last = -1
        while True:
            with self._tx(write=False) as conn:
                rows = conn.execute(sa.select(*cols).where(it.status.in_(_DONE), it.id > last)
                                    .order_by(it.id).limit(chunk)).all()
            if not rows:
                return
            last = rows[-1].id
            yield [dict(r._mapping) for r in rows]

    def export_labels(self, path: str | os.PathLike) -> Path:
        """Write the consensus labels as Parquet (see :func:`review.labels.write_labels`)."""
        from ..labels import write_labels

        return write_labels(self, path)


def _item_stats(conn: Connection, now: dt.datetime) -> dict[str, Any]:
    """The item and lease side of :meth:`StatsMixin.stats`."""
    it, ls = m.items.c, m.leases.c
    count = sa.func.count()
    done = it.status.in_(_DONE)
    by_status = {s: 0 for s in m.ITEM_STATUSES}
    by_status.update({s: int(n) for s, n in conn.execute(sa.select(it.status, count).group_by(it.status))})
    pending_by_kind = {k: int(n) for k, n in conn.execute(
        sa.select(it.kind, count).where(it.status == "pending").group_by(it.kind))}
    labels = {k: int(n) for k, n in conn.execute(sa.select(it.label, count).where(done).group_by(it.label))}
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
        "by_status": by_status,
        "pending_by_kind": pending_by_kind,
        "labels": labels,
        "agreement": {
            "items": int(n_done or 0),
            "mean": float(mean_agree) if mean_agree is not None else None,
            "unanimous_fraction": (int(n_unanimous or 0) / n_done) if n_done else None,
        },
        "active_leases": active,
        "expired_leases": expired,
        "oldest_pending": oldest,
        "required_per_item": required,
    }


def _decision_stats(conn: Connection, now: dt.datetime) -> dict[str, Any]:
    """The decision side of :meth:`StatsMixin.stats`: live and undone counts, throughput, per reviewer."""
    dc = m.decisions.c
    count = sa.func.count()
    live = dc.undone_at.is_(None)

    def n_decisions(*where) -> int:
        return int(conn.execute(sa.select(count).select_from(m.decisions).where(*where)).scalar_one())

    by_reviewer = {r: int(n) for r, n in conn.execute(
        sa.select(dc.reviewer, count).where(live).group_by(dc.reviewer).order_by(dc.reviewer))}
    return {
        "decisions": n_decisions(live),
        "undone": n_decisions(~live),
        "throughput": {"last_hour": n_decisions(live, dc.created_at > now - dt.timedelta(hours=1)),
                       "last_day": n_decisions(live, dc.created_at > now - dt.timedelta(days=1))},
        "by_reviewer": by_reviewer,
    }

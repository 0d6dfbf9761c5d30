"""The plain values the review store hands out: items, leases, decisions, reviewers, audit lines.

Frozen dataclasses, free of any database handle, so they can be passed to
templates, pickled or compared in tests.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from contracts.vocabulary import CLASSES_BY_MODE

__all__ = [
    "AuditEvent",
    "Decision",
    "EnqueueResult",
    "Item",
    "Lease",
    "Reviewer",
    "relabel_kinds",
]


def relabel_kinds(mode: str) -> tuple[str, ...]:
    """The kinds a reviewer may relabel an item of ``mode`` to."""
    return CLASSES_BY_MODE[mode] if mode in CLASSES_BY_MODE else CLASSES_BY_MODE["survey"]


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

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

Layout
------
:class:`ReviewStore` is composed of one part per job, each in its module:
:mod:`~review.store.engine` (URL, engine, transactions, migrations),
:mod:`~review.store.ingest` (enqueue with cutouts), :mod:`~review.store.items`
(reading items and cutouts), :mod:`~review.store.leases` (claim, release,
expiry), :mod:`~review.store.decisions` (decide, undo, consensus, audit),
:mod:`~review.store.accounts` (reviewers and passwords) and
:mod:`~review.store.stats` (statistics, label rows); the plain values it
returns are in :mod:`~review.store.values`.
"""


from __future__ import annotations

import os

from contracts.vocabulary import UNCERTAIN

from ..config import ReviewConfig
from ..errors import ReviewError
from .accounts import AccountsMixin, hash_password, verify_password
from .decisions import ACTIONS, DecisionsMixin, consensus
from .ingest import IngestMixin
from .items import ItemsMixin, valid_digest
from .leases import LeasesMixin
from .stats import StatsMixin
from .values import (
    AuditEvent,
    Decision,
    EnqueueResult,
    Item,
    Lease,
    Reviewer,
    relabel_kinds,
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


class ReviewStore(IngestMixin, LeasesMixin, ItemsMixin, DecisionsMixin, AccountsMixin, StatsMixin):
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

    def __init__(self, url: str | os.PathLike[str] | None = None, *, config: ReviewConfig | None = None) -> None:
        if config is not None and not isinstance(config, ReviewConfig):
            raise ReviewError(f"config: expected a ReviewConfig, got {type(config).__name__}")
        self.config = config if config is not None else ReviewConfig()
        self._connect(url if url is not None else self.config.database_url())

    def __repr__(self) -> str:
        return f"ReviewStore({self.url!r})"

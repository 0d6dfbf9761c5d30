"""The expert-review queue: a durable store, cutouts, label export.

Detections the gate cannot decide go to a :class:`ReviewStore` (SQLite by
default, PostgreSQL by URL).  Reviewers claim items with a lease, decide them
(accept / reject / relabel / uncertain), ``k`` of them per item with a
consensus rule; the consensus labels are exported as Parquet for calibration
and training (:func:`read_labels` validates such a file).  The web app lives in
:mod:`review.web`, the command line in :mod:`review.cli`.

Importing this package is light (no astropy, pandas or pyarrow); cutouts and
label files import them when used.
"""

from .config import ReviewConfig, load_review_config
from .errors import (
    NotClaimedError,
    ReviewError,
    StoreConnectionError,
    UnknownCutoutError,
    UnknownItemError,
)
from .labels import read_labels, write_labels
from .store import (
    ACTIONS,
    UNCERTAIN,
    AuditEvent,
    Decision,
    EnqueueResult,
    Item,
    Lease,
    Reviewer,
    ReviewStore,
    consensus,
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
    "NotClaimedError",
    "ReviewConfig",
    "ReviewError",
    "ReviewStore",
    "Reviewer",
    "StoreConnectionError",
    "UnknownCutoutError",
    "UnknownItemError",
    "consensus",
    "load_review_config",
    "read_labels",
    "relabel_kinds",
    "write_labels",
]

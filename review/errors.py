"""Expected faults of the review queue.

Every error is a :class:`contracts.errors.MoeImagingError`, so the command
line prints it as one line (``moe-imaging: error: ...``) with no traceback.
The message names what was wrong (the item, the file, the database URL without
its password) and the cause.  An operation that raises changes nothing: every
store method runs in one database transaction that is rolled back on error.
"""

from __future__ import annotations

from contracts.errors import MoeImagingError

__all__ = [
    "NotClaimedError",
    "ReviewError",
    "StoreConnectionError",
    "UnknownCutoutError",
    "UnknownItemError",
]


class ReviewError(MoeImagingError):
    """Base class of the review queue's expected faults."""


class UnknownItemError(ReviewError):
    """No review item has this id.

    Parameters
    ----------
    item_id : int
        The id that was asked for.
    """

    def __init__(self, item_id: object) -> None:
        self.item_id = item_id
        super().__init__(f"review item {item_id!r}: no such item")


class NotClaimedError(ReviewError):
    """A reviewer acted on an item they do not hold a live lease on.

    Raised when deciding or releasing an item that was never claimed by this
    reviewer, that is leased to someone else, or whose lease has expired.
    """

    def __init__(self, item_id: int, reviewer: str, cause: str) -> None:
        self.item_id = item_id
        self.reviewer = reviewer
        super().__init__(f"review item {item_id}: {cause} (reviewer {reviewer!r})")


class UnknownCutoutError(ReviewError):
    """A cutout digest is malformed or not stored."""


class StoreConnectionError(ReviewError):
    """The review database cannot be opened (unreachable server, bad path)."""

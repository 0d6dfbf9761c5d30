"""Small helpers every part of the store shares: argument checks, the clock, the audit insert.

Private to :mod:`review.store`; nothing here is public API.
"""

from __future__ import annotations

import datetime as dt
import math
import numbers
import re
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .. import models as m
from ..errors import ReviewError, UnknownItemError

__all__: list[str] = []

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@+-]{0,99}$")

_ADD_AUDIT = sa.insert(m.audit)
"""The audit insert, built once (one row or many)."""


def _now() -> dt.datetime:
    """The current time, timezone-aware UTC."""
    return dt.datetime.now(dt.UTC)


def _is_number(v: object) -> bool:
    """Whether ``v`` is a finite real number (not a bool)."""
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def _check_id(item_id: object) -> int:
    """An item id as an int (an integer or a string of digits), else :class:`UnknownItemError`."""
    if isinstance(item_id, bool) or type(item_id).__name__ == "bool_":
        raise UnknownItemError(item_id)
    if isinstance(item_id, numbers.Integral):
        return int(item_id)
    if isinstance(item_id, str) and item_id.strip().isdigit():
        return int(item_id.strip())
    raise UnknownItemError(item_id)


def _check_name(name: object, what: str) -> str:
    """A reviewer name (1-100 letters, digits or ``_.@+-``), else :class:`ReviewError`."""
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise ReviewError(f"{what}: expected 1-100 letters, digits or _.@+- (starting with a letter or digit), "
                          f"got {name!r}")
    return name


def _check_int_range(what: str, value: object, low: int, high: int | None) -> None:
    """Raise :class:`ReviewError` unless ``value`` is an integer in ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low or (
            high is not None and value > high):
        bounds = f"{low}..{high}" if high is not None else f">= {low}"
        raise ReviewError(f"{what}: expected an integer {bounds}, got {value!r}")


def _audit(conn: Connection, now: dt.datetime, event_name: str, reviewer: str | None, item_id: int | None,
           detail: Mapping[str, Any] | None) -> None:
    """Write one line of the audit trail in this transaction."""
    conn.execute(_ADD_AUDIT, {"at": now, "event": event_name, "reviewer": reviewer, "item_id": item_id,
                              "detail": dict(detail) if detail is not None else None})

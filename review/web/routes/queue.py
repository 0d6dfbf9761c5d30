"""The queue page, claiming the next item, undoing the last decision, statistics."""

from __future__ import annotations

from typing import Annotated

from fastapi import FastAPI, Form, Request
from fastapi.responses import HTMLResponse, Response

from ... import models as _models
from ..pages import FormFilters, QueryFilters, _render
from ..security import PostSession, Session, _redirect, _state
from .items import RELABEL_CLASSES, _release_if_undecided

__all__ = ["register"]


def root(session: Session) -> Response:
    """Go to the queue."""
    return _redirect("/queue")


def queue(
    request: Request,
    session: Session,
    filters: QueryFilters,
    page: int = 1,
    empty: int = 0,
    undone: str | None = None,
) -> Response:
    """One page of the queue, filtered, highest priority first."""
    state = _state(request)
    page = max(1, min(page, 1_000_000))
    size = state.config.page_size
    rows = state.store.list_items(**filters.kwargs(), limit=size + 1, offset=(page - 1) * size)
    more = len(rows) > size
    message = None
    if empty:
        message = "Nothing left to claim with these filters."
    elif undone == "none":
        message = "You have no decision to undo."
    return _render(
        request, "queue.html",
        {
            "items": rows[:size],
            "filters": filters,
            "page": page,
            "prev_url": ("/queue" + filters.query(page=page - 1)) if page > 1 else None,
            "next_url": ("/queue" + filters.query(page=page + 1)) if more else None,
            "kinds": _all_classes(),
            "statuses": _models.ITEM_STATUSES,
            "pending": state.store.pending_count(filters.exposure),
            "message": message,
        },
        session=session,
    )


def next_item(
    request: Request,
    session: PostSession,
    filters: FormFilters,
    current: Annotated[int | None, Form()] = None,
) -> Response:
    """Claim the most urgent item under the filters (giving back ``current`` if undecided) and show it."""
    state = _state(request)
    # only pending items can be claimed: the status filter of the queue page is not passed on
    claimed = state.store.claim(
        session.reviewer, n=1, lease_seconds=state.config.lease_seconds,
        exposure=filters.exposure, kind=filters.kind, reason=filters.reason,
    )
    if current is not None and (not claimed or claimed[0].id != current):
        _release_if_undecided(state.store, current, session.reviewer)
    if not claimed:
        return _redirect("/queue" + filters.query(empty=1))
    return _redirect(f"/items/{claimed[0].id}" + filters.query())


def undo(request: Request, session: PostSession) -> Response:
    """Take back the reviewer's last decision and show its item again."""
    state = _state(request)
    undone = state.store.undo_last(session.reviewer)
    if undone is None:
        return _redirect("/queue?undone=none")
    return _redirect(f"/items/{undone.item_id}")


def stats(request: Request, session: Session) -> Response:
    """The queue's statistics."""
    state = _state(request)
    return _render(request, "stats.html", {"stats": state.store.stats()}, session=session)


def register(app: FastAPI) -> None:
    """Add ``GET /``, ``GET /queue``, ``POST /next``, ``POST /undo`` and ``GET /stats`` to ``app``."""
    app.get("/")(root)
    app.get("/queue", response_class=HTMLResponse)(queue)
    app.post("/next")(next_item)
    app.post("/undo")(undo)
    app.get("/stats", response_class=HTMLResponse)(stats)


def _all_classes() -> tuple[str, ...]:
    """Every class of every mode, once, in order (the queue's kind filter)."""
    seen: dict[str, None] = {}
    for classes in RELABEL_CLASSES.values():
        seen.update(dict.fromkeys(classes))
    return tuple(seen)

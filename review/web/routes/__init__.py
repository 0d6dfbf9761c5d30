"""The reviewers' web app's routes, one module per concern.

:mod:`.login` (log in and out), :mod:`.queue` (the queue, "next", undo,
statistics) and :mod:`.items` (an item's page, decisions, claim and release,
cutouts).  The endpoints are plain functions; each module's ``register(app)``
adds them to the app itself (not through an included ``APIRouter``), so
``app.routes`` lists every route and ``app.dependency_overrides`` applies.
"""

from __future__ import annotations

from fastapi import FastAPI

from . import items, login, queue

__all__ = ["include_routes"]


def include_routes(app: FastAPI) -> None:
    """Add every route of the web app to ``app``."""
    for module in (login, queue, items):
        module.register(app)

"""The reviewers' web app (FastAPI, server-rendered HTML, no front-end build).

:func:`create_app` builds the application around a :class:`review.store.ReviewStore`;
:func:`serve` runs it with uvicorn on ``127.0.0.1`` by default (``moe-imaging review
serve`` calls it).  Templates and static files ship inside this package.
"""

from __future__ import annotations

from .app import WebConfig, create_app, serve

__all__ = ["WebConfig", "create_app", "serve"]

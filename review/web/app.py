"""The reviewers' web app: log in, the queue, an item page, decisions, statistics.

Server-rendered HTML (Jinja2 templates shipped in this package), one small plain
JavaScript file for the keyboard shortcuts, no front-end build and no external
resources (the pages work offline).  All reviewing state lives in the
:class:`review.store.ReviewStore`; the app holds none of its own apart from the
signing key and the list of sessions logged out since start-up.

Security model
--------------
* **Accounts** are the store's reviewers (hashed passwords or API tokens); the
  login form takes a name and a password, or a token alone.
* **Sessions** are a cookie carrying the reviewer's name, an expiry time and a
  random nonce, signed with HMAC-SHA256 under a server secret
  (:attr:`WebConfig.secret`, else the environment variable ``MOE_REVIEW_SECRET``,
  else a random key made at start-up, which logs everyone out on restart).  The
  cookie is ``HttpOnly`` and ``SameSite=Strict``; ``Secure`` when
  :attr:`WebConfig.secure_cookie` is set (behind TLS).  Logging out revokes the
  session's nonce in this process.
* **CSRF**: every POST must carry a token (form field ``csrf_token`` or header
  ``X-CSRF-Token``) that is the HMAC of the session cookie; the login form's
  token is the HMAC of a signed pre-login cookie.  Comparisons are constant-time.
  A POST without a session is refused with 401, one without a valid token with 403.
* **Reads** need a session too: pages redirect to the login form, the cutout
  route answers 401.  Cutouts are served only by digest (64 hexadecimal
  characters) from the store, never from a file path.
* Responses carry a strict Content-Security-Policy (``'self'`` only, no inline
  script), ``X-Frame-Options: DENY`` and ``X-Content-Type-Options: nosniff``.
* :func:`serve` binds ``127.0.0.1`` unless told otherwise.

Layout
------
This module wires the app together; the parts live beside it:
:mod:`review.web.config` (:class:`WebConfig`), :mod:`review.web.security`
(signed cookies, sessions, CSRF, throttling, headers), :mod:`review.web.pages`
(templates, queue filters, error pages) and :mod:`review.web.routes` (login,
queue, items).
"""

from __future__ import annotations

import logging

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from contracts.config import check_int, check_range
from contracts.errors import ConfigError

from ..config import ReviewConfig
from ..errors import ReviewError
from ..store import ACTIONS, ReviewStore
from .config import WebConfig
from .pages import PACKAGE_DIR, install_error_pages, make_templates
from .routes import include_routes
from .routes.items import RELABEL_CLASSES
from .security import (
    CSRF_HEADER,
    LOGIN_COOKIE,
    SECRET_ENV,
    SESSION_COOKIE,
    _State,
    install_security,
)

__all__ = [
    "WebConfig",
    "SECRET_ENV",
    "SESSION_COOKIE",
    "LOGIN_COOKIE",
    "CSRF_HEADER",
    "RELABEL_CLASSES",
    "ACTIONS",
    "create_app",
    "serve",
]

_LOG = logging.getLogger(__name__)


def create_app(store: ReviewStore | None = None, *, config: WebConfig | None = None) -> FastAPI:
    """Build the reviewers' web app around a review store.

    Parameters
    ----------
    store : ReviewStore, optional
        The queue; ``None`` opens the default store (SQLite under ``.moe-imaging/``).
    config : WebConfig, optional
        Sessions, cookies and paging; ``None`` uses the defaults (the secret then
        comes from ``MOE_REVIEW_SECRET`` or is made at random).

    Returns
    -------
    fastapi.FastAPI
        The application; serve it with uvicorn (see :func:`serve`).
    """
    if store is None:
        store = ReviewStore()
    config = config or WebConfig()
    if not isinstance(config, WebConfig):
        raise ConfigError(f"config: expected a WebConfig, got {type(config).__name__}")

    app = FastAPI(
        title="moe-imaging review",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.review = _State(store, config, make_templates())
    app.mount("/static", StaticFiles(directory=str(PACKAGE_DIR / "static")), name="static")
    install_security(app)
    install_error_pages(app)
    include_routes(app)
    return app


def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    db: str | None = None,
    *,
    config: WebConfig | None = None,
    store_config: ReviewConfig | None = None,
    log_level: str = "info",
) -> None:
    """Run the web app with uvicorn until interrupted.

    Parameters
    ----------
    host : str
        Address to bind; loopback by default.  Anything else exposes the app to
        the network: put it behind TLS and set ``WebConfig(secure_cookie=True)``.
    port : int
        TCP port (0 picks a free one).
    db : str, optional
        SQLAlchemy URL of the store; ``None`` uses ``store_config`` (by default
        the SQLite file ``.moe-imaging/review.sqlite``).
    config : WebConfig, optional
        Web-app configuration (secret, session length, lease, paging).
    store_config : ReviewConfig, optional
        The store's configuration (path, leases, reviews per item, cutouts).
    log_level : str
        uvicorn's log level.

    Raises
    ------
    ReviewError
        The address cannot be bound (in use, not local) or the store cannot be opened.
    """
    import socket

    import uvicorn

    check_int("port", port)
    check_range("port", port, low=0, high=65535)
    try:  # fail in one line before uvicorn would log a traceback and exit
        info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(info[0], socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(info[4])
    except OSError as exc:
        raise ReviewError(f"{host}:{port}: cannot listen: {exc.strerror or exc}") from None
    if host not in ("127.0.0.1", "::1", "localhost"):
        _LOG.warning(
            "serving on %s, not only this machine: use TLS in front and secure_cookie = true", host
        )
    app = create_app(ReviewStore(db, config=store_config), config=config)
    uvicorn.run(app, host=host, port=port, log_level=log_level, proxy_headers=False)

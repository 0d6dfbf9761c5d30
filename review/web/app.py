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
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as _dt
import hashlib
import hmac
import json
import logging
import math
import os
import re
import secrets
import threading
import time
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import jinja2
from fastapi import Depends, FastAPI, Form, Header, Request
from fastapi.responses import (
    HTMLResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException

from contracts.config import Config, check_int, check_range
from contracts.errors import ConfigError

from .. import models as _models
from contracts.vocabulary import CLASSES_BY_MODE

from ..config import ReviewConfig
from ..errors import NotClaimedError, ReviewError, UnknownItemError
from ..store import ACTIONS, Item, ReviewStore, relabel_kinds

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

SECRET_ENV = "MOE_REVIEW_SECRET"
"""Environment variable holding the session-signing secret (at least 16 characters)."""

SESSION_COOKIE = "moe_review_session"
"""Name of the signed session cookie."""

LOGIN_COOKIE = "moe_review_login"
"""Name of the signed pre-login cookie that the login form's CSRF token is bound to."""

CSRF_HEADER = "X-CSRF-Token"
"""Header that may carry the CSRF token instead of the ``csrf_token`` form field."""

RELABEL_CLASSES: Mapping[str, tuple[str, ...]] = CLASSES_BY_MODE
"""Classes a reviewer may relabel an item to, per mode, in number-key order (1, 2, ...)."""

_ACTION_KEYS = {"accept": "a", "reject": "r", "uncertain": "u"}
_DIGEST_RE = re.compile(r"[0-9a-f]{64}")
_FILTER_NAMES = ("exposure", "kind", "reason", "status")
_MAX_FIELD = 200
_PACKAGE_DIR = Path(__file__).resolve().parent
_LOG = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class WebConfig(Config):
    """Configuration of the reviewers' web app.

    Parameters
    ----------
    secret : str, optional
        Session-signing secret, at least 16 characters.  ``None`` reads
        ``MOE_REVIEW_SECRET``; if that is unset too, a random key is made at
        start-up (sessions then end when the server restarts).
    session_seconds : int
        Lifetime of a login session, in seconds (default 8 hours).
    lease_seconds : float, optional
        Lease on an item claimed with "next"; ``None`` uses the store's default.
    secure_cookie : bool
        Mark the cookies ``Secure`` (only sent over HTTPS); set it behind TLS.
    page_size : int
        Rows per page of the queue.
    login_attempts : int
        Failed logins allowed per reviewer name (five times as many per client
        address) within ``login_window_seconds`` before further attempts are
        refused with 429.
    login_window_seconds : int
        The window of ``login_attempts``, in seconds.
    """

    secret: str | None = None
    session_seconds: int = 8 * 3600
    lease_seconds: float | None = None
    secure_cookie: bool = False
    page_size: int = 50
    login_attempts: int = 10
    login_window_seconds: int = 300

    def __post_init__(self) -> None:
        if self.secret is not None and (not isinstance(self.secret, str) or len(self.secret) < 16):
            raise ConfigError("secret: must be a string of at least 16 characters")
        check_int("session_seconds", self.session_seconds)
        check_range("session_seconds", self.session_seconds, low=60, high=30 * 24 * 3600)
        check_range("lease_seconds", self.lease_seconds, low=1, allow_none=True)
        if not isinstance(self.secure_cookie, bool):
            raise ConfigError(f"secure_cookie: expected true or false, got {self.secure_cookie!r}")
        check_int("page_size", self.page_size)
        check_range("page_size", self.page_size, low=1, high=1000)
        check_int("login_attempts", self.login_attempts)
        check_range("login_attempts", self.login_attempts, low=1)
        check_int("login_window_seconds", self.login_window_seconds)
        check_range("login_window_seconds", self.login_window_seconds, low=1)


# --------------------------------------------------------------------------- signing


class _Signer:
    """HMAC-SHA256 signatures and tokens under one key, separated by purpose."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def _mac(self, purpose: str, data: str) -> str:
        msg = purpose.encode() + b"\x00" + data.encode()
        return hmac.new(self._key, msg, hashlib.sha256).hexdigest()

    def sign(self, purpose: str, payload: Mapping[str, Any]) -> str:
        """Return ``base64(json(payload)).mac``."""
        raw = json.dumps(dict(payload), separators=(",", ":"), sort_keys=True).encode()
        body = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
        return f"{body}.{self._mac(purpose, body)}"

    def unsign(self, purpose: str, value: str | None) -> dict[str, Any] | None:
        """Return the payload of a value made by :meth:`sign`, or ``None`` if forged."""
        if not value or len(value) > 4096 or "." not in value:
            return None
        body, _, mac = value.rpartition(".")
        if not hmac.compare_digest(mac.encode(), self._mac(purpose, body).encode()):
            return None
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            payload = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            return None
        return payload if isinstance(payload, dict) else None

    def token(self, purpose: str, value: str) -> str:
        """Return a token bound to ``value`` (e.g. the CSRF token of a session)."""
        return self._mac(purpose, value)

    def check_token(self, purpose: str, value: str, token: str | None) -> bool:
        """Whether ``token`` is :meth:`token` of ``value`` (constant-time)."""
        if not token:
            return False
        return hmac.compare_digest(token.encode(), self.token(purpose, value).encode())


def _signing_key(config: WebConfig) -> bytes:
    """The HMAC key: from the configuration, the environment, or random."""
    secret = config.secret
    if secret is None:
        secret = os.environ.get(SECRET_ENV) or None
        if secret is not None and len(secret) < 16:
            raise ConfigError(f"{SECRET_ENV}: must be at least 16 characters")
    if secret is None:
        return secrets.token_bytes(32)
    return hashlib.sha256(b"moe-imaging review session\x00" + secret.encode()).digest()


@dataclasses.dataclass(frozen=True)
class _Session:
    """A logged-in reviewer, as read from a valid session cookie."""

    reviewer: str
    admin: bool
    expires: int
    nonce: str
    cookie: str


class _LoginRequired(Exception):
    """Raised when a request needs a session and has none."""


class _CsrfRefused(Exception):
    """Raised when a POST lacks a valid CSRF token."""


class _Throttle:
    """Count failed logins per key in a sliding window (per app, thread-safe).

    Keys are ``name:<reviewer>`` (limit ``limit``) and ``ip:<address>`` (limit
    ``5 * limit``, since reviewers behind one proxy share an address).
    """

    def __init__(self, limit: int, window: float) -> None:
        self._limit = limit
        self._window = window
        self._failures: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def blocked(self, *keys: str) -> bool:
        now = time.monotonic()
        with self._lock:
            for key in keys:
                recent = [t for t in self._failures.get(key, ()) if now - t < self._window]
                if recent:
                    self._failures[key] = recent
                else:
                    self._failures.pop(key, None)
                limit = self._limit * (5 if key.startswith("ip:") else 1)
                if len(recent) >= limit:
                    return True
        return False

    def fail(self, *keys: str) -> None:
        now = time.monotonic()
        with self._lock:
            if len(self._failures) > 10_000:  # bound the memory an attacker can make us use
                self._failures.clear()
            for key in keys:
                self._failures.setdefault(key, []).append(now)

    def reset(self, *keys: str) -> None:
        with self._lock:
            for key in keys:
                if key.startswith("name:"):  # a success clears the name, not the address
                    self._failures.pop(key, None)


class _State:
    """Everything the routes share: the store, the configuration, keys, templates."""

    def __init__(self, store: ReviewStore, config: WebConfig) -> None:
        self.store = store
        self.config = config
        self.signer = _Signer(_signing_key(config))
        self.revoked: dict[str, int] = {}  # nonce -> expiry, sessions logged out
        self.revoked_lock = threading.Lock()
        self.throttle = _Throttle(config.login_attempts, config.login_window_seconds)
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(_PACKAGE_DIR / "templates")),
            autoescape=True,
            trim_blocks=True,
            lstrip_blocks=True,
            undefined=jinja2.StrictUndefined,
        )
        env.filters["when"] = _format_time
        env.filters["num"] = _format_number
        env.filters["pct"] = _format_percent
        env.tests["datetime"] = lambda value: isinstance(value, _dt.datetime)
        self.templates = Jinja2Templates(env=env)

    # -- sessions ---------------------------------------------------------
    def new_session_cookie(self, reviewer: str) -> str:
        expires = int(time.time()) + self.config.session_seconds
        payload = {"r": reviewer, "e": expires, "n": secrets.token_urlsafe(12)}
        return self.signer.sign("session", payload)

    def session(self, request: Request) -> _Session | None:
        value = request.cookies.get(SESSION_COOKIE)
        payload = self.signer.unsign("session", value)
        if payload is None:
            return None
        reviewer, expires, nonce = (payload.get(k) for k in ("r", "e", "n"))
        if not isinstance(reviewer, str) or not isinstance(expires, int) or not isinstance(nonce, str):
            return None
        if expires <= time.time():
            return None
        with self.revoked_lock:
            if nonce in self.revoked:
                return None
        account = self.store.get_reviewer(reviewer)  # a disabled account loses its sessions at once
        if account is None or account.disabled or value is None:
            return None
        return _Session(account.name, account.admin, expires, nonce, value)

    def revoke(self, session: _Session) -> None:
        now = time.time()
        with self.revoked_lock:
            for nonce in [n for n, e in self.revoked.items() if e <= now]:
                del self.revoked[nonce]
            self.revoked[session.nonce] = session.expires

    def csrf_token(self, session: _Session) -> str:
        return self.signer.token("csrf", session.cookie)


def _state(request: Request) -> _State:
    return request.app.state.review


# --------------------------------------------------------------------------- formatting


def _format_time(value: Any) -> str:
    """Render a datetime or a Unix time as ``YYYY-MM-DD HH:MM:SS UTC``."""
    if value is None or value == "":
        return ""
    if isinstance(value, (int, float)):
        value = _dt.datetime.fromtimestamp(float(value), tz=_dt.UTC)
    if isinstance(value, _dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=_dt.UTC)
        return value.astimezone(_dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return str(value)


def _format_number(value: Any, digits: int = 3) -> str:
    """Render a number with ``digits`` significant digits; NaN/None as an en dash."""
    if value is None:
        return "\u2013"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    try:
        x = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(x):
        return "\u2013"
    return f"{x:.{digits}g}"


def _format_percent(value: Any) -> str:
    """Render a fraction in [0, 1] as a percentage."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        return "\u2013"
    if math.isnan(x):
        return "\u2013"
    return f"{100.0 * x:.1f}\u00a0%"


# --------------------------------------------------------------------------- requests


def _clean(value: str | None, *, limit: int = _MAX_FIELD) -> str | None:
    """Strip a form/query value; empty means ``None``; overlong values are cut."""
    if value is None:
        return None
    value = value.strip()[:limit]
    return value or None


@dataclasses.dataclass(frozen=True)
class _Filters:
    """The queue filters (query parameters or hidden form fields)."""

    exposure: str | None = None
    kind: str | None = None
    reason: str | None = None
    status: str | None = None

    @classmethod
    def of(cls, values: Mapping[str, Any]) -> _Filters:
        return cls(**{k: _clean(values.get(k)) for k in _FILTER_NAMES})

    def kwargs(self) -> dict[str, str]:
        return {k: v for k in _FILTER_NAMES if (v := getattr(self, k)) is not None}

    def query(self, **extra: Any) -> str:
        items = {**self.kwargs(), **{k: v for k, v in extra.items() if v is not None}}
        return ("?" + urllib.parse.urlencode(items)) if items else ""


def _safe_next(target: str | None) -> str:
    """A local path to go to after login (never another site)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/queue"
    if any(ord(c) < 32 for c in target):
        return "/queue"
    return target


def _require_session(request: Request) -> _Session:
    """Dependency: the logged-in reviewer, else :class:`_LoginRequired`."""
    session = _state(request).session(request)
    if session is None:
        raise _LoginRequired()
    return session


def _require_post_session(
    request: Request,
    csrf_token: Annotated[str | None, Form()] = None,
    x_csrf_token: Annotated[str | None, Header()] = None,
) -> _Session:
    """Dependency of every state-changing route: a session and its CSRF token."""
    state = _state(request)
    session = state.session(request)
    if session is None:
        raise _LoginRequired()
    token = csrf_token or x_csrf_token
    if not state.signer.check_token("csrf", session.cookie, token):
        raise _CsrfRefused()
    return session


Session = Annotated[_Session, Depends(_require_session)]
PostSession = Annotated[_Session, Depends(_require_post_session)]


def _redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def _set_cookie(response: Response, state: _State, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/",
        httponly=True,
        samesite="strict",
        secure=state.config.secure_cookie,
    )


def _render(
    request: Request,
    name: str,
    context: Mapping[str, Any],
    *,
    session: _Session | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    state = _state(request)
    ctx = {
        "reviewer": session.reviewer if session else None,
        "csrf_token": state.csrf_token(session) if session else "",
        "filters": _Filters(),
        "message": None,
        **context,
    }
    return state.templates.TemplateResponse(request, name, ctx, status_code=status_code)


def _error_page(request: Request, status: int, title: str, detail: str) -> HTMLResponse:
    state = _state(request)
    session = state.session(request)
    return _render(
        request, "error.html", {"title": title, "detail": detail, "status": status},
        session=session, status_code=status,
    )


def _all_classes() -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for classes in RELABEL_CLASSES.values():
        seen.update(dict.fromkeys(classes))
    return tuple(seen)


def _my_lease(item: Item, reviewer: str) -> Any | None:
    """The reviewer's live lease on the item, if any (an item may have ``k`` leases)."""
    now = _dt.datetime.now(_dt.UTC)
    for lease in item.leases:
        if lease.reviewer == reviewer and lease.expires_at > now:
            return lease
    return None


# --------------------------------------------------------------------------- the app


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
    app.state.review = _State(store, config)
    app.mount("/static", StaticFiles(directory=str(_PACKAGE_DIR / "static")), name="static")

    # -- security headers ---------------------------------------------------
    @app.middleware("http")
    async def _headers(request: Request, call_next: Any) -> Response:
        response = await call_next(request)
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'none'; img-src 'self'; style-src 'self'; script-src 'self'; "
            "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        )
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        if request.url.path != "/static" and not request.url.path.startswith("/static/"):
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    # -- errors (the handlers that render a page are sync: starlette runs them in a thread,
    #    since the page looks the session up in the store) -------------------------------
    @app.exception_handler(_LoginRequired)
    async def _login_required(request: Request, exc: _LoginRequired) -> Response:
        if request.method in ("GET", "HEAD") and not request.url.path.startswith("/cutouts/"):
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return _redirect("/login?" + urllib.parse.urlencode({"next": target}))
        return PlainTextResponse(
            "401 Unauthorized: log in first (no valid session cookie)", status_code=401,
            headers={"WWW-Authenticate": 'Cookie realm="moe-imaging review"'},
        )

    @app.exception_handler(_CsrfRefused)
    async def _csrf_refused(request: Request, exc: _CsrfRefused) -> Response:
        return PlainTextResponse(
            "403 Forbidden: missing or invalid CSRF token; reload the page and try again",
            status_code=403,
        )

    @app.exception_handler(UnknownItemError)
    def _unknown_item(request: Request, exc: UnknownItemError) -> Response:
        return _error_page(request, 404, "No such item", str(exc))

    @app.exception_handler(NotClaimedError)
    def _not_claimed(request: Request, exc: NotClaimedError) -> Response:
        return _error_page(request, 409, "Item not yours", str(exc))

    @app.exception_handler(ReviewError)
    def _review_error(request: Request, exc: ReviewError) -> Response:
        return _error_page(request, 400, "Request refused", str(exc))

    @app.exception_handler(StarletteHTTPException)
    def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404:
            return _error_page(request, 404, "Not found", str(exc.detail))
        return PlainTextResponse(f"{exc.status_code}: {exc.detail}", status_code=exc.status_code)

    # -- login ----------------------------------------------------------------
    @app.get("/login", response_class=HTMLResponse)
    def login_form(request: Request, next: str | None = None) -> Response:
        state = _state(request)
        session = state.session(request)
        if session is not None:
            return _redirect(_safe_next(next))
        pre = state.signer.unsign("login", request.cookies.get(LOGIN_COOKIE))
        cookie = request.cookies.get(LOGIN_COOKIE) if pre else None
        if cookie is None:
            cookie = state.signer.sign("login", {"n": secrets.token_urlsafe(12)})
        response = _render(
            request, "login.html",
            {"login_token": state.signer.token("login-csrf", cookie), "next": _safe_next(next),
             "error": None},
        )
        _set_cookie(response, state, LOGIN_COOKIE, cookie, 3600)
        return response

    @app.post("/login")
    def login(
        request: Request,
        name: Annotated[str, Form()] = "",
        password: Annotated[str, Form()] = "",
        token: Annotated[str, Form()] = "",
        next: Annotated[str, Form()] = "/queue",
        csrf_token: Annotated[str | None, Form()] = None,
        x_csrf_token: Annotated[str | None, Header()] = None,
    ) -> Response:
        state = _state(request)
        cookie = request.cookies.get(LOGIN_COOKIE)
        if state.signer.unsign("login", cookie) is None or not state.signer.check_token(
            "login-csrf", cookie or "", csrf_token or x_csrf_token
        ):
            raise _CsrfRefused()
        name, token = name.strip()[:_MAX_FIELD], token.strip()
        client = f"ip:{request.client.host if request.client else '?'}"
        keys = (f"name:{name}", client) if name else (client,)
        if state.throttle.blocked(*keys):
            return PlainTextResponse(
                "429 Too Many Requests: too many failed logins; wait a few minutes",
                status_code=429,
            )
        reviewer = None
        if token and not password:
            reviewer = state.store.reviewer_by_token(token)
        elif name and password:
            reviewer = state.store.authenticate(name, password)
        if reviewer is None:
            state.throttle.fail(*keys)
            response = _render(
                request, "login.html",
                {"login_token": state.signer.token("login-csrf", cookie or ""),
                 "next": _safe_next(next),
                 "error": "Unknown reviewer, wrong password or wrong token."},
                status_code=401,
            )
            return response
        state.throttle.reset(*keys)
        response = _redirect(_safe_next(next))
        _set_cookie(
            response, state, SESSION_COOKIE,
            state.new_session_cookie(reviewer.name),
            state.config.session_seconds,
        )
        response.delete_cookie(LOGIN_COOKIE, path="/")
        return response

    @app.post("/logout")
    def logout(request: Request, session: PostSession) -> Response:
        state = _state(request)
        state.revoke(session)
        response = _redirect("/login")
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    # -- the queue -------------------------------------------------------------
    @app.get("/")
    def root(session: Session) -> Response:
        return _redirect("/queue")

    @app.get("/queue", response_class=HTMLResponse)
    def queue(
        request: Request,
        session: Session,
        exposure: str | None = None,
        kind: str | None = None,
        reason: str | None = None,
        status: str | None = None,
        page: int = 1,
        empty: int = 0,
        undone: str | None = None,
    ) -> Response:
        state = _state(request)
        filters = _Filters.of(
            {"exposure": exposure, "kind": kind, "reason": reason, "status": status}
        )
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

    @app.post("/next")
    def next_item(
        request: Request,
        session: PostSession,
        exposure: Annotated[str | None, Form()] = None,
        kind: Annotated[str | None, Form()] = None,
        reason: Annotated[str | None, Form()] = None,
        status: Annotated[str | None, Form()] = None,
        current: Annotated[int | None, Form()] = None,
    ) -> Response:
        state = _state(request)
        filters = _Filters.of(
            {"exposure": exposure, "kind": kind, "reason": reason, "status": status}
        )
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

    # -- an item -------------------------------------------------------------------
    @app.get("/items/{item_id:int}", response_class=HTMLResponse)
    def item_page(
        request: Request,
        item_id: int,
        session: Session,
        exposure: str | None = None,
        kind: str | None = None,
        reason: str | None = None,
        status: str | None = None,
        decided: str | None = None,
        unclaimable: str | None = None,
    ) -> Response:
        state = _state(request)
        filters = _Filters.of(
            {"exposure": exposure, "kind": kind, "reason": reason, "status": status}
        )
        item = state.store.get_item(item_id)
        history = state.store.decisions(item_id)
        classes = relabel_kinds(item.mode)
        mine = [d for d in history if d.reviewer == session.reviewer and d.undone_at is None]
        lease = _my_lease(item, session.reviewer)
        message = None
        claimable = not mine and lease is None and item.status == "pending"
        if decided in ACTIONS:
            message = f"Decision recorded: {decided}. Press n for the next item."
        elif unclaimable and lease is None:
            message = ("This item cannot be claimed: it already has all the reviewers it needs, "
                       "or you decided it before. Press n to claim the most urgent item for you.")
        elif claimable:
            message = ("You have not claimed this item: claim it to decide it here, "
                       "or press n to claim the most urgent item for you.")
        return _render(
            request, "item.html",
            {
                "item": item,
                "filters": filters,
                "decisions": history,
                "my_decision": mine[-1] if mine else None,
                "lease": lease,
                "claimable": claimable,
                "classes": classes,
                "class_keys": [(str(i + 1), c) for i, c in enumerate(classes[:9])],
                "probs": _ordered_probs(item.probs, classes),
                "votes": _votes(item.weights, item.evidence),
                "measurements": _measurements(item.evidence),
                "pngs": _png_cutouts(item.cutouts),
                "fits_digest": item.cutouts.get("fits"),
                "action_keys": _ACTION_KEYS,
                "message": message,
            },
            session=session,
        )

    @app.post("/items/{item_id:int}/decide")
    def decide(
        request: Request,
        item_id: int,
        session: PostSession,
        action: Annotated[str | None, Form()] = None,
        relabel: Annotated[str | None, Form()] = None,
        comment: Annotated[str | None, Form()] = None,
        exposure: Annotated[str | None, Form()] = None,
        kind: Annotated[str | None, Form()] = None,
        reason: Annotated[str | None, Form()] = None,
        status: Annotated[str | None, Form()] = None,
    ) -> Response:
        state = _state(request)
        filters = _Filters.of(
            {"exposure": exposure, "kind": kind, "reason": reason, "status": status}
        )
        item = state.store.get_item(item_id)  # 404 before validating the form
        action = _clean(action)
        new_kind = _clean(relabel)
        if new_kind is not None and action in (None, "relabel"):
            action = "relabel"
        if action not in ACTIONS:
            return _error_page(
                request, 400, "Unknown action",
                f"action must be one of {', '.join(ACTIONS)}, got {action!r}",
            )
        classes = relabel_kinds(item.mode)
        if action == "relabel" and new_kind not in classes:
            return _error_page(
                request, 400, "Unknown class",
                f"relabel to one of {', '.join(classes)}, got {new_kind!r}",
            )
        state.store.decide(
            item_id, session.reviewer, action,
            kind=new_kind if action == "relabel" else None,
            comment=(comment.strip() or None) if comment else None,
        )
        return _redirect(f"/items/{item_id}" + filters.query(decided=action))

    @app.post("/items/{item_id:int}/claim")
    def claim_item(request: Request, item_id: int, session: PostSession) -> Response:
        """Claim the item on screen (opened from the queue) instead of the most urgent one."""
        state = _state(request)
        state.store.get_item(item_id)  # 404 for an unknown item
        claimed = state.store.claim(session.reviewer, n=1, lease_seconds=state.config.lease_seconds,
                                    item_id=item_id)
        return _redirect(f"/items/{item_id}" + ("" if claimed else "?unclaimable=1"))

    @app.post("/items/{item_id:int}/release")
    def release(request: Request, item_id: int, session: PostSession) -> Response:
        state = _state(request)
        state.store.release(item_id, session.reviewer)
        return _redirect("/queue")

    @app.post("/undo")
    def undo(request: Request, session: PostSession) -> Response:
        state = _state(request)
        undone = state.store.undo_last(session.reviewer)
        if undone is None:
            return _redirect("/queue?undone=none")
        return _redirect(f"/items/{undone.item_id}")

    # -- statistics ---------------------------------------------------------------
    @app.get("/stats", response_class=HTMLResponse)
    def stats(request: Request, session: Session) -> Response:
        state = _state(request)
        return _render(request, "stats.html", {"stats": state.store.stats()}, session=session)

    # -- cutouts -------------------------------------------------------------------
    @app.get("/cutouts/{digest}")
    def cutout(request: Request, digest: str, session: Session) -> Response:
        if not _DIGEST_RE.fullmatch(digest):
            return PlainTextResponse(
                "404 Not Found: a cutout is named by its SHA-256 digest (64 lowercase hex digits)",
                status_code=404,
            )
        state = _state(request)
        try:
            content, media_type = state.store.cutout(digest)
        except (ReviewError, LookupError):
            return PlainTextResponse(
                f"404 Not Found: no cutout with digest {digest}", status_code=404
            )
        is_image = media_type.startswith("image/")
        disposition = "inline" if is_image else "attachment"
        ext = {"image/png": "png", "application/fits": "fits", "image/fits": "fits"}.get(
            media_type, "bin"
        )
        return Response(
            content,
            media_type=media_type,
            headers={
                "Cache-Control": "private, max-age=86400, immutable",
                "Content-Disposition": f'{disposition}; filename="{digest[:16]}.{ext}"',
            },
        )

    return app


def _ordered_probs(probs: Mapping[str, Any], classes: tuple[str, ...]) -> list[tuple[str, Any]]:
    """Class probabilities, the mode's classes first, highest first otherwise."""
    first = [(c, probs[c]) for c in classes if c in probs]
    rest = sorted(((c, p) for c, p in probs.items() if c not in classes), key=lambda cp: cp[0])
    return first + rest


def _votes(
    weights: Mapping[str, Any], evidence: Mapping[str, Any]
) -> list[tuple[str, Any, list[tuple[str, Any]]]]:
    """Each expert's gate weight and evidence: ``(expert, weight, [(quantity, value)])``.

    Evidence columns are ``ev_<expert>_<quantity>`` (the experts' ``score``
    columns); a column whose expert has no weight (e.g. the learned expert's
    ``ev_p_star``) is listed under the expert ``"(other)"`` with its full name.
    Highest weight first.
    """
    experts = sorted(weights, key=len, reverse=True)  # longest prefix wins
    per: dict[str, list[tuple[str, Any]]] = {e: [] for e in weights}
    other: list[tuple[str, Any]] = []
    for key, value in sorted(evidence.items()):
        if not key.startswith("ev_"):
            continue
        name = key[3:]
        owner = next((e for e in experts if name.startswith(e + "_")), None)
        if owner is None:
            other.append((name, value))
        else:
            per[owner].append((name[len(owner) + 1:], value))

    def weight(expert: str) -> float:
        w = weights.get(expert)
        if isinstance(w, bool) or not isinstance(w, (int, float)) or math.isnan(w):
            return -1.0
        return float(w)

    rows = [(e, weights[e], per[e]) for e in sorted(weights, key=lambda e: (-weight(e), e))]
    if other:
        rows.append(("(other)", None, other))
    return rows


def _measurements(evidence: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """The evidence that is not an expert's score (``snr``, ``sharpness``, ``flags``, ...)."""
    return [(k, v) for k, v in sorted(evidence.items()) if not k.startswith("ev_")]


def _png_cutouts(cutouts: Mapping[str, str]) -> list[tuple[str, str]]:
    """``(label, digest)`` of the PNG cutouts, lowest zoom first."""
    pngs = [(name, digest) for name, digest in cutouts.items() if name.startswith("png")]

    def zoom(pair: tuple[str, str]) -> tuple[float, str]:
        digits = re.findall(r"\d+(?:\.\d+)?", pair[0])
        return (float(digits[-1]) if digits else 0.0, pair[0])

    out = []
    for name, digest in sorted(pngs, key=zoom):
        match = re.fullmatch(r"png_?zoom(\d+)", name)
        label = f"zoom \u00d7{match.group(1)}" if match else name.replace("_", " ")
        out.append((label, digest))
    return out


def _release_if_undecided(store: ReviewStore, item_id: int, reviewer: str) -> None:
    """Give back an item the reviewer claimed and skipped with "next" (best effort)."""
    try:
        item = store.get_item(item_id)
        if _my_lease(item, reviewer) is not None:
            store.release(item_id, reviewer)
    except ReviewError:  # gone, or the lease ended meanwhile: nothing to give back
        pass


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

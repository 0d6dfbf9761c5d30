"""Security of the reviewers' web app: signed cookies, sessions, CSRF tokens, login throttling, headers.

This module carries out the session, CSRF and header rules of the security
model described in :mod:`review.web.app`: HMAC-SHA256 signed session and
pre-login cookies (:class:`_Signer`, keyed by :func:`_signing_key`), sessions
looked up and revoked in :class:`_State`, failed logins counted by
:class:`_Throttle`.  The route dependencies :data:`Session` (a page or GET) and
:data:`PostSession` (a state-changing POST, which also needs the session's CSRF
token) enforce the rules; :func:`install_security` adds the protective headers
and the 401/403 answers to an app.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
import os
import secrets
import threading
import time
import urllib.parse
from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Form, Header, Request
from fastapi.responses import PlainTextResponse, RedirectResponse, Response

from contracts.errors import ConfigError

from ..store import ReviewStore
from .config import WebConfig

__all__ = [
    "CSRF_HEADER",
    "LOGIN_COOKIE",
    "PostSession",
    "SECRET_ENV",
    "SESSION_COOKIE",
    "Session",
    "install_security",
]

SECRET_ENV = "MOE_REVIEW_SECRET"
"""Environment variable holding the session-signing secret (at least 16 characters)."""

SESSION_COOKIE = "moe_review_session"
"""Name of the signed session cookie."""

LOGIN_COOKIE = "moe_review_login"
"""Name of the signed pre-login cookie that the login form's CSRF token is bound to."""

CSRF_HEADER = "X-CSRF-Token"
"""Header that may carry the CSRF token instead of the ``csrf_token`` form field."""

_CSP = ("default-src 'none'; img-src 'self'; style-src 'self'; script-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")


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


# --------------------------------------------------------------------------- sessions


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
        """Whether any key has reached its limit of failures within the window."""
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
        """Count one failed login against every key."""
        now = time.monotonic()
        with self._lock:
            if len(self._failures) > 10_000:  # bound the memory an attacker can make us use
                self._failures.clear()
            for key in keys:
                self._failures.setdefault(key, []).append(now)

    def reset(self, *keys: str) -> None:
        """Forget the failures of the reviewer names among ``keys`` (after a successful login)."""
        with self._lock:
            for key in keys:
                if key.startswith("name:"):  # a success clears the name, not the address
                    self._failures.pop(key, None)


class _State:
    """Everything the routes share: the store, the configuration, keys, templates.

    ``templates`` is the app's :class:`fastapi.templating.Jinja2Templates`
    (:func:`review.web.pages.make_templates`).
    """

    def __init__(self, store: ReviewStore, config: WebConfig, templates: Any) -> None:
        self.store = store
        self.config = config
        self.signer = _Signer(_signing_key(config))
        self.revoked: dict[str, int] = {}  # nonce -> expiry, sessions logged out
        self.revoked_lock = threading.Lock()
        self.throttle = _Throttle(config.login_attempts, config.login_window_seconds)
        self.templates = templates

    def new_session_cookie(self, reviewer: str) -> str:
        """A signed session cookie for ``reviewer``, valid for :attr:`WebConfig.session_seconds`."""
        expires = int(time.time()) + self.config.session_seconds
        payload = {"r": reviewer, "e": expires, "n": secrets.token_urlsafe(12)}
        return self.signer.sign("session", payload)

    def session(self, request: Request) -> _Session | None:
        """The request's session: a valid, unexpired, unrevoked cookie of an enabled account."""
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
        """Log a session out (in this process), forgetting revocations that have expired."""
        now = time.time()
        with self.revoked_lock:
            for nonce in [n for n, e in self.revoked.items() if e <= now]:
                del self.revoked[nonce]
            self.revoked[session.nonce] = session.expires

    def csrf_token(self, session: _Session) -> str:
        """The CSRF token of a session (the HMAC of its cookie)."""
        return self.signer.token("csrf", session.cookie)


def _state(request: Request) -> _State:
    """The app's shared state."""
    return request.app.state.review


# --------------------------------------------------------------------------- dependencies


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
"""A route parameter: the logged-in reviewer (pages redirect to the login form without one)."""

PostSession = Annotated[_Session, Depends(_require_post_session)]
"""A route parameter: the logged-in reviewer of a POST carrying the session's CSRF token."""


# --------------------------------------------------------------------------- responses


def _redirect(url: str) -> RedirectResponse:
    """A 303 redirect (a POST is followed by a GET)."""
    return RedirectResponse(url, status_code=303)


def _safe_next(target: str | None) -> str:
    """A local path to go to after login (never another site)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/queue"
    if any(ord(c) < 32 for c in target):
        return "/queue"
    return target


def _set_cookie(response: Response, state: _State, name: str, value: str, max_age: int) -> None:
    """Set an ``HttpOnly``, ``SameSite=Strict`` cookie (``Secure`` when configured)."""
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/",
        httponly=True,
        samesite="strict",
        secure=state.config.secure_cookie,
    )


async def _security_headers(request: Request, call_next: Any) -> Response:
    """Middleware: the Content-Security-Policy and the other protective headers on every response."""
    response = await call_next(request)
    response.headers.setdefault("Content-Security-Policy", _CSP)
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    if request.url.path != "/static" and not request.url.path.startswith("/static/"):
        response.headers.setdefault("Cache-Control", "no-store")
    return response


async def _login_required(request: Request, exc: _LoginRequired) -> Response:
    """A page without a session goes to the login form; anything else gets 401."""
    if request.method in ("GET", "HEAD") and not request.url.path.startswith("/cutouts/"):
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return _redirect("/login?" + urllib.parse.urlencode({"next": target}))
    return PlainTextResponse(
        "401 Unauthorized: log in first (no valid session cookie)", status_code=401,
        headers={"WWW-Authenticate": 'Cookie realm="moe-imaging review"'},
    )


async def _csrf_refused(request: Request, exc: _CsrfRefused) -> Response:
    """A POST without a valid CSRF token gets 403."""
    return PlainTextResponse(
        "403 Forbidden: missing or invalid CSRF token; reload the page and try again",
        status_code=403,
    )


def install_security(app: FastAPI) -> None:
    """Add the security headers and the answers to a missing session (401) or CSRF token (403)."""
    app.middleware("http")(_security_headers)
    app.add_exception_handler(_LoginRequired, _login_required)
    app.add_exception_handler(_CsrfRefused, _csrf_refused)

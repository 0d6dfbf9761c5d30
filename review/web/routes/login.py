"""Logging in (a name and password, or an API token) and out."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import FastAPI, Form, Header, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, Response

from ..pages import _MAX_FIELD, _render
from ..security import (
    LOGIN_COOKIE,
    SESSION_COOKIE,
    PostSession,
    _CsrfRefused,
    _redirect,
    _safe_next,
    _set_cookie,
    _State,
    _state,
)

__all__ = ["register"]


def login_form(request: Request, next: str | None = None) -> Response:
    """The login form, bound to a signed pre-login cookie (a logged-in reviewer goes on to ``next``)."""
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


def login(
    request: Request,
    name: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    token: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/queue",
    csrf_token: Annotated[str | None, Form()] = None,
    x_csrf_token: Annotated[str | None, Header()] = None,
) -> Response:
    """Check the login form (CSRF, throttling, credentials); start a session or show the form again."""
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
        return _render(
            request, "login.html",
            {"login_token": state.signer.token("login-csrf", cookie or ""),
             "next": _safe_next(next),
             "error": "Unknown reviewer, wrong password or wrong token."},
            status_code=401,
        )
    state.throttle.reset(*keys)
    return _start_session(state, reviewer.name, _safe_next(next))


def logout(request: Request, session: PostSession) -> Response:
    """End the session (revoked in this process) and go to the login form."""
    state = _state(request)
    state.revoke(session)
    response = _redirect("/login")
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


def register(app: FastAPI) -> None:
    """Add ``GET /login``, ``POST /login`` and ``POST /logout`` to ``app``."""
    app.get("/login", response_class=HTMLResponse)(login_form)
    app.post("/login")(login)
    app.post("/logout")(logout)


def _start_session(state: _State, reviewer: str, target: str) -> Response:
    """A redirect to ``target`` setting a new session cookie and dropping the pre-login one."""
    response = _redirect(target)
    _set_cookie(response, state, SESSION_COOKIE, state.new_session_cookie(reviewer), state.config.session_seconds)
    response.delete_cookie(LOGIN_COOKIE, path="/")
    return response

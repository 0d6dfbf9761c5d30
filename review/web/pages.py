"""Rendering the reviewers' pages: the Jinja2 templates and their filters, queue filters, error pages.

Templates ship in ``templates/`` next to this module; they are rendered with
autoescaping and strict undefined variables.  :func:`install_error_pages`
answers the store's expected faults (an unknown item, an item not claimed, a
refused request) and unknown paths with an HTML page.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import math
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import jinja2
from fastapi import Depends, FastAPI, Form, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import NotClaimedError, ReviewError, UnknownItemError
from .security import _Session, _state

__all__ = ["FormFilters", "PACKAGE_DIR", "QueryFilters", "install_error_pages", "make_templates"]

PACKAGE_DIR = Path(__file__).resolve().parent
"""The folder of :mod:`review.web`: ``templates/`` and ``static/`` ship in it."""

_FILTER_NAMES = ("exposure", "kind", "reason", "status")
_MAX_FIELD = 200


# --------------------------------------------------------------------------- templates


def make_templates() -> Jinja2Templates:
    """The app's templates, with the filters ``when``, ``num`` and ``pct`` and the test ``datetime``."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(PACKAGE_DIR / "templates")),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["when"] = _format_time
    env.filters["num"] = _format_number
    env.filters["pct"] = _format_percent
    env.tests["datetime"] = lambda value: isinstance(value, _dt.datetime)
    return Jinja2Templates(env=env)


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


# --------------------------------------------------------------------------- queue filters


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
        """The filters from raw values (cleaned with :func:`_clean`)."""
        return cls(**{k: _clean(values.get(k)) for k in _FILTER_NAMES})

    def kwargs(self) -> dict[str, str]:
        """The filters that are set, as keyword arguments of the store's queries."""
        return {k: v for k in _FILTER_NAMES if (v := getattr(self, k)) is not None}

    def query(self, **extra: Any) -> str:
        """A query string (``?...``, or ``""``) keeping the filters, plus ``extra``."""
        items = {**self.kwargs(), **{k: v for k, v in extra.items() if v is not None}}
        return ("?" + urllib.parse.urlencode(items)) if items else ""


def _query_filters(
    exposure: str | None = None,
    kind: str | None = None,
    reason: str | None = None,
    status: str | None = None,
) -> _Filters:
    """Dependency: the queue filters of a page's query string."""
    return _Filters.of({"exposure": exposure, "kind": kind, "reason": reason, "status": status})


def _form_filters(
    exposure: Annotated[str | None, Form()] = None,
    kind: Annotated[str | None, Form()] = None,
    reason: Annotated[str | None, Form()] = None,
    status: Annotated[str | None, Form()] = None,
) -> _Filters:
    """Dependency: the queue filters a form carries along in hidden fields."""
    return _Filters.of({"exposure": exposure, "kind": kind, "reason": reason, "status": status})


QueryFilters = Annotated[_Filters, Depends(_query_filters)]
"""A route parameter: the queue filters from the query string."""

FormFilters = Annotated[_Filters, Depends(_form_filters)]
"""A route parameter: the queue filters from the posted form."""


# --------------------------------------------------------------------------- rendering


def _render(
    request: Request,
    name: str,
    context: Mapping[str, Any],
    *,
    session: _Session | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    """Render a template with the reviewer, the CSRF token and default filters and message."""
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
    """An error page (with the reviewer's session, if any)."""
    state = _state(request)
    session = state.session(request)
    return _render(
        request, "error.html", {"title": title, "detail": detail, "status": status},
        session=session, status_code=status,
    )


# The handlers that render a page are sync: starlette runs them in a thread, since the page
# looks the session up in the store.


def _unknown_item(request: Request, exc: UnknownItemError) -> Response:
    return _error_page(request, 404, "No such item", str(exc))


def _not_claimed(request: Request, exc: NotClaimedError) -> Response:
    return _error_page(request, 409, "Item not yours", str(exc))


def _review_error(request: Request, exc: ReviewError) -> Response:
    return _error_page(request, 400, "Request refused", str(exc))


def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
    if exc.status_code == 404:
        return _error_page(request, 404, "Not found", str(exc.detail))
    return PlainTextResponse(f"{exc.status_code}: {exc.detail}", status_code=exc.status_code)


def install_error_pages(app: FastAPI) -> None:
    """Answer an unknown item (404), an item not claimed (409), a refused request (400) and unknown paths."""
    app.add_exception_handler(UnknownItemError, _unknown_item)
    app.add_exception_handler(NotClaimedError, _not_claimed)
    app.add_exception_handler(ReviewError, _review_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)

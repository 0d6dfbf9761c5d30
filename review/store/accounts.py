"""Reviewer accounts: scrypt password hashes, hashed API tokens, login checks.

:meth:`AccountsMixin.add_reviewer` stores an scrypt hash of the password
(random salt) and a SHA-256 hash of a random token; the token is returned once
and never stored in the clear.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

import sqlalchemy as sa

from .. import models as m
from ..errors import ReviewError
from ._common import _audit, _check_name, _now
from .engine import StoreEngine
from .values import Reviewer

__all__ = ["AccountsMixin", "hash_password", "verify_password"]

_SCRYPT = {"n": 2**14, "r": 8, "p": 1}


def hash_password(password: str) -> str:
    """An scrypt hash of ``password`` with a random 16-byte salt (stdlib only).

    The result is ``scrypt$n$r$p$salt$hash`` (base64), so the parameters can be
    raised later without invalidating stored hashes.
    """
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, dklen=32, **_SCRYPT)
    b64 = base64.b64encode
    return f"scrypt${_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, stored: str | None) -> bool:
    """Whether ``password`` matches a hash made by :func:`hash_password` (constant time)."""
    if not stored or not isinstance(password, str):
        return False
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        want = base64.b64decode(digest)
        got = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
                             dklen=len(want))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, want)


class AccountsMixin(StoreEngine):
    """The reviewer accounts of :class:`~review.store.ReviewStore`."""

    def add_reviewer(self, name: str, password: str | None = None, *, admin: bool = False,
                     replace: bool = False) -> str:
        """Create a reviewer account; return its API token (shown once, stored hashed).

        Parameters
        ----------
        name : str
            Letters, digits and ``_ . @ + -``, at most 100 characters.
        password : str, optional
            For the web login (at least 8 characters); stored as an scrypt hash.
            Without one the account logs in with its token only.
        admin : bool
            May manage the queue.
        replace : bool
            Reset an existing account's password and token instead of failing.

        Raises
        ------
        ReviewError
            A bad name, a short password, or the name exists (without ``replace``).
        """
        name = _check_name(name, "reviewer name")
        if password is not None and (not isinstance(password, str) or len(password) < 8):
            raise ReviewError(f"reviewer {name!r}: the password must have at least 8 characters")
        token = secrets.token_urlsafe(32)
        values = {"password_hash": hash_password(password) if password is not None else None,
                  "token_hash": _token_hash(token), "admin": bool(admin), "disabled": False}
        rv = m.reviewers.c
        with self._tx(write=True) as conn:
            now = _now()
            exists = conn.execute(sa.select(rv.id).where(rv.name == name)).first()
            if exists is not None and not replace:
                raise ReviewError(f"reviewer {name!r} exists (use replace to reset the password and token)")
            if exists is None:
                conn.execute(sa.insert(m.reviewers).values(name=name, created_at=now, **values))
            else:
                conn.execute(sa.update(m.reviewers).where(rv.id == exists.id).values(**values))
            _audit(conn, now, "account", name, None, {"admin": bool(admin), "replaced": exists is not None})
        return token

    def authenticate(self, name: str, password: str) -> Reviewer | None:
        """The reviewer if ``name`` and ``password`` match an enabled account, else ``None``."""
        if not isinstance(name, str) or not isinstance(password, str):
            return None
        row = self._account(m.reviewers.c.name == name)
        if row is None or row.disabled or not verify_password(password, row.password_hash):
            return None
        return _reviewer(row)

    def reviewer_by_token(self, token: str) -> Reviewer | None:
        """The enabled reviewer whose API token this is, else ``None``."""
        if not isinstance(token, str) or not token or len(token) > 512:
            return None
        row = self._account(m.reviewers.c.token_hash == _token_hash(token))
        if row is None or row.disabled:
            return None
        return _reviewer(row)

    def get_reviewer(self, name: str) -> Reviewer | None:
        """The account called ``name``, or ``None``."""
        row = self._account(m.reviewers.c.name == name)
        return _reviewer(row) if row is not None else None

    def list_reviewers(self) -> list[Reviewer]:
        """Every account, by name."""
        with self._tx(write=False) as conn:
            rows = conn.execute(sa.select(m.reviewers).order_by(m.reviewers.c.name)).all()
        return [_reviewer(r) for r in rows]

    def set_reviewer_disabled(self, name: str, disabled: bool = True) -> None:
        """Disable (or enable again) an account; a disabled one cannot log in."""
        rv = m.reviewers.c
        with self._tx(write=True) as conn:
            n = conn.execute(sa.update(m.reviewers).where(rv.name == name).values(disabled=bool(disabled))).rowcount
            if not n:
                raise ReviewError(f"reviewer {name!r}: no such account")
            _audit(conn, _now(), "account", name, None, {"disabled": bool(disabled)})

    def _account(self, where: sa.ColumnElement[bool]):
        """The one account row matching ``where``, or ``None``."""
        with self._tx(write=False) as conn:
            return conn.execute(sa.select(m.reviewers).where(where)).first()


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _reviewer(r) -> Reviewer:
    """A :class:`Reviewer` from its row (no secrets)."""
    return Reviewer(r.id, r.name, bool(r.admin), bool(r.disabled), r.created_at, r.password_hash is not None)

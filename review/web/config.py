"""Configuration of the reviewers' web app: sessions, cookies, leases, paging, login throttling."""

from __future__ import annotations

import dataclasses

from contracts.config import Config, check_int, check_range
from contracts.errors import ConfigError

__all__ = ["WebConfig"]


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

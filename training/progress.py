"""One progress style for every training command: lines handed to a ``log`` callable.

Training functions take ``log: Callable[[str], None] | None``; ``None`` is
silent.  The command line passes :func:`stdout_log`, which prints each line,
indented, as it comes.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["Log", "say", "stdout_log"]

Log = Callable[[str], None] | None
"""Where progress lines go (``None``: nowhere)."""


def say(log: Log, line: str) -> None:
    """Hand ``line`` to ``log`` (nothing when ``log`` is ``None``)."""
    if log is not None:
        log(line)


def stdout_log(line: str) -> None:
    """Print a progress line at once (indented, flushed)."""
    print(f"  {line}", flush=True)

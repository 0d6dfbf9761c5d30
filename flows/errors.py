"""Errors raised by the flows package (expected faults, printed as one line by the CLI)."""

from __future__ import annotations

from contracts.errors import SourcedError

__all__ = ["FlowError"]


class FlowError(SourcedError):
    """A batch run cannot start or finish: no inputs, an unreachable Dask scheduler, ...

    Parameters
    ----------
    source : str
        What failed (a file, a glob, a scheduler address), named in the message.
    cause : str
        What is wrong, in words, on one line.
    """

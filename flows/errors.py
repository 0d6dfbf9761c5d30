"""Errors raised by the flows package (expected faults, printed as one line by the CLI)."""

from __future__ import annotations

from contracts.errors import MoeImagingError

__all__ = ["FlowError"]


class FlowError(MoeImagingError):
    """A batch run cannot start or finish: no inputs, an unreachable Dask scheduler, ...

    Parameters
    ----------
    source : str
        What failed (a file, a glob, a scheduler address), named in the message.
    cause : str
        What is wrong, in words, on one line.
    """

    def __init__(self, source: str, cause: str) -> None:
        self.source = str(source)
        self.cause = " ".join(str(cause).split())
        super().__init__(f"{self.source}: {self.cause}")

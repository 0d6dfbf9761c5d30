"""Exceptions raised at the boundaries of moe-imaging.

Every error carries enough context to be printed as one line: the file (when
there is one) and the cause.  The command line prints ``str(error)`` and exits
with a non-zero status; no traceback is shown for these expected faults.
"""

from __future__ import annotations

__all__ = ["MoeImagingError", "SourcedError", "InputError", "ConfigError", "PSFError"]


class MoeImagingError(Exception):
    """Base class of all expected faults in moe-imaging."""


class SourcedError(MoeImagingError):
    """A fault that names what failed and why: printed as ``"<source>: <cause>"`` on one line.

    Parameters
    ----------
    source : str
        What failed: a file name, a short description of an in-memory input,
        a glob, a scheduler address.
    cause : str
        What is wrong, in words (folded onto one line).
    """

    def __init__(self, source: str, cause: str) -> None:
        self.source = str(source)
        self.cause = " ".join(str(cause).split())
        super().__init__(f"{self.source}: {self.cause}")


class InputError(SourcedError):
    """An input file (or in-memory image) cannot be used (``source``: the file, ``cause``: why)."""


class ConfigError(MoeImagingError):
    """A configuration value is missing, of the wrong type or out of range."""


class PSFError(MoeImagingError):
    """No usable point-spread function could be built or estimated."""

"""Exceptions raised at the boundaries of moe-imaging.

Every error carries enough context to be printed as one line: the file (when
there is one) and the cause.  The command line prints ``str(error)`` and exits
with a non-zero status; no traceback is shown for these expected faults.
"""

from __future__ import annotations

__all__ = ["MoeImagingError", "InputError", "ConfigError", "PSFError"]


class MoeImagingError(Exception):
    """Base class of all expected faults in moe-imaging."""


class InputError(MoeImagingError):
    """An input file (or in-memory image) cannot be used.

    Parameters
    ----------
    source : str
        The file name, or a short description of an in-memory input.
    cause : str
        What is wrong, in words, on one line.
    """

    def __init__(self, source: str, cause: str) -> None:
        self.source = str(source)
        self.cause = " ".join(str(cause).split())
        super().__init__(f"{self.source}: {self.cause}")


class ConfigError(MoeImagingError):
    """A configuration value is missing, of the wrong type or out of range."""


class PSFError(MoeImagingError):
    """No usable point-spread function could be built or estimated."""

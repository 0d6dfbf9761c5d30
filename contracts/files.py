"""Writing a file so that readers never see half of it.

Every writer of the project (catalogs, exports, label files, model weights and
cards, run reports) goes through :func:`atomic_write`: the content is written
to a temporary file with a unique name in the target's folder, then moved over
the target in one ``os.replace``.  Two runs writing the same file at once each
write their own temporary file, and the last ``replace`` wins whole.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path

__all__ = ["atomic_write", "atomic_write_text", "atomic_write_bytes"]


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` on a unique temporary path beside ``path``, then move it onto ``path``.

    Parameters
    ----------
    path : str or path-like
        The file to write; its folder is created when missing.
    write : callable
        Writes the whole content to the path it is given.  The temporary name
        keeps ``path``'s suffixes, so writers that choose a format by the
        extension (astropy, pyarrow) see the right one.

    Returns
    -------
    pathlib.Path
        ``path``.

    Notes
    -----
    When ``write`` raises, the temporary file is removed and ``path`` is left
    as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex[:12]}.tmp{''.join(path.suffixes)}"
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def atomic_write_text(path: str | os.PathLike[str], text: str, *, encoding: str = "utf-8",
                      errors: str = "strict") -> Path:
    """Write ``text`` to ``path`` atomically (:func:`atomic_write`)."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding=encoding, errors=errors))


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (:func:`atomic_write`)."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))

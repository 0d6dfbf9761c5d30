"""Writing a file so that readers never see half of it.

Every writer of the project (catalogs, exports, label files, model weights and
cards, run reports) goes through :func:`atomic_write`: the content is written
to a file of the target's own name inside a uniquely named temporary folder
beside the target, then moved over the target in one ``os.replace``.  Two runs
writing the same file at once each write in their own folder, and the last
``replace`` wins whole.  Writers that read the file name (astropy chooses
compression by the suffix; ``torch.save`` names the archive inside after the
file) see the target's name, so the bytes are those a direct write would give.
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
        Writes the whole content to the path it is given: ``path``'s own name
        in a temporary folder of the same parent.

    Returns
    -------
    pathlib.Path
        ``path``.

    Notes
    -----
    When ``write`` raises, the temporary folder is removed and ``path`` is left
    as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    folder = path.parent / f".{path.name}.{uuid.uuid4().hex[:12]}.tmp"
    folder.mkdir()
    tmp = folder / path.name
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
        folder.rmdir()
    return path


def atomic_write_text(path: str | os.PathLike[str], text: str, *, encoding: str = "utf-8",
                      errors: str = "strict") -> Path:
    """Write ``text`` to ``path`` atomically (:func:`atomic_write`)."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding=encoding, errors=errors))


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (:func:`atomic_write`)."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))

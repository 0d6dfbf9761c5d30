"""Process-level tuning for batch runs.

Applications (the ``moe-imaging`` command, the benchmarks, a flow worker) call
:func:`tune_allocator` once at start-up; the library itself never changes
process-wide settings.
"""

from __future__ import annotations

import ctypes
import sys

__all__ = ["tune_allocator"]

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD_MAX = 32 * 2**20  # glibc's ceiling on 64-bit systems


def tune_allocator(*, keep_bytes: int = 512 * 2**20) -> bool:
    """Let glibc reuse large freed buffers instead of returning them to the OS.

    Tile processing allocates and frees many arrays of 10-40 MB.  By default
    glibc serves each from a fresh ``mmap`` and unmaps it on free, so every
    tile pays page faults to touch new memory (about 10 % of the run time
    here).  Raising the mmap threshold to its maximum and the trim threshold to
    ``keep_bytes`` keeps that memory in the heap for the next tile.  Peak
    memory is unchanged; up to ``keep_bytes`` stay reserved after a run.

    Returns
    -------
    bool
        Whether the settings were applied (glibc on Linux only).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX) == 1
    ok &= mallopt(_M_TRIM_THRESHOLD, int(keep_bytes)) == 1
    return bool(ok)

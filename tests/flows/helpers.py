"""Helpers of the flow tests (imported as ``tests.flows.helpers``)."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

SURVEY_SEEDS = (1, 3, 4)
"""Simulated 512² fields (seeds whose catalogs have unique source ids)."""


def small_detection(**extra) -> dict:
    """``[detection]`` for 512² test images: 256-pixel tiles, flow defaults otherwise."""
    return {"tiling": {"tile_size": 256}, **extra}


def subprocess_env(**extra: str) -> dict[str, str]:
    """Environment of a ``moe-imaging`` subprocess: the repository importable, a private Prefect home."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.update(extra)
    return env


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate, *, timeout: float, interval: float = 0.5, what: str = "condition"):
    """Poll ``predicate()`` until it returns a truthy value; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)

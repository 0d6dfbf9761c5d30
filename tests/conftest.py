"""Suite-wide fixtures."""

from __future__ import annotations

import logging

import pytest


@pytest.fixture(autouse=True)
def _drop_prefect_root_handlers():
    """Prefect installs a console handler on the root logger bound to the
    stream of the test that first ran a flow; once pytest closes that captured
    stream, any later warning from any library fails with a logging error.
    Remove such handlers after each test (the next flow re-installs them)."""
    yield
    root = logging.getLogger()
    for handler in list(root.handlers):
        if type(handler).__module__.startswith("prefect"):
            root.removeHandler(handler)

"""Shared fixtures of the flow tests: a private Prefect home, one test harness, simulated exposures.

Prefect reads its settings when it is first imported, so the environment is
set here, at collection, before any test module imports it: every test
session (and every xdist worker) gets its own ``PREFECT_HOME``, no analytics,
and a start-up timeout a busy 2-core machine can meet.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

_HOME = tempfile.mkdtemp(prefix="moe-prefect-home-")
os.environ["PREFECT_HOME"] = _HOME
os.environ.pop("PREFECT_API_URL", None)
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "120"
os.environ.pop("MOE_DASK_ADDRESS", None)

from tests.flows.helpers import SURVEY_SEEDS


@pytest.fixture(scope="session")
def harness():
    """One Prefect test harness (temporary API on SQLite) for the whole session (~10 s to start)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def survey_inputs(tmp_path_factory) -> Path:
    """A folder with three simulated 512² survey exposures and one corrupt FITS file."""
    from moe_imaging.simulate import SurveySimConfig, simulate_survey
    from pipelines.io import write_exposure

    folder = tmp_path_factory.mktemp("survey_inputs")
    for seed in SURVEY_SEEDS:
        sim = simulate_survey(SurveySimConfig(size=512, seed=seed))
        write_exposure(folder / f"field_{seed}.fits", sim.image, sim.header)
    (folder / "corrupt.fits").write_bytes(b"SIMPLE  =   this is not FITS" + bytes(range(256)) * 20)
    return folder

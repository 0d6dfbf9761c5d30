"""The flow on an existing Dask scheduler (by address), and a worker killed in the middle of a run.

The test starts a 2-process ``distributed.LocalCluster`` and gives the flow
only its address (once through ``MOE_DASK_ADDRESS``, once through ``[dask]
address``).  In the second run a watcher kills a worker process (SIGKILL) as
soon as the scheduler has tile tasks on it; Dask reschedules them on the
other worker (and the nanny restarts the killed one).  The run must complete
and its catalogs must equal those of the undisturbed run, row for row.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import pytest

from catalogs import read_catalog
from flows.config import RunConfig
from flows.dask import DASK_ADDRESS_ENV

pytestmark = pytest.mark.usefixtures("harness")


@pytest.fixture(scope="module")
def cluster():
    import distributed

    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=40) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def exposures(tmp_path_factory):
    from moe_imaging.simulate import SurveySimConfig, simulate_survey
    from pipelines.io import write_exposure

    folder = tmp_path_factory.mktemp("fault_inputs")
    for seed in (11, 12):
        sim = simulate_survey(SurveySimConfig(size=768, seed=seed))
        write_exposure(folder / f"wide_{seed}.fits", sim.image, sim.header)
    return folder


def _config(inputs, out, **dask) -> RunConfig:
    return RunConfig.from_file_mapping({
        "inputs": {"glob": str(inputs / "*.fits")},
        "outputs": {"folder": str(out), "run": "faults"},
        # the point and extended experts without the gate: tiles of ~0.1 s, so the kill lands mid-run
        "detection": {"experts": ["point", "extended"], "gate": {"enabled": False}, "tiling": {"tile_size": 192}},
        "review": {"enqueue": False},
        "dask": dask,
        "flow": {"max_concurrent": 1, "retries": 1, "retry_delay": 0.5},
    })


def _catalogs(summary) -> dict:
    return {o.exposure: read_catalog(o.catalog) for o in summary.outcomes}


def _assert_same(got, ref) -> None:
    assert got.colnames == ref.colnames and len(got) == len(ref) > 50
    for name in ref.colnames:
        a, b = np.asarray(got[name]), np.asarray(ref[name])
        if a.dtype.kind == "f":
            assert np.array_equal(a, b, equal_nan=True), name
        else:
            assert np.array_equal(a, b), name


@pytest.fixture(scope="module")
def undisturbed(cluster, exposures, tmp_path_factory):
    from flows.survey import run_survey

    os.environ[DASK_ADDRESS_ENV] = cluster.scheduler_address  # the address from the environment
    try:
        summary = run_survey(_config(exposures, tmp_path_factory.mktemp("calm")))
    finally:
        del os.environ[DASK_ADDRESS_ENV]
    return summary


def test_flow_runs_on_an_existing_scheduler(undisturbed, cluster) -> None:
    import distributed

    assert [o.status for o in undisturbed.outcomes] == ["done", "done"]
    assert undisturbed.dask == cluster.scheduler_address
    assert all(o.n_tiles == 16 for o in undisturbed.outcomes)
    # the tiles ran on the test's cluster: its workers did the tasks
    with distributed.Client(cluster.scheduler_address, set_as_default=False) as client:
        prefixes = client.run_on_scheduler(lambda dask_scheduler: sorted(dask_scheduler.task_prefixes))
    assert "process_tile" in prefixes and "mesh_block" in prefixes  # tiles were tasks of this scheduler
    # the flow's client is closed, the cluster survives it (it is not the flow's to close)
    assert cluster.status.name == "running"


def test_a_worker_killed_mid_run(undisturbed, cluster, exposures, tmp_path) -> None:
    import distributed

    from flows.survey import run_survey

    with distributed.Client(cluster.scheduler_address, set_as_default=False) as watcher:
        watcher.wait_for_workers(2, timeout=60)
        pids = watcher.run(os.getpid)
        killed: list[tuple[str, int, int]] = []
        stop = threading.Event()

        def kill_when_tiles_run() -> None:
            while not stop.is_set():
                for address, keys in watcher.processing().items():
                    tiles = [k for k in keys if "process_tile" in str(k)]
                    if tiles and address in pids:
                        os.kill(pids[address], signal.SIGKILL)
                        killed.append((address, pids[address], len(tiles)))
                        return
                time.sleep(0.005)

        thread = threading.Thread(target=kill_when_tiles_run, daemon=True)
        thread.start()
        try:
            summary = run_survey(_config(exposures, tmp_path / "out", address=cluster.scheduler_address))
        finally:
            stop.set()
            thread.join(5)
        assert killed, "the watcher never saw a tile task on a worker"
        address, pid, n_tiles = killed[0]
        assert n_tiles >= 1 and pids[address] == pid
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)  # that worker process is gone
        # the nanny brings a fresh worker process back
        watcher.wait_for_workers(2, timeout=120)
        assert pid not in watcher.run(os.getpid).values()
    assert [o.status for o in summary.outcomes] == ["done", "done"]
    calm, hit = _catalogs(undisturbed), _catalogs(summary)
    assert calm.keys() == hit.keys()
    for name in calm:
        _assert_same(hit[name], calm[name])

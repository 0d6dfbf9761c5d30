"""The flows against a real Prefect server started by the test (not the temporary API).

``prefect server start`` runs in a subprocess with its own ``PREFECT_HOME``
(SQLite); the flows reach it through ``PREFECT_API_URL``:

* ``moe-imaging run --config`` in a subprocess: the flow run, its exposure
  task runs and the Markdown artifact are on the server afterwards;
* ``moe-imaging flows serve``: the schedule's deployment is registered with
  its cron schedule and the run configuration as its parameter, and paused
  when serving stops; (slow) a run of it, created through the API, is picked
  up by the serving process and writes the catalogs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.flows.helpers import free_port, subprocess_env, wait_for

CLI = [sys.executable, "-m", "moe_cli"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home = tmp_path_factory.mktemp("prefect_server_home")
    port = free_port()
    env = subprocess_env(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false",
                         PREFECT_UI_ENABLED="false")
    env.pop("PREFECT_API_URL", None)
    log = open(home / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                             "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    api = f"http://127.0.0.1:{port}/api"

    def healthy() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"prefect server exited: {(home / 'server.log').read_text()[-2000:]}")
        try:
            return httpx.get(f"{api}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(healthy, timeout=180, what="the Prefect server's /api/health")
        yield api
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def _post(api: str, path: str, body: dict | None = None) -> list | dict:
    response = httpx.post(f"{api}{path}", json=body or {}, timeout=30)
    response.raise_for_status()
    return response.json()


def _run_toml(tmp_path: Path, inputs: Path, out: Path, extra: str = "") -> Path:
    path = tmp_path / "run.toml"
    path.write_text(f"""
[inputs]
glob = "{inputs}/*.fits"
[outputs]
folder = "{out}"
run = "server"
[detection.tiling]
tile_size = 256
[dask]
n_workers = 1
threads_per_worker = 2
processes = false
[flow]
retries = 0
{extra}""")
    return path


@pytest.fixture
def one_exposure(survey_inputs, tmp_path) -> Path:
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "field_1.fits").write_bytes((survey_inputs / "field_1.fits").read_bytes())
    return inputs


def test_run_reports_to_the_server(server, one_exposure, tmp_path) -> None:
    out = tmp_path / "out"
    config = _run_toml(tmp_path, one_exposure, out)
    env = subprocess_env(PREFECT_API_URL=server, PREFECT_HOME=str(tmp_path / "client_home"))
    done = subprocess.run([*CLI, "run", "--config", str(config), "--quiet"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[-3] == f"catalogs: {out / 'run=server'}"
    assert lines[-1].startswith("open the review app: moe-imaging review serve --db ")
    assert (out / "run=server" / "exposure=field_1" / "catalog.parquet").is_file()
    # the temporary API was not used: the client's home has no database
    assert not list((tmp_path / "client_home").glob("*.db"))
    flows = {f["id"]: f["name"] for f in _post(server, "/flows/filter")}
    runs = [r for r in _post(server, "/flow_runs/filter") if flows[r["flow_id"]] == "survey-batch"]
    (run,) = [r for r in runs if r["parameters"]["config"]["outputs"]["folder"] == str(out)]
    assert run["state_type"] == "COMPLETED"
    tasks = _post(server, "/task_runs/filter", {"flow_runs": {"id": {"any_": [run["id"]]}}})
    assert [t["name"] for t in tasks] == ["field_1"] and tasks[0]["state_type"] == "COMPLETED"
    artifacts = _post(server, "/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [run["id"]]}}})
    (artifact,) = [a for a in artifacts if a["type"] == "markdown"]
    assert artifact["key"] == "survey-batch-server" and "**1 processed**" in artifact["data"]


@contextlib.contextmanager
def _serving(server: str, config: Path, tmp_path: Path, name: str):
    """``moe-imaging flows serve --config`` in a subprocess; stopped with SIGINT (as Ctrl-C) on exit."""
    env = subprocess_env(PREFECT_API_URL=server, PREFECT_HOME=str(tmp_path / "serve_home"),
                         PREFECT_RUNNER_POLL_FREQUENCY="1")
    log_path = tmp_path / "serve.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([*CLI, "flows", "serve", "--config", str(config)], env=env, cwd=tmp_path,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            def deployment():
                if proc.poll() is not None:
                    raise AssertionError(log_path.read_text()[-3000:])
                found = _post(server, "/deployments/filter", {"deployments": {"name": {"any_": [name]}}})
                return found[0] if found else None

            yield wait_for(deployment, timeout=180, what="the served deployment"), log_path
        finally:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def _schedule_toml(tmp_path: Path, inputs: Path, out: Path, name: str) -> Path:
    return _run_toml(tmp_path, inputs, out, extra=f"""
[[schedules]]
name = "{name}"
cron = "30 6 * * *"
timezone = "UTC"
run = "nightly"
""")


def test_serve_registers_cron_deployments(server, one_exposure, tmp_path) -> None:
    out = tmp_path / "served"
    with _serving(server, _schedule_toml(tmp_path, one_exposure, out, "nightly-test"), tmp_path,
                  "nightly-test") as (dep, _):
        (schedule,) = dep["schedules"]
        assert schedule["schedule"]["cron"] == "30 6 * * *" and schedule["schedule"]["timezone"] == "UTC"
        assert schedule["active"]
        config = dep["parameters"]["config"]
        assert config["outputs"] == {"folder": str(out), "run": "nightly"}
        assert config["inputs"]["glob"] == f"{one_exposure}/*.fits" and config["schedules"] == []
        assert dep["entrypoint"] == "flows.survey.survey_batch_flow"
    # serve pauses the deployment on shutdown: no run is scheduled while nobody serves it
    dep = _post(server, "/deployments/filter", {"deployments": {"name": {"any_": ["nightly-test"]}}})[0]
    assert dep["paused"], (tmp_path / "serve.log").read_text()[-3000:]


@pytest.mark.slow
def test_a_served_deployment_runs_the_batch(server, one_exposure, tmp_path) -> None:
    out = tmp_path / "served"
    with _serving(server, _schedule_toml(tmp_path, one_exposure, out, "nightly-run"), tmp_path,
                  "nightly-run") as (dep, log_path):
        # a run now (as the scheduler would at 06:30): the serving process picks it up and runs the batch
        flow_run = _post(server, f"/deployments/{dep['id']}/create_flow_run", {})

        def finished():
            state = httpx.get(f"{server}/flow_runs/{flow_run['id']}", timeout=10).json()["state_type"]
            if state in ("FAILED", "CRASHED", "CANCELLED"):
                raise AssertionError(f"served run ended {state}: {log_path.read_text()[-3000:]}")
            return state == "COMPLETED"

        wait_for(finished, timeout=400, interval=1, what="the served flow run")
    assert (out / "run=nightly" / "exposure=field_1" / "catalog.parquet").is_file()
    assert list((out / "_runs").glob("*.md"))

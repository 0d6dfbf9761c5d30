"""Deployments with cron schedules, served by ``moe-imaging flows serve``.

Each ``[[schedules]]`` entry of the run configuration becomes one deployment
of the survey batch flow (or the microscopy flow when its inputs say
``mode = "microscopy"``), named after the schedule, whose ``config``
parameter is the whole run configuration with the schedule's inputs and run
name applied (JSON; editable in the Prefect UI).  ``serve`` registers them
with the Prefect API and runs their flow runs in subprocesses of the serving
process until it is stopped; the deployments are paused on shutdown, so no
run is scheduled while nobody serves them.

Production (see the README): a Prefect server backed by PostgreSQL
(``PREFECT_API_DATABASE_CONNECTION_URL=postgresql+asyncpg://...``,
``prefect server start``), ``PREFECT_API_URL`` pointing at it on the serving
machine, and ``moe-imaging flows serve --config run.toml`` under a process
supervisor (systemd).  Teams that want flow runs on other machines use a work
pool and ``prefect worker start`` instead of serve; the deployments are the
same (:func:`build_deployments`).
"""

from __future__ import annotations

from typing import Any

from .config import RunConfig, ScheduleConfig
from .errors import FlowError

__all__ = ["flow_for", "build_deployments", "serve_deployments"]


def flow_for(config: RunConfig, schedule: ScheduleConfig | None = None) -> Any:
    """The flow a configuration (or one of its schedules) runs: microscopy when its inputs say so."""
    inputs = schedule.inputs if schedule is not None and schedule.inputs is not None else config.inputs
    if inputs.mode == "microscopy":
        from .microscopy import microscopy_batch_flow

        return microscopy_batch_flow
    from .survey import survey_batch_flow

    return survey_batch_flow


def build_deployments(config: RunConfig, *, source: str = "configuration") -> list[Any]:
    """One ``RunnerDeployment`` per schedule (cron, time zone, the run configuration as its parameter).

    Raises
    ------
    FlowError
        When the configuration has no schedules, or a schedule has no inputs.
    """
    from prefect.deployments.runner import EntrypointType
    from prefect.schedules import Cron
    from prefect.task_runners import ThreadPoolTaskRunner

    if not config.schedules:
        raise FlowError(source, "no [[schedules]] to serve (each needs name and cron)")
    deployments = []
    for schedule in config.schedules:
        run_config = config.for_schedule(schedule)
        if not run_config.inputs.given:
            raise FlowError(source, f"schedule {schedule.name!r} has no inputs ([inputs] or schedules.inputs)")
        flow = flow_for(config, schedule).with_options(
            task_runner=ThreadPoolTaskRunner(max_workers=run_config.flow.max_concurrent))
        deployments.append(flow.to_deployment(
            name=schedule.name,
            schedules=[Cron(schedule.cron, timezone=schedule.timezone)],
            parameters={"config": run_config.to_mapping()},
            description=f"{run_config.inputs.describe()} -> {run_config.outputs.folder} (run={run_config.outputs.run})",
            tags=["moe-imaging", run_config.outputs.run],
            # the subprocess that runs a flow imports it as flows.survey (flows/ uses relative imports)
            entrypoint_type=EntrypointType.MODULE_PATH,
        ))
    return deployments


def serve_deployments(config: RunConfig, *, source: str = "configuration", limit: int | None = 1) -> None:
    """Register the schedules' deployments and serve them until interrupted (blocks).

    Parameters
    ----------
    limit : int or None
        Flow runs at once in this process (``1``: a night's batch never overlaps the next).
    """
    import os

    from prefect import serve

    deployments = build_deployments(config, source=source)
    try:
        serve(*deployments, limit=limit)
    finally:
        if os.environ.get("PREFECT_API_URL"):
            _pause(deployments)


def _pause(deployments: list[Any]) -> None:
    """Pause the deployments (Prefect's runner does it on a clean shutdown, not always on Ctrl-C)."""
    from prefect.client.orchestration import get_client

    try:
        with get_client(sync_client=True) as client:
            for deployment in deployments:
                found = client.read_deployment_by_name(f"{deployment.flow_name}/{deployment.name}")
                client.pause_deployment(found.id)
    except Exception as exc:  # the server may be gone too; serving has stopped either way
        print(f"moe-imaging: warning: could not pause the deployments: {exc}")

"""The Prefect task of one exposure and the flow body both batch flows share.

The task is a thin wrapper around :func:`flows.batch.process_exposure`: a bad
input (:func:`flows.batch.is_permanent`) ends the task in a ``Failed``
state carrying the reason (no retry, no traceback in the logs); any other
exception is transient and retried with exponential backoff
(``[flow] retries``, ``retry_delay``).
"""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import task_run as runtime_task_run
from prefect.states import Failed, State
from prefect.tasks import exponential_backoff
from prefect.utilities.annotations import quote

from contracts.errors import MoeImagingError

from .batch import PlannedInput, is_permanent, process_exposure, run_batch
from .config import RunConfig
from .report import ExposureOutcome, RunSummary

__all__ = ["exposure_task", "flow_body", "guarded_flow_body"]


def _is_transient(task_: Any, task_run: Any, state: State) -> bool:
    """Retry condition: retry unless the failure is a bad input (a Failed state with an outcome)."""
    try:
        value = state.result(raise_on_failure=False)
    except Exception:  # the result cannot be read back: let the retry policy decide
        return True
    if isinstance(value, ExposureOutcome):
        return False
    return not (isinstance(value, BaseException) and is_permanent(value))


@task(name="exposure", cache_policy=NO_CACHE, retry_condition_fn=_is_transient,
      task_run_name="{planned.item.exposure}", persist_result=False)
def exposure_task(
    planned: PlannedInput,
    config: RunConfig,
    queue: Any,
    ledger: Any,
    client: Any,
    flow_run: str,
) -> ExposureOutcome | State:
    """One exposure: detect on Dask, write the catalog, enqueue review rows, record it."""
    attempt = int(runtime_task_run.run_count or 1)
    try:
        return process_exposure(planned, config, client=client, queue=queue, ledger=ledger, flow_run=flow_run,
                                attempt=attempt)
    except MoeImagingError as exc:
        if not is_permanent(exc):
            raise
        item = planned.item
        get_run_logger().warning("%s", exc)
        outcome = ExposureOutcome(exposure=item.exposure, input_path=item.path, status="failed", reason=str(exc),
                                  plate=item.plate, well=item.well, mode=planned.mode, attempts=attempt)
        return Failed(message=str(exc), data=outcome)


def flow_body(config: dict[str, Any] | None, *, flow_name: str, mode: str | None, progress: bool) -> RunSummary:
    """Validate the flow's ``config`` parameter and run the batch (see :func:`flows.batch.run_batch`)."""
    run_config = RunConfig.from_file_mapping(config, source="flow parameter 'config'")
    options = run_config.flow
    delays = exponential_backoff(options.retry_delay)(options.retries) if options.retries else 0
    exposure = exposure_task.with_options(retries=options.retries, retry_delay_seconds=delays,
                                          retry_jitter_factor=0.2 if options.retries else None)

    def submit(planned: PlannedInput, *, queue: Any, ledger: Any, client: Any, flow_run: str) -> Any:
        # quote(): these are handles, not data; Prefect must not walk into them
        return exposure.submit(planned, quote(run_config), quote(queue), quote(ledger), quote(client), flow_run)

    return run_batch(run_config, flow_name=flow_name, mode=mode if mode is not None else run_config.inputs.mode,
                     submit=submit, progress=progress, logger=get_run_logger())


def guarded_flow_body(config: dict[str, Any] | None, *, flow_name: str, mode: str | None,
                      progress: bool) -> RunSummary | State:
    """:func:`flow_body`, with an expected fault turned into one log line and a ``Failed`` state.

    Returns
    -------
    RunSummary or prefect.states.State
        The summary, or a ``Failed`` state with the reason when the run cannot
        start (no inputs given, scheduler or queue unreachable, invalid
        configuration); no traceback.
    """
    try:
        return flow_body(config, flow_name=flow_name, mode=mode, progress=progress)
    except MoeImagingError as exc:  # an expected fault: one line in the logs, no traceback
        get_run_logger().error("%s", exc)
        return Failed(message=str(exc), data=exc)

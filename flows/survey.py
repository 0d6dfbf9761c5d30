"""The survey batch flow: new FITS exposures in, catalogs and review items out.

::

    from flows.config import load_run_config
    from flows.survey import run_survey

    summary = run_survey(load_run_config("run.toml"))

or, on a Prefect server, the deployment ``survey-batch/<schedule>`` served by
``moe-imaging flows serve`` (:mod:`flows.deploy`).  The flow's one parameter is
the run configuration as a plain mapping (:meth:`RunConfig.to_mapping`), so a
deployment stores it as JSON and the UI can edit it.  See
:mod:`flows.batch` for what a run does.
"""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.states import State
from prefect.task_runners import ThreadPoolTaskRunner

from contracts.errors import MoeImagingError

from .config import RunConfig
from .report import RunSummary
from .tasks import guarded_flow_body

__all__ = ["survey_batch_flow", "run_survey", "call_flow"]


@flow(name="survey-batch", task_runner=ThreadPoolTaskRunner(max_workers=2), persist_result=False,
      description="Detect sources on new survey exposures (Dask), write catalogs, fill the review queue.")
def survey_batch_flow(config: dict[str, Any] | None = None, progress: bool = False) -> RunSummary | State:
    """Process the exposures the configuration names (see :mod:`flows.batch`).

    Parameters
    ----------
    config : dict
        The run configuration as a mapping (the sections of a ``run.toml``).
    progress : bool
        A progress bar on the terminal.

    Returns
    -------
    RunSummary
        Or a ``Failed`` state with the reason when the run cannot start
        (no inputs given, scheduler or queue unreachable, invalid configuration).
    """
    return guarded_flow_body(config, flow_name="survey-batch", mode=None, progress=progress)


def call_flow(flow_obj: Any, config: RunConfig, *, progress: bool = False) -> RunSummary:
    """Run a batch flow in this process with the configuration's concurrency; raise its expected faults.

    Raises
    ------
    contracts.errors.MoeImagingError
        The reason the run could not start or finish.
    """
    runner = ThreadPoolTaskRunner(max_workers=config.flow.max_concurrent)
    state = flow_obj.with_options(task_runner=runner)(config=config.to_mapping(), progress=progress,
                                                      return_state=True)
    value = state.result(raise_on_failure=False)
    if isinstance(value, BaseException):
        raise value
    if not isinstance(value, RunSummary):
        raise MoeImagingError(f"{flow_obj.name}: the flow run ended in state {state.type.value}: {state.message}")
    return value


def run_survey(config: RunConfig, *, progress: bool = False) -> RunSummary:
    """Run the survey batch flow on ``config`` (in this process; Prefect API from the environment)."""
    return call_flow(survey_batch_flow, config, progress=progress)

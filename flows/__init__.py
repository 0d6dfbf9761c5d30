"""Prefect flows: the nightly batch of survey exposures or microscopy images.

* :mod:`flows.config` — the run configuration (one TOML file, frozen objects);
* :mod:`flows.survey`, :mod:`flows.microscopy` — the two batch flows;
* :mod:`flows.batch` — what both do: discover, skip what is done, detect on
  Dask, write catalogs, enqueue review items, report;
* :mod:`flows.tasks` — the Prefect task of one exposure (retries, bad inputs);
* :mod:`flows.state` — the done-ledger in the output folder;
* :mod:`flows.report` — the run summary (Markdown, Prefect artifact);
* :mod:`flows.dask` — the Dask client (address, ``MOE_DASK_ADDRESS`` or local);
* :mod:`flows.deploy` — deployments with cron schedules (``moe-imaging flows serve``);
* :mod:`flows.cli` — ``moe-imaging run`` and ``moe-imaging flows serve``.

Importing this package does not import Prefect (the CLI stays fast); the
flow modules do.  Production set-up (Prefect server on PostgreSQL, serving the
schedules, Dask scale-out): ``flows/DEPLOYMENT.md``.
"""

from .config import RunConfig, load_run_config
from .errors import FlowError

__all__ = ["RunConfig", "load_run_config", "FlowError"]

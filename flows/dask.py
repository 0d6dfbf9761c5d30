"""The Dask cluster a batch run's tiles run on.

Exposures are Prefect tasks (a few at once, on threads of the flow process);
the tiles of each exposure are Dask tasks submitted through one shared
``distributed.Client``.  Which cluster:

1. ``[dask] address`` in the configuration, else
2. the ``MOE_DASK_ADDRESS`` environment variable, else
3. a local cluster started for the run (``[dask] n_workers``,
   ``threads_per_worker``, ``processes``) and closed after it.

Scale-out notes
---------------
* **Slurm / PBS** (``dask-jobqueue``): start the cluster in a long-lived
  process on the login node and give the flows its address::

      from dask_jobqueue import SLURMCluster
      cluster = SLURMCluster(cores=8, processes=8, memory="32GB", walltime="08:00:00")
      cluster.adapt(minimum_jobs=1, maximum_jobs=20)
      print(cluster.scheduler_address)   # -> MOE_DASK_ADDRESS

  (one thread per worker process: the science is numpy/scipy/torch code that
  holds the GIL part of the time, and BLAS is limited to one thread per worker).
* **Kubernetes** (``dask-kubernetes`` operator or the Dask Helm chart): the
  scheduler service address, e.g. ``tcp://dask-scheduler.dask:8786``.  Workers
  must see the input files at the same paths as the flow (a shared volume:
  workers read their own pixels, no image travels through the scheduler), and
  run the same moe-imaging version.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from .config import DaskConfig
from .errors import FlowError

__all__ = ["DASK_ADDRESS_ENV", "scheduler_address", "dask_client"]

DASK_ADDRESS_ENV = "MOE_DASK_ADDRESS"
"""Environment variable naming an existing Dask scheduler."""


def scheduler_address(config: DaskConfig) -> str | None:
    """The scheduler to connect to: configuration, then ``MOE_DASK_ADDRESS``; ``None``: local."""
    if config.address:
        return config.address
    value = os.environ.get(DASK_ADDRESS_ENV, "").strip()
    return value or None


@contextlib.contextmanager
def dask_client(config: DaskConfig, *, timeout: float | None = None) -> Iterator[distributed.Client]:  # noqa: F821
    """A ``distributed.Client`` for the run (closed, with its local cluster, on exit).

    Parameters
    ----------
    config : DaskConfig
        Address or local-cluster settings.
    timeout : float, optional
        Seconds to wait for an existing scheduler (default ``config.timeout``).

    Raises
    ------
    FlowError
        When the scheduler cannot be reached (names the address and the cause).
    """
    import distributed

    address = scheduler_address(config)
    if address is not None:
        try:
            client = distributed.Client(address, timeout=config.timeout if timeout is None else timeout,
                                        set_as_default=False)
        except (OSError, TimeoutError, ValueError) as exc:
            raise FlowError(f"dask scheduler {address}", f"cannot connect: {exc}") from None
        try:
            yield client
        finally:
            client.close()
        return
    cluster = distributed.LocalCluster(
        n_workers=config.n_workers,
        threads_per_worker=config.threads_per_worker,
        processes=config.processes,
        dashboard_address=None,
        silence_logs=40,  # logging.ERROR: the run reports what matters
    )
    try:
        client = distributed.Client(cluster, set_as_default=False)
        try:
            yield client
        finally:
            client.close()
    finally:
        cluster.close()

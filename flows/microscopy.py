"""The microscopy batch flow: TIFF/OME-TIFF images (or plates of them) in, nuclei catalogs and counts out.

The same engine as the survey flow (:mod:`flows.batch`), in microscopy mode:
the nucleus expert with the PSF and nucleus scale from the optics (OME
metadata, else ``[detection.microscopy]``).  With ``[detection.gate]`` on (the
flow default) the nucleus triage (:mod:`moe_imaging.triage.microscopy`) gives every
nucleus ``p_nucleus`` and a certified decision, and the rows it routes to review
go to the review queue (microscopy cutouts, percentile stretch).  Plates: a CSV manifest with
``path``, ``plate`` and ``well`` columns, or a glob over one folder per plate
(``plates/*/*.ome.tif``: the plate is the folder's name).  Besides the run
summary it writes the per-image nucleus counts: a CSV next to the summary
(``<output>/_runs/<time>_<flow-run>_counts.csv``) and a Prefect table artifact.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any

from prefect import flow
from prefect.states import State
from prefect.task_runners import ThreadPoolTaskRunner

from contracts.files import atomic_write_text

from .config import RunConfig
from .report import RunSummary, artifact_key, summary_path
from .survey import call_flow
from .tasks import guarded_flow_body

__all__ = ["microscopy_batch_flow", "run_microscopy", "nucleus_counts", "write_counts"]

_COUNT_FIELDS = ("image", "plate", "well", "status", "nuclei", "catalog", "reason")


def nucleus_counts(summary: RunSummary) -> list[dict[str, Any]]:
    """One row per image: image, plate, well, status, nuclei (empty when it failed), catalog, reason.

    ``nuclei`` counts the rows of kind ``nucleus``: every detection without the
    gate; with it, those the nucleus triage does not call an ``artifact``
    (a spurious detection, a piece of a split nucleus or a merge of two).
    """
    rows = []
    for o in summary.outcomes:
        nuclei: int | str = ""
        if o.status == "done":
            nuclei = int(o.kinds.get("nucleus", 0))
        elif o.status == "skipped":
            nuclei = int(o.n_rows)
        rows.append({"image": o.exposure, "plate": o.plate or "", "well": o.well or "", "status": o.status,
                     "nuclei": nuclei, "catalog": o.catalog, "reason": o.reason})
    return rows


def write_counts(summary: RunSummary, folder: str | os.PathLike) -> Path:
    """Write the per-image counts CSV (atomically) into ``<folder>/_runs/``; return its path."""
    path = summary_path(summary, folder, "_counts.csv")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=_COUNT_FIELDS)
    writer.writeheader()
    writer.writerows(nucleus_counts(summary))
    return atomic_write_text(path, buffer.getvalue())


@flow(name="microscopy-batch", task_runner=ThreadPoolTaskRunner(max_workers=2), persist_result=False,
      description="Count nuclei on new microscopy images (Dask), write catalogs and per-image counts.")
def microscopy_batch_flow(config: dict[str, Any] | None = None, progress: bool = False) -> RunSummary | State:
    """Process the images the configuration names, in microscopy mode.

    Parameters
    ----------
    config : dict
        The run configuration as a mapping (the sections of a ``run.toml``).
    progress : bool
        A progress bar on the terminal.
    """
    summary = guarded_flow_body(config, flow_name="microscopy-batch", mode="microscopy", progress=progress)
    if not isinstance(summary, RunSummary):  # the run could not start: its Failed state
        return summary
    write_counts(summary, summary.output_folder)
    from prefect.artifacts import create_table_artifact

    create_table_artifact(
        key=artifact_key(summary.run, "microscopy-counts"),
        table=[{k: r[k] for k in ("image", "plate", "well", "status", "nuclei")} for r in nucleus_counts(summary)],
        description=f"nuclei per image, run {summary.run}",
    )
    return summary


def run_microscopy(config: RunConfig, *, progress: bool = False) -> RunSummary:
    """Run the microscopy batch flow on ``config`` (in this process)."""
    return call_flow(microscopy_batch_flow, config, progress=progress)

"""What a batch run did: per-exposure outcomes, the run summary, its Markdown.

The summary is published three ways: a Prefect Markdown artifact on the flow
run (:func:`publish_artifact`, visible in the Prefect UI), a Markdown and a
JSON file in the output folder (``<folder>/_runs/``), and a row of the
done-ledger (:class:`flows.state.Ledger`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections import Counter
from pathlib import Path
from typing import Any

from contracts.files import atomic_write_text

__all__ = [
    "ExposureOutcome",
    "RunSummary",
    "render_markdown",
    "write_summary",
    "summary_path",
    "publish_artifact",
    "artifact_key",
    "RUNS_FOLDER",
]

RUNS_FOLDER = "_runs"
"""Run summaries, under the output folder (the ``_`` keeps them out of the Parquet dataset)."""


@dataclasses.dataclass(frozen=True)
class ExposureOutcome:
    """One input's result in a run (small: no pixels, no catalog rows).

    Attributes
    ----------
    exposure : str
        Name in the dataset (file stem).
    input_path : str
        The input file.
    status : str
        ``"done"``, ``"skipped"`` (done before, same input and configuration)
        or ``"failed"``.
    reason : str
        Why it failed, or what the skip matched; ``""`` when done.
    catalog : str
        The catalog file (done or skipped).
    n_rows : int
        Catalog rows.
    kinds : dict
        Rows per ``kind``.
    decisions : dict
        Rows per gate ``decision`` (``accepted``/``rejected``/``review``).
    enqueued : int
        Review items added to the queue by this run.
    already_queued : int
        Review rows that were in the queue already.
    timings : dict
        Seconds per step (``detect``, ``write``, ``enqueue``, ``total``).
    plate, well : str or None
        Microscopy plate and well (from a manifest or the folder).
    mode : str
        ``"survey"`` or ``"microscopy"``.
    n_tiles : int
        Dask tasks per pass over the image.
    attempts : int
        Task attempts (retries + 1).
    notes : tuple of str
        Anything odd about a processed exposure (e.g. repeated source ids).
    """

    exposure: str
    input_path: str
    status: str
    reason: str = ""
    catalog: str = ""
    n_rows: int = 0
    kinds: dict[str, int] = dataclasses.field(default_factory=dict)
    decisions: dict[str, int] = dataclasses.field(default_factory=dict)
    enqueued: int = 0
    already_queued: int = 0
    timings: dict[str, float] = dataclasses.field(default_factory=dict)
    plate: str | None = None
    well: str | None = None
    mode: str = "survey"
    n_tiles: int = 0
    attempts: int = 1
    notes: tuple[str, ...] = ()

    @property
    def n_review(self) -> int:
        """Rows the gate routed to review."""
        return int(self.decisions.get("review", 0))


@dataclasses.dataclass(frozen=True)
class RunSummary:
    """A batch run, in numbers.

    Attributes
    ----------
    run : str
        Run name (dataset partition).
    flow : str
        ``survey-batch`` or ``microscopy-batch``.
    flow_run : str
        Prefect flow-run id.
    flow_run_name : str
        Prefect flow-run name.
    inputs : str
        The glob or manifest.
    output_folder : str
        Root of the catalog dataset.
    review_url : str
        The review queue (password hidden).
    dask : str
        The scheduler address, or ``local(...)``.
    started_at, finished_at : str
        ISO 8601 UTC.
    wall_s : float
        Wall time of the whole run.
    plan_s : float
        Discovery and checksums.
    outcomes : tuple of ExposureOutcome
        Every input, in input order.
    pending_review : int or None
        Items waiting for review in the queue after the run (``None``: no queue).
    """

    run: str
    flow: str
    flow_run: str
    flow_run_name: str
    inputs: str
    output_folder: str
    review_url: str
    dask: str
    started_at: str
    finished_at: str
    wall_s: float
    plan_s: float
    outcomes: tuple[ExposureOutcome, ...]
    pending_review: int | None = None

    def by_status(self, status: str) -> list[ExposureOutcome]:
        """Outcomes with this status."""
        return [o for o in self.outcomes if o.status == status]

    @property
    def done(self) -> list[ExposureOutcome]:
        return self.by_status("done")

    @property
    def skipped(self) -> list[ExposureOutcome]:
        return self.by_status("skipped")

    @property
    def failed(self) -> list[ExposureOutcome]:
        return self.by_status("failed")

    @property
    def rows_written(self) -> int:
        """Catalog rows written by this run."""
        return sum(o.n_rows for o in self.done)

    @property
    def enqueued(self) -> int:
        """Review items this run added."""
        return sum(o.enqueued for o in self.done)

    def kinds(self) -> dict[str, int]:
        """Rows per kind over the exposures this run processed."""
        total: Counter[str] = Counter()
        for o in self.done:
            total.update(o.kinds)
        return dict(sorted(total.items()))

    def decisions(self) -> dict[str, int]:
        """Rows per gate decision over the exposures this run processed."""
        total: Counter[str] = Counter()
        for o in self.done:
            total.update(o.decisions)
        return dict(sorted(total.items()))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types."""
        out = dataclasses.asdict(self)
        out["totals"] = {
            "done": len(self.done), "skipped": len(self.skipped), "failed": len(self.failed),
            "rows_written": self.rows_written, "enqueued": self.enqueued,
            "kinds": self.kinds(), "decisions": self.decisions(),
        }
        return out


def _cell(value: object) -> str:
    text = " ".join(str(value).split())
    return text.replace("|", "\\|")


def _seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}"


def render_markdown(summary: RunSummary) -> str:
    """The run summary as Markdown: totals, per-exposure table, failures with reasons, timings."""
    s = summary
    lines = [
        f"# {s.flow} run `{s.run}` ({s.flow_run_name})",
        "",
        f"{len(s.outcomes)} input(s) from `{s.inputs}`: **{len(s.done)} processed**, "
        f"{len(s.skipped)} skipped (done before), **{len(s.failed)} failed**; "
        f"{s.rows_written} catalog rows written, {s.enqueued} review item(s) enqueued"
        + (f", {s.pending_review} waiting for review in the queue" if s.pending_review is not None else "")
        + f". Wall time {s.wall_s:.1f} s (planning {s.plan_s:.1f} s).",
        "",
        f"* catalogs: `{s.output_folder}` (run={s.run})",
        f"* review queue: `{s.review_url}`",
        f"* Dask: `{s.dask}`",
        f"* started {s.started_at}, finished {s.finished_at}",
        "",
    ]
    kinds = s.kinds()
    decisions = s.decisions()
    if kinds:
        lines += ["## Detections", "", "| kind | rows |", "| --- | ---: |"]
        lines += [f"| {_cell(k or '(none)')} | {v} |" for k, v in kinds.items()]
        lines.append("")
    if any(decisions.get(k) for k in ("accepted", "rejected", "review")):
        lines += ["## Review load", "", "| decision | rows |", "| --- | ---: |"]
        lines += [f"| {k} | {decisions.get(k, 0)} |" for k in ("accepted", "rejected", "review")]
        lines += ["", f"{s.enqueued} item(s) enqueued by this run"
                  + (f"; {s.pending_review} waiting in the queue." if s.pending_review is not None else "."), ""]
    if s.outcomes:
        micro = any(o.mode == "microscopy" for o in s.outcomes)
        head = "| exposure | status | rows | " + ("plate | well | nuclei | " if micro else "") + \
            "review | enqueued | detect s | write s | enqueue s | total s | tries |"
        lines += ["## Exposures", "", head, "|" + " --- |" * (head.count("|") - 1)]
        for o in s.outcomes:
            t = o.timings
            nuclei = [str(o.kinds.get("nucleus", 0)) if o.status != "failed" else ""] if micro else []
            plate = [_cell(o.plate or ""), _cell(o.well or "")] if micro else []
            cells = [_cell(o.exposure), o.status, str(o.n_rows) if o.status != "failed" else "", *plate, *nuclei,
                     str(o.n_review) if o.status == "done" else "", str(o.enqueued) if o.status == "done" else "",
                     _seconds(t.get("detect")), _seconds(t.get("write")), _seconds(t.get("enqueue")),
                     _seconds(t.get("total")), str(o.attempts) if o.status != "skipped" else ""]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
        if micro:
            plates: dict[str, list[int]] = {}
            for o in s.outcomes:
                if o.status != "failed" and o.plate:
                    plates.setdefault(o.plate, []).append(int(o.kinds.get("nucleus", 0)))
            if plates:
                lines += ["## Nuclei per plate", "", "| plate | images | nuclei | per image |", "| --- | ---: | ---: | ---: |"]
                for plate, counts in sorted(plates.items()):
                    lines.append(f"| {_cell(plate)} | {len(counts)} | {sum(counts)} | {sum(counts) / len(counts):.1f} |")
                lines.append("")
    noted = [o for o in s.done if o.notes]
    if noted:
        lines += ["## Notes", ""]
        lines += [f"* `{_cell(o.exposure)}`: {_cell(n)}" for o in noted for n in o.notes]
        lines.append("")
    if s.failed:
        lines += ["## Failures", "", "| input | reason |", "| --- | --- |"]
        lines += [f"| `{_cell(o.input_path)}` | {_cell(o.reason)} |" for o in s.failed]
        lines.append("")
    done = s.done
    if done:
        detect = sum(o.timings.get("detect", 0.0) for o in done)
        write = sum(o.timings.get("write", 0.0) for o in done)
        enqueue = sum(o.timings.get("enqueue", 0.0) for o in done)
        lines += [
            "## Timings", "",
            "| step | seconds (sum over exposures) |", "| --- | ---: |",
            f"| detect (Dask) | {detect:.1f} |", f"| write catalogs | {write:.1f} |",
            f"| enqueue review | {enqueue:.1f} |", f"| run wall time | {s.wall_s:.1f} |", "",
        ]
    return "\n".join(lines)


def summary_path(summary: RunSummary, folder: str | os.PathLike, suffix: str = ".md") -> Path:
    """Where a run's summary lives: ``<folder>/_runs/<start time>_<flow-run name><suffix>``."""
    stamp = re.sub(r"[^0-9T]", "", summary.started_at.split("+")[0])
    stem = f"{stamp}_{re.sub(r'[^A-Za-z0-9_-]', '_', summary.flow_run_name or summary.flow_run)}"
    return Path(folder) / RUNS_FOLDER / f"{stem}{suffix}"


def write_summary(summary: RunSummary, folder: str | os.PathLike) -> Path:
    """Write ``<folder>/_runs/<time>_<flow-run-name>.md`` and ``.json`` (atomically); return the Markdown path."""
    md = summary_path(summary, folder)
    for path, text in ((md, render_markdown(summary)),
                       (md.with_suffix(".json"), json.dumps(summary.to_dict(), indent=1, sort_keys=True))):
        atomic_write_text(path, text + "\n")
    return md


def artifact_key(run: str, flow: str) -> str:
    """A Prefect artifact key (lower-case letters, digits, dashes) for a run name."""
    key = re.sub(r"[^a-z0-9-]+", "-", f"{flow}-{run}".lower()).strip("-")
    return key or "moe-imaging-run"


def publish_artifact(summary: RunSummary) -> str | None:
    """Attach the Markdown summary to the current flow run as a Prefect artifact; return its id."""
    from prefect.artifacts import create_markdown_artifact

    artifact_id = create_markdown_artifact(
        markdown=render_markdown(summary),
        key=artifact_key(summary.run, summary.flow),
        description=(f"{len(summary.done)} processed, {len(summary.skipped)} skipped, {len(summary.failed)} failed; "
                     f"{summary.enqueued} review item(s) enqueued"),
    )
    return None if artifact_id is None else str(artifact_id)

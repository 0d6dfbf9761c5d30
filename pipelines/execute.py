"""Running the per-tile science on Dask.

Two passes over the image, each one Dask task per block:

1. **background**: every task reads its own block of pixels and returns the
   clipped statistics of the meshes in it (a few numbers per mesh); the small
   mesh grid is then assembled into one global :class:`BackgroundModel`;
2. **detection**: every task reads its own tile (core + halo), subtracts the
   global background, runs the experts and returns the detections its core
   owns.

Tasks receive the (small, picklable) :class:`~pipelines.io.Exposure` and a
tile specification; pixels never travel through the task graph (dask-image's
``imread`` pattern), so memory stays bounded by a few tiles per worker.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Sequence

import dask
import numpy as np
from astropy.table import Table, vstack
from threadpoolctl import threadpool_limits

from contracts.flags import MaskBit
from moe_imaging.background import (
    BackgroundConfig,
    BackgroundModel,
    assemble_background,
    mesh_block_edges,
    mesh_statistics,
    source_mask,
)
from moe_imaging.psf import PSF, local_psf
from moe_imaging.tile import Tile

from .io import Exposure
from .tiling import TileSpec

__all__ = [
    "SourceMasking",
    "LocalPSF",
    "compute_background",
    "run_tiles",
    "process_tile",
    "read_tile",
    "score_tile",
    "score_tiles",
]


def _compute(tasks: list, *, scheduler: str, workers: int | None, progress: bool, client=None) -> list:
    """Compute delayed tasks on the chosen scheduler, with an optional progress bar."""
    if not tasks:
        return []
    if client is not None:
        futures = client.compute(tasks)
        if progress:
            from distributed import progress as dprogress

            dprogress(futures)
        return client.gather(futures)
    with contextlib.ExitStack() as stack:
        if progress and len(tasks) > 1:
            from tqdm.dask import TqdmCallback

            stack.enter_context(TqdmCallback(desc="tiles", unit="task", leave=False))
        if scheduler == "threads":
            # Tiles already run in parallel threads: one BLAS thread each, or the
            # BLAS pools oversubscribe the cores.
            stack.enter_context(threadpool_limits(limits=1, user_api="blas"))
        return list(dask.compute(*tasks, scheduler=scheduler, num_workers=workers))


@dataclasses.dataclass(frozen=True, eq=False)
class SourceMasking:
    """How a second background pass masks sources found with a first model."""

    prior: BackgroundModel
    smoothing: float
    threshold: float = 3.0
    grow: int = 0

    @property
    def halo(self) -> int:
        return int(math.ceil(4 * self.smoothing)) + self.grow + 1


def _mesh_block(
    exposure: Exposure, y0: int, y1: int, x0: int, x1: int, config: BackgroundConfig,
    masking: SourceMasking | None = None,
):
    if masking is None:
        section = exposure.read(y0, y1, x0, x1)
        return mesh_statistics(section.data, section.mask, config=config)
    ny, nx = exposure.shape
    h = masking.halo
    oy0, oy1, ox0, ox1 = max(0, y0 - h), min(ny, y1 + h), max(0, x0 - h), min(nx, x1 + h)
    section = exposure.read(oy0, oy1, ox0, ox1)
    level, rms = masking.prior.evaluate(oy0, oy1, ox0, ox1)
    sources = source_mask(
        section.data, level, rms, smoothing=masking.smoothing, threshold=masking.threshold,
        grow=masking.grow, bad=section.mask != 0,
    )
    inner = (slice(y0 - oy0, y1 - oy0), slice(x0 - ox0, x1 - ox0))
    mask = (section.mask[inner] != 0) | sources[inner]
    return mesh_statistics(section.data[inner], mask, config=config)


def compute_background(
    exposure: Exposure,
    config: BackgroundConfig,
    *,
    block_size: int = 2048,
    scheduler: str = "threads",
    workers: int | None = None,
    client=None,
    masking: SourceMasking | None = None,
) -> BackgroundModel:
    """Global background model of an exposure, computed block by block on Dask.

    Blocks are aligned to mesh edges, so the meshes (and the model) are the same
    for any ``block_size``.  With ``masking``, sources significant against a
    first model are excluded from the meshes (each block reads a halo so the
    mask does not depend on the blocks).
    """
    ny, nx = exposure.shape
    ys = mesh_block_edges(ny, block_size, config.mesh_size)
    xs = mesh_block_edges(nx, block_size, config.mesh_size)
    tasks = [
        dask.delayed(_mesh_block, pure=True)(exposure, y0, y1, x0, x1, config, masking)
        for (y0, y1) in ys
        for (x0, x1) in xs
    ]
    results = _compute(tasks, scheduler=scheduler, workers=workers, progress=False, client=client)
    rows = []
    for i in range(len(ys)):
        row = results[i * len(xs) : (i + 1) * len(xs)]
        rows.append([np.hstack([r[k] for r in row]) for k in range(3)])
    level, rms, good = (np.vstack([r[k] for r in rows]) for k in range(3))
    return assemble_background(level, rms, good, (ny, nx), config=config)


def read_tile(
    exposure: Exposure,
    spec: TileSpec,
    psf: PSF,
    background: BackgroundModel,
) -> Tile:
    """Read a tile's outer region and make the :class:`Tile` the experts see.

    The global background is evaluated on the tile and subtracted; the noise
    variance is the exposure's variance plane when it has one, else the
    background RMS squared.
    """
    y0, y1, x0, x1 = spec.outer
    section = exposure.read(y0, y1, x0, x1)
    mask = np.asarray(section.mask, dtype=np.uint16)
    # float32 pixels (float64 files stay float64): half the memory traffic.
    work = np.float64 if np.asarray(section.data).dtype == np.float64 else np.float32
    level, rms = background.evaluate(y0, y1, x0, x1, dtype=work)
    image = np.subtract(section.data, level, dtype=work)
    image[(mask & np.uint16(MaskBit.NONFINITE)) != 0] = 0.0
    if section.variance is not None:
        variance = np.asarray(section.variance, dtype=work)
    else:
        variance = np.square(rms, dtype=work)
    return Tile(
        image=image,
        variance=variance,
        mask=mask,
        background=level,
        psf=psf,
        origin=(y0, x0),
        core=spec.core,
        image_shape=exposure.shape,
        gain=exposure.meta.gain,
        smooth_variance=section.variance is None,
    )


@dataclasses.dataclass(frozen=True)
class LocalPSF:
    """Per-tile PSFs from each tile's own stars (:func:`moe_imaging.psf.local_psf`)."""

    min_snr: float = 30.0
    min_stars: int = 5
    max_ratio: float = 1.5


def process_tile(
    exposure: Exposure,
    spec: TileSpec,
    psf: PSF,
    background: BackgroundModel,
    experts: Sequence[object],
    local: LocalPSF | None = None,
) -> dict[str, Table]:
    """One Dask task: read the tile, run every expert, return each one's owned candidates.

    With ``local`` the tile's PSF is estimated from its own stars (else the
    global ``psf``); every row records the FWHM it was detected with in
    ``psf_fwhm``.
    """
    tile = read_tile(exposure, spec, psf, background)
    if local is not None:
        tile_psf = local_psf(
            tile.image, np.sqrt(tile.variance), psf, mask=tile.mask, min_snr=local.min_snr,
            min_stars=local.min_stars, max_ratio=local.max_ratio,
        )
        tile = dataclasses.replace(tile, psf=tile_psf)
    out = {}
    for expert in experts:
        table = expert.propose(tile)
        table.meta.clear()
        table["psf_fwhm"] = np.full(len(table), tile.psf.fwhm)
        out[expert.name] = table
    return out


def score_tile(
    exposure: Exposure,
    spec: TileSpec,
    psf: PSF,
    background: BackgroundModel,
    experts: Sequence[object],
    table: Table,
) -> tuple[np.ndarray, Table]:
    """One Dask task of the scoring pass: every expert's evidence for the rows this tile owns."""
    from moe_imaging.triage.survey_features import score_candidates

    cy0, cy1, cx0, cx1 = spec.core
    py, px = np.asarray(table["y_peak"]), np.asarray(table["x_peak"])
    rows = np.nonzero((py >= cy0) & (py < cy1) & (px >= cx0) & (px < cx1))[0]
    if len(rows) == 0:
        return rows, Table()
    tile = read_tile(exposure, spec, psf, background)
    return rows, score_candidates(tile, table[rows], experts)


def score_tiles(
    exposure: Exposure,
    tiles: Sequence[TileSpec],
    psf: PSF,
    background: BackgroundModel,
    experts: Sequence[object],
    table: Table,
    *,
    scheduler: str = "threads",
    workers: int | None = None,
    progress: bool = False,
    client=None,
) -> Table:
    """Every expert's evidence (:func:`moe_imaging.triage.survey_features.score_candidates`) for every row of ``table``.

    A second pass over the tiles, one Dask task each; a row is scored by the
    tile owning its peak, so the evidence does not depend on the tiling.
    """
    from moe_imaging.triage.survey_features import EVIDENCE

    small = table[["x", "y", "x_peak", "y_peak"]]
    tasks = [dask.delayed(score_tile, pure=True)(exposure, spec, psf, background, experts, small) for spec in tiles]
    results = _compute(tasks, scheduler=scheduler, workers=workers, progress=progress, client=client)
    out = Table({col: np.full(len(table), np.nan) for cols in EVIDENCE.values() for col in cols})
    for rows, ev in results:
        for col in ev.colnames:
            out[col][rows] = np.asarray(ev[col], dtype=np.float64)
    return out


def _stitch(tables: list[Table]) -> Table:
    """Concatenate per-tile tables of one expert, sorted by ``(y_peak, x_peak)``."""
    nonempty = [t for t in tables if len(t)]
    if not nonempty:
        return tables[0] if tables else Table()
    out = vstack(nonempty, metadata_conflicts="silent") if len(nonempty) > 1 else nonempty[0]
    order = np.lexsort((np.asarray(out["x_peak"]), np.asarray(out["y_peak"])))
    return out[order]


def run_tiles(
    exposure: Exposure,
    tiles: Sequence[TileSpec],
    psf: PSF,
    background: BackgroundModel,
    experts: Sequence[object],
    *,
    scheduler: str = "threads",
    workers: int | None = None,
    progress: bool = False,
    client=None,
    local: LocalPSF | None = None,
) -> dict[str, Table]:
    """Run :func:`process_tile` on every tile (one Dask task each) and stitch.

    Each tile returns only what its core owns, so stitching is a concatenation
    per expert; rows are sorted by ``(y_peak, x_peak)`` so the order, like the
    content, does not depend on the tiling.  An expert whose objects can be
    larger than a tile (the streak expert's trails) offers
    ``stitch(table, image_shape, psf)``, which joins the pieces its tiles
    reported.

    Returns
    -------
    dict of str to Table
        Each expert's candidates over the whole image.
    """
    tasks = [
        dask.delayed(process_tile, pure=True)(exposure, spec, psf, background, experts, local) for spec in tiles
    ]
    results = _compute(tasks, scheduler=scheduler, workers=workers, progress=progress, client=client)
    out = {}
    for expert in experts:
        table = _stitch([r[expert.name] for r in results])
        if hasattr(expert, "stitch"):
            table = expert.stitch(table, exposure.shape, psf)
        out[expert.name] = table
    return out

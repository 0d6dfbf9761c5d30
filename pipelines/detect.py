"""The single-image pipeline: ``detect_image(path) -> catalog``.

This is what the command line and the flows call.  The same steps for every
image; what a survey exposure and a microscopy image do differently is one
strategy object each (:mod:`pipelines.modality`).  Survey steps:

1. open the exposure lazily (:func:`pipelines.io.open_exposure`);
2. global background model, block by block on Dask;
3. the PSF prior: a PSF image given by the user, else a FWHM from the
   configuration, else the header (``FWHM``, or ``SEEING`` / pixel scale), else
   estimated from bright isolated stars in the central region;
4. tiles with a halo computed from the PSF and the experts' footprints, one
   Dask task per tile;
5. stitch (ownership), deterministic ``source_id``, RA/Dec from the WCS,
   magnitudes from the zero point, provenance.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from pathlib import Path

import numpy as np
from astropy.table import Table

from catalogs import (
    COLUMNS,
    add_sky_coordinates,
    empty_catalog,
    make_provenance,
    validate,
)
from catalogs.provenance import Provenance
from contracts.errors import InputError
from contracts.vocabulary import MODES
from moe_imaging.background import BackgroundModel
from moe_imaging.fusion import fuse, psf_fit_measurements
from moe_imaging.psf import PSF

from .config import DetectionConfig
from .execute import run_tiles
from .io import TIFF_SUFFIXES, Exposure
from .modality import MODALITIES, choose_psf, microscopy_setup
from .tiling import make_tiles

__all__ = ["DetectionResult", "detect_image", "choose_psf", "image_mode", "microscopy_setup"]

_FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz", ".fz", ".fits.fz")


@dataclasses.dataclass(frozen=True, eq=False)
class DetectionResult:
    """What :func:`detect_image` returns.

    Attributes
    ----------
    catalog : astropy.table.Table
        Detections in the catalog schema, ``meta["provenance"]`` set.
    provenance : catalogs.provenance.Provenance
        Package version, configuration hash, input checksum, PSF used, runtime.
    psf : moe_imaging.psf.PSF
        The PSF prior that was used.
    background : moe_imaging.background.BackgroundModel
        The global background model.
    exposure : pipelines.io.Exposure
        The opened exposure (metadata, WCS).
    """

    catalog: Table
    provenance: Provenance
    psf: PSF
    background: BackgroundModel
    exposure: Exposure


def image_mode(path: str | os.PathLike, mode: str | None = None) -> str:
    """``"survey"`` for FITS, ``"microscopy"`` for TIFF/OME-TIFF (``mode`` overrides)."""
    if mode is not None:
        if mode not in MODES:
            raise InputError(str(path), f"unknown mode {mode!r}; use 'survey' or 'microscopy'")
        return mode
    name = Path(path).name.lower()
    if name.endswith(TIFF_SUFFIXES):
        return "microscopy"
    if name.endswith(_FITS_SUFFIXES):
        return "survey"
    raise InputError(str(path), "cannot tell the image type from its name; use .fits or .tif, or give --mode")


def detect_image(
    path: str | os.PathLike,
    *,
    config: DetectionConfig = DetectionConfig(),
    hdu: int | str | None = None,
    psf_file: str | os.PathLike | None = None,
    tile_size: int | None = -1,
    progress: bool = False,
    client=None,
    checksum: bool = True,
    mode: str | None = None,
) -> DetectionResult:
    """Detect sources on a survey exposure (FITS) or a microscopy image (TIFF).

    Survey mode runs the point-source expert with the PSF prior from a PSF
    image, the configuration, the header or the stars; microscopy mode runs
    the nucleus expert with an Airy PSF and a nucleus scale from the optics
    (OME metadata, else the ``microscopy`` configuration).

    Parameters
    ----------
    path : str or path-like
        The image: FITS means survey mode, TIFF/OME-TIFF microscopy mode.
    config : DetectionConfig
        Options of every stage.
    hdu : int or str, optional
        The science HDU (default: the first 2-D image HDU, or ``SCI``).
    psf_file : str or path-like, optional
        A PSF image to use as the prior (overrides header and configuration).
    tile_size : int or None
        Tile core size; ``-1`` (default) takes ``config.tiling.tile_size``,
        ``None`` processes the image as one tile.  The catalog is the same
        for any value.
    progress : bool
        Show a progress bar over tiles.
    client : distributed.Client, optional
        Run on this Dask cluster instead of the local threaded scheduler.
    checksum : bool
        Compute the input's SHA-256 for the provenance.
    mode : {"survey", "microscopy"}, optional
        Overrides the mode chosen from the file name.

    Returns
    -------
    DetectionResult

    Raises
    ------
    contracts.errors.InputError
        For unusable input (missing, corrupt, not 2-D, all NaN, no PSF).
    """
    t0 = time.perf_counter()
    modality = MODALITIES[image_mode(path, mode)]
    tiling = config.tiling
    size = tiling.tile_size if tile_size == -1 else tile_size
    sched = dict(scheduler=tiling.scheduler, workers=tiling.workers, client=client)
    exposure = modality.open(path, hdu=hdu)
    setup = modality.prepare(exposure, config, psf_file=psf_file, size=size, sched=sched)
    psf, background = setup.psf, setup.background
    tiles = make_tiles(exposure.shape, size, setup.halo)
    per_expert = run_tiles(exposure, tiles, psf, background, setup.experts, progress=progress, local=setup.local,
                           **sched)
    if len(per_expert) == 1:
        table = next(iter(per_expert.values()))
    else:
        table = fuse(per_expert, radius=max(1.5, psf.fwhm))
    table = modality.annotate(table, setup, exposure)
    if config.gate.enabled:
        table = modality.triage(table, setup, exposure, tiles, config, progress=progress, sched=sched)
    table = psf_fit_measurements(table)  # a star's position and flux are its PSF fit's
    catalog = _to_catalog(table, exposure)
    provenance = make_provenance(
        input_path=exposure.path,
        config=config,
        psf=psf.describe(),
        flux_unit=exposure.meta.bunit or "adu",
        image_shape=exposure.shape,
        tile_size=size,
        n_tiles=len(tiles),
        threshold=setup.threshold,
        runtime_s=time.perf_counter() - t0,
        checksum=checksum,
    )
    provenance = dataclasses.replace(
        provenance,
        config_hash=config.science_hash(),
        extra={
            "mode": modality.name,
            "halo_px": setup.halo,
            "background_mesh": config.background.mesh_size,
            "hdu": str(exposure.hdu),
            **setup.extra,
        },
    )
    catalog.meta["provenance"] = provenance.to_dict()
    return DetectionResult(catalog=catalog, provenance=provenance, psf=psf, background=background, exposure=exposure)


def _source_ids(table: Table, ny: int, nx: int) -> np.ndarray:
    """``y_peak * nx + x_peak``: the peak pixel, so ids do not depend on the tiling.

    Two fused objects can share a peak pixel (a star and the galaxy segment
    around it, a trail crossing a star): the second, third ... in order of
    their centroid (x, then y) get ``+ k * nx * ny``, so ids stay unique and
    still do not depend on the tiling.
    """
    base = np.asarray(table["y_peak"], np.int64) * nx + np.asarray(table["x_peak"], np.int64)
    order = np.lexsort((np.asarray(table["y"], float), np.asarray(table["x"], float), base))
    rank = np.zeros(len(base), np.int64)
    sorted_base = base[order]
    first = np.r_[True, sorted_base[1:] != sorted_base[:-1]]
    start = np.maximum.accumulate(np.where(first, np.arange(len(base)), 0))
    rank[order] = np.arange(len(base)) - start
    return base + rank * np.int64(nx) * np.int64(ny)


def _to_catalog(table: Table, exposure: Exposure) -> Table:
    """Candidate table -> catalog schema: ids, sky coordinates, magnitudes."""
    if len(table) == 0:
        return empty_catalog(flux_unit=exposure.meta.bunit or "adu")
    out = Table(table, copy=True)
    for column in COLUMNS:  # columns an expert does not measure are missing values
        if column.name not in out.colnames and column.name not in ("source_id", "mag", "mag_err", "ra", "dec"):
            out[column.name] = np.full(len(out), column.fill, dtype=column.numpy_dtype)
    ny, nx = exposure.shape
    out["source_id"] = _source_ids(out, ny, nx)
    zp = exposure.meta.magzp
    flux = np.asarray(out["flux"], dtype=np.float64)
    err = np.asarray(out["flux_err"], dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        good = np.isfinite(flux) & (flux > 0) & (zp is not None)
        mag = np.where(good, (zp if zp is not None else 0.0) - 2.5 * np.log10(np.where(good, flux, 1.0)), np.nan)
        mag_err = np.where(good, 2.5 / math.log(10) * err / np.where(good, flux, 1.0), np.nan)
    out["mag"] = mag
    out["mag_err"] = mag_err
    out["ra"] = np.full(len(out), np.nan)
    out["dec"] = np.full(len(out), np.nan)
    out = add_sky_coordinates(out, exposure.wcs)
    return validate(out, source=str(exposure.path), flux_unit=exposure.meta.bunit or "adu")


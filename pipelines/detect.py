"""The single-image pipeline: ``detect_image(path) -> catalog``.

This is what the command line and the flows call.  Steps:

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

from catalogs import COLUMNS, add_sky_coordinates, empty_catalog, make_provenance, validate
from catalogs.provenance import Provenance
from moe_imaging.background import BackgroundModel
from contracts.errors import InputError, PSFError
from moe_imaging.experts import make_expert
from moe_imaging.fusion import fuse
from moe_imaging.experts.nucleus import NucleusExpertConfig, microscopy_background_passes
from moe_imaging.experts.streak import streak_prior_from_header
from moe_imaging.psf import PSF, airy_psf, estimate_psf, moffat_psf, psf_from_image

from .config import DetectionConfig, MicroscopyConfig
from .execute import LocalPSF, SourceMasking, compute_background, run_tiles, score_tiles
from .io import Exposure, open_exposure, read_psf_image
from .io_tiff import TIFF_SUFFIXES, Optics, TiffExposure, open_tiff
from .tiling import halo_for, make_tiles

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
        if mode not in ("survey", "microscopy"):
            raise InputError(str(path), f"unknown mode {mode!r}; use 'survey' or 'microscopy'")
        return mode
    name = Path(path).name.lower()
    if name.endswith(TIFF_SUFFIXES):
        return "microscopy"
    if name.endswith(_FITS_SUFFIXES):
        return "survey"
    raise InputError(str(path), "cannot tell the image type from its name; use .fits or .tif, or give --mode")


def microscopy_setup(exposure: TiffExposure, config: MicroscopyConfig) -> tuple[PSF, NucleusExpertConfig, Optics]:
    """PSF and nucleus scale from the optics: metadata first, configuration second.

    Raises
    ------
    InputError
        When neither the file nor the configuration gives the pixel size.
    """
    meta = exposure.optics
    pixel = config.pixel_size_um or meta.pixel_size_um
    if pixel is None:
        raise InputError(
            str(exposure.path),
            "no pixel size in the image metadata (OME PhysicalSizeX); give it with --pixel-size MICRONS",
        )
    na = meta.numerical_aperture or config.numerical_aperture
    wavelength = meta.wavelength_nm or config.wavelength_nm
    optics = Optics(pixel_size_um=pixel, numerical_aperture=na, wavelength_nm=wavelength)
    psf = airy_psf(
        numerical_aperture=na, wavelength_nm=wavelength, pixel_size_um=pixel,
        source=f"optics:NA={na:g},lambda={wavelength:g}nm,pixel={pixel:g}um",
    )
    nucleus = NucleusExpertConfig.from_optics(
        diameter_um=tuple(config.nucleus_diameter_um), pixel_size_um=pixel, threshold=config.threshold
    )
    return psf, nucleus, optics


def choose_psf(
    exposure: Exposure,
    background: BackgroundModel,
    config: DetectionConfig,
    *,
    psf_file: str | os.PathLike | None = None,
) -> PSF:
    """Pick the PSF prior (see module docs for the order) for an exposure.

    Raises
    ------
    InputError
        When no PSF can be found or estimated; the message names the options
        that supply one.
    """
    meta = exposure.meta
    if psf_file is not None:
        image, oversampling = read_psf_image(psf_file, image_pixscale=meta.pixscale)
        try:
            return psf_from_image(image, oversampling=oversampling, source=f"image:{Path(psf_file).name}")
        except PSFError as exc:
            raise InputError(str(psf_file), str(exc)) from None
    beta = config.psf.beta
    header = exposure.header
    if str(header.get("PSFMODEL", "")).strip().lower() == "moffat":
        hb = header.get("BETA", header.get("PSFBETA"))
        if isinstance(hb, (int, float)) and hb > 1:
            beta = float(hb)
    if config.psf.fwhm is not None:
        return moffat_psf(config.psf.fwhm, beta=beta, source="config")
    if meta.fwhm_px is not None and meta.fwhm_px > 0:
        return moffat_psf(meta.fwhm_px, beta=beta, source=meta.fwhm_source or "header")
    # Estimate from stars in the central region.
    ny, nx = exposure.shape
    side = config.psf.estimate_max_size
    y0, x0 = max(0, (ny - side) // 2), max(0, (nx - side) // 2)
    y1, x1 = min(ny, y0 + side), min(nx, x0 + side)
    section = exposure.read(y0, y1, x0, x1)
    level, rms = background.evaluate(y0, y1, x0, x1)
    image = np.asarray(section.data, dtype=np.float64) - level
    try:
        return estimate_psf(image, rms, mask=section.mask, min_snr=config.psf.estimate_min_snr)
    except PSFError as exc:
        raise InputError(
            str(exposure.path),
            f"no PSF keywords (FWHM or SEEING+PIXSCALE) and {exc}; "
            "give the PSF with --psf-fwhm PIXELS or --psf FILE",
        ) from None


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
    mode = image_mode(path, mode)
    tiling = config.tiling
    size = tiling.tile_size if tile_size == -1 else tile_size
    sched = dict(scheduler=tiling.scheduler, workers=tiling.workers, client=client)
    if mode == "microscopy":
        exposure = open_tiff(path)
        psf, nucleus_config, optics = microscopy_setup(exposure, config.microscopy)
        experts = [make_expert("nucleus", nucleus_config)]
        background = _microscopy_background(exposure, config, nucleus_config, psf, size, sched)
        threshold = nucleus_config.threshold
    else:
        exposure = open_exposure(path, hdu=hdu)
        optics = None
        background = _background(exposure, config.background, size, sched)
        psf = choose_psf(exposure, background, config, psf_file=psf_file)
        experts = [make_expert(name, _expert_config(name, config, exposure)) for name in config.experts]
        threshold = config.point.detection_threshold(psf)
    local = None
    halo = halo_for(psf, experts)
    scorers = []
    if mode == "survey" and config.gate.enabled:  # the scoring pass runs every survey expert
        from moe_imaging.gate import EVIDENCE

        scorers = [make_expert(n, _expert_config(n, config, exposure)) for n in EVIDENCE]
        halo = max(halo, halo_for(psf, scorers))
    if mode == "survey" and config.psf.vary:
        # each tile may get its own PSF, up to vary_max_ratio times wider: size the halo for that
        local = LocalPSF(config.psf.estimate_min_snr, config.psf.vary_min_stars, config.psf.vary_max_ratio)
        widest = moffat_psf(psf.fwhm * config.psf.vary_max_ratio, beta=psf.beta or config.psf.beta)
        halo = max(halo, halo_for(widest, experts))
    tiles = make_tiles(exposure.shape, size, halo)
    per_expert = run_tiles(exposure, tiles, psf, background, experts, progress=progress, local=local, **sched)
    if len(per_expert) == 1:
        table = next(iter(per_expert.values()))
    else:
        table = fuse(per_expert, radius=max(1.5, psf.fwhm))
    if mode == "survey" and config.gate.enabled:
        table = _gate(table, exposure, tiles, psf, background, scorers, config, threshold, progress, sched)
    elif mode == "microscopy" and config.gate.enabled:
        table = _nucleus_triage(table, psf, nucleus_config, config)
    catalog = _to_catalog(table, exposure)
    provenance = make_provenance(
        input_path=exposure.path,
        config=config,
        psf=psf.describe(),
        flux_unit=exposure.meta.bunit or "adu",
        image_shape=exposure.shape,
        tile_size=size,
        n_tiles=len(tiles),
        threshold=threshold,
        runtime_s=time.perf_counter() - t0,
        checksum=checksum,
    )
    provenance = dataclasses.replace(
        provenance,
        config_hash=config.science_hash(),
        extra={
            "mode": mode,
            "halo_px": halo,
            "background_mesh": config.background.mesh_size,
            "hdu": str(exposure.hdu),
            **({"optics": dataclasses.asdict(optics)} if optics is not None else {}),
        },
    )
    catalog.meta["provenance"] = provenance.to_dict()
    return DetectionResult(catalog=catalog, provenance=provenance, psf=psf, background=background, exposure=exposure)


def _gate(table, exposure, tiles, psf, background, scorers, config, threshold, progress, sched) -> Table:
    """Score every row by every survey expert, then the gate's calibrated decision (see GateConfig)."""
    from moe_imaging.gate import apply_gate

    evidence = score_tiles(exposure, tiles, psf, background, scorers, table, progress=progress, **sched)
    gate = config.gate
    try:
        out = apply_gate(table, evidence, psf_fwhm=psf.fwhm, threshold=threshold, alpha=gate.alpha,
                         delta=gate.delta, min_count=gate.min_count, weights=gate.weights,
                         image_shape=exposure.shape)
    except FileNotFoundError as exc:
        raise InputError(str(gate.weights or "gate"), str(exc)) from None
    for col in evidence.colnames:  # every expert's evidence stays with the row
        out[f"ev_{col}"] = evidence[col]
    return out


def _nucleus_triage(table: Table, psf: PSF, nucleus_config: NucleusExpertConfig, config: DetectionConfig) -> Table:
    """The microscopy counterpart of the gate: calibrated ``p_nucleus`` and the certified triage.

    Same ``gate.alpha``, ``gate.delta`` and ``gate.min_count`` as survey mode; the
    model is the shipped nucleus triage (:mod:`moe_imaging.nucleus_triage`).  An
    image whose nucleus size or PSF (pixels) the calibration did not cover goes to
    review entirely.
    """
    from moe_imaging.nucleus_triage import apply_nucleus_triage, open_nucleus_triage

    gate = config.gate
    open_nucleus_triage(gate.nucleus_weights)  # a bad [gate] nucleus_weights file: one line naming it
    return apply_nucleus_triage(table, diameter_px=nucleus_config.diameter_px, psf_fwhm=psf.fwhm,
                                alpha=gate.alpha, delta=gate.delta, min_count=gate.min_count,
                                weights=gate.nucleus_weights)


def _expert_config(name: str, config: DetectionConfig, exposure: Exposure):
    """An expert's configuration, with what the header tells it.

    The streak expert takes the trail length the header predicts (rate times
    exposure time, :func:`~moe_imaging.experts.streak.streak_prior_from_header`)
    when the configuration does not set one.
    """
    expert_config = getattr(config, name)
    if name == "streak" and expert_config.expected_length is None:
        length = streak_prior_from_header(exposure.header, exposure.meta.pixscale)
        if length is not None:
            expert_config = expert_config.replace(expected_length=length)
    return expert_config


def _background(exposure, config, size, sched, masking: SourceMasking | None = None) -> BackgroundModel:
    """The global background model; an image with no usable mesh is an input error."""
    try:
        return compute_background(
            exposure, config, block_size=size or max(exposure.shape), masking=masking, **sched
        )
    except ValueError as exc:  # no usable mesh
        raise InputError(str(exposure.path), f"cannot estimate the background: {exc}") from None


def _microscopy_background(
    exposure: TiffExposure,
    config: DetectionConfig,
    nucleus_config: NucleusExpertConfig,
    psf: PSF,
    size: int | None,
    sched: dict,
) -> BackgroundModel:
    """Two passes: coarse meshes several nuclei wide, then ordinary meshes with nuclei masked.

    Nuclei fill much of every ordinary mesh and would bias it; the coarse
    first model finds them, the second pass excludes them and follows the
    vignetting with ordinary meshes (the passes:
    :func:`moe_imaging.experts.nucleus.microscopy_background_passes`; the same
    model as :func:`~moe_imaging.experts.nucleus.microscopy_background` on the
    whole image).  When no ordinary mesh is left the coarse model is kept.
    """
    passes = microscopy_background_passes(nucleus_config, psf, config.background)
    first = _background(exposure, passes.coarse, size, sched)
    masking = SourceMasking(prior=first, smoothing=passes.smoothing, threshold=passes.threshold, grow=passes.grow)
    try:
        return _background(exposure, passes.fine, size, sched, masking=masking)
    except InputError:  # nuclei cover every mesh once masked: keep the coarse model (as microscopy_background)
        return first


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


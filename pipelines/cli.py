"""The image sub-commands of ``moe-imaging``: ``detect`` and ``simulate``.

::

    moe-imaging detect IMAGE --out CATALOG [--config FILE] [--tile N] [--hdu H]
                             [--psf FILE | --psf-fwhm PX] [--threshold SIGMA]
    moe-imaging simulate survey --size 4096 --seed 1 --out DIR
    moe-imaging simulate microscopy --size 1024 --seed 1 --out DIR

:func:`register` adds them to the command line that :mod:`moe_cli` composes.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

from contracts.flags import SourceFlag

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``detect`` and ``simulate`` to the ``moe-imaging`` sub-commands."""
    det = sub.add_parser("detect", help="detect sources on one image and write a catalog")
    det.add_argument("image", help="input image: FITS (survey mode) or TIFF/OME-TIFF (microscopy mode)")
    det.add_argument("--out", required=True, help="output catalog: .parquet, .fits or .ecsv")
    det.add_argument("--config", help="TOML configuration file (default: built-in defaults)")
    det.add_argument("--tile", type=int, default=None, help="tile core size in pixels (default from config: 2048)")
    det.add_argument("--hdu", default=None, help="science HDU index or EXTNAME (default: first 2-D image)")
    det.add_argument("--psf", dest="psf_file", default=None, help="PSF image (FITS) to use as the prior")
    det.add_argument("--psf-fwhm", type=float, default=None, help="PSF FWHM in pixels (overrides the header)")
    det.add_argument("--threshold", type=float, default=None, help="detection threshold in sigma (default: from the false-detection rate)")
    det.add_argument("--workers", type=int, default=None, help="threads (default: all cores)")
    det.add_argument("--mode", choices=("survey", "microscopy"), default=None, help="override the mode chosen from the file type")
    det.add_argument("--pixel-size", type=float, default=None, help="microscopy: object-plane pixel size in microns (overrides the metadata)")
    det.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    det.set_defaults(func=_cmd_detect)

    sim = sub.add_parser("simulate", help="simulate images with truth tables")
    simsub = sim.add_subparsers(dest="kind", required=True)
    sv = simsub.add_parser("survey", help="a survey exposure (FITS) with a truth catalog")
    sv.add_argument("--size", type=int, default=4096, help="image side in pixels")
    sv.add_argument("--seed", type=int, default=1)
    sv.add_argument("--fwhm", type=float, default=3.0, help="PSF FWHM in pixels")
    sv.add_argument("--psf-model", choices=("moffat", "kolmogorov"), default="moffat")
    sv.add_argument("--streaks", type=float, default=None, help="trails (fast movers) per Mpix (default 1)")
    sv.add_argument("--out", required=True, help="output folder")
    mc = simsub.add_parser("microscopy", help="a fluorescence image of nuclei (OME-TIFF) with a label mask and truth")
    mc.add_argument("--size", type=int, default=1024, help="image side in pixels")
    mc.add_argument("--seed", type=int, default=1)
    mc.add_argument("--out", required=True, help="output folder")
    sim.set_defaults(func=_cmd_simulate)


def _hdu_arg(value: str | None) -> int | str | None:
    if value is None:
        return None
    return int(value) if value.lstrip("-").isdigit() else value


def _cmd_detect(args: argparse.Namespace) -> int:
    from catalogs import write_catalog

    from .config import load_config
    from .detect import detect_image

    config = load_config(args.config)
    if args.psf_fwhm is not None:
        config = config.replace(psf=config.psf.replace(fwhm=args.psf_fwhm))
    if args.threshold is not None:
        config = config.replace(point=config.point.replace(threshold=args.threshold))
    if args.workers is not None:
        config = config.replace(tiling=config.tiling.replace(workers=args.workers))
    if args.pixel_size is not None:
        config = config.replace(microscopy=config.microscopy.replace(pixel_size_um=args.pixel_size))
    out = Path(args.out)
    from catalogs import catalog_format

    catalog_format(out)  # fail on an unknown extension before any work
    t0 = time.perf_counter()
    result = detect_image(
        args.image,
        config=config,
        hdu=_hdu_arg(args.hdu),
        psf_file=args.psf_file,
        tile_size=args.tile if args.tile is not None else -1,
        progress=not args.quiet and sys.stderr.isatty(),
        mode=args.mode,
    )
    path = write_catalog(result.catalog, out, provenance=result.provenance)
    if not args.quiet:
        cat = result.catalog
        prov = result.provenance
        kinds = Counter(str(k) for k in cat["kind"])
        ny, nx = result.exposure.shape
        print(
            f"{args.image}: {nx}x{ny} px, PSF FWHM {result.psf.fwhm:.2f} px ({result.psf.source}), "
            f"threshold {prov.threshold:.2f} sigma, {prov.n_tiles} tile(s), {prov.extra.get('mode', 'survey')} mode"
        )
        flags = np.asarray(cat["flags"], dtype=np.int64)
        by_flag = ", ".join(
            f"{int(((flags & int(bit)) != 0).sum())} {bit.name}" for bit in SourceFlag if ((flags & int(bit)) != 0).any()
        )
        print(
            f"{len(cat)} detections ({', '.join(f'{k}: {v}' for k, v in sorted(kinds.items())) or 'none'}) "
            f"in {time.perf_counter() - t0:.1f} s; {int((flags == 0).sum())} unflagged"
            + (f"; flagged: {by_flag}" if by_flag else "")
        )
        decisions = Counter(str(d) for d in cat["decision"]) if "decision" in cat.colnames else Counter()
        if sum(v for k, v in decisions.items() if k):
            gate = cat.meta.get("gate", {})
            print(f"gate (risk {gate.get('alpha', config.gate.alpha):.1%}): "
                  + ", ".join(f"{decisions[k]} {k}" for k in ("accepted", "rejected", "review")))
        print(f"catalog: {path}")
    return 0


def _cmd_simulate(args: argparse.Namespace) -> int:
    if args.kind == "microscopy":
        return _cmd_simulate_microscopy(args)
    from moe_imaging.simulate import SurveySimConfig, simulate_survey

    from .io import write_exposure

    extra = {} if args.streaks is None else {"n_streaks": args.streaks * 1024**2 / 1e6}
    cfg = SurveySimConfig(size=args.size, seed=args.seed, fwhm_px=args.fwhm, psf_model=args.psf_model, **extra)
    t0 = time.perf_counter()
    sim = simulate_survey(cfg)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"survey_{args.size}_seed{args.seed}"
    image_path = out / f"{stem}.fits"
    truth_path = out / f"{stem}_truth.ecsv"
    write_exposure(image_path, sim.image, sim.header)
    sim.truth.write(truth_path, format="ascii.ecsv", overwrite=True)
    counts = Counter(str(k) for k in sim.truth["kind"])
    print(f"simulated {args.size}x{args.size} px in {time.perf_counter() - t0:.1f} s: "
          + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    print(f"image: {image_path}\ntruth: {truth_path}")
    return 0


def _cmd_simulate_microscopy(args: argparse.Namespace) -> int:
    import tifffile

    from moe_imaging.simulate_microscopy import MicroscopySimConfig, simulate_microscopy

    from .io import write_ome_tiff

    cfg = MicroscopySimConfig(shape=(args.size, args.size), seed=args.seed)
    t0 = time.perf_counter()
    sim = simulate_microscopy(cfg)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"nuclei_{args.size}_seed{args.seed}"
    image_path = write_ome_tiff(
        out / f"{stem}.ome.tif", sim.image, pixel_size_um=cfg.pixel_size_um,
        numerical_aperture=cfg.numerical_aperture, wavelength_nm=cfg.emission_wavelength_nm,
    )
    labels_path = out / f"{stem}_labels.tif"
    tifffile.imwrite(labels_path, sim.labels, compression="zlib")
    truth_path = out / f"{stem}_truth.ecsv"
    sim.truth.write(truth_path, format="ascii.ecsv", overwrite=True)
    n_touch = int(np.sum(sim.truth["touching"])) if len(sim.truth) else 0
    n_dim = int(np.sum(sim.truth["dim"])) if len(sim.truth) else 0
    print(f"simulated {args.size}x{args.size} px in {time.perf_counter() - t0:.1f} s: "
          f"{len(sim.truth)} nuclei ({n_touch} touching, {n_dim} dim)")
    print(f"image: {image_path}\nlabels: {labels_path}\ntruth: {truth_path}")
    return 0

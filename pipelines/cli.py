"""The ``moe-imaging`` command line.

::

    moe-imaging detect IMAGE --out CATALOG [--config FILE] [--tile N] [--hdu H]
                             [--psf FILE | --psf-fwhm PX] [--threshold SIGMA]
    moe-imaging simulate survey --size 4096 --seed 1 --out DIR
    moe-imaging simulate microscopy --size 1024 --seed 1 --out DIR
    moe-imaging train learned [--seed 1] [--out moe_imaging/models/learned_v1.pt] [--device cpu]
    moe-imaging train gate [--seed 1] [--out moe_imaging/models/gate_v1.pt]
    moe-imaging train nucleus-triage [--seed 1] [--out moe_imaging/models/nucleus_triage_v1.pt]
    moe-imaging calibrate --labels LABELS.parquet --out NEW.pt [--model gate|nucleus-triage]

Expected faults (bad input, bad configuration) print one line,
``moe-imaging: error: FILE: cause``, and exit with status 2; no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from moe_imaging import __version__
from contracts.errors import MoeImagingError
from contracts.flags import SourceFlag

from .runtime import tune_allocator

__all__ = ["main", "build_parser"]

_EXIT_ERROR = 2

COMMAND_MODULES: tuple[str, ...] = ("review.cli", "flows.cli", "catalogs.cli")
"""Packages that add sub-commands: each has ``register(subparsers)``, whose
parsers ``set_defaults(func=...)`` a function ``(args) -> exit code``."""


def _command_modules() -> list[Any]:
    modules = []
    for name in COMMAND_MODULES:
        try:
            modules.append(importlib.import_module(name))
        except ModuleNotFoundError as exc:
            if exc.name not in (name, name.split(".")[0]):
                raise
    return modules


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for documentation and tests)."""
    parser = argparse.ArgumentParser(
        prog="moe-imaging",
        description="Detect and classify sources in survey and microscopy images.",
    )
    parser.add_argument("--version", action="version", version=f"moe-imaging {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    for module in _command_modules():
        module.register(sub)

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

    tr = sub.add_parser("train", help="train a learned model from simulations (reproducible from a seed)")
    trsub = tr.add_subparsers(dest="kind", required=True)
    tl = trsub.add_parser("learned", help="the learned expert's CNN; writes the weights and MODEL_CARD.md next to them")
    tl.add_argument("--seed", type=int, default=None, help="random seed (default 1: the shipped weights)")
    tl.add_argument("--out", default=None, help="weights file (default: the shipped moe_imaging/models/learned_v1.pt)")
    tl.add_argument("--device", default="cpu", help="torch device for training (default cpu)")
    tl.add_argument("--epochs", type=int, default=None, help="passes over the training stamps (default 12)")
    tl.add_argument("--train-fields", type=int, default=None, help="simulated training fields (default 48)")
    tl.add_argument("--field-size", type=int, default=None, help="side of each simulated field in pixels (default 512)")
    tl.add_argument("--quiet", action="store_true", help="no progress lines")
    tg = trsub.add_parser("gate", help="the gate (mixture over the experts) and its calibration split; writes GATE_MODEL_CARD.md")
    tg.add_argument("--seed", type=int, default=None, help="random seed (default 1: the shipped gate)")
    tg.add_argument("--out", default=None, help="weights file (default: the shipped moe_imaging/models/gate_v1.pt)")
    tg.add_argument("--epochs", type=int, default=None, help="passes over the training rows (default 80)")
    tg.add_argument("--train-fields", type=int, default=None, help="simulated training fields (default 20)")
    tg.add_argument("--calibration-fields", type=int, default=None, help="simulated calibration fields (default 40)")
    tg.add_argument("--quiet", action="store_true", help="no progress lines")
    tn = trsub.add_parser("nucleus-triage", help="the microscopy (nucleus) triage and its calibration split; "
                                                 "writes NUCLEUS_TRIAGE_MODEL_CARD.md")
    tn.add_argument("--seed", type=int, default=None, help="random seed (default 1: the shipped model)")
    tn.add_argument("--out", default=None,
                    help="weights file (default: the shipped moe_imaging/models/nucleus_triage_v1.pt)")
    tn.add_argument("--train-fields", type=int, default=None, help="simulated training fields (default 80)")
    tn.add_argument("--calibration-fields", type=int, default=None, help="simulated calibration fields (default 150)")
    tn.add_argument("--test-fields", type=int, default=None, help="simulated test fields (default 30)")
    tn.add_argument("--field-size", type=int, default=None, help="side of each simulated field in pixels (default 1024)")
    tn.add_argument("--epochs", type=int, default=None, help="full-batch training steps (default 600)")
    tn.add_argument("--quiet", action="store_true", help="no progress lines")

    cal = sub.add_parser("calibrate", help="refit the certified triage with reviewers' labels "
                                           "(a label file from 'moe-imaging review export')")
    cal.add_argument("--labels", required=True, help="label file (Parquet) from 'moe-imaging review export'")
    cal.add_argument("--model", choices=("gate", "nucleus-triage"), default="gate",
                     help="gate: the survey gate (survey labels); nucleus-triage: the microscopy triage "
                          "(nucleus/artifact labels)")
    cal.add_argument("--out", required=True, help="new weights (.pt); point [gate] weights (or nucleus_weights) at it")
    cal.add_argument("--weights", default=None, help="the model to start from (default: the shipped one)")
    cal.add_argument("--alpha", type=float, default=0.01, help="risk level for the before/after report (default 0.01)")
    cal.add_argument("--delta", type=float, default=0.05, help="confidence for the report (default 0.05)")
    cal.set_defaults(func=_cmd_calibrate)
    return parser


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from contracts.errors import InputError
    from moe_imaging.recalibrate import (
        read_label_file,
        recalibrate_nucleus_triage_with_labels,
        recalibrate_with_labels,
        summary_lines,
    )

    out = Path(args.out)
    if out.suffix != ".pt":
        raise InputError(str(out), "the weights file must end in .pt")
    what = "gate" if args.model == "gate" else "nucleus triage"
    if args.weights is not None and not Path(args.weights).exists():
        raise InputError(args.weights, f"no such {what} weights file")
    labels = read_label_file(args.labels)
    refit = recalibrate_with_labels if args.model == "gate" else recalibrate_nucleus_triage_with_labels
    summary = refit(labels, out=out, weights=args.weights, alpha=args.alpha, delta=args.delta,
                    source=Path(args.labels).name)
    print("\n".join(summary_lines(summary)))
    return 0


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

    from .io_tiff import write_ome_tiff

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


def _cmd_train(args: argparse.Namespace) -> int:
    if args.kind == "gate":
        return _cmd_train_gate(args)
    if args.kind == "nucleus-triage":
        return _cmd_train_nucleus_triage(args)
    from moe_imaging.learned.model import DEFAULT_WEIGHTS
    from moe_imaging.learned.train import TrainConfig, train_learned

    changes = {
        "seed": args.seed,
        "epochs": args.epochs,
        "n_train_fields": args.train_fields,
        "field_size": args.field_size,
    }
    cfg = TrainConfig.from_mapping({k: v for k, v in changes.items() if v is not None})
    out = Path(args.out) if args.out else DEFAULT_WEIGHTS
    if out.suffix != ".pt":
        from contracts.errors import InputError

        raise InputError(str(out), "the weights file must end in .pt")
    log = None if args.quiet else (lambda msg: print(msg, flush=True))
    _, metrics = train_learned(cfg, out=out, device=args.device, log=log)
    if not args.quiet:
        t = metrics["test"]
        print(f"held-out accuracy {t['accuracy']:.3f} (balanced {t['balanced_accuracy']:.3f}) in "
              f"{metrics['time_total_s']:.0f} s; weights: {out}; model card: {out.with_name('MODEL_CARD.md')}")
    return 0


def _cmd_train_gate(args: argparse.Namespace) -> int:
    from contracts.errors import InputError
    from moe_imaging.gate import DEFAULT_GATE_WEIGHTS
    from moe_imaging.gate_train import GateTrainConfig, train_gate

    changes = {"seed": args.seed, "epochs": args.epochs, "n_train_fields": args.train_fields,
               "n_calibration_fields": args.calibration_fields}
    cfg = GateTrainConfig.from_mapping({k: v for k, v in changes.items() if v is not None})
    out = Path(args.out) if args.out else DEFAULT_GATE_WEIGHTS
    if out.suffix != ".pt":
        raise InputError(str(out), "the weights file must end in .pt")
    model = train_gate(cfg, out=out, progress=not args.quiet)
    if not args.quiet:
        m = model.metadata["metrics"]
        print(f"calibration accuracy {m['calibration_accuracy']:.3f}, ECE {m['calibration_ece']:.4f}; weights: {out}; "
              f"model card: {out.with_name('GATE_MODEL_CARD.md')}")
    return 0


def _cmd_train_nucleus_triage(args: argparse.Namespace) -> int:
    from contracts.errors import InputError
    from moe_imaging.nucleus_triage import DEFAULT_NUCLEUS_TRIAGE_WEIGHTS, NucleusTriageConfig, train_nucleus_triage

    changes = {"seed": args.seed, "epochs": args.epochs, "n_train_fields": args.train_fields,
               "n_calibration_fields": args.calibration_fields, "n_test_fields": args.test_fields,
               "field_size": args.field_size}
    cfg = NucleusTriageConfig.from_mapping({k: v for k, v in changes.items() if v is not None})
    out = Path(args.out) if args.out else DEFAULT_NUCLEUS_TRIAGE_WEIGHTS
    if out.suffix != ".pt":
        raise InputError(str(out), "the weights file must end in .pt")
    log = None if args.quiet else (lambda msg: print(msg, flush=True))
    model = train_nucleus_triage(cfg, out=out, log=log)
    if not args.quiet:
        m = model.metadata["metrics"]
        print(f"calibration accuracy {m['calibration_accuracy']:.4f}, ECE {m['calibration_ece']:.4f}; weights: {out}; "
              f"model card: {out.with_name('NUCLEUS_TRIAGE_MODEL_CARD.md')}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``moe-imaging`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    tune_allocator()
    try:
        if args.command == "detect":
            return _cmd_detect(args)
        if args.command == "simulate":
            return _cmd_simulate(args)
        if args.command == "train":
            return _cmd_train(args)
        if getattr(args, "func", None) is not None:
            return int(args.func(args))
    except MoeImagingError as exc:
        print(f"moe-imaging: error: {exc}", file=sys.stderr)
        return _EXIT_ERROR
    except KeyboardInterrupt:
        print("moe-imaging: interrupted", file=sys.stderr)
        return 130
    parser.error(f"unknown command {args.command!r}")
    return _EXIT_ERROR


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""The training sub-commands of ``moe-imaging``: ``train`` and ``calibrate``.

::

    moe-imaging train learned [--seed 1] [--out moe_imaging/models/learned_v1.pt] [--device cpu]
    moe-imaging train gate [--seed 1] [--out moe_imaging/models/gate_v1.pt]
    moe-imaging train nucleus-triage [--seed 1] [--out moe_imaging/models/nucleus_triage_v1.pt]
    moe-imaging calibrate --labels LABELS.parquet --out NEW.pt [--model gate|nucleus-triage]

:func:`register` adds them to the command line that :mod:`moe_cli` composes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from contracts.errors import InputError

from .progress import stdout_log

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``train`` and ``calibrate`` to the ``moe-imaging`` sub-commands."""
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
    tr.set_defaults(func=_cmd_train)

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


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from catalogs.labels import read_labels

    from .recalibrate import recalibrate_weights, summary_lines

    out = _weights_out(args.out, Path(args.out))
    what = "gate" if args.model == "gate" else "nucleus triage"
    if args.weights is not None and not Path(args.weights).exists():
        raise InputError(args.weights, f"no such {what} weights file")
    labels = read_labels(args.labels)
    result = recalibrate_weights(labels, out=out, model=args.model, weights=args.weights, alpha=args.alpha,
                                 delta=args.delta, source=Path(args.labels).name)
    print("\n".join(summary_lines(result)))
    return 0


def _weights_out(out: str | None, default: Path) -> Path:
    """The weights file to write: ``out`` or the shipped one; it must end in ``.pt``."""
    path = Path(out) if out else default
    if path.suffix != ".pt":
        raise InputError(str(path), "the weights file must end in .pt")
    return path


def _cmd_train(args: argparse.Namespace) -> int:
    if args.kind in ("gate", "nucleus-triage"):
        return _cmd_train_triage(args)
    from pipelines.models import DEFAULT_LEARNED_WEIGHTS

    from .learned import TrainConfig, train_learned

    changes = {
        "seed": args.seed,
        "epochs": args.epochs,
        "n_train_fields": args.train_fields,
        "field_size": args.field_size,
    }
    cfg = TrainConfig.from_mapping({k: v for k, v in changes.items() if v is not None})
    out = _weights_out(args.out, DEFAULT_LEARNED_WEIGHTS)
    log = None if args.quiet else stdout_log
    _, metrics = train_learned(cfg, out=out, device=args.device, log=log)
    if not args.quiet:
        t = metrics["test"]
        print(f"held-out accuracy {t['accuracy']:.3f} (balanced {t['balanced_accuracy']:.3f}) in "
              f"{metrics['time_total_s']:.0f} s; weights: {out}; model card: {out.with_name('MODEL_CARD.md')}")
    return 0


def _cmd_train_triage(args: argparse.Namespace) -> int:
    """``train gate`` and ``train nucleus-triage``: one recipe, two heads."""
    from pipelines import models

    from . import gate, nucleus_triage

    if args.kind == "gate":
        config_cls, train, default, card = (gate.GateTrainConfig, gate.train_gate, models.DEFAULT_GATE_WEIGHTS,
                                            "GATE_MODEL_CARD.md")
        options = {"n_calibration_fields": args.calibration_fields}
    else:
        config_cls, train, default, card = (nucleus_triage.NucleusTriageConfig, nucleus_triage.train_nucleus_triage,
                                            models.DEFAULT_NUCLEUS_TRIAGE_WEIGHTS, "NUCLEUS_TRIAGE_MODEL_CARD.md")
        options = {"n_calibration_fields": args.calibration_fields, "n_test_fields": args.test_fields,
                   "field_size": args.field_size}
    changes = {"seed": args.seed, "epochs": args.epochs, "n_train_fields": args.train_fields, **options}
    cfg = config_cls.from_mapping({k: v for k, v in changes.items() if v is not None})
    out = _weights_out(args.out, default)
    model = train(cfg, out=out, log=None if args.quiet else stdout_log)
    if not args.quiet:
        m = model.metadata["metrics"]
        print(f"calibration accuracy {m['calibration_accuracy']:.4f}, ECE {m['calibration_ece']:.4f}; weights: {out}; "
              f"model card: {out.with_name(card)}")
    return 0

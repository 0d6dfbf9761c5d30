"""Catalogs before and after a change: are they the same, row for row and value for value?

A structural change (moving modules, splitting rooms) must not move a single
number in what ``moe-imaging detect`` writes.  This script makes three inputs
(two simulated survey exposures and one simulated microscopy image), runs
``moe-imaging detect`` on each twice (the default configuration, and every
survey expert with the gate on) and writes the catalogs into ``OUT``::

    python benchmarks/catalog_regression.py --out /tmp/before     # on the old commit
    python benchmarks/catalog_regression.py --out /tmp/after --inputs /tmp/before/inputs

    python benchmarks/catalog_regression.py --compare /tmp/before /tmp/after

``--compare`` reads both sets of Parquet catalogs and reports every column
whose values differ (NaN equals NaN; no tolerance: identical means identical),
and every difference of file- or column-level metadata (provenance, flag
descriptions, column descriptions and units); the provenance's creation time
and runtime, which change from run to run by design, are not compared.  It exits 0 when all catalogs are identical.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

EVERY_EXPERT = """\
experts = ["point", "extended", "artifact", "streak", "learned"]

[gate]
enabled = true
"""

MICROSCOPY_GATE = """\
[gate]
enabled = true
"""

CASES: tuple[tuple[str, str, str | None], ...] = (
    # (input, catalog name, configuration text or None for the defaults)
    ("survey_a.fits", "survey_a_default", None),
    ("survey_a.fits", "survey_a_every_expert", EVERY_EXPERT),
    ("survey_b.fits", "survey_b_default", None),
    ("survey_b.fits", "survey_b_every_expert", EVERY_EXPERT),
    ("microscopy.ome.tif", "microscopy_default", None),
    ("microscopy.ome.tif", "microscopy_gate", MICROSCOPY_GATE),
)


def _run(args: list[str]) -> None:
    done = subprocess.run(args, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")


def make_inputs(folder: Path) -> dict[str, Path]:
    """Simulate the three inputs (fixed seeds) into ``folder``; return them by name."""
    cli = [str(Path(sys.executable).with_name("moe-imaging"))]
    inputs = {}
    for name, args in (("survey_a.fits", ["survey", "--size", "1024", "--seed", "11"]),
                       ("survey_b.fits", ["survey", "--size", "1536", "--seed", "12", "--fwhm", "3.6",
                                          "--psf-model", "kolmogorov"]),
                       ("microscopy.ome.tif", ["microscopy", "--size", "768", "--seed", "13"])):
        sub = folder / name.split(".")[0]
        _run(cli + ["simulate", *args, "--out", str(sub)])
        made = sorted(p for p in sub.iterdir() if p.suffix in (".fits", ".tif", ".tiff")
                      and "truth" not in p.name and "label" not in p.name)
        inputs[name] = made[0]
    return inputs


def find_inputs(folder: Path) -> dict[str, Path]:
    """The inputs an earlier run simulated into ``folder`` (``OUT/inputs``)."""
    found = {}
    for name in ("survey_a.fits", "survey_b.fits", "microscopy.ome.tif"):
        sub = folder / name.split(".")[0]
        found[name] = sorted(p for p in sub.iterdir() if p.suffix in (".fits", ".tif", ".tiff")
                             and "truth" not in p.name and "label" not in p.name)[0]
    return found


def run_cases(out: Path, inputs_from: Path | None = None) -> None:
    """Simulate the inputs (or reuse those under ``inputs_from``) and write every case's catalog into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    inputs = find_inputs(inputs_from) if inputs_from is not None else make_inputs(out / "inputs")
    cli = [str(Path(sys.executable).with_name("moe-imaging"))]
    for image, name, config in CASES:
        args = cli + ["detect", str(inputs[image]), "--out", str(out / f"{name}.parquet"), "--quiet"]
        if config is not None:
            cfg = out / f"{name}.toml"
            cfg.write_text(config, encoding="utf-8")
            args += ["--config", str(cfg)]
        _run(args)
        rows = pq.read_metadata(out / f"{name}.parquet").num_rows
        print(f"{name}: {rows} rows")


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    if a.shape != b.shape:
        return False
    if a.dtype.kind == "f" and b.dtype.kind == "f":
        return bool(np.array_equal(a, b, equal_nan=True))
    return bool(np.array_equal(a, b))


_VOLATILE = {"created", "runtime_s"}
"""Provenance entries that change from run to run by design."""


def _metadata_changes(a, b) -> list[str]:
    """File- and column-level metadata that differ (provenance's creation time and runtime aside)."""
    import json

    out = []
    ma, mb = a.schema.metadata or {}, b.schema.metadata or {}
    for key in sorted(set(ma) | set(mb)):
        va, vb = ma.get(key), mb.get(key)
        if va == vb:
            continue
        try:
            ja, jb = json.loads(va), json.loads(vb)
        except (TypeError, ValueError):
            out.append(f"metadata {key.decode()} differs")
            continue
        if isinstance(ja, dict) and isinstance(jb, dict):
            keys = sorted(k for k in set(ja) | set(jb) if k not in _VOLATILE and ja.get(k) != jb.get(k))
            out += [f"metadata {key.decode()}[{k}] differs" for k in keys]
        else:
            out.append(f"metadata {key.decode()} differs")
    for field in a.schema:
        if field.name in b.schema.names and field.metadata != b.schema.field(field.name).metadata:
            out.append(f"column {field.name}: description or unit differs")
    return out


def compare(before: Path, after: Path) -> int:
    """Print the differences between two runs; return the number of differing catalogs."""
    bad = 0
    for _, name, _ in CASES:
        a = pq.read_table(before / f"{name}.parquet")
        b = pq.read_table(after / f"{name}.parquet")
        problems = []
        if a.schema.names != b.schema.names:
            problems.append(f"columns differ: {sorted(set(a.schema.names) ^ set(b.schema.names))}")
        if a.num_rows != b.num_rows:
            problems.append(f"rows {a.num_rows} -> {b.num_rows}")
        else:
            for col in a.schema.names:
                if col in b.schema.names:
                    va = np.asarray(a.column(col).to_numpy(zero_copy_only=False))
                    vb = np.asarray(b.column(col).to_numpy(zero_copy_only=False))
                    if not _same(va, vb):
                        problems.append(f"column {col} differs")
        problems += _metadata_changes(a, b)
        status = "identical" if not problems else "; ".join(problems)
        print(f"{name}: {a.num_rows} rows x {len(a.schema.names)} columns: {status}")
        bad += bool(problems)
    return bad


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--out", type=Path, help="write the inputs and catalogs here")
    group.add_argument("--compare", nargs=2, type=Path, metavar=("BEFORE", "AFTER"))
    parser.add_argument("--inputs", type=Path, default=None,
                        help="reuse the inputs of an earlier run (its OUT/inputs) instead of simulating them")
    args = parser.parse_args(argv)
    if args.out is not None:
        run_cases(args.out, args.inputs)
        return 0
    return 1 if compare(*args.compare) else 0


if __name__ == "__main__":
    sys.exit(main())

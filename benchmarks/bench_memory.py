"""Peak memory of ``detect_image`` on a 16384^2 float32 FITS exposure (1 GiB).

Run with ``make bench`` or ``python benchmarks/bench_memory.py [--size 16384]``.

The field (sky + Gaussian noise + Moffat stars, header FWHM and a TAN WCS) is
written strip by strip, so making it needs little memory.  Detection then runs
in a fresh child process whose peak resident set size (``ru_maxrss``, which
includes pages of the memory-mapped file it touched) is reported.  Target:
peak RSS < 2.5 GiB, i.e. less than 2.5x the image.  Exit status 1 if missed.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from astropy.io import fits

from pipelines.runtime import tune_allocator

TARGET_GIB = 2.5


def make_field(path: Path, size: int, *, seed: int = 7, fwhm: float = 3.0, strip: int = 1024) -> None:
    """Write a ``size`` x ``size`` float32 field in strips of ``strip`` rows."""
    from moe_imaging.psf import moffat_psf

    rng = np.random.default_rng(seed)
    psf = moffat_psf(fwhm, beta=3.0).image
    h = psf.shape[0] // 2
    n_stars = int(400 * (size / 1024) ** 2)
    ys = rng.uniform(0, size, n_stars)
    xs = rng.uniform(0, size, n_stars)
    flux = 10 ** rng.uniform(2.5, 5.0, n_stars)
    header = fits.Header()
    header["SIMPLE"] = True
    header["BITPIX"] = -32
    header["NAXIS"] = 2
    header["NAXIS1"] = size
    header["NAXIS2"] = size
    header["FWHM"] = (fwhm, "PSF FWHM [pixel]")
    header["GAIN"] = (2.0, "e-/ADU")
    header["SATURATE"] = (1e9, "ADU")
    header["CTYPE1"], header["CTYPE2"] = "RA---TAN", "DEC--TAN"
    header["CRPIX1"] = header["CRPIX2"] = (size + 1) / 2
    header["CRVAL1"], header["CRVAL2"] = 150.0, 2.0
    header["CD1_1"], header["CD2_2"] = -0.2 / 3600, 0.2 / 3600
    header["CD1_2"] = header["CD2_1"] = 0.0
    shdu = fits.StreamingHDU(path, header)
    order = np.argsort(ys)
    ys, xs, flux = ys[order], xs[order], flux[order]
    for y0 in range(0, size, strip):
        y1 = min(size, y0 + strip)
        block = (100.0 + rng.normal(0.0, 5.0, (y1 - y0, size))).astype(np.float32)
        lo, hi = np.searchsorted(ys, [y0 - h - 1, y1 + h + 1])
        for y, x, f in zip(ys[lo:hi], xs[lo:hi], flux[lo:hi]):
            iy, ix = int(round(y)), int(round(x))
            ya, yb = max(y0, iy - h), min(y1, iy + h + 1)
            xa, xb = max(0, ix - h), min(size, ix + h + 1)
            if ya >= yb or xa >= xb:
                continue
            block[ya - y0 : yb - y0, xa:xb] += (f * psf[ya - iy + h : yb - iy + h, xa - ix + h : xb - ix + h]).astype(np.float32)
        shdu.write(block)
    shdu.close()


def run_child(path: Path) -> dict:
    """Detection in this process; returns peak RSS and timing."""
    from pipelines import detect_image

    t0 = time.perf_counter()
    result = detect_image(path, checksum=True)
    seconds = time.perf_counter() - t0
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"peak_rss_gib": peak_kib / 2**20, "seconds": seconds, "n_detections": len(result.catalog),
            "n_tiles": result.provenance.n_tiles}


def main(argv: list[str] | None = None) -> int:
    tune_allocator()  # as the moe-imaging command does
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=16384)
    parser.add_argument("--out", default="bench_out")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(run_child(Path(args.child))))
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"memory_{args.size}.fits"
    if not path.exists():
        t0 = time.perf_counter()
        make_field(path, args.size)
        print(f"wrote {path} ({path.stat().st_size / 2**30:.2f} GiB) in {time.perf_counter() - t0:.0f} s")
    proc = subprocess.run([sys.executable, __file__, "--child", str(path)], capture_output=True, text=True)
    if proc.returncode != 0:
        print(proc.stderr, file=sys.stderr)
        return 1
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    image_gib = path.stat().st_size / 2**30
    ok = res["peak_rss_gib"] < TARGET_GIB
    print(f"{args.size}^2 float32 ({image_gib:.2f} GiB): {res['n_detections']} detections on {res['n_tiles']} tiles "
          f"in {res['seconds']:.1f} s ({args.size**2 / 1e6 / res['seconds']:.1f} Mpix/s)")
    print(f"peak RSS {res['peak_rss_gib']:.2f} GiB ({res['peak_rss_gib'] / image_gib:.2f}x the image)  "
          f"[{'PASS' if ok else 'FAIL'}] < {TARGET_GIB} GiB")
    (out / "bench_memory.json").write_text(json.dumps({**res, "size": args.size, "image_gib": image_gib, "pass": ok}, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

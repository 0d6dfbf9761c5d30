"""Benchmark of the review store: enqueue rate and next-item latency with 100k items queued.

Targets (issue 5): enqueue >= 2000 items/s and next-item latency p95 < 50 ms
with 100 000 items queued.  Measured here:

* **enqueue**: 100k catalog rows for review (10 catalogs of 10k, like 10
  exposures), bulk inserts without cutouts; then enqueueing one of them again
  (the idempotent path: nothing added);
* **next item**: ``claim(reviewer, n=1)`` with 100k pending, as the web app's
  "next" button calls it (one reviewer after another, each decision made so the
  queue moves), and the latency of the decision itself; also with an exposure
  filter;
* **cutouts**, reported separately: FITS stamp + 2 PNGs per item rendered
  from a 2048x2048 image, alone and inside ``enqueue``.

SQLite by default (a file in a temporary folder); ``--db URL`` measures
another database (it must be empty), ``--postgres`` starts a throwaway
PostgreSQL server (:class:`review.testing.TemporaryPostgres`).  Informational:
always exits 0; prints a table and, with ``--out``, writes JSON.

    python benchmarks/bench_review.py [--items 100000] [--postgres | --db URL] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from review import ReviewConfig, ReviewStore

KINDS = np.array(["star", "galaxy", "streak", "artifact"])


def make_catalog(n: int, *, seed: int, size: int = 2048):
    """A catalog of ``n`` rows, all for review, with the gate's columns (pandas)."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.full(4, 1.5), size=n)
    df = pd.DataFrame({
        "source_id": np.arange(n, dtype=np.int64) * 13 + seed,
        "x": rng.uniform(10, size - 10, n),
        "y": rng.uniform(10, size - 10, n),
        "ra": rng.uniform(150, 151, n),
        "dec": rng.uniform(2, 3, n),
        "kind": KINDS[probs.argmax(axis=1)],
        "confidence": probs.max(axis=1),
        "decision": "review",
        "review_reason": "confidence below the certified level; point 0.55 vs extended 0.35",
        "psf_fwhm": 3.0,
        "snr": rng.uniform(5, 100, n),
        "w_point": rng.uniform(0, 1, n),
        "w_extended": rng.uniform(0, 1, n),
        "w_streak": rng.uniform(0, 1, n),
        "w_artifact": rng.uniform(0, 1, n),
        "ev_point_chi2": rng.uniform(0, 5, n),
        "ev_extended_size": rng.uniform(0, 5, n),
        "ev_streak_length": rng.uniform(0, 50, n),
        "ev_artifact_sharp": rng.uniform(0, 2, n),
    })
    for j, c in enumerate(KINDS):
        df[f"p_{c}"] = probs[:, j]
    return df


def percentiles(samples: list[float]) -> dict[str, float]:
    a = np.asarray(samples) * 1000.0
    return {"p50_ms": float(np.percentile(a, 50)), "p95_ms": float(np.percentile(a, 95)),
            "p99_ms": float(np.percentile(a, 99)), "max_ms": float(a.max()), "n": int(a.size)}


def bench_enqueue(store: ReviewStore, n_items: int, per_catalog: int) -> dict:
    catalogs = [make_catalog(min(per_catalog, n_items - start), seed=k)
                for k, start in enumerate(range(0, n_items, per_catalog))]
    t0 = time.perf_counter()
    added = 0
    for k, cat in enumerate(catalogs):
        added += store.enqueue(cat, exposure=f"exposure_{k:03d}.fits", catalog_id=f"cat{k:03d}").added
    elapsed = time.perf_counter() - t0
    t1 = time.perf_counter()
    again = store.enqueue(catalogs[0], exposure="exposure_000.fits", catalog_id="cat000")
    again_s = time.perf_counter() - t1
    return {"items": added, "seconds": elapsed, "items_per_s": added / elapsed,
            "re_enqueue_rows": again.existing, "re_enqueue_added": again.added, "re_enqueue_s": again_s}


def bench_next_item(store: ReviewStore, samples: int, n_exposures: int) -> dict:
    claim_t, decide_t, filtered_t = [], [], []
    for i in range(samples):
        reviewer = f"reviewer{i % 8}"
        t0 = time.perf_counter()
        items = store.claim(reviewer, n=1)
        claim_t.append(time.perf_counter() - t0)
        t1 = time.perf_counter()
        store.decide(items[0].id, reviewer, ("accept", "reject", "uncertain")[i % 3])
        decide_t.append(time.perf_counter() - t1)
    for i in range(max(20, samples // 5)):
        reviewer = f"filtered{i % 4}"
        t0 = time.perf_counter()
        items = store.claim(reviewer, n=1, exposure=f"exposure_{i % n_exposures:03d}.fits")
        filtered_t.append(time.perf_counter() - t0)
        store.release(items[0].id, reviewer)
    t0 = time.perf_counter()
    stats = store.stats()
    stats_s = time.perf_counter() - t0
    return {"claim": percentiles(claim_t), "decide": percentiles(decide_t),
            "claim_exposure_filter": percentiles(filtered_t), "stats_s": stats_s, "pending": stats["backlog"]}


def bench_cutouts(store_url: str, n: int, config: ReviewConfig) -> dict:
    from review.cutouts import render_cutouts

    rng = np.random.default_rng(0)
    image = rng.normal(100.0, 5.0, (2048, 2048)).astype(np.float32)
    xy = rng.uniform(40, 2000, (n, 2))
    t0 = time.perf_counter()
    for x, y in xy:
        render_cutouts(image, float(x), float(y), config=config)
    render_s = time.perf_counter() - t0
    cat = make_catalog(n, seed=999)
    cat["x"], cat["y"] = xy[:, 0], xy[:, 1]
    with ReviewStore(store_url, config=config) as store:
        t1 = time.perf_counter()
        added = store.enqueue(cat, exposure="with_cutouts.fits", catalog_id="cutouts", image=image).added
        enqueue_s = time.perf_counter() - t1
    return {"items": n, "render_per_s": n / render_s, "enqueue_with_cutouts_per_s": added / enqueue_s}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=100_000, help="items to queue (default 100000)")
    parser.add_argument("--per-catalog", type=int, default=10_000, help="rows per enqueued catalog")
    parser.add_argument("--samples", type=int, default=300, help="next-item claims to time")
    parser.add_argument("--cutouts", type=int, default=200, help="items to render cutouts for")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--db", default=None, help="database URL (an empty database); default: SQLite in a tmp dir")
    where.add_argument("--postgres", action="store_true", help="start a throwaway PostgreSQL server")
    parser.add_argument("--out", default=None, help="write the results as JSON")
    args = parser.parse_args(argv)

    config = ReviewConfig(required_reviews=1)
    server = None
    with tempfile.TemporaryDirectory(prefix="bench-review-") as tmp:
        if args.postgres:
            from review.testing import TemporaryPostgres

            server = TemporaryPostgres().start()
            url = server.create_database("bench_review")
            cut_url = server.create_database("bench_review_cutouts")
        elif args.db:
            url = cut_url = args.db
        else:
            url = f"sqlite:///{tmp}/review.sqlite"
            cut_url = f"sqlite:///{tmp}/cutouts.sqlite"
        try:
            with ReviewStore(url, config=config) as store:
                if store.pending_count() and not args.db:
                    raise SystemExit("the benchmark database is not empty")
                backend = store.dialect
                enq = bench_enqueue(store, args.items, args.per_catalog)
                nxt = bench_next_item(store, args.samples, -(-args.items // args.per_catalog))
            cut = bench_cutouts(cut_url, args.cutouts, config)
        finally:
            if server is not None:
                server.stop()

    ok_enqueue = enq["items_per_s"] >= 2000
    ok_latency = nxt["claim"]["p95_ms"] < 50
    rows = [
        ("backend", backend, ""),
        ("items queued", f"{enq['items']:,}", f"in {enq['seconds']:.1f} s"),
        ("enqueue (no cutouts)", f"{enq['items_per_s']:,.0f} items/s", "target >= 2000: " + ("met" if ok_enqueue else "MISSED")),
        ("re-enqueue 10k (idempotent)", f"{enq['re_enqueue_s'] * 1000:.0f} ms",
         f"{enq['re_enqueue_added']} added, {enq['re_enqueue_rows']:,} existing"),
        ("next item: claim(n=1) p50", f"{nxt['claim']['p50_ms']:.1f} ms", f"{nxt['claim']['n']} claims, {nxt['pending']:,} pending"),
        ("next item: claim(n=1) p95", f"{nxt['claim']['p95_ms']:.1f} ms", "target < 50 ms: " + ("met" if ok_latency else "MISSED")),
        ("next item: claim(n=1) p99", f"{nxt['claim']['p99_ms']:.1f} ms", f"max {nxt['claim']['max_ms']:.1f} ms"),
        ("decide p50 / p95", f"{nxt['decide']['p50_ms']:.1f} / {nxt['decide']['p95_ms']:.1f} ms", ""),
        ("claim by exposure p50 / p95", (f"{nxt['claim_exposure_filter']['p50_ms']:.1f} / "
                                         f"{nxt['claim_exposure_filter']['p95_ms']:.1f} ms"), "one exposure's items only"),
        ("stats()", f"{nxt['stats_s'] * 1000:.0f} ms", ""),
        ("cutouts rendered", f"{cut['render_per_s']:,.0f} items/s", "FITS + 2 PNG, 64 px stamps"),
        ("enqueue with cutouts", f"{cut['enqueue_with_cutouts_per_s']:,.0f} items/s", f"{cut['items']} items"),
    ]
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    print(f"{'measure':<{w0}}  {'value':>{w1}}  note")
    print("-" * (w0 + w1 + 30))
    for name, value, note in rows:
        print(f"{name:<{w0}}  {value:>{w1}}  {note}")
    if args.out:
        Path(args.out).write_text(json.dumps({"backend": backend, "enqueue": enq, "next_item": nxt,
                                              "cutouts": cut}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

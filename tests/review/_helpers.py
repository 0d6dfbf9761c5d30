"""Helpers of the review tests, importable by spawned worker processes (``tests.review._helpers``)."""

from __future__ import annotations

__all__ = ["review_catalog"]


def review_catalog(n: int = 20, *, seed: int = 0, n_accepted: int = 0, kinds=("star", "galaxy", "streak", "artifact"),
                   size: int = 200, start_id: int = 0):
    """A small catalog in the catalogs schema with gate columns; ``n`` rows for review.

    The first ``n_accepted`` extra rows are auto-decided (``accepted``) and
    must never be queued.
    """
    import numpy as np
    from astropy.table import Table

    rng = np.random.default_rng(seed)
    total = n + n_accepted
    probs = rng.dirichlet(np.ones(4) * 2.0, size=total)
    kind_idx = probs.argmax(axis=1)
    names = np.array(["star", "galaxy", "streak", "artifact"])
    t = Table()
    t["source_id"] = np.arange(start_id, start_id + total, dtype=np.int64) * 7 + 3
    t["x"] = rng.uniform(5, size - 5, total)
    t["y"] = rng.uniform(5, size - 5, total)
    t["ra"] = rng.uniform(10, 11, total)
    t["dec"] = rng.uniform(-5, -4, total)
    t["kind"] = names[kind_idx] if kinds is None else np.array([kinds[i % len(kinds)] for i in range(total)])
    for j, c in enumerate(names):
        t[f"p_{c}"] = probs[:, j]
    t["confidence"] = probs.max(axis=1)
    t["decision"] = np.array(["accepted"] * n_accepted + ["review"] * n)
    t["review_reason"] = np.array(["confidence below the certified level; point 0.6 vs extended 0.3"] * total)
    t["psf_fwhm"] = np.full(total, 3.0)
    t["triage_stratum"] = np.array(["survey:fwhm2.5-4"] * total)
    t["snr"] = rng.uniform(5, 50, total)
    t["w_point"] = rng.uniform(0, 1, total)
    t["w_extended"] = 1 - t["w_point"]
    t["ev_point_chi2"] = rng.uniform(0, 3, total)
    t["ev_streak_length"] = np.where(rng.uniform(size=total) < 0.5, np.nan, 12.0)
    return t


def claim_and_decide(url: str, reviewer: str, config: dict, batch: int, barrier, results, deadline_s: float = 120.0):
    """Worker process: claim ``batch`` items at a time and decide each until nothing is pending.

    Puts ``{"reviewer", "claimed", "decided", "errors"}`` on ``results``.
    """
    import time
    import zlib

    from review import ReviewConfig, ReviewError, ReviewStore

    claimed: list[int] = []
    decided: list[int] = []
    errors: list[str] = []
    started = None
    try:
        store = ReviewStore(url, config=ReviewConfig(**config))
        barrier.wait(timeout=60)
        started = time.time()
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            items = store.claim(reviewer, n=batch)
            if not items:
                if store.pending_count() == 0:
                    break
                time.sleep(0.02)  # what is left waits for other reviewers
                continue
            for item in items:
                claimed.append(item.id)
                if item.lease_owner != reviewer:
                    errors.append(f"item {item.id} returned with lease owner {item.lease_owner}")
                action = ("accept", "reject", "relabel", "uncertain")[zlib.crc32(f"{item.id}{reviewer}".encode()) % 4]
                try:
                    store.decide(item.id, reviewer, action, kind="galaxy" if action == "relabel" else None)
                    decided.append(item.id)
                except ReviewError as exc:
                    errors.append(str(exc))
        else:
            errors.append("deadline reached")
        store.close()
    except Exception as exc:  # noqa: BLE001 - report, never hang the parent
        errors.append(f"{type(exc).__name__}: {exc}")
    results.put({"reviewer": reviewer, "claimed": claimed, "decided": decided, "errors": errors,
                 "started": started, "finished": time.time()})


def hold_claims(url: str, reviewer: str, n: int, lease_seconds: float, results) -> None:
    """Worker process: claim ``n`` items, report their ids, then hang until killed."""
    import time

    from review import ReviewStore

    store = ReviewStore(url)
    items = store.claim(reviewer, n=n, lease_seconds=lease_seconds)
    results.put([i.id for i in items])
    while True:
        time.sleep(1)


def churn(url: str, reviewer: str, lease_seconds: float, started) -> None:
    """Worker process: claim and decide in a tight loop until killed (possibly mid-transaction)."""
    from review import ReviewError, ReviewStore

    store = ReviewStore(url)
    started.set()
    while True:
        for item in store.claim(reviewer, n=5, lease_seconds=lease_seconds):
            try:
                store.decide(item.id, reviewer, "accept")
            except ReviewError:
                pass

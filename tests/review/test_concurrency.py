"""Many reviewer processes against one store (SQLite and PostgreSQL), and killed reviewers.

* 8 OS processes (spawned, each with its own store) claim 20 items at a time
  and decide them until the queue is empty: 2000 items needing k = 2 decisions.
  Every item must end with exactly 2 decisions from 2 distinct reviewers; no
  claim may be refused, lost or given twice.
* A reviewer process killed while holding claims: its leases expire and the
  items return to the queue; a process killed mid-transaction leaves the
  counters consistent.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time
from collections import Counter

import sqlalchemy as sa

from review import ReviewConfig, ReviewStore
from review import models as m
from tests.review._helpers import churn, claim_and_decide, hold_claims, review_catalog

N_ITEMS = 2000
N_WORKERS = 8
K = 2


def _assert_consistent(store: ReviewStore) -> None:
    with store.engine.connect() as conn:
        bad = conn.execute(sa.text(
            "SELECT i.id FROM review_items i WHERE "
            "i.n_leases <> (SELECT count(*) FROM review_leases l WHERE l.item_id = i.id) OR "
            "i.n_decisions <> (SELECT count(*) FROM review_decisions d WHERE d.item_id = i.id "
            "AND d.undone_at IS NULL) OR i.n_leases + i.n_decisions > i.required")).all()
    assert bad == []


def _enqueue(store: ReviewStore, n: int) -> None:
    batch = 500
    for start in range(0, n, batch):
        cat = review_catalog(batch, seed=start, start_id=start)
        assert store.enqueue(cat, exposure="e.fits", catalog_id="c").added == batch


def test_eight_processes_two_thousand_items(store_url):
    config = {"required_reviews": K, "lease_seconds": 600.0}
    store = ReviewStore(store_url, config=ReviewConfig(**config))
    _enqueue(store, N_ITEMS)
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(N_WORKERS)
    results = ctx.Queue()
    procs = [ctx.Process(target=claim_and_decide, args=(store_url, f"r{i}", config, 20, barrier, results))
             for i in range(N_WORKERS)]
    t0 = time.perf_counter()
    for p in procs:
        p.start()
    try:
        reports = [results.get(timeout=240) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    elapsed = time.perf_counter() - t0
    assert [r["errors"] for r in reports] == [[]] * N_WORKERS
    claims = Counter((item, r["reviewer"]) for r in reports for item in r["claimed"])
    assert max(claims.values()) == 1  # never the same item twice to one reviewer
    per_item = Counter(item for item, _ in claims)
    assert len(per_item) == N_ITEMS and set(per_item.values()) == {K}  # every item exactly k claims
    assert sum(len(r["decided"]) for r in reports) == N_ITEMS * K
    assert all(r["decided"] for r in reports)  # every process took part
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(m.decisions.c.item_id, m.decisions.c.reviewer)
                            .where(m.decisions.c.undone_at.is_(None))).all()
        statuses = dict(conn.execute(sa.select(m.items.c.status, sa.func.count()).group_by(m.items.c.status)).all())
        n_leases = conn.execute(sa.select(sa.func.count()).select_from(m.leases)).scalar_one()
    assert len(rows) == N_ITEMS * K and len(set(rows)) == N_ITEMS * K
    distinct = Counter(item for item, _ in set(rows))
    assert len(distinct) == N_ITEMS and set(distinct.values()) == {K}
    assert statuses.get("pending", 0) == 0 and sum(statuses.values()) == N_ITEMS
    assert n_leases == 0 and store.pending_count() == 0
    _assert_consistent(store)
    stats = store.stats()
    assert stats["decisions"] == N_ITEMS * K and sum(stats["by_reviewer"].values()) == N_ITEMS * K
    work = max(r["finished"] for r in reports) - min(r["started"] for r in reports)
    print(f"\n{store.dialect}: {N_WORKERS} processes, {N_ITEMS * K} decisions in {work:.1f} s after start-up "
          f"({N_ITEMS * K / work:.0f} decisions/s; {elapsed:.1f} s with process start-up)")
    store.close()


def test_killed_reviewer_leases_expire(store_url):
    store = ReviewStore(store_url)
    store.enqueue(review_catalog(10), exposure="e.fits", catalog_id="c")
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    lease = 2.0
    child = ctx.Process(target=hold_claims, args=(store_url, "doomed", 10, lease, results))
    child.start()
    try:
        held = results.get(timeout=60)
        t_claimed = time.monotonic()
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.join(timeout=30)
    assert child.exitcode == -signal.SIGKILL
    assert len(held) == 10
    if time.monotonic() - t_claimed < lease - 0.3:
        assert store.claim("rescuer", n=10) == []  # still leased to the dead process
    time.sleep(max(0.0, lease - (time.monotonic() - t_claimed)) + 0.3)
    back = store.claim("rescuer", n=20)
    assert sorted(i.id for i in back) == sorted(held)
    for item in back:
        store.decide(item.id, "rescuer", "accept")
    assert store.pending_count() == 0
    assert Counter(e.event for e in store.audit_trail())["expire"] == 10
    _assert_consistent(store)
    store.close()


def test_reviewer_killed_mid_work_leaves_a_consistent_queue(store_url):
    n = 2000
    store = ReviewStore(store_url)
    _enqueue(store, n)
    ctx = mp.get_context("spawn")
    started = ctx.Event()
    child = ctx.Process(target=churn, args=(store_url, "doomed", 1.0, started))
    child.start()
    try:
        assert started.wait(timeout=60)
        deadline = time.monotonic() + 60
        while store.pending_count() > n - 20 and time.monotonic() < deadline:
            time.sleep(0.005)  # let it work, then kill it mid-stream: in a claim, a decision or between
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.join(timeout=30)
    t_killed = time.monotonic()
    _assert_consistent(store)
    pending = store.pending_count()
    assert 0 < n - pending < n
    with store.engine.connect() as conn:
        held = set(conn.execute(sa.select(m.leases.c.item_id).where(m.leases.c.reviewer == "doomed")).scalars())
        per_item = conn.execute(sa.select(m.decisions.c.item_id, sa.func.count())
                                .where(m.decisions.c.undone_at.is_(None))
                                .group_by(m.decisions.c.item_id)).all()
    assert len(per_item) == n - pending and {c for _, c in per_item} <= {1}
    time.sleep(max(0.0, 1.0 - (time.monotonic() - t_killed)) + 0.3)  # the dead reviewer's leases expire
    first = store.claim("rescuer", n=1000)
    second = store.claim("rescuer", n=1000)
    claimed = {i.id for i in first + second}
    assert held <= claimed and len(claimed) == pending  # every pending item is back in the queue
    _assert_consistent(store)
    store.close()

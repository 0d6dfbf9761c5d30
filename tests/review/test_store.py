"""The review store on SQLite and PostgreSQL: enqueue, claim, decide, undo, accounts, cutouts, labels."""

from __future__ import annotations

import hashlib
import io
import socket
import time

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from astropy.io import fits
from astropy.wcs import WCS
from PIL import Image

from contracts.errors import InputError
from contracts.vocabulary import LABEL_COLUMNS
from review import (
    NotClaimedError,
    ReviewConfig,
    ReviewError,
    ReviewStore,
    StoreConnectionError,
    UnknownCutoutError,
    UnknownItemError,
    consensus,
    read_labels,
)
from review import models as m
from tests.review._helpers import review_catalog


def _counts(store: ReviewStore) -> dict[str, int]:
    """Row counts of every table: 'nothing changed' means these are equal."""
    with store.engine.connect() as conn:
        return {t.name: conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
                for t in m.metadata.sorted_tables}


def _invariants(store: ReviewStore) -> None:
    """n_leases / n_decisions on every item equal the rows of leases / live decisions."""
    with store.engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT i.id, i.n_leases, i.n_decisions, i.required, "
            "(SELECT count(*) FROM review_leases l WHERE l.item_id = i.id), "
            "(SELECT count(*) FROM review_decisions d WHERE d.item_id = i.id AND d.undone_at IS NULL) "
            "FROM review_items i")).all()
    for item_id, n_leases, n_dec, required, leases, decisions in rows:
        assert (n_leases, n_dec) == (leases, decisions), item_id
        assert n_leases + n_dec <= required


# ------------------------------------------------------------------ enqueue


def test_enqueue_is_idempotent(store):
    cat = review_catalog(20, n_accepted=5)
    first = store.enqueue(cat, exposure="exp1.fits", catalog_id="exp1")
    assert (first.added, first.existing, first.skipped) == (20, 0, 5)
    again = store.enqueue(cat, exposure="exp1.fits", catalog_id="exp1")
    assert (again.added, again.existing) == (0, 20)
    assert store.pending_count() == 20
    assert store.pending_count("exp1.fits") == 20 and store.pending_count("other") == 0
    # a bigger catalog with the old rows in it adds only the new ones
    bigger = review_catalog(30, n_accepted=5)
    res = store.enqueue(bigger, exposure="exp1.fits", catalog_id="exp1")
    assert (res.added, res.existing) == (10, 20)
    # the same source ids under another catalog id are other items
    assert store.enqueue(cat, exposure="exp2.fits", catalog_id="exp2").added == 20
    assert store.pending_count() == 50


def test_enqueue_keeps_the_gate_columns(store):
    cat = review_catalog(5)
    store.enqueue(cat, exposure="e", catalog_id="c", pixel_scale=0.2)
    items = {i.source_id: i for i in store.list_items(limit=10)}
    row = cat[0]
    item = items[int(row["source_id"])]
    assert item.x == pytest.approx(row["x"]) and item.ra == pytest.approx(row["ra"])
    assert item.kind == row["kind"] and item.mode == "survey" and item.status == "pending"
    assert item.probs == pytest.approx({c: row[f"p_{c}"] for c in ("star", "galaxy", "streak", "artifact")})
    assert item.weights == pytest.approx({"point": row["w_point"], "extended": row["w_extended"]})
    assert item.evidence["ev_point_chi2"] == pytest.approx(row["ev_point_chi2"])
    assert item.evidence["snr"] == pytest.approx(row["snr"])
    nan_rows = [i for i in items.values() if i.evidence["ev_streak_length"] is None]
    assert nan_rows  # NaN evidence is stored as null (valid JSON on PostgreSQL)
    assert item.reason.startswith("confidence below") and item.psf_fwhm == 3.0 and item.pixel_scale == 0.2
    assert item.triage_stratum == "survey:fwhm2.5-4"
    assert item.required == 1 and item.n_decisions == 0 and item.cutouts == {}
    assert item.created_at.tzinfo is not None


def test_enqueue_pandas_and_priority(store):
    df = review_catalog(3).to_pandas()
    df["kind"] = ["streak", "star", "artifact"]
    # identical, maximally uncertain probabilities: the kind's value orders them
    for c in ("star", "galaxy", "streak", "artifact"):
        df[f"p_{c}"] = 0.25
    store.enqueue(df, exposure="e", catalog_id="pd")
    kinds = [i.kind for i in store.list_items()]
    assert kinds == ["streak", "star", "artifact"]  # value 2, 1, 0.5 (DEFAULT_KIND_VALUES)
    top = store.list_items()[0]
    assert top.priority == pytest.approx(2.0, abs=1e-5)
    # a confident item is less urgent than an uncertain one of the same kind
    df2 = review_catalog(2, start_id=100).to_pandas()
    df2["kind"] = "star"
    df2.loc[0, ["p_star", "p_galaxy", "p_streak", "p_artifact"]] = [0.97, 0.01, 0.01, 0.01]
    df2.loc[1, ["p_star", "p_galaxy", "p_streak", "p_artifact"]] = [0.55, 0.43, 0.01, 0.01]
    store.enqueue(df2, exposure="e", catalog_id="pd")
    by_id = {i.source_id: i.priority for i in store.list_items(kind="star")}
    assert by_id[int(df2.source_id[1])] > by_id[int(df2.source_id[0])]


def test_enqueue_bad_input_changes_nothing(store):
    store.enqueue(review_catalog(3), exposure="e", catalog_id="ok")
    before = _counts(store)
    cat = review_catalog(5)
    cat.remove_column("kind")
    with pytest.raises(ReviewError, match=r"catalog 'bad': missing column 'kind'"):
        store.enqueue(cat, exposure="e", catalog_id="bad")
    cat = review_catalog(5)
    cat["x"][2] = np.nan
    with pytest.raises(ReviewError, match=r"row 2: x and y must be finite"):
        store.enqueue(cat, exposure="e", catalog_id="bad")
    with pytest.raises(ReviewError, match="mode must be one of"):
        store.enqueue(review_catalog(2), exposure="e", catalog_id="bad", mode="radio")
    with pytest.raises(ReviewError, match="catalog_id"):
        store.enqueue(review_catalog(2), exposure="e", catalog_id="")
    with pytest.raises(ReviewError, match="astropy Table or a pandas DataFrame"):
        store.enqueue([1, 2, 3], exposure="e", catalog_id="bad")
    assert _counts(store) == before


# ------------------------------------------------------------------ claim and decide


def test_claim_serves_highest_priority_and_leases(store):
    store.enqueue(review_catalog(10), exposure="e", catalog_id="c")
    everything = store.list_items()
    got = store.claim("alice", n=3, lease_seconds=60)
    assert [i.id for i in got] == [i.id for i in everything[:3]]
    for item in got:
        assert item.lease_owner == "alice" and item.lease_expires > item.created_at
        assert [lease.reviewer for lease in item.leases] == ["alice"]
    # k = 1: a leased item is offered to nobody else
    bob = store.claim("bob", n=10)
    assert {i.id for i in bob}.isdisjoint({i.id for i in got}) and len(bob) == 7
    assert store.claim("carol") == []
    assert [i.id for i in store.leased_to("alice")] == [i.id for i in got]
    _invariants(store)


def test_claim_filters(store):
    store.enqueue(review_catalog(8), exposure="a.fits", catalog_id="a")
    store.enqueue(review_catalog(8, start_id=50), exposure="b.fits", catalog_id="b")
    got = store.claim("alice", n=100, exposure="b.fits", kind="streak")
    assert got and all(i.exposure == "b.fits" and i.kind == "streak" for i in got)
    assert store.claim("alice", reason="no such reason") == []
    assert len(store.claim("alice", reason="certified level", n=100)) == 16 - len(got)
    assert store.count_items(exposure="a.fits") == 8
    with pytest.raises(ReviewError, match="only pending items"):
        store.claim("alice", status="decided")
    with pytest.raises(ReviewError, match="n: expected an integer"):
        store.claim("alice", n=0)
    with pytest.raises(ReviewError, match="reviewer"):
        store.claim("../etc")


@pytest.mark.parametrize("action, kind, label", [
    ("accept", None, "galaxy"),
    ("reject", None, "artifact"),
    ("relabel", "streak", "streak"),
    ("uncertain", None, "uncertain"),
])
def test_decide_labels(store, action, kind, label):
    store.enqueue(review_catalog(1, kinds=("galaxy",)), exposure="e", catalog_id="c")
    (item,) = store.claim("alice")
    d = store.decide(item.id, "alice", action, kind=kind, comment="  looks fine  ")
    assert (d.action, d.kind, d.label, d.comment) == (action, kind, label, "looks fine")
    after = store.get_item(item.id)
    assert after.n_decisions == 1 and after.leases == ()
    assert after.status == ("disputed" if label == "uncertain" else "decided")
    assert after.label == label and after.agreement == 1.0 and after.decided_at is not None
    assert store.decisions(item.id) == [d]
    assert store.pending_count() == 0
    _invariants(store)


def test_two_reviewers_and_consensus(make_store):
    store = make_store(required_reviews=2, consensus="majority")
    store.enqueue(review_catalog(3, kinds=("star",)), exposure="e", catalog_id="c")
    a = store.claim("alice", n=3)
    b = store.claim("bob", n=3)
    assert [i.id for i in a] == [i.id for i in b]  # k = 2: both hold every item
    assert store.claim("carol", n=3) == []  # no third slot
    assert store.claim("alice", n=3) == []  # never twice to the same reviewer
    i0, i1, i2 = (i.id for i in a)
    for who in ("alice", "bob"):
        store.decide(i0, who, "accept")
    store.decide(i1, "alice", "accept")
    store.decide(i1, "bob", "relabel", kind="galaxy")
    store.decide(i2, "alice", "uncertain")
    mid = store.get_item(i2)
    assert mid.status == "pending" and mid.n_decisions == 1 and mid.lease_owner == "bob"
    store.decide(i2, "bob", "uncertain")
    s0, s1, s2 = (store.get_item(i) for i in (i0, i1, i2))
    assert (s0.status, s0.label, s0.agreement) == ("decided", "star", 1.0)
    assert (s1.status, s1.label, s1.agreement) == ("disputed", "uncertain", 0.5)
    assert (s2.status, s2.label) == ("disputed", "uncertain")
    assert store.claim("alice") == [] and store.claim("carol") == []
    stats = store.stats()
    assert stats["by_status"] == {"pending": 0, "decided": 1, "disputed": 2}
    assert stats["by_reviewer"] == {"alice": 3, "bob": 3}
    assert stats["decisions"] == 6 and stats["throughput"]["last_hour"] == 6
    assert stats["agreement"]["items"] == 3
    assert stats["agreement"]["unanimous_fraction"] == pytest.approx(2 / 3)
    _invariants(store)


def test_consensus_rules():
    assert consensus(["star"], "majority") == ("decided", "star", 1.0)
    assert consensus(["star", "star", "galaxy"], "majority") == ("decided", "star", pytest.approx(2 / 3))
    assert consensus(["star", "star", "galaxy"], "unanimous")[:2] == ("disputed", "uncertain")
    assert consensus(["star", "galaxy"], "majority")[:2] == ("disputed", "uncertain")
    assert consensus(["uncertain", "uncertain"], "majority") == ("disputed", "uncertain", 1.0)
    assert consensus(["artifact"] * 3, "unanimous") == ("decided", "artifact", 1.0)


def test_unanimous_rule(make_store):
    store = make_store(required_reviews=3, consensus="unanimous")
    store.enqueue(review_catalog(1, kinds=("star",)), exposure="e", catalog_id="c")
    for who, action in (("a1", "accept"), ("a2", "accept"), ("a3", "relabel")):
        (item,) = store.claim(who)
        store.decide(item.id, who, action, kind="galaxy" if action == "relabel" else None)
    done = store.get_item(item.id)
    assert (done.status, done.label, done.n_decisions) == ("disputed", "uncertain", 3)
    assert done.agreement == pytest.approx(2 / 3)


def test_bad_decisions_change_nothing(store):
    store.enqueue(review_catalog(3, kinds=("star",)), exposure="e", catalog_id="c")
    (mine,) = store.claim("alice")
    (theirs,) = store.claim("bob")
    unclaimed = next(i for i in store.list_items() if i.id not in (mine.id, theirs.id))
    before = _counts(store)
    with pytest.raises(UnknownItemError, match="review item 987654: no such item"):
        store.decide(987654, "alice", "accept")
    with pytest.raises(UnknownItemError):
        store.get_item(987654)
    with pytest.raises(UnknownItemError):
        store.decisions(987654)
    with pytest.raises(UnknownItemError):
        store.get_item("not-an-id")
    with pytest.raises(NotClaimedError, match=rf"review item {theirs.id}: not claimed by this reviewer"):
        store.decide(theirs.id, "alice", "accept")
    with pytest.raises(NotClaimedError, match="not claimed"):
        store.decide(unclaimed.id, "alice", "accept")
    with pytest.raises(NotClaimedError):
        store.release(theirs.id, "alice")
    with pytest.raises(ReviewError, match="action must be one of"):
        store.decide(mine.id, "alice", "maybe")
    with pytest.raises(ReviewError, match="relabel needs a kind"):
        store.decide(mine.id, "alice", "relabel")
    with pytest.raises(ReviewError, match="relabel needs a kind"):
        store.decide(mine.id, "alice", "relabel", kind="nucleus")  # not a survey class
    with pytest.raises(ReviewError, match="only given with relabel"):
        store.decide(mine.id, "alice", "accept", kind="galaxy")
    assert _counts(store) == before
    assert store.get_item(mine.id).lease_owner == "alice"
    store.decide(mine.id, "alice", "accept")
    with pytest.raises(NotClaimedError, match="already decided by this reviewer"):
        store.decide(mine.id, "alice", "reject")
    _invariants(store)


def test_microscopy_relabel_classes(store):
    cat = review_catalog(2, kinds=("nucleus",))
    store.enqueue(cat, exposure="cells.tif", catalog_id="m", mode="microscopy")
    a, b = store.claim("alice", n=2)
    assert a.relabel_kinds == ("nucleus", "artifact")
    with pytest.raises(ReviewError, match="relabel needs a kind"):
        store.decide(a.id, "alice", "relabel", kind="star")
    assert store.decide(a.id, "alice", "accept").label == "nucleus"
    assert store.decide(b.id, "alice", "relabel", kind="artifact").label == "artifact"


# ------------------------------------------------------------------ leases, undo, release


def test_expired_lease_returns_the_item(store):
    store.enqueue(review_catalog(2), exposure="e", catalog_id="c")
    held = store.claim("alice", n=2, lease_seconds=0.3)
    assert store.claim("bob") == []
    time.sleep(0.45)
    before = _counts(store)
    with pytest.raises(NotClaimedError, match="the lease expired at"):
        store.decide(held[0].id, "alice", "accept")
    assert _counts(store) == before
    assert store.stats()["expired_leases"] == 2
    got = store.claim("bob", n=5)
    assert sorted(i.id for i in got) == sorted(i.id for i in held)
    with pytest.raises(NotClaimedError, match="not claimed"):
        store.decide(held[0].id, "alice", "accept")
    store.decide(got[0].id, "bob", "accept")
    events = [e.event for e in store.audit_trail(item_id=held[0].id)]
    assert events.count("expire") == 1 and events[-1] == "decide"
    _invariants(store)


def test_expire_leases_explicitly(store):
    store.enqueue(review_catalog(3), exposure="e", catalog_id="c")
    store.claim("alice", n=3, lease_seconds=0.2)
    time.sleep(0.3)
    assert store.expire_leases() == 3
    assert store.expire_leases() == 0
    assert store.stats()["active_leases"] == 0
    _invariants(store)


def test_undo_last_decision(make_store):
    store = make_store(required_reviews=1, lease_seconds=120)
    store.enqueue(review_catalog(2, kinds=("star",)), exposure="e", catalog_id="c")
    first, second = store.claim("alice", n=2)
    store.decide(first.id, "alice", "accept")
    d2 = store.decide(second.id, "alice", "relabel", kind="galaxy", comment="extended")
    assert store.get_item(second.id).status == "decided"
    undone = store.undo_last("alice")
    assert undone.id == d2.id and undone.undone_at is not None
    back = store.get_item(second.id)
    assert (back.status, back.label, back.n_decisions, back.lease_owner) == ("pending", None, 0, "alice")
    assert store.undo_last("alice") is None  # only the last decision, once
    assert store.undo_last("nobody") is None
    assert store.get_item(first.id).status == "decided"
    # the reviewer decides it again; the undone decision stays in the audit trail
    store.decide(second.id, "alice", "accept")
    ds = store.decisions(second.id)
    assert [(d.action, d.undone_at is None) for d in ds] == [("relabel", False), ("accept", True)]
    assert store.get_item(second.id).label == "star"
    events = [e.event for e in store.audit_trail(item_id=second.id)]
    assert events == ["claim", "decide", "undo", "decide"]
    assert store.stats()["undone"] == 1
    _invariants(store)


def test_undo_with_two_reviewers_frees_no_extra_slot(make_store):
    store = make_store(required_reviews=2)
    store.enqueue(review_catalog(1), exposure="e", catalog_id="c")
    (item,) = store.claim("alice")
    store.claim("bob")
    store.decide(item.id, "alice", "accept")
    store.decide(item.id, "bob", "reject")
    store.undo_last("bob")
    assert store.claim("carol") == []  # bob holds the slot again
    assert store.get_item(item.id).lease_owner == "bob"
    _invariants(store)


def test_release(store):
    store.enqueue(review_catalog(1), exposure="e", catalog_id="c")
    (item,) = store.claim("alice")
    store.release(item.id, "alice")
    assert store.get_item(item.id).leases == ()
    with pytest.raises(NotClaimedError):
        store.release(item.id, "alice")
    with pytest.raises(UnknownItemError):
        store.release(424242, "alice")
    assert [i.id for i in store.claim("bob")] == [item.id]
    _invariants(store)


def test_capacity_is_a_database_constraint(store):
    """Even a buggy writer cannot lease an item to more reviewers than it needs."""
    store.enqueue(review_catalog(1), exposure="e", catalog_id="c")
    (item,) = store.claim("alice")
    with pytest.raises(sa.exc.IntegrityError), store.engine.begin() as conn:
        conn.execute(sa.update(m.items).where(m.items.c.id == item.id).values(n_leases=2))


# ------------------------------------------------------------------ accounts


def test_reviewer_accounts(store):
    token = store.add_reviewer("alice", "correct horse", admin=True)
    bob_token = store.add_reviewer("bob")
    assert len(token) >= 40 and token != bob_token
    alice = store.authenticate("alice", "correct horse")
    assert alice is not None and alice.name == "alice" and alice.admin and alice.has_password
    assert store.authenticate("alice", "wrong horse") is None
    assert store.authenticate("nobody", "correct horse") is None
    assert store.authenticate("bob", "") is None  # token-only account
    assert store.reviewer_by_token(token).name == "alice"
    assert store.reviewer_by_token(bob_token).name == "bob"
    assert store.reviewer_by_token("forged") is None
    with pytest.raises(ReviewError, match="reviewer 'alice' exists"):
        store.add_reviewer("alice", "another password")
    with pytest.raises(ReviewError, match="at least 8 characters"):
        store.add_reviewer("carol", "short")
    with pytest.raises(ReviewError, match="reviewer name"):
        store.add_reviewer("bad name; drop table")
    new_token = store.add_reviewer("alice", "new password!", replace=True)
    assert store.reviewer_by_token(token) is None and store.reviewer_by_token(new_token).name == "alice"
    assert store.authenticate("alice", "correct horse") is None
    store.set_reviewer_disabled("bob")
    assert store.reviewer_by_token(bob_token) is None
    assert [r.name for r in store.list_reviewers()] == ["alice", "bob"]
    # no secret is stored in the clear
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(m.reviewers)).all()
    blob = repr(rows)
    for secret in ("new password!", new_token, bob_token):
        assert secret not in blob
    assert all(r.token_hash == hashlib.sha256(t.encode()).hexdigest()
               for r, t in zip(sorted(rows, key=lambda r: r.name), (new_token, bob_token)))
    assert rows[0].password_hash.startswith("scrypt$")


# ------------------------------------------------------------------ cutouts


def _sky_image(size: int = 200) -> tuple[np.ndarray, WCS]:
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[:size, :size]
    img = rng.normal(100.0, 5.0, (size, size))
    for x0, y0, f in ((50.2, 60.7, 3000.0), (120.0, 30.0, 800.0), (3.0, 4.0, 500.0)):
        img += f * np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / (2 * 1.5**2))
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [150.0, 2.0]
    w.wcs.crpix = [size / 2 + 1, size / 2 + 1]
    w.wcs.cdelt = [-0.2 / 3600, 0.2 / 3600]
    return img, w


def test_cutouts_at_enqueue(make_store):
    store = make_store(cutout_size=32, cutout_zooms=(1, 4), cutout_display=128)
    img, w = _sky_image()
    cat = review_catalog(3)
    cat["x"] = [50.2, 120.0, 3.0]  # the last is at the image corner: a partial stamp
    cat["y"] = [60.7, 30.0, 4.0]
    store.enqueue(cat, exposure="e", catalog_id="c", image=img, wcs=w, pixel_scale=0.2)
    item = next(i for i in store.list_items() if i.x == 50.2)
    assert set(item.cutouts) == {"fits", "png_zoom1", "png_zoom4"}
    content, media = store.cutout(item.cutouts["fits"])
    assert media == "application/fits" and hashlib.sha256(content).hexdigest() == item.cutouts["fits"]
    with fits.open(io.BytesIO(content)) as hdul:
        stamp, header = hdul[0].data, hdul[0].header
    assert stamp.shape == (32, 32) and header["PIXSCALE"] == 0.2
    py, px = np.unravel_index(np.nanargmax(stamp), stamp.shape)
    assert abs(px + header["ORIGX"] - 50.2) <= 0.5 and abs(py + header["ORIGY"] - 60.7) <= 0.5
    # the stamp's WCS puts the source where the image's WCS does
    sky = w.pixel_to_world(50.2, 60.7)
    sx, sy = WCS(header).world_to_pixel(sky)
    assert (float(sx) + header["ORIGX"], float(sy) + header["ORIGY"]) == pytest.approx((50.2, 60.7), abs=1e-6)
    for name in ("png_zoom1", "png_zoom4"):
        png, media = store.cutout(item.cutouts[name])
        assert media == "image/png"
        im = Image.open(io.BytesIO(png))
        assert im.size == (128, 128) and im.mode == "L"
    z1 = np.asarray(Image.open(io.BytesIO(store.cutout(item.cutouts["png_zoom1"])[0])))
    z4 = np.asarray(Image.open(io.BytesIO(store.cutout(item.cutouts["png_zoom4"])[0])))
    assert z1.max() == 255 and z4.max() == 255 and z1.min() < 60
    assert (z4 == 255).mean() > (z1 == 255).mean()  # zoomed in, the star fills more of the frame
    corner = next(i for i in store.list_items() if i.x == 3.0)
    with fits.open(io.BytesIO(store.cutout(corner.cutouts["fits"])[0])) as hdul:
        assert np.isnan(hdul[0].data).sum() > 0  # outside the image
    # content addressing: the same stamp is stored once
    store.enqueue(cat, exposure="e", catalog_id="again", image=img, wcs=w, pixel_scale=0.2)
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(m.cutouts)).scalar_one() == 9


def test_microscopy_cutouts_percentile(make_store):
    store = make_store(cutout_size=32)
    rng = np.random.default_rng(0)
    img = rng.poisson(20, (100, 100)).astype(np.uint16)
    img[40:50, 40:50] += 400
    cat = review_catalog(1, kinds=("nucleus",))
    cat["x"], cat["y"] = [45.0], [45.0]
    store.enqueue(cat, exposure="cells.tif", catalog_id="m", image=img, mode="microscopy")
    (item,) = store.list_items()
    png = np.asarray(Image.open(io.BytesIO(store.cutout(item.cutouts["png_zoom1"])[0])))
    centre = png[png.shape[0] // 2 - 5: png.shape[0] // 2 + 5, png.shape[1] // 2 - 5: png.shape[1] // 2 + 5]
    assert centre.mean() > 200 and png[:20, :20].mean() < 60


def test_cutout_digest_is_validated(store):
    for bad in ("../../etc/passwd", "A" * 64, "0" * 63, "", None, "0" * 64 + "/x"):
        with pytest.raises(UnknownCutoutError, match="not a SHA-256 hex digest"):
            store.cutout(bad)
    with pytest.raises(UnknownCutoutError, match="not stored"):
        store.cutout("0" * 64)


# ------------------------------------------------------------------ labels


def test_export_and_read_labels(make_store, tmp_path):
    store = make_store(required_reviews=2)
    cat = review_catalog(4, kinds=("star",))
    store.enqueue(cat, exposure="e.fits", catalog_id="c")
    empty = read_labels(store.export_labels(tmp_path / "empty.parquet"))
    assert len(empty) == 0 and list(empty.columns) == [c for c, _ in LABEL_COLUMNS]
    items = store.claim("alice", n=4)
    store.claim("bob", n=4)
    a, b, c, d = (i.id for i in items)
    for who in ("alice", "bob"):
        store.decide(a, who, "accept")
        store.decide(b, who, "reject")
    store.decide(c, "alice", "relabel", kind="galaxy")
    store.decide(c, "bob", "accept")
    store.decide(d, "alice", "accept")  # d needs one more decision: not exported
    path = store.export_labels(tmp_path / "labels.parquet")
    df = read_labels(path)
    assert len(df) == 3
    got = {int(r.source_id): (r.label, r.n_decisions, r.agreement) for r in df.itertuples()}
    sid = {i.id: i.source_id for i in items}
    assert got == {sid[a]: ("star", 2, 1.0), sid[b]: ("artifact", 2, 1.0), sid[c]: ("uncertain", 2, 0.5)}
    row = df[df.source_id == sid[a]].iloc[0]
    src = cat[list(cat["source_id"]).index(sid[a])]
    assert row.kind == "star" and row.catalog_id == "c" and row.exposure == "e.fits" and row["mode"] == "survey"
    assert row.p_star == pytest.approx(src["p_star"]) and np.isnan(row.p_nucleus)
    assert row.confidence == pytest.approx(src["confidence"]) and row.psf_fwhm == 3.0
    assert row.x == pytest.approx(src["x"]) and row.decided_at.tzinfo is not None
    assert row.triage_stratum == "survey:fwhm2.5-4" and row.review_reason.startswith("confidence below")
    with pytest.raises(ReviewError, match="must end in .parquet"):
        store.export_labels(tmp_path / "labels.csv")
    # the file feeds 'moe-imaging calibrate --labels' through the one reader (catalogs.labels)
    from catalogs.labels import read_labels as the_reader
    from training.recalibrate import recalibrate_weights

    theirs = the_reader(path)
    assert len(theirs) == 3 and list(theirs.columns) == [c for c, _ in LABEL_COLUMNS]
    done = recalibrate_weights(theirs, out=tmp_path / "gate_labels.pt", min_count=1)
    assert done.summary.n_labels == 3 and (tmp_path / "gate_labels.pt").is_file()


def test_read_labels_rejects_malformed_files(make_store, tmp_path):
    store = make_store()
    store.enqueue(review_catalog(2, kinds=("star",)), exposure="e", catalog_id="c")
    for item in store.claim("alice", n=2):
        store.decide(item.id, "alice", "accept")
    good = read_labels(store.export_labels(tmp_path / "good.parquet"))

    def write(df: pd.DataFrame, name: str):
        p = tmp_path / name
        df.to_parquet(p)
        return p

    p = write(good.drop(columns=["label"]), "nolabel.parquet")
    with pytest.raises(InputError, match=r"nolabel.parquet: missing column 'label'"):
        read_labels(p)
    bad = good.copy()
    bad.loc[1, "label"] = "dragon"
    with pytest.raises(InputError, match=r"badlabel.parquet: column 'label': unknown label .*row 1: 'dragon'"):
        read_labels(write(bad, "badlabel.parquet"))
    bad = good.copy()
    bad.loc[0, "p_star"] = 1.5
    with pytest.raises(InputError, match=r"column 'p_star': a probability must lie in \[0, 1\]"):
        read_labels(write(bad, "badp.parquet"))
    bad = good.copy()
    bad["n_decisions"] = 0
    with pytest.raises(InputError, match="column 'n_decisions': must be at least 1"):
        read_labels(write(bad, "badn.parquet"))
    bad = good.copy()
    bad["source_id"] = bad["source_id"].astype(float)
    with pytest.raises(InputError, match="column 'source_id' must hold integers"):
        read_labels(write(bad, "badid.parquet"))
    (tmp_path / "text.parquet").write_text("catalog_id,label\nc,star\n")
    with pytest.raises(InputError, match=r"text.parquet: not a readable Parquet file"):
        read_labels(tmp_path / "text.parquet")
    with pytest.raises(InputError, match=r"missing.parquet: no such label file"):
        read_labels(tmp_path / "missing.parquet")
    # optional columns may be absent
    ok = read_labels(write(good.drop(columns=["p_nucleus", "psf_fwhm"]), "minimal.parquet"))
    assert np.isnan(ok.p_nucleus).all() and len(ok) == 2


# ------------------------------------------------------------------ opening, migrations


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_database_is_one_clear_error(tmp_path):
    port = _closed_port()
    url = f"postgresql+psycopg://reviewer:s3cret@127.0.0.1:{port}/review"
    with pytest.raises(StoreConnectionError) as err:
        ReviewStore(url)
    msg = str(err.value)
    assert msg.startswith(f"postgresql+psycopg://reviewer:***@127.0.0.1:{port}/review: cannot connect: ")
    assert "s3cret" not in msg and "\n" not in msg
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(StoreConnectionError, match="cannot connect: cannot create the folder"):
        ReviewStore(f"sqlite:///{blocker}/sub/review.sqlite")
    assert not (tmp_path / "a-file" / "sub").exists()
    notdb = tmp_path / "notdb.sqlite"
    notdb.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreConnectionError, match="notdb.sqlite: cannot connect: file is not a database"):
        ReviewStore(f"sqlite:///{notdb}")
    with pytest.raises(StoreConnectionError, match="unsupported database 'mysql'"):
        ReviewStore("mysql://u@h/db")
    with pytest.raises(StoreConnectionError, match="not a database URL"):
        ReviewStore("not a url at all")


def test_default_path_from_config(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with ReviewStore() as store:
        assert store.dialect == "sqlite"
        store.enqueue(review_catalog(1), exposure="e", catalog_id="c")
    assert (tmp_path / ".moe-imaging" / "review.sqlite").exists()
    with ReviewStore(config=ReviewConfig(path=str(tmp_path / "x" / "q.sqlite"))) as store:
        assert store.pending_count() == 0
    with sa.create_engine(f"sqlite:///{tmp_path / 'x' / 'q.sqlite'}").connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


def test_migrations_match_the_models(store):
    """The Alembic migrations build exactly the tables of review.models."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from review.migrations import HEAD, alembic_config

    assert ScriptDirectory.from_config(alembic_config()).get_current_head() == HEAD
    with store.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"version_table": m.VERSION_TABLE, "compare_type": True})
        assert ctx.get_current_revision() == HEAD
        diff = compare_metadata(ctx, m.metadata)
    assert diff == []
    # opening again is a no-op and keeps the data
    store.enqueue(review_catalog(2), exposure="e", catalog_id="c")
    with ReviewStore(store.engine.url.render_as_string(hide_password=False)) as again:
        assert again.pending_count() == 2


def test_upgrade_from_the_first_revision_keeps_the_data(store_url):
    """A database made by revision 0001 (no triage_stratum) is upgraded in place when opened."""
    from alembic import command

    from review.migrations import HEAD, alembic_config

    engine = sa.create_engine(store_url)
    with engine.begin() as conn:
        command.upgrade(alembic_config(connection=conn), "0001")
        conn.execute(sa.text(
            "INSERT INTO review_items (catalog_id, source_id, exposure, mode, x, y, kind, probs, evidence, weights, "
            "reason, priority, required, n_decisions, n_leases, status, cutouts, created_at, updated_at) VALUES "
            "('old', 7, 'e', 'survey', 1.5, 2.5, 'star', '{}', '{}', '{}', 'why', 0.5, 1, 0, 0, 'pending', '{}', "
            ":t, :t)"), {"t": "2026-01-01 00:00:00.000000" if engine.dialect.name == "sqlite"
                         else "2026-01-01T00:00:00+00:00"})
    engine.dispose()
    with ReviewStore(store_url) as store:
        (item,) = store.list_items()
        assert (item.catalog_id, item.source_id, item.triage_stratum, item.reason) == ("old", 7, None, "why")
        assert item.created_at.year == 2026 and item.created_at.tzinfo is not None
        with store.engine.connect() as conn:
            assert conn.execute(sa.text(f"SELECT version_num FROM {m.VERSION_TABLE}")).scalar() == HEAD == "0002"
        (claimed,) = store.claim("alice")
        store.decide(claimed.id, "alice", "accept")
        assert store.get_item(claimed.id).label == "star"


def test_config_validation(tmp_path):
    from contracts.errors import ConfigError
    from review import load_review_config

    with pytest.raises(ConfigError, match="review.consensus"):
        ReviewConfig(consensus="plurality")
    with pytest.raises(ConfigError, match="review.required_reviews"):
        ReviewConfig(required_reviews=0)
    with pytest.raises(ConfigError, match="review.lease_seconds"):
        ReviewConfig(lease_seconds=-1)
    cfg = tmp_path / "review.toml"
    cfg.write_text('[review]\nrequired_reviews = 2\nconsensus = "unanimous"\n[review.kind_values]\nstreak = 5.0\n')
    c = load_review_config(cfg)
    assert c.required_reviews == 2 and c.kind_value("streak") == 5.0 and c.kind_value("star") == 1.0
    cfg.write_text("lease_secs = 3\n")
    with pytest.raises(ConfigError, match=r"review.toml: unknown option\(s\) \['lease_secs'\]"):
        load_review_config(cfg)

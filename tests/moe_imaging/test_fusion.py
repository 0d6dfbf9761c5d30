"""Candidate fusion: one row per object, every expert's evidence kept."""

from __future__ import annotations

import numpy as np
from astropy.table import Table

from moe_imaging.experts.base import CANDIDATE_COLUMNS
from moe_imaging.fusion import fuse


def _table(expert, kind, xs, ys, snr, **extra):
    n = len(xs)
    data = {c: np.zeros(n, dtype=dt) for c, dt in CANDIDATE_COLUMNS}
    data.update(x=np.asarray(xs, float), y=np.asarray(ys, float), x_peak=np.round(xs).astype(int),
                y_peak=np.round(ys).astype(int), det_snr=np.asarray(snr, float),
                kind=np.full(n, kind, dtype="U16"), expert=np.full(n, expert, dtype="U16"))
    data.update({k: np.asarray(v) for k, v in extra.items()})
    return Table(data)


def test_same_object_from_several_experts_is_one_row_with_all_evidence() -> None:
    point = _table("point", "star", [10.0, 50.0, 90.0], [10.0, 50.0, 90.0], [8.0, 30.0, 100.0])
    artifact = _table("artifact", "artifact", [10.4], [9.8], [40.0], subtype=["cosmic_ray"])
    extended = _table("extended", "galaxy", [50.6, 90.3], [50.2, 90.1], [25.0, 120.0], extent=[2.0, 1.0])
    fused = fuse({"point": point, "artifact": artifact, "extended": extended}, radius=3.0)
    assert len(fused) == 3
    kinds = dict(zip(np.round(fused["x"]).astype(int), np.asarray(fused["kind"]).astype(str)))
    assert kinds == {10: "artifact", 51: "galaxy", 90: "star"}  # artifact wins; resolved -> galaxy; else star
    row = fused[np.asarray(fused["kind"]).astype(str) == "artifact"][0]
    assert row["experts"] == "artifact,point" and row["n_experts"] == 2
    assert row["point_snr"] == 8.0 and row["artifact_snr"] == 40.0 and np.isnan(row["extended_snr"])
    assert row["subtype"] == "cosmic_ray"


def test_fusion_is_deterministic_and_order_free() -> None:
    rng = np.random.default_rng(0)
    xs, ys = rng.uniform(0, 200, (2, 60))
    point = _table("point", "star", xs, ys, rng.uniform(5, 50, 60))
    extended = _table("extended", "galaxy", xs[::2] + 0.5, ys[::2], rng.uniform(5, 50, 30), extent=np.full(30, 2.0))
    a = fuse({"point": point, "extended": extended}, radius=2.0)
    b = fuse({"extended": extended, "point": point}, radius=2.0)
    for name in a.colnames:
        np.testing.assert_array_equal(np.asarray(a[name]), np.asarray(b[name]))
    assert len(a) <= 60


def test_no_candidates_gives_the_full_schema() -> None:
    empty = fuse({"point": _table("point", "star", [], [], [])}, radius=2.0)
    assert len(empty) == 0 and {"experts", "n_experts", "point_snr"} <= set(empty.colnames)


def test_a_confident_point_source_joined_through_a_third_expert_survives() -> None:
    """A star 8 px from a cosmic ray, joined to it through a segment and a learned candidate in between:
    the artifact wins the group, but the star (S/N 35) is an object of its own."""
    from moe_imaging.fusion import psf_fit_measurements

    point = _table("point", "star", [20.0, 28.5, 60.0], [20.0, 20.0, 60.0], [12.0, 35.0, 6.0])
    artifact = _table("artifact", "artifact", [20.3], [20.1], [80.0], subtype=["cosmic_ray"])
    extended = _table("extended", "galaxy", [23.0, 58.0], [20.0, 60.0], [40.0, 20.0], extent=[2.0, 2.0])
    learned = _table("learned", "star", [25.8], [20.0], [20.0])
    fused = fuse({"point": point, "artifact": artifact, "extended": extended, "learned": learned}, radius=3.0)
    assert len(fused) == 3
    star = fused[np.isclose(np.asarray(fused["x"]), 28.5)]
    assert len(star) == 1 and star["kind"][0] == "star" and star["experts"][0] == "point"
    # the galaxy row keeps its faint point member's PSF fit: taken only if the gate calls it a star
    gal = fused[np.asarray(fused["kind"]).astype(str) == "galaxy"]
    assert gal["point_x"][0] == 60.0 and gal["x"][0] == 58.0
    gal["kind"] = "star"
    moved = psf_fit_measurements(gal)
    assert moved["x"][0] == 60.0 and "point_x" not in moved.colnames

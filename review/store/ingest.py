"""Enqueue: a detection catalog's rows for review become items, with their cutouts.

Items are unique per ``(catalog_id, source_id)``, so enqueueing the same
catalog again adds nothing.  Each item gets a priority
(:func:`review._catalog.priority`) and, when the image is given, a FITS stamp
and PNG renderings stored by digest (:mod:`review.cutouts`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import sqlalchemy as sa

from contracts.vocabulary import KINDS, MODES

from .. import models as m
from .._catalog import CatalogColumns, float_or_none, json_value, priority, tiebreak
from ..config import ReviewConfig
from ..errors import ReviewError
from ._common import _audit, _is_number, _now
from .engine import StoreEngine
from .values import EnqueueResult

__all__ = ["IngestMixin"]

_MEASUREMENTS: tuple[str, ...] = (
    "snr", "det_snr", "flux", "flux_err", "mag", "a", "b", "theta", "sharpness", "roundness",
    "flags", "subtype", "expert", "gate_reason",
)
"""Catalog columns kept in the item's evidence besides every ``ev_*`` column."""

_INSERT_CHUNK = 5000
_CUTOUT_CHUNK = 500


@dataclasses.dataclass(frozen=True)
class _Chosen:
    """The catalog rows selected for the queue, as parallel arrays (``idx``: their row numbers)."""

    idx: np.ndarray
    x: np.ndarray
    y: np.ndarray
    kinds: np.ndarray
    sids: np.ndarray

    def __len__(self) -> int:
        return len(self.idx)

    def take(self, keep: np.ndarray) -> _Chosen:
        """The rows where ``keep`` is true."""
        return _Chosen(self.idx[keep], self.x[keep], self.y[keep], self.kinds[keep], self.sids[keep])


class IngestMixin(StoreEngine):
    """The enqueue side of :class:`~review.store.ReviewStore`."""

    def enqueue(
        self,
        catalog,
        *,
        exposure: str,
        catalog_id: str,
        image=None,
        wcs=None,
        mode: str = "survey",
        pixel_scale: float | None = None,
        decisions: Sequence[str] = ("review",),
    ) -> EnqueueResult:
        """Queue a catalog's rows for review; idempotent.

        Parameters
        ----------
        catalog : astropy.table.Table or pandas.DataFrame
            A detection catalog (:mod:`catalogs.schema`): ``source_id`` (or
            ``id``), ``x``, ``y``, ``kind`` and ``decision`` are required;
            ``ra``, ``dec``, ``p_<class>``, ``confidence``, ``review_reason``,
            ``triage_stratum``, ``psf_fwhm``, ``w_<expert>`` and ``ev_*`` are
            kept when present.
        exposure : str
            The exposure (e.g. its file name), for filtering and display.
        catalog_id : str
            Identifies the catalog; ``(catalog_id, source_id)`` is the item's
            unique key, so enqueueing the same catalog again adds nothing.
        image : 2-D array, optional
            The image the catalog was measured on; when given, every new item
            gets cutouts (a FITS stamp and PNGs, :mod:`review.cutouts`).
        wcs : astropy.wcs.WCS, optional
            The image's WCS, cut with the stamp into its FITS header.
        mode : str
            ``"survey"`` or ``"microscopy"`` (relabel classes and display stretch).
        pixel_scale : float, optional
            Arcsec (survey) or microns (microscopy) per pixel, kept for display.
        decisions : sequence of str
            Which ``decision`` values to queue (default ``("review",)``; a
            microscopy catalog without a gate has ``""``).

        Returns
        -------
        EnqueueResult
            ``(added, existing, skipped)``.

        Raises
        ------
        ReviewError
            A required column is missing, a position is not finite, a
            parameter is invalid; nothing is queued.
        """
        where = f"catalog {catalog_id!r}"
        _check_enqueue_args(where, catalog_id, exposure, mode, pixel_scale)
        cols = CatalogColumns(catalog, where)
        chosen, skipped = _choose(cols, decisions, where)
        if chosen is None:
            return EnqueueResult(0, 0, skipped)
        _check_image(where, image)
        have = self._queued_source_ids(catalog_id)
        new = np.array([int(s) not in have for s in chosen.sids], dtype=bool)
        existing = int((~new).sum())
        chosen = chosen.take(new)
        if len(chosen) == 0:
            return EnqueueResult(0, existing, skipped)
        fields = _source_fields(cols, chosen, self.config, catalog_id)
        stamps, blobs = _render_stamps(image, chosen, wcs=wcs, mode=mode, pixel_scale=pixel_scale,
                                       config=self.config)
        now = _now()
        rows = _item_rows(chosen, fields, stamps, catalog_id=catalog_id, exposure=exposure, mode=mode,
                          pixel_scale=pixel_scale, required=self.config.required_reviews, now=now)
        self._insert_cutouts(blobs, now)
        added = self._insert_items(rows, catalog_id=catalog_id, exposure=exposure, now=now)
        return EnqueueResult(added, existing + (len(rows) - added), skipped)

    def _queued_source_ids(self, catalog_id: str) -> set[int]:
        """The source ids of this catalog already queued."""
        with self._tx(write=False) as conn:
            return set(conn.execute(sa.select(m.items.c.source_id).where(m.items.c.catalog_id == catalog_id))
                       .scalars())

    def _insert_cutouts(self, blobs: dict[str, tuple[bytes, str]], now: dt.datetime) -> None:
        """Store rendered cutouts by digest (one already stored is kept)."""
        if not blobs:
            return
        blob_rows = [{"digest": d, "media_type": t, "content": c, "size": len(c), "created_at": now}
                     for d, (c, t) in blobs.items()]
        for start in range(0, len(blob_rows), _CUTOUT_CHUNK):
            with self._tx(write=True) as conn:
                conn.execute(self._insert(m.cutouts).on_conflict_do_nothing(index_elements=["digest"]),
                             blob_rows[start:start + _CUTOUT_CHUNK])

    def _insert_items(self, rows: list[dict[str, Any]], *, catalog_id: str, exposure: str,
                      now: dt.datetime) -> int:
        """Insert the item rows in chunks, skipping queued ones; how many were new."""
        added = 0
        # a plain executemany (pipelined by psycopg; no RETURNING, whose huge multi-row statements
        # psycopg re-parses per batch), counted before and after under a per-catalog lock
        stmt = self._insert(m.items).on_conflict_do_nothing(index_elements=["catalog_id", "source_id"])
        count = sa.select(sa.func.count()).select_from(m.items).where(m.items.c.catalog_id == catalog_id)
        for start in range(0, len(rows), _INSERT_CHUNK):
            chunk = rows[start:start + _INSERT_CHUNK]
            with self._tx(write=True) as conn:
                if self.dialect == "postgresql":  # SQLite's write lock already serializes writers
                    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _catalog_lock(catalog_id)})
                before = conn.execute(count).scalar_one()
                conn.execute(stmt, chunk)
                n_new = conn.execute(count).scalar_one() - before
                added += n_new
                _audit(conn, now, "enqueue", None, None,
                       {"catalog_id": catalog_id, "exposure": exposure, "added": n_new,
                        "existing": len(chunk) - n_new})
        if self.dialect == "postgresql" and added >= 500:
            # fresh statistics, so the planner serves claims from the queue index at once
            # (autovacuum would only catch up within a minute or so)
            with self._tx(write=False) as conn:
                conn.execute(sa.text("ANALYZE review_items"))
        return added


def _check_enqueue_args(where: str, catalog_id: object, exposure: object, mode: object,
                        pixel_scale: object) -> None:
    """Raise :class:`ReviewError` for a bad catalog id, exposure, mode or pixel scale."""
    if not isinstance(catalog_id, str) or not catalog_id.strip() or len(catalog_id) > 200:
        raise ReviewError(f"catalog_id: expected a non-empty string of at most 200 characters, got {catalog_id!r}")
    if not isinstance(exposure, str) or not exposure.strip() or len(exposure) > 500:
        raise ReviewError(f"{where}: exposure: expected a non-empty string, got {exposure!r}")
    if mode not in MODES:
        raise ReviewError(f"{where}: mode must be one of {list(MODES)}, got {mode!r}")
    if pixel_scale is not None and not (_is_number(pixel_scale) and pixel_scale > 0):
        raise ReviewError(f"{where}: pixel_scale must be a positive number, got {pixel_scale!r}")


def _check_image(where: str, image: Any) -> None:
    """Raise :class:`ReviewError` unless ``image`` is ``None`` or 2-D."""
    if image is not None:
        ndim = getattr(image, "ndim", None)
        if ndim != 2:
            raise ReviewError(f"{where}: image must be a 2-D array, got ndim={ndim}")


def _choose(cols: CatalogColumns, decisions: Sequence[str], where: str) -> tuple[_Chosen | None, int]:
    """The rows whose ``decision`` is one of ``decisions`` (``None`` if none) and how many were skipped.

    Checks the chosen rows: finite positions, a kind, distinct source ids.
    """
    source_ids = cols.int64(cols.first_of("source_id", "id"))
    decision = np.char.strip(cols.text(cols.require("decision")))
    chosen = np.isin(decision, np.asarray(list(decisions), dtype=str))
    skipped = int(len(decision) - chosen.sum())
    idx = np.flatnonzero(chosen)
    if len(idx) == 0:
        return None, skipped
    x = cols.float(cols.require("x"))[idx]
    y = cols.float(cols.require("y"))[idx]
    bad = ~(np.isfinite(x) & np.isfinite(y))
    if bad.any():
        raise ReviewError(f"{where}: row {int(idx[bad][0])}: x and y must be finite")
    kinds = cols.text(cols.require("kind"))[idx]
    sids = source_ids[idx]
    if len(np.unique(sids)) != len(sids):
        dup = sids[np.flatnonzero(np.diff(np.sort(sids)) == 0)[0]]
        raise ReviewError(f"{where}: source_id {int(dup)} appears twice")
    return _Chosen(idx, x, y, kinds, sids), skipped


def _source_fields(cols: CatalogColumns, chosen: _Chosen, config: ReviewConfig, catalog_id: str) -> dict[str, Any]:
    """The optional catalog columns of the chosen rows, and their priorities."""
    idx = chosen.idx
    n = len(idx)

    def optional(name: str) -> np.ndarray:
        return cols.float(name)[idx] if name in cols else np.full(n, np.nan)

    def text(name: str) -> np.ndarray:
        return cols.text(name)[idx] if name in cols else np.full(n, "")

    ra, dec = optional("ra"), optional("dec")
    confidence, psf_fwhm = optional("confidence"), optional("psf_fwhm")
    reason, stratum = text("review_reason"), text("triage_stratum")
    prob_cols = [c for c in KINDS if f"p_{c}" in cols]
    probs = np.column_stack([cols.float(f"p_{c}")[idx] for c in prob_cols]) if prob_cols else np.zeros((n, 0))
    weight_cols = [c for c in cols.names if c.startswith("w_")]
    evidence_cols = [c for c in cols.names if c.startswith("ev_")] + [c for c in _MEASUREMENTS if c in cols]
    weights = {c: cols.values(c)[idx] for c in weight_cols}
    evidence = {c: cols.values(c)[idx] for c in evidence_cols}
    prio = priority(probs, confidence, chosen.kinds, config) + 1e-6 * tiebreak(config.seed, catalog_id, chosen.sids)
    return {
        "ra": ra, "dec": dec, "confidence": confidence, "psf_fwhm": psf_fwhm, "reason": reason, "stratum": stratum,
        "prob_cols": prob_cols, "probs": probs, "weights": weights, "evidence": evidence,
        "priority": prio,
    }


def _render_stamps(image: Any, chosen: _Chosen, *, wcs: Any, mode: str, pixel_scale: float | None,
                   config: ReviewConfig) -> tuple[list[dict[str, str]], dict[str, tuple[bytes, str]]]:
    """Every chosen row's cutouts (name -> digest) and the blobs by digest (none without an image)."""
    stamps: list[dict[str, str]] = [{} for _ in range(len(chosen))]
    blobs: dict[str, tuple[bytes, str]] = {}
    if image is None:
        return stamps, blobs
    from ..cutouts import as_float_image, render_cutouts

    image = as_float_image(image)
    for i in range(len(chosen)):
        rendered = render_cutouts(image, float(chosen.x[i]), float(chosen.y[i]), wcs=wcs, mode=mode, config=config,
                                  pixel_scale=pixel_scale)
        for name, blob in rendered.items():
            stamps[i][name] = blob.digest
            blobs[blob.digest] = (blob.content, blob.media_type)
    return stamps, blobs


def _item_rows(chosen: _Chosen, fields: dict[str, Any], stamps: list[dict[str, str]], *, catalog_id: str,
               exposure: str, mode: str, pixel_scale: float | None, required: int,
               now: dt.datetime) -> list[dict[str, Any]]:
    """The ``review_items`` rows of the chosen catalog rows, all pending."""
    probs, prob_cols = fields["probs"], fields["prob_cols"]
    rows = []
    for i in range(len(chosen)):
        rows.append({
            "catalog_id": catalog_id,
            "source_id": int(chosen.sids[i]),
            "exposure": exposure,
            "mode": mode,
            "x": float(chosen.x[i]),
            "y": float(chosen.y[i]),
            "ra": float_or_none(fields["ra"][i]),
            "dec": float_or_none(fields["dec"][i]),
            "kind": str(chosen.kinds[i])[:16],
            "probs": {c: float_or_none(probs[i, j]) for j, c in enumerate(prob_cols) if math.isfinite(probs[i, j])},
            "evidence": {c: json_value(v[i]) for c, v in fields["evidence"].items()},
            "weights": {c[2:]: json_value(v[i]) for c, v in fields["weights"].items()},
            "reason": str(fields["reason"][i]),
            "triage_stratum": str(fields["stratum"][i])[:64] or None,
            "confidence": float_or_none(fields["confidence"][i]),
            "psf_fwhm": float_or_none(fields["psf_fwhm"][i]),
            "pixel_scale": float(pixel_scale) if pixel_scale is not None else None,
            "priority": float(fields["priority"][i]),
            "required": required,
            "n_decisions": 0,
            "n_leases": 0,
            "status": "pending",
            "label": None,
            "agreement": None,
            "cutouts": stamps[i],
            "created_at": now,
            "updated_at": now,
            "decided_at": None,
        })
    return rows


def _catalog_lock(catalog_id: str) -> int:
    """A PostgreSQL advisory-lock key for one catalog (signed 64-bit)."""
    return int.from_bytes(hashlib.sha256(f"moe-review-enqueue:{catalog_id}".encode()).digest()[:8], "big",
                          signed=True)

"""Reading detection catalogs for the review queue (numpy only; used by :mod:`review.store.ingest`)."""

from __future__ import annotations

import hashlib
import math
from typing import Any

import numpy as np

from .config import ReviewConfig
from .errors import ReviewError

__all__ = ["CatalogColumns", "float_or_none", "json_value", "priority", "tiebreak"]


def _schema_version() -> str:
    from catalogs.schema import SCHEMA_VERSION

    return SCHEMA_VERSION


def float_or_none(v: Any) -> float | None:
    """``float(v)``, or ``None`` for a missing or non-finite value."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def json_value(v: Any) -> Any:
    if isinstance(v, (np.bool_, bool)):
        return bool(v)
    if isinstance(v, (np.integer, int)):
        return int(v)
    if isinstance(v, (np.floating, float)):
        return float_or_none(v)
    if v is None:
        return None
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    return str(v)


def priority(probs: np.ndarray, confidence: np.ndarray, kinds: np.ndarray, config: ReviewConfig) -> np.ndarray:
    """``uncertainty ** power * value(kind)`` per row (see the module docstring)."""
    n = len(kinds)
    p = np.where(np.isfinite(probs), np.clip(probs, 0.0, 1.0), 0.0) if probs.size else np.zeros((n, 0))
    n_classes = np.isfinite(probs).sum(axis=1) if probs.size else np.zeros(n, int)
    total = p.sum(axis=1) if probs.size else np.zeros(n)
    with np.errstate(divide="ignore", invalid="ignore"):
        q = p / np.where(total > 0, total, 1.0)[:, None] if probs.size else p
        h = -np.where(q > 0, q * np.log(np.where(q > 0, q, 1.0)), 0.0).sum(axis=1) if probs.size else np.zeros(n)
        entropy = np.where(n_classes >= 2, h / np.log(np.maximum(n_classes, 2)), np.nan)
    conf = np.clip(np.asarray(confidence, float), 0.0, 1.0)
    uncertainty = np.where(np.isfinite(entropy) & (total > 0), entropy, np.where(np.isfinite(conf), 1.0 - conf, 1.0))
    uncertainty = np.clip(uncertainty, 0.0, 1.0)
    value = np.array([config.kind_value(str(k)) for k in kinds], dtype=float)
    return uncertainty ** config.uncertainty_power * value


def tiebreak(seed: int, catalog_id: str, source_ids: np.ndarray) -> np.ndarray:
    """A fixed pseudo-random number in [0, 1) per (seed, catalog, source) (splitmix64)."""
    base = int.from_bytes(hashlib.sha256(f"{seed}\0{catalog_id}".encode()).digest()[:8], "little")
    z = np.asarray(source_ids).astype(np.uint64) ^ np.uint64(base)
    with np.errstate(over="ignore"):
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(2**53)


class CatalogColumns:
    """Uniform column access for an astropy Table or a pandas DataFrame."""

    def __init__(self, catalog: Any, where: str) -> None:
        self.where = where
        self.pandas = False
        if hasattr(catalog, "colnames"):  # astropy Table
            self.names = list(catalog.colnames)
        elif hasattr(catalog, "columns") and hasattr(catalog, "iloc"):  # pandas DataFrame
            self.names = [str(c) for c in catalog.columns]
            self.pandas = True
        else:
            raise ReviewError(f"{where}: expected an astropy Table or a pandas DataFrame, got {type(catalog).__name__}")
        self.catalog = catalog

    def __contains__(self, name: str) -> bool:
        return name in self.names

    def require(self, name: str) -> str:
        if name not in self.names:
            raise ReviewError(f"{self.where}: missing column {name!r} (catalog schema {_schema_version()})")
        return name

    def first_of(self, *names: str) -> str:
        for name in names:
            if name in self.names:
                return name
        raise ReviewError(f"{self.where}: missing column {names[0]!r} (catalog schema {_schema_version()})")

    def values(self, name: str) -> np.ndarray:
        col = self.catalog[name]
        if self.pandas:
            arr = col.to_numpy()
        else:
            arr = np.asarray(col)
            mask = getattr(col, "mask", None)
            if mask is not None and np.any(mask):
                arr = np.where(np.asarray(mask), None, arr.astype(object))
        if arr.ndim != 1:
            raise ReviewError(f"{self.where}: column {name!r} must be one value per row")
        return arr

    def float(self, name: str) -> np.ndarray:
        if self.pandas:
            try:
                return self.catalog[name].to_numpy(dtype=float, na_value=np.nan)
            except (TypeError, ValueError):
                raise ReviewError(f"{self.where}: column {name!r} must be numeric") from None
        arr = self.values(name)
        try:
            return np.array([np.nan if v is None else v for v in arr], dtype=float) if arr.dtype == object \
                else arr.astype(float)
        except (TypeError, ValueError):
            raise ReviewError(f"{self.where}: column {name!r} must be numeric") from None

    def int64(self, name: str) -> np.ndarray:
        arr = self.values(name)
        if self.pandas and arr.dtype == object and str(self.catalog[name].dtype) in ("Int64", "Int32", "UInt64"):
            if self.catalog[name].isna().any():
                raise ReviewError(f"{self.where}: column {name!r} has missing values")
            arr = self.catalog[name].to_numpy(dtype=np.int64)
        if arr.dtype.kind not in "iu":
            if arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
                return arr.astype(np.int64)
            raise ReviewError(f"{self.where}: column {name!r} must hold integers")
        return arr.astype(np.int64)

    def text(self, name: str) -> np.ndarray:
        arr = self.values(name)
        return np.array(["" if v is None or (isinstance(v, float) and math.isnan(v)) or repr(v) == "<NA>" else
                         (v.decode() if isinstance(v, bytes) else str(v)) for v in arr], dtype=str) \
            if len(arr) else np.zeros(0, dtype=str)

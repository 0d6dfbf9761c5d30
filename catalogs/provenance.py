"""File-level provenance of a catalog: what made it, from what, and how.

A :class:`Provenance` is written into every catalog file (as JSON) and comes
back as ``table.meta["provenance"]`` (a plain dict) when the catalog is read.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self

import numpy as np

from contracts import __version__ as _PACKAGE_VERSION
from contracts.errors import InputError

from .schema import DEFAULT_FLUX_UNIT, SCHEMA_VERSION

__all__ = ["Provenance", "make_provenance", "file_checksum", "config_hash", "utc_now"]

_CHUNK = 1 << 20  # 1 MiB


def utc_now() -> str:
    """Return the current time in UTC as ISO 8601 text, to the second (``...+00:00``)."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def file_checksum(path: str | os.PathLike[str]) -> str:
    """Return the SHA-256 hex digest of a file, read in 1 MiB chunks.

    Parameters
    ----------
    path : str or path-like
        The file.

    Raises
    ------
    InputError
        If the file does not exist or cannot be read.
    """
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
    except FileNotFoundError:
        raise InputError(str(path), "file not found") from None
    except OSError as exc:
        raise InputError(str(path), f"cannot be read: {exc.strerror or exc}") from None
    return digest.hexdigest()


def _jsonable(value: Any, *, where: str) -> Any:
    """Return ``value`` as plain JSON types (tuples become lists, NaN becomes None)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v, where=f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_jsonable(v, where=f"{where}[]") for v in list(value)]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _jsonable(dataclasses.asdict(value), where=where)
    raise TypeError(f"provenance field {where!r}: {type(value).__name__} is not JSON-serialisable")


def config_hash(config: Mapping[str, Any] | Any) -> str:
    """Return the short (16 hex digits) SHA-256 hash of a configuration.

    Parameters
    ----------
    config : mapping or contracts.config.Config
        A configuration object (its own ``config_hash()`` is used) or a plain
        mapping (hashed the same way: sorted-key JSON).
    """
    if hasattr(config, "config_hash") and callable(config.config_hash):
        return str(config.config_hash())
    blob = json.dumps(dict(config), sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _optional(value: Any, kind: type, name: str) -> Any:
    if value is None:
        return None
    try:
        out = kind(value)
    except (TypeError, ValueError):
        raise TypeError(
            f"provenance field {name!r}: expected {kind.__name__}, got {value!r}"
        ) from None
    if kind is float and not math.isfinite(out):
        return None
    return out


@dataclasses.dataclass(frozen=True)
class Provenance:
    """Where a catalog came from, written into the catalog file.

    Parameters
    ----------
    package_version : str
        Version of moe-imaging that made the catalog.
    schema_version : str
        Catalog schema version (:data:`catalogs.schema.SCHEMA_VERSION`).
    config_hash : str
        Short hash of the configuration (see :func:`config_hash`).
    config : dict
        The configuration values, as plain JSON types.
    model_version : str
        Version of the learned models (gate, calibration); ``'none'`` if unused.
    input_path : str
        The input image file.
    input_checksum : str
        SHA-256 hex digest of the input file (``''`` if unknown).
    psf : dict
        The PSF used, e.g. ``{"source": "header:FWHM", "fwhm_px": 3.1, "model": "moffat"}``.
    flux_unit : str
        Unit of the image, hence of the flux-like columns.
    image_shape : tuple of int or None
        ``(ny, nx)`` of the image.
    tile_size : int or None
        Tile core size in pixels.
    n_tiles : int or None
        Number of tiles.
    threshold : float or None
        Detection threshold in sigma.
    runtime_s : float or None
        Wall-clock run time in seconds.
    created : str
        Creation time, ISO 8601 UTC.
    extra : dict
        Keys found in a file that this version does not know (kept for round trips).
    """

    package_version: str = _PACKAGE_VERSION
    schema_version: str = SCHEMA_VERSION
    config_hash: str = ""
    config: dict[str, Any] = dataclasses.field(default_factory=dict)
    model_version: str = "none"
    input_path: str = ""
    input_checksum: str = ""
    psf: dict[str, Any] = dataclasses.field(default_factory=dict)
    flux_unit: str = DEFAULT_FLUX_UNIT
    image_shape: tuple[int, ...] | None = None
    tile_size: int | None = None
    n_tiles: int | None = None
    threshold: float | None = None
    runtime_s: float | None = None
    created: str = dataclasses.field(default_factory=utc_now)
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        def put(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        for name in ("package_version", "schema_version", "config_hash", "model_version",
                     "input_path", "input_checksum", "flux_unit", "created"):
            value = getattr(self, name)
            if value is None:
                value = ""
            if isinstance(value, os.PathLike):
                value = os.fspath(value)
            if not isinstance(value, str):
                raise TypeError(f"provenance field {name!r}: expected str, got {value!r}")
            put(name, value)
        if not self.flux_unit:
            put("flux_unit", DEFAULT_FLUX_UNIT)
        checksum = self.input_checksum.lower()
        hexdigits = set("0123456789abcdef")
        if checksum and (len(checksum) != 64 or not set(checksum) <= hexdigits):
            raise ValueError(
                "provenance field 'input_checksum': expected a SHA-256 hex digest, "
                f"got {checksum!r}"
            )
        put("input_checksum", checksum)
        for name in ("config", "psf", "extra"):
            value = getattr(self, name)
            if value is None:
                value = {}
            if hasattr(value, "to_dict") and not isinstance(value, Mapping):
                value = value.to_dict()
            if not isinstance(value, Mapping):
                raise TypeError(f"provenance field {name!r}: expected a mapping, got {value!r}")
            put(name, _jsonable(value, where=name))
        if self.image_shape is not None:
            put("image_shape", tuple(int(n) for n in self.image_shape))
        put("tile_size", _optional(self.tile_size, int, "tile_size"))
        put("n_tiles", _optional(self.n_tiles, int, "n_tiles"))
        put("threshold", _optional(self.threshold, float, "threshold"))
        put("runtime_s", _optional(self.runtime_s, float, "runtime_s"))

    def to_dict(self) -> dict[str, Any]:
        """Return the provenance as plain JSON types (unknown ``extra`` keys merged in)."""
        out: dict[str, Any] = dict(self.extra)
        for field in dataclasses.fields(self):
            if field.name == "extra":
                continue
            out[field.name] = _jsonable(getattr(self, field.name), where=field.name)
        return out

    def to_json(self) -> str:
        """Return :meth:`to_dict` as compact, ASCII-only JSON with sorted keys."""
        return json.dumps(self.to_dict(), sort_keys=True, ensure_ascii=True, allow_nan=False)

    @classmethod
    def from_dict(cls, mapping: Mapping[str, Any]) -> Self:
        """Build a provenance from :meth:`to_dict` output (unknown keys go to ``extra``)."""
        if not isinstance(mapping, Mapping):
            raise TypeError(f"provenance: expected a mapping, got {type(mapping).__name__}")
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        kwargs = {k: v for k, v in mapping.items() if k in known}
        extra = {k: v for k, v in mapping.items() if k not in known}
        return cls(**kwargs, extra=extra)

    @classmethod
    def from_json(cls, text: str) -> Self:
        """Build a provenance from :meth:`to_json` text."""
        return cls.from_dict(json.loads(text))


def make_provenance(
    *,
    input_path: str | os.PathLike[str] | None = None,
    config: Mapping[str, Any] | Any | None = None,
    psf: Mapping[str, Any] | None = None,
    flux_unit: str = DEFAULT_FLUX_UNIT,
    image_shape: tuple[int, ...] | None = None,
    tile_size: int | None = None,
    n_tiles: int | None = None,
    threshold: float | None = None,
    runtime_s: float | None = None,
    model_version: str = "none",
    checksum: bool = True,
) -> Provenance:
    """Build a :class:`Provenance`, hashing the input file and the configuration.

    Parameters
    ----------
    input_path : str or path-like, optional
        The input image; its SHA-256 is computed when ``checksum`` is true.
    config : mapping or contracts.config.Config, optional
        The configuration; stored as plain values with its hash.
    psf : mapping, optional
        The PSF used (``source``, ``fwhm_px``, ``model``, ...).
    flux_unit : str
        The image's unit.
    image_shape, tile_size, n_tiles, threshold, runtime_s, model_version
        See :class:`Provenance`.
    checksum : bool
        Whether to read the input file to compute its checksum.

    Raises
    ------
    InputError
        If ``checksum`` is true and the input file cannot be read.
    """
    cfg: dict[str, Any] = {}
    digest = ""
    if config is not None:
        cfg = dict(config.to_dict()) if hasattr(config, "to_dict") else dict(config)
        digest = config_hash(config)
    path = "" if input_path is None else os.fspath(input_path)
    sha = file_checksum(path) if (checksum and path) else ""
    return Provenance(
        config_hash=digest,
        config=cfg,
        model_version=model_version,
        input_path=str(Path(path)) if path else "",
        input_checksum=sha,
        psf=dict(psf or {}),
        flux_unit=flux_unit,
        image_shape=image_shape,
        tile_size=tile_size,
        n_tiles=n_tiles,
        threshold=threshold,
        runtime_s=runtime_s,
    )

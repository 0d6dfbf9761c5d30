"""Frozen, validated configuration objects.

Each stage has one configuration class: a frozen :func:`dataclasses.dataclass`
subclassing :class:`Config`.  Fields carry their defaults; ranges are checked in
``__post_init__`` with :func:`check_range` / :func:`check_choice`, so an invalid
value fails when the object is made, with the field named.  Nested stage
configurations are fields of a parent configuration.  Configurations are built
from plain mappings (e.g. a parsed TOML file) with :meth:`Config.from_mapping`,
which rejects unknown keys, and hashed with :meth:`Config.config_hash` for
provenance.  Random seeds live in configuration, never in module state.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import typing
from collections.abc import Mapping
from typing import Any, Self

from .errors import ConfigError

__all__ = ["Config", "check_range", "check_choice", "check_int"]


def check_range(
    name: str,
    value: float | int | None,
    *,
    low: float | None = None,
    high: float | None = None,
    low_inclusive: bool = True,
    allow_none: bool = False,
) -> None:
    """Raise :class:`ConfigError` unless ``low <= value <= high``.

    Parameters
    ----------
    name : str
        Field name, used in the message.
    value : float, int or None
        The value to check.
    low, high : float, optional
        Bounds; ``None`` means unbounded.
    low_inclusive : bool
        Whether ``value == low`` is allowed.
    allow_none : bool
        Whether ``None`` is an allowed value.
    """
    if value is None:
        if allow_none:
            return
        raise ConfigError(f"{name}: a value is required")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name}: expected a number, got {value!r}")
    if value != value:  # NaN
        raise ConfigError(f"{name}: NaN is not allowed")
    if low is not None and (value < low or (value == low and not low_inclusive)):
        op = ">=" if low_inclusive else ">"
        raise ConfigError(f"{name}: must be {op} {low}, got {value}")
    if high is not None and value > high:
        raise ConfigError(f"{name}: must be <= {high}, got {value}")


def check_int(name: str, value: object, *, allow_none: bool = False) -> None:
    """Raise :class:`ConfigError` unless ``value`` is an integer (not a float or bool)."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name}: expected an integer, got {value!r}")


def check_choice(name: str, value: object, choices: tuple[object, ...]) -> None:
    """Raise :class:`ConfigError` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ConfigError(f"{name}: must be one of {list(choices)}, got {value!r}")


@dataclasses.dataclass(frozen=True)
class Config:
    """Base class of all configuration objects (frozen dataclasses)."""

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any] | None = None, *, _path: str = "") -> Self:
        """Build a configuration from a plain mapping, recursing into sub-configs.

        Unknown keys raise :class:`ConfigError` naming the key, so a typo in a
        configuration file is never silently ignored.
        """
        mapping = dict(mapping or {})
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(mapping) - set(fields))
        if unknown:
            where = f"[{_path}] " if _path else ""
            raise ConfigError(
                f"{where}unknown option(s) {unknown} for {cls.__name__}; "
                f"known: {sorted(fields)}"
            )
        hints = typing.get_type_hints(cls)
        kwargs: dict[str, Any] = {}
        for name, value in mapping.items():
            sub = _config_class(hints.get(name))
            if sub is not None and isinstance(value, Mapping):
                value = sub.from_mapping(value, _path=f"{_path}.{name}" if _path else name)
            elif isinstance(value, list):
                value = tuple(value)
            kwargs[name] = value
        try:
            return cls(**kwargs)
        except TypeError as exc:  # wrong constructor arguments
            raise ConfigError(f"{cls.__name__}: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        """Return the configuration as nested plain Python values."""
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> Self:
        """Return a copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def config_hash(self) -> str:
        """Return a short, stable SHA-256 hash of the configuration values."""
        blob = json.dumps(self.to_dict(), sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def _config_class(hint: object) -> type[Config] | None:
    """Return the Config subclass named by a type hint, if any."""
    candidates = typing.get_args(hint) or (hint,)
    for cand in candidates:
        if isinstance(cand, type) and issubclass(cand, Config):
            return cand
    return None

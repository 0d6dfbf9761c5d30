"""Configuration of the review queue: one frozen, validated object.

Example ``review.toml`` (every key optional; unknown keys are errors; the keys
may also sit under a ``[review]`` table)::

    path = ".moe-imaging/review.sqlite"   # SQLite file (the default store)
    # url = "postgresql+psycopg://review@db.example.org/review"  # a team's server
    lease_seconds = 900        # a claim expires after 15 minutes
    required_reviews = 2       # k reviewers decide every item
    consensus = "majority"     # or "unanimous"
    cutout_size = 64

    [kind_values]              # the "value" factor of the priority
    streak = 3.0
"""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
from collections.abc import Mapping
from typing import Any

from contracts.config import Config, check_choice, check_int, check_range
from contracts.errors import ConfigError
from contracts.vocabulary import KINDS

__all__ = [
    "CONSENSUS_RULES",
    "DEFAULT_KIND_VALUES",
    "DEFAULT_PATH",
    "STRETCHES",
    "ReviewConfig",
    "load_review_config",
]

DEFAULT_PATH = ".moe-imaging/review.sqlite"
"""Where the SQLite store lives when neither a URL nor a path is given."""

CONSENSUS_RULES: tuple[str, ...] = ("majority", "unanimous")
"""How the ``required_reviews`` decisions on an item are combined.

``majority``: a label given by more than half of the decisions;
``unanimous``: every decision gives the same label.  Without consensus (or
when the consensus is "uncertain") the item is ``disputed``.
"""

STRETCHES: tuple[str, ...] = ("zscale", "asinh")
"""Display stretches of survey cutouts (microscopy uses a percentile interval)."""

DEFAULT_KIND_VALUES: tuple[tuple[str, float], ...] = tuple(
    sorted({**dict.fromkeys(KINDS, 1.0), "artifact": 0.5, "streak": 2.0}.items())
)
"""Default value of a label by the gate's kind, sorted by kind: every kind of
:data:`contracts.vocabulary.KINDS` is worth 1 except artifacts (0.5) and streaks
(2.0: rare and precious)."""


@dataclasses.dataclass(frozen=True)
class ReviewConfig(Config):
    """Options of the review store.

    Attributes
    ----------
    path : str
        SQLite file used when ``url`` is ``None`` (WAL mode; the folder is
        created).
    url : str or None
        SQLAlchemy URL of the database, e.g. ``postgresql+psycopg://user@host/db``
        or ``sqlite:////abs/path.sqlite``; overrides ``path``.
    lease_seconds : float
        How long a claim lasts.  An item whose lease expires returns to the
        queue (another reviewer may claim it); the former holder can no longer
        decide it.
    required_reviews : int
        ``k``: how many distinct reviewers must decide each item.
    consensus : str
        How the ``k`` decisions are combined, one of :data:`CONSENSUS_RULES`.
    kind_values : tuple of (kind, value)
        The *value* of a label by the gate's kind; the priority of an item is
        ``uncertainty ** uncertainty_power * value`` (a TOML table
        ``[kind_values]`` is accepted).  Kinds not listed have value 1.
    uncertainty_power : float
        Exponent of the uncertainty in the priority (0: value alone).
    cutout_size : int
        Side of the cutout stamp in image pixels.
    cutout_zooms : tuple of int
        Zoom levels of the PNG renderings: zoom ``z`` shows the central
        ``cutout_size / z`` pixels, magnified to ``cutout_display`` pixels.
    cutout_display : int
        Side of every PNG in screen pixels.
    stretch : str
        Survey display: ``"zscale"`` (ZScaleInterval, linear) or ``"asinh"``
        (99.5 % interval, AsinhStretch).
    percentile : float
        Microscopy display: the PercentileInterval in percent.
    busy_timeout_s : float
        SQLite: how long a writer waits for the write lock before failing.
    seed : int
        Seeds the tie-break among items of equal priority: such items are
        served in a fixed pseudo-random order (mixing exposures) rather than in
        the order they were enqueued.
    """

    path: str = DEFAULT_PATH
    url: str | None = None
    lease_seconds: float = 900.0
    required_reviews: int = 1
    consensus: str = "majority"
    kind_values: tuple[tuple[str, float], ...] = DEFAULT_KIND_VALUES
    uncertainty_power: float = 1.0
    cutout_size: int = 64
    cutout_zooms: tuple[int, ...] = (1, 4)
    cutout_display: int = 256
    stretch: str = "zscale"
    percentile: float = 99.5
    busy_timeout_s: float = 30.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.path, str) or not self.path:
            raise ConfigError(f"review.path: expected a file path, got {self.path!r}")
        if self.url is not None and (not isinstance(self.url, str) or not self.url):
            raise ConfigError(f"review.url: expected a database URL, got {self.url!r}")
        check_range("review.lease_seconds", self.lease_seconds, low=0.0, high=7 * 86400.0, low_inclusive=False)
        check_int("review.required_reviews", self.required_reviews)
        check_range("review.required_reviews", self.required_reviews, low=1, high=20)
        check_choice("review.consensus", self.consensus, CONSENSUS_RULES)
        values = self.kind_values
        if isinstance(values, Mapping):
            values = tuple(sorted(values.items()))
        try:
            values = tuple((str(k), v) for k, v in values)
        except (TypeError, ValueError):
            raise ConfigError(f"review.kind_values: expected kind = value pairs, got {self.kind_values!r}") from None
        for kind, value in values:
            check_range(f"review.kind_values.{kind}", value, low=0.0, high=1e6)
        object.__setattr__(self, "kind_values", tuple((k, float(v)) for k, v in values))
        check_range("review.uncertainty_power", self.uncertainty_power, low=0.0, high=10.0)
        check_int("review.cutout_size", self.cutout_size)
        check_range("review.cutout_size", self.cutout_size, low=8, high=1024)
        zooms = tuple(self.cutout_zooms) if isinstance(self.cutout_zooms, (list, tuple)) else (self.cutout_zooms,)
        if not zooms or len(set(zooms)) != len(zooms):
            raise ConfigError(f"review.cutout_zooms: expected distinct zoom levels, got {self.cutout_zooms!r}")
        for z in zooms:
            check_int("review.cutout_zooms", z)
            check_range("review.cutout_zooms", z, low=1, high=self.cutout_size // 4)
        object.__setattr__(self, "cutout_zooms", zooms)
        check_int("review.cutout_display", self.cutout_display)
        check_range("review.cutout_display", self.cutout_display, low=16, high=2048)
        check_choice("review.stretch", self.stretch, STRETCHES)
        check_range("review.percentile", self.percentile, low=50.0, high=100.0)
        check_range("review.busy_timeout_s", self.busy_timeout_s, low=0.0, high=3600.0)
        check_int("review.seed", self.seed)

    def kind_value(self, kind: str) -> float:
        """The value factor of the priority for the gate's ``kind`` (1 if unlisted)."""
        return dict(self.kind_values).get(kind, 1.0)

    def database_url(self) -> str:
        """The SQLAlchemy URL to open: ``url``, else the SQLite file at ``path``."""
        if self.url is not None:
            return self.url
        return "sqlite:///" + os.path.abspath(os.path.expanduser(self.path))

    def lease(self, seconds: float | None) -> float:
        """A lease length: ``seconds`` if given (validated), else :attr:`lease_seconds`."""
        if seconds is None:
            return float(self.lease_seconds)
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds) or seconds <= 0:
            from .errors import ReviewError

            raise ReviewError(f"lease_seconds: expected a positive number of seconds, got {seconds!r}")
        return float(seconds)


def load_review_config(path: str | os.PathLike | None) -> ReviewConfig:
    """Read a TOML file into a :class:`ReviewConfig` (``None``: the defaults).

    The options may be at the top level or under a ``[review]`` table.
    """
    if path is None:
        return ReviewConfig()
    try:
        with open(path, "rb") as fh:
            data: dict[str, Any] = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: configuration file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    if isinstance(data.get("review"), Mapping):
        data = dict(data["review"])
    try:
        return ReviewConfig.from_mapping(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None

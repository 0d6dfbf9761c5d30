"""Options of the streak expert (:class:`StreakExpertConfig`).

The configuration also turns the options into pixels for a given PSF: the
segment filter lengths (:meth:`StreakExpertConfig.filter_lengths`) and the
shortest trail reported (:meth:`StreakExpertConfig.min_length`).
"""

from __future__ import annotations

import dataclasses

from contracts.config import Config, check_int, check_range
from contracts.errors import ConfigError

__all__ = ["StreakExpertConfig"]


@dataclasses.dataclass(frozen=True)
class StreakExpertConfig(Config):
    """Options of the streak expert.

    Attributes
    ----------
    false_per_mpix : float
        Noise-only streak seeds per million pixels allowed by the threshold
        (over all angles and lengths).
    lengths_fwhm : tuple of float
        Segment filter lengths, in units of the PSF FWHM.  A trail is found
        best by a filter about as long as itself; longer filters reach fainter
        long trails.
    expected_length : float or None
        Trail length in pixels expected from the observation (rate times
        exposure time, :func:`streak_prior_from_header`); when given it
        replaces the longest filter and sets the shortest trail reported to
        half of it.
    min_length_fwhm : float
        Shortest trail reported, in FWHM (shorter ones cannot be told from
        an elongated galaxy or a pair of stars).
    line_over_point : float
        Required ratio of the segment significance to the point-source
        significance at a seed.
    threshold : float or None
        Fixed seed threshold in sigma (default: from ``false_per_mpix``).
    max_gap_fwhm : float
        Collinear fragments separated by at most this (FWHM) are one trail.
    max_bin : int
        Largest binning factor of the coarse search.
    n_parts : int
        The segment filter is split into this many parts and the statistic
        is ``sqrt(n) * min(part significances)``: a trail fills every part,
        two stars a segment happens to join fill at most two.
    max_fill_deviation : float
        Largest ``|fill - 1|`` accepted, where ``fill`` is the median of the
        profile along the trail over its fitted amplitude (1 for a uniform
        trail; a galaxy's peaked profile or a chance alignment departs).
    gap_sigma : float
        A part of the trail (up to 8 parts of at least 2 FWHM) whose
        amplitude is more than this many sigma below half the trail's
        amplitude means the "trail" has a gap: two sources in a row.
    max_width : float
        Largest width across the trail, in units of the PSF's line-spread
        function, accepted (a trail is as wide as the PSF; a galaxy, or the
        halo of a bright star, is wider).
    min_contrast : float
        Smallest ratio of the trail's amplitude fitted over a local
        background plane to its plain amplitude (a line along the wing of a
        galaxy has no contrast of its own).
    sharp_sigma : float
        Pixels sharper than the PSF allows at this significance (cosmic
        rays, hot pixels) are ignored by the search.
    min_anisotropy : float
        Smallest ratio of the segment statistic along the line to across it
        (about 1 for a blob or a bright star's wings).
    """

    false_per_mpix: float = 0.05
    lengths_fwhm: tuple[float, ...] = (5.0, 15.0)
    expected_length: float | None = None
    min_length_fwhm: float = 5.0
    line_over_point: float = 1.5
    threshold: float | None = None
    max_gap_fwhm: float = 6.0
    max_bin: int = 4
    n_parts: int = 4
    max_fill_deviation: float = 0.2
    gap_sigma: float = 3.0
    max_width: float = 1.4
    min_contrast: float = 0.7
    sharp_sigma: float = 6.0
    min_anisotropy: float = 3.0

    def __post_init__(self) -> None:
        check_range("streak.false_per_mpix", self.false_per_mpix, low=0.0, high=1e4, low_inclusive=False)
        lengths = tuple(self.lengths_fwhm)
        object.__setattr__(self, "lengths_fwhm", lengths)
        if not lengths:
            raise ConfigError("streak.lengths_fwhm: give at least one length")
        for i, v in enumerate(lengths):
            check_range(f"streak.lengths_fwhm[{i}]", v, low=2.0, high=200.0)
        if self.expected_length is not None:
            check_range("streak.expected_length", self.expected_length, low=1.0, high=1e5)
        check_range("streak.min_length_fwhm", self.min_length_fwhm, low=1.0, high=100.0)
        check_range("streak.line_over_point", self.line_over_point, low=0.0, high=10.0)
        if self.threshold is not None:
            check_range("streak.threshold", self.threshold, low=1.0, high=100.0)
        check_range("streak.max_gap_fwhm", self.max_gap_fwhm, low=0.0, high=100.0)
        check_int("streak.max_bin", self.max_bin)
        check_range("streak.max_bin", self.max_bin, low=1, high=16)
        check_range("streak.min_contrast", self.min_contrast, low=0.0, high=1.0)
        check_range("streak.max_width", self.max_width, low=1.0, high=10.0)
        check_range("streak.gap_sigma", self.gap_sigma, low=0.0, high=100.0)
        check_range("streak.sharp_sigma", self.sharp_sigma, low=1.0, high=1000.0)
        check_range("streak.max_fill_deviation", self.max_fill_deviation, low=0.0, high=10.0)
        check_range("streak.min_anisotropy", self.min_anisotropy, low=0.0, high=100.0)
        check_int("streak.n_parts", self.n_parts)
        check_range("streak.n_parts", self.n_parts, low=1, high=8)

    def filter_lengths(self, fwhm: float) -> tuple[float, ...]:
        """Segment filter lengths in pixels for a PSF of this FWHM."""
        lengths = [v * fwhm for v in self.lengths_fwhm]
        if self.expected_length is not None:
            lengths = [v for v in lengths if v < self.expected_length] + [max(self.expected_length, 2.0 * fwhm)]
        return tuple(sorted(set(lengths)))

    def min_length(self, fwhm: float) -> float:
        """Shortest trail reported, pixels."""
        low = self.min_length_fwhm * fwhm
        if self.expected_length is not None:
            low = min(low, 0.5 * self.expected_length)
        return max(low, 2.0 * fwhm)

"""The streak expert: fast-moving objects, the PSF convolved with a line segment.

A satellite or asteroid that moves during the exposure leaves a *trail*: its
image is the PSF convolved with a line segment of length ``L`` (the distance
moved) at angle ``theta``.  The optimal detector for such an object is the
matched filter with that kernel, so the expert searches over angles and
lengths, coarse to fine:

1. **Coarse search.**  The tile is binned ``b x b`` (``b`` chosen so the
   binned PSF still has a FWHM of 1.5-3 pixels: a long line loses almost no
   signal to binning) and filtered once with the PSF (inverse-variance
   weighted).  A segment filter is then a sum of shifted copies of that map
   along the segment, so each angle costs a few array additions, not an FFT.
   Lengths are a few multiples of the FWHM (or the length expected from the
   header, see :func:`streak_prior_from_header`); the angle step keeps the
   segment's ends within a fraction of the FWHM of the true line.
2. **Streak, not point.**  Each segment is split into ``n_parts`` (4) parts
   and the statistic is ``sqrt(n) * min(part significances)``: a trail fills
   every part, while a bright star near a segment, or two sources a segment
   happens to join, fill at most two.  A pixel is a seed when the statistic
   exceeds the threshold (Euler characteristic of the filtered noise, with
   the look-elsewhere factor of all filters) *and* ``line_over_point`` times
   the point-source significance there -- the likelihood-ratio test of
   "segment" against "point" (about ``sqrt(1.5 FWHM / l) < 1`` for a point
   source, its inverse for a trail longer than ``l``).  Seeds are grouped by
   connectivity within bins of their best angle; the segment statistic
   *across* a group's best line must be well below the one along it
   (``min_anisotropy``: a blob or a star's wings look alike in every
   direction).  Collinear groups are joined.
3. **Cheap look, then the fit.**  A one-dimensional fit of the profile along
   the seed line rejects most non-trails cheaply; the rest get the maximum-
   likelihood fit of a PSF-convolved segment to the pixels around the line,
   ``A LSF(t - t0) [C(s - s0) - C(s - s1)]`` with the PSF's line-spread
   function ``LSF`` and its integral ``C`` (so the ends ``s0, s1`` are the
   trail's half-maximum points), robust to sources on the trail (soft-L1
   loss, then point-like residuals masked and the fit repeated).  The ends
   come from a global search for the stretch of highest S/N along the
   fitted line, refined locally; the window grows while an end runs into
   it.  A fit is a trail when it is at least ``min_length_fwhm`` FWHM long,
   significant, uniform along its length (``fill``, no empty ``gap``), as
   wide as the PSF across (``width``) and standing out from a local
   background plane (``contrast``: not the edge of a galaxy).
4. **Masks.**  Saturated stars (grown by their size) and pixels sharper than
   the PSF allows (cosmic rays, hot pixels) are left out of the search and
   of the fits: their lines are the artifact expert's.

Tiles and stitching
-------------------
A trail can be longer than a tile.  Each tile reports the part of every trail
that crosses its *core* (its flux and owned length), together with the end
points it sees in its pixels (core + halo) and whether each end is
*truncated* by the tile's edge.  :func:`stitch_streaks` then joins the pieces
of one trail (collinear, overlapping) into one object whose end points are
the non-truncated ends, whose flux is the sum of the owned parts and whose
length and angle follow from the end points.  The pipeline calls it through
the expert's :meth:`StreakExpert.stitch`.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from astropy.table import Table
from scipy import ndimage, optimize, signal

from contracts.config import Config, check_int, check_range
from ..detection import threshold_for_false_rate
from contracts.errors import ConfigError
from contracts.flags import MaskBit, SourceFlag
from ..psf import PSF
from ..tile import Tile
from .base import CANDIDATE_COLUMNS, register, sample_at_candidates

__all__ = [
    "StreakExpertConfig",
    "StreakExpert",
    "STREAK_COLUMNS",
    "find_streaks",
    "stitch_streaks",
    "streak_prior_from_header",
    "line_spread_function",
]

STREAK_COLUMNS: tuple[tuple[str, str], ...] = CANDIDATE_COLUMNS + (
    ("x0", "f8"),
    ("y0", "f8"),
    ("x1", "f8"),
    ("y1", "f8"),
    ("length", "f8"),
    ("angle_deg", "f8"),
    ("line_flux", "f8"),
    ("owned_length", "f8"),
    ("trunc0", "bool"),
    ("trunc1", "bool"),
    ("n_pieces", "i4"),
    ("anisotropy", "f8"),
    ("fill", "f8"),
    ("chi2", "f8"),
    ("gap", "f8"),
    ("width", "f8"),
    ("contrast", "f8"),
)
"""Columns of the streak expert's table.  ``x0, y0, x1, y1``: end points
(global pixels), ordered so ``angle_deg`` (from +x towards +y) is in [0, 180);
``line_flux``: flux per pixel of length; ``owned_length``: the length whose
flux is in ``flux`` (the part in the tile's core before stitching, the whole
trail after); ``trunc0/trunc1``: an end cut by a tile edge (not the image's);
``n_pieces``: tiles (or fragments) joined."""

_SQRT2 = math.sqrt(2.0)


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


def streak_prior_from_header(header, pixscale: float | None = None) -> float | None:
    """Trail length (pixels) the header predicts, or ``None``.

    The length is ``rate * EXPTIME / pixel scale``, with the rate (arcsec/s)
    from ``RATE``, or from ``RA_RATE`` and ``DEC_RATE`` (quadrature sum), and
    the pixel scale from ``pixscale`` or ``PIXSCALE``.  In rate-tracking mode
    (``OBSMODE`` = ``rate``/``nonsidereal``) the rate is the telescope's, and
    the *stars* trail by that length; in sidereal mode it is a known mover's.
    Without a rate (ordinary sidereal exposures) there is no prior and the
    expert searches all lengths.
    """
    if header is None:
        return None

    def number(key: str) -> float | None:
        try:
            value = float(header[key])
        except (KeyError, TypeError, ValueError):
            return None
        return value if math.isfinite(value) else None

    rate = number("RATE")
    if rate is None:
        ra, dec = number("RA_RATE"), number("DEC_RATE")
        if ra is not None or dec is not None:
            rate = math.hypot(ra or 0.0, dec or 0.0)
    exptime = number("EXPTIME")
    scale = pixscale if pixscale is not None else number("PIXSCALE")
    if rate is None or exptime is None or not scale or scale <= 0 or rate <= 0:
        return None
    length = abs(rate) * exptime / scale
    return length if length >= 1.0 else None


# --------------------------------------------------------------------------- the expert


@register
class StreakExpert:
    """Trails of fast-moving objects (see module docs)."""

    name = "streak"
    kinds = ("streak",)

    def __init__(self, config: StreakExpertConfig = StreakExpertConfig()) -> None:
        self.config = config

    def footprint(self, psf: PSF) -> int:
        """Half the longest segment filter, the fit's margins and the PSF.

        Trails longer than this are cut into pieces by the tiles and joined
        by :meth:`stitch`.
        """
        longest = max(self.config.filter_lengths(psf.fwhm))
        return int(math.ceil(0.5 * longest + 4.0 * psf.fwhm + 4))

    def propose(self, tile: Tile) -> Table:
        """The pieces of trails crossing the tile's core."""
        return find_streaks(tile, config=self.config)

    def score(self, tile: Tile, candidates: Table) -> Table:
        """``streak_line_snr`` and ``streak_line_over_point`` at each candidate's pixel."""
        maps: dict[str, np.ndarray] = {}

        def build(t: Tile) -> dict[str, np.ndarray]:
            if not maps:
                line, point = _full_resolution_maps(t, self.config)
                maps["line"], maps["ratio"] = line, np.where(point > 0, line / np.maximum(point, 1e-6), np.inf)
            return maps

        line = sample_at_candidates(tile, candidates, lambda t: build(t)["line"])
        ratio = sample_at_candidates(tile, candidates, lambda t: build(t)["ratio"])
        return Table({"streak_line_snr": line, "streak_line_over_point": ratio})

    def stitch(self, table: Table, image_shape: tuple[int, int], psf: PSF) -> Table:
        """Join the pieces of trails cut by tiles (:func:`stitch_streaks`)."""
        return stitch_streaks(table, psf=psf, config=self.config, image_shape=image_shape)


def _empty() -> Table:
    return Table({name: np.zeros(0, dtype=dt) for name, dt in STREAK_COLUMNS})


# --------------------------------------------------------------------------- coarse search


def _bin_factor(fwhm: float, max_bin: int) -> int:
    """Binning that leaves the PSF 1.5-3 binned pixels wide (1 for sharp PSFs)."""
    return int(max(1, min(max_bin, math.floor(fwhm / 1.5))))


def _bin(arr: np.ndarray, b: int, *, reduce: str = "sum") -> np.ndarray:
    if b == 1:
        return arr
    ny, nx = arr.shape[0] // b * b, arr.shape[1] // b * b
    view = arr[:ny, :nx].reshape(ny // b, b, nx // b, b)
    return view.sum(axis=(1, 3)) if reduce == "sum" else view.max(axis=(1, 3))


def _binned_psf(psf: PSF, b: int) -> np.ndarray:
    """The PSF integrated over ``b x b`` pixels, odd-sized and (to half a binned pixel) centred."""
    img = np.asarray(psf.image)
    if b == 1:
        return img
    n = img.shape[0]
    nb = int(math.ceil(n / b))
    nb += 1 - nb % 2  # odd
    size = nb * b
    before = (size - n) // 2
    padded = np.zeros((size, size))
    padded[before : before + n, before : before + n] = img
    out = padded.reshape(nb, b, nb, b).sum(axis=(1, 3))
    return out / out.sum()


def _segment_offsets(length: float, angle: float) -> np.ndarray:
    """Integer ``(dy, dx)`` samples of a centred segment (Bresenham: one per step of the major axis)."""
    c, s = math.cos(angle), math.sin(angle)
    major = max(abs(c), abs(s))
    n = max(1, int(round(length * major)))
    t = (np.arange(n) - 0.5 * (n - 1)) / major  # distance along the segment
    return np.column_stack([np.rint(t * s), np.rint(t * c)]).astype(int)


def _shift_sum(field: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """``sum_k field[p + offsets[k]]`` (zero outside the array)."""
    out = np.zeros_like(field)
    ny, nx = field.shape
    for dy, dx in offsets:
        if abs(dy) >= ny or abs(dx) >= nx:
            continue
        ys, yd = (slice(dy, ny), slice(0, ny - dy)) if dy >= 0 else (slice(0, ny + dy), slice(-dy, ny))
        xs, xd = (slice(dx, nx), slice(0, nx - dx)) if dx >= 0 else (slice(0, nx + dx), slice(-dx, nx))
        out[yd, xd] += field[ys, xs]
    return out


def _kernel_norm(psf_b: np.ndarray, offsets: np.ndarray) -> float:
    """``sqrt(sum K^2 / sum P^2)`` for the kernel ``K = sum_k P(. - offset_k)``."""
    k = _kernel_image(psf_b, offsets)
    return float(math.sqrt((k * k).sum() / (psf_b * psf_b).sum()))


def _kernel_image(psf_b: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """The segment kernel ``K = sum_k P(. - offset_k)`` on a grid holding all of it."""
    h = psf_b.shape[0] // 2
    r = int(np.abs(offsets).max()) if len(offsets) else 0
    k = np.zeros((2 * (h + r) + 1,) * 2)
    for dy, dx in offsets:
        k[r + dy : r + dy + 2 * h + 1, r + dx : r + dx + 2 * h + 1] += psf_b
    return k


@dataclasses.dataclass
class _Search:
    """Result of the coarse search on the binned grid."""

    b: int
    line: np.ndarray  # best sqrt(n) min-part statistic
    point: np.ndarray  # point-source significance
    angle: np.ndarray  # angle (rad) of the best filter
    threshold: float
    num: np.ndarray  # PSF-filtered, inverse-variance weighted image (binned)
    inv_den: np.ndarray  # 1 / its noise
    psf_b: np.ndarray  # binned PSF
    lengths_b: tuple[float, ...]  # filter lengths, binned pixels


def _angles(length_b: float, fwhm_b: float) -> np.ndarray:
    """Angles in [0, pi) so a segment's ends stay within ~0.4 FWHM of any line."""
    step = min(math.radians(15.0), 0.8 * fwhm_b / max(length_b, 1.0))
    n = int(math.ceil(math.pi / step))
    return np.arange(n) * (math.pi / n)


def _unusable(tile: Tile, config: StreakExpertConfig) -> np.ndarray:
    """Pixels the trail search ignores.

    Besides masked pixels: saturated regions grown by ``2 FWHM`` plus their
    width across columns (a saturated
    star's core and its bleed trail are lines too, but not trails) and pixels
    sharper than the PSF allows (cosmic rays, hot pixels; a trail is
    PSF-convolved), grown by one pixel.
    """
    from .artifact import _sharp_significance, psf_peak_ratio

    img = np.asarray(tile.image)
    bad = tile.bad | ~np.isfinite(img)
    mask = np.asarray(tile.mask)
    saturated = (mask & np.uint16(MaskBit.SATURATED)) != 0
    if saturated.any():
        # grow each saturated region by 2 FWHM plus twice its core's radius: the brighter the
        # star, the farther its wings reach.  The core's radius is half its width across the
        # columns (charge bleeds along columns, so the height says little).
        labels, n = ndimage.label(saturated)
        radius = np.array([0.5 * (sl[1].stop - sl[1].start) for sl in ndimage.find_objects(labels)])
        reach = np.concatenate([[0.0], 2.0 * tile.psf.fwhm + 2.0 * radius])
        dist, (iy, ix) = ndimage.distance_transform_edt(~saturated, return_indices=True)
        bad |= dist <= reach[labels[iy, ix]]
    sharp = _sharp_significance(tile, psf_peak_ratio(tile.psf)) > config.sharp_sigma
    if sharp.any():
        bad |= ndimage.binary_dilation(sharp, structure=np.ones((3, 3), bool))
    return bad


def _coarse_search(tile: Tile, config: StreakExpertConfig, bad: np.ndarray | None = None) -> _Search:
    psf = tile.psf
    b = _bin_factor(psf.fwhm, config.max_bin)
    img = np.asarray(tile.image, dtype=np.float32)
    bad = _unusable(tile, config) if bad is None else bad
    var = np.asarray(tile.variance, dtype=np.float32)
    img_b = _bin(np.where(bad, 0.0, img).astype(np.float32), b)
    var_b = _bin(np.where(bad, 0.0, var).astype(np.float32), b)
    bad_b = _bin(bad.astype(np.uint8), b, reduce="max").astype(bool)
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.where(bad_b | ~(var_b > 0), 0.0, 1.0 / var_b).astype(np.float32)
    psf_b = _binned_psf(psf, b)
    fwhm_b = psf.fwhm / b
    kflip = psf_b[::-1, ::-1].astype(np.float32)
    num = signal.fftconvolve(img_b * w, kflip, mode="same").astype(np.float32)
    den2 = signal.fftconvolve(w, (kflip * kflip), mode="same").astype(np.float32)
    cover = signal.fftconvolve((w > 0).astype(np.float32), (kflip * kflip) / float((kflip * kflip).sum()), mode="same")
    valid = (den2 > 0) & (cover > 0.5)
    inv_den = np.where(valid, 1.0 / np.sqrt(np.where(valid, den2, 1.0)), 0.0).astype(np.float32)
    point = num * inv_den
    best = np.zeros_like(point)
    best_angle = np.zeros_like(point)
    n_filters = 0
    thresholds = []
    for length in config.filter_lengths(psf.fwhm):
        length_b = max(2.0, length / b)
        angles = _angles(length_b, fwhm_b)
        n_filters += len(angles)
        for angle in angles:
            stat = None
            for part in _split(_segment_offsets(length_b, angle), config.n_parts):
                a = _shift_sum(num, part)
                a *= inv_den
                a *= 1.0 / _kernel_norm(psf_b, part)
                stat = a if stat is None else np.minimum(stat, a, out=stat)
            stat *= math.sqrt(config.n_parts)
            better = stat > best
            best[better] = stat[better]
            best_angle[better] = angle
        thresholds.append(_kernel_image(psf_b, _segment_offsets(length_b, 0.0)))
    if config.threshold is not None:
        threshold = config.threshold
    else:
        rate = config.false_per_mpix * b * b / max(n_filters, 1)
        threshold = max(threshold_for_false_rate(k, rate) for k in thresholds)
    best[~valid] = 0.0
    lengths_b = tuple(max(2.0, v / b) for v in config.filter_lengths(psf.fwhm))
    return _Search(b=b, line=best, point=point, angle=best_angle, threshold=threshold, num=num, inv_den=inv_den,
                   psf_b=psf_b, lengths_b=lengths_b)


def _split(offsets: np.ndarray, n_parts: int) -> list[np.ndarray]:
    """The segment's samples in ``n_parts`` equal consecutive parts (a middle remainder is dropped)."""
    size = max(1, len(offsets) // n_parts)
    return [offsets[i * size : (i + 1) * size] for i in range(n_parts - 1)] + [offsets[len(offsets) - size :]]


def _min_part_at(search: _Search, iy: np.ndarray, ix: np.ndarray, angle: float, length_b: float, n_parts: int) -> np.ndarray:
    """The min-part segment statistic at a few binned pixels (a gather, not a full map)."""
    ny, nx = search.num.shape
    out = None
    for part in _split(_segment_offsets(length_b, angle), n_parts):
        yy = iy[:, None] + part[None, :, 0]
        xx = ix[:, None] + part[None, :, 1]
        inside = (yy >= 0) & (yy < ny) & (xx >= 0) & (xx < nx)
        total = np.where(inside, search.num[np.clip(yy, 0, ny - 1), np.clip(xx, 0, nx - 1)], 0.0).sum(axis=1)
        value = total * search.inv_den[iy, ix] / _kernel_norm(search.psf_b, part)
        out = value if out is None else np.minimum(out, value)
    return math.sqrt(n_parts) * out


def _full_resolution_maps(tile: Tile, config: StreakExpertConfig) -> tuple[np.ndarray, np.ndarray]:
    """The coarse line and point significance maps, expanded to the tile's pixels."""
    search = _coarse_search(tile, config)
    ny, nx = np.shape(tile.image)
    b = search.b
    iy = np.minimum(np.arange(ny) // b, search.line.shape[0] - 1)
    ix = np.minimum(np.arange(nx) // b, search.line.shape[1] - 1)
    return search.line[np.ix_(iy, ix)], search.point[np.ix_(iy, ix)]


# --------------------------------------------------------------------------- fine fit


def line_spread_function(psf: PSF) -> tuple[np.ndarray, np.ndarray]:
    """The PSF's line-spread function: offsets (pixels) and values (sum 1).

    The marginal of the PSF image across a line, symmetrised (the average of
    the x and y marginals): the profile across a trail.
    """
    img = np.asarray(psf.image)
    h = psf.half_size
    lsf = 0.5 * (img.sum(axis=0) + img.sum(axis=1))
    lsf = 0.5 * (lsf + lsf[::-1])
    return np.arange(-h, h + 1, dtype=float), lsf / lsf.sum()


@dataclasses.dataclass
class _Fit:
    cx: float
    cy: float
    ux: float
    uy: float
    s0: float
    s1: float
    amp: float
    amp_err: float
    det_snr: float
    fill: float  # median of the profile inside the trail over the fitted amplitude (1 for a uniform trail)
    chi2: float  # robust reduced chi-square of the trail model
    gap: float  # most negative (part amplitude - A/2) / error over parts of the trail
    width: float  # width across the trail over the PSF's (1 for a trail)
    contrast: float  # amplitude over a local background plane, over the plain fit's (1 for a trail)

    def point(self, s: float) -> tuple[float, float]:
        return self.cx + s * self.ux, self.cy + s * self.uy


def _pixels_near_line(tile: Tile, bad: np.ndarray, cx: float, cy: float, ux: float, uy: float, s_lo: float, s_hi: float, half_width: float):
    """Pixel (s, t, value, variance, row, column) of good pixels within ``half_width`` of the segment (tile coordinates)."""
    ny, nx = np.shape(tile.image)
    ends = np.array([[cx + s_lo * ux, cy + s_lo * uy], [cx + s_hi * ux, cy + s_hi * uy]])
    x0 = int(max(0, math.floor(ends[:, 0].min() - half_width - 1)))
    x1 = int(min(nx, math.ceil(ends[:, 0].max() + half_width + 2)))
    y0 = int(max(0, math.floor(ends[:, 1].min() - half_width - 1)))
    y1 = int(min(ny, math.ceil(ends[:, 1].max() + half_width + 2)))
    if x1 <= x0 or y1 <= y0:
        return (np.zeros(0),) * 4 + (np.zeros(0, int),) * 2
    yy, xx = np.mgrid[y0:y1, x0:x1]
    dx, dy = xx - cx, yy - cy
    s = dx * ux + dy * uy
    t = -dx * uy + dy * ux
    img = np.asarray(tile.image)[y0:y1, x0:x1]
    var = np.asarray(tile.variance)[y0:y1, x0:x1]
    good = ~bad[y0:y1, x0:x1] & np.isfinite(img) & (np.abs(t) <= half_width) & (s >= s_lo) & (s <= s_hi)
    return (
        s[good].astype(float), t[good].astype(float), img[good].astype(float), var[good].astype(float),
        yy[good], xx[good],
    )


def _edge_jac(sc: np.ndarray, edge: "_Edge", perr: np.ndarray):
    """Jacobian of ``(edge.model(sc, A, s0, s1) - data) / perr`` with respect to ``(A, s0, s1)``."""

    def jac(p):
        amp, a0, a1 = p
        out = np.empty((len(sc), 3))
        out[:, 0] = edge.model(sc, 1.0, a0, a1)
        out[:, 1] = -amp * edge.density(sc - a0)
        out[:, 2] = amp * edge.density(sc - a1)
        return out / perr[:, None]

    return jac


def _compact_residuals(r: np.ndarray, py: np.ndarray, px: np.ndarray, psf: PSF, nsigma: float = 5.0) -> np.ndarray:
    """Pixels belonging to point sources in the normalised residuals ``r`` at ``(py, px)``.

    The residuals are put back on their pixel grid, filtered with the PSF
    (unit-variance matched filter) and thresholded at ``nsigma``; detections
    are grown by the PSF's FWHM.
    """
    y0, x0 = py.min(), px.min()
    grid = np.zeros((py.max() - y0 + 1, px.max() - x0 + 1))
    have = np.zeros(grid.shape, bool)
    grid[py - y0, px - x0] = r
    have[py - y0, px - x0] = True
    k = np.asarray(psf.image)
    filt = ndimage.correlate(grid, k, mode="constant") / math.sqrt(float((k * k).sum()))
    hot = filt < -nsigma  # residual = model - data: a source makes it negative
    if not hot.any():
        return np.zeros(len(r), bool)
    grow = int(math.ceil(psf.fwhm))
    yy, xx = np.mgrid[-grow : grow + 1, -grow : grow + 1]
    hot = ndimage.binary_dilation(hot, structure=(yy * yy + xx * xx) <= grow * grow) & have
    return hot[py - y0, px - x0]


@dataclasses.dataclass(frozen=True)
class _Edge:
    """The profile along a trail: a segment convolved with the PSF's line-spread function.

    ``C`` is the cumulative line-spread function (the edge-spread function),
    exact at half-integer offsets for a pixel-integrated LSF and linear in
    between; the trail's profile is ``A [C(s - s0) - C(s - s1)]``, and its
    ends are where it falls to half (for any symmetric PSF).
    """

    x: np.ndarray  # half-integer offsets
    cum: np.ndarray  # C at x
    lsf_t: np.ndarray
    lsf_v: np.ndarray

    @classmethod
    def from_lsf(cls, lsf: tuple[np.ndarray, np.ndarray]) -> "_Edge":
        t, v = lsf
        x = np.concatenate([[t[0] - 0.5], t + 0.5])
        cum = np.concatenate([[0.0], np.cumsum(v)])
        return cls(x, cum / cum[-1], t, v)

    def model(self, s: np.ndarray, amp: float, s0: float, s1: float) -> np.ndarray:
        return amp * (
            np.interp(s - s0, self.x, self.cum, left=0.0, right=1.0)
            - np.interp(s - s1, self.x, self.cum, left=0.0, right=1.0)
        )

    def density(self, u: np.ndarray) -> np.ndarray:
        """d C / d u (the LSF, piecewise constant like the interpolated C)."""
        idx = np.clip(np.searchsorted(self.x, u) - 1, 0, len(self.lsf_v) - 1)
        inside = (u > self.x[0]) & (u < self.x[-1])
        return np.where(inside, self.lsf_v[idx], 0.0)


def _worst_part(pos, num, den, s0: float, s1: float, amp: float, psf: PSF) -> float:
    """The most significant shortfall of a part of ``[s0, s1)`` below half the amplitude, in sigma.

    The stretch is cut into up to 8 parts of at least ``2 FWHM``; each part's
    amplitude is ``sum(num) / sum(den)`` over the samples at ``pos`` in it (a
    weighted mean with inverse-variance weights ``den``), its error
    ``1 / sqrt(sum(den))``.  Two stars a segment filter joined leave an empty
    part (very negative); a uniform trail does not.  0 when nothing is inside.
    """
    n_parts = int(max(1, min(8, (s1 - s0) // max(2.0 * psf.fwhm, 4.0))))
    inside = (pos >= s0) & (pos < s1)
    k = np.minimum(((pos[inside] - s0) / (s1 - s0) * n_parts).astype(int), n_parts - 1)
    part_num = np.bincount(k, num[inside], n_parts)
    part_den = np.bincount(k, den[inside], n_parts)
    ok = part_den > 0
    if not ok.any():
        return 0.0
    return float(np.min((part_num[ok] / part_den[ok] - 0.5 * amp) * np.sqrt(part_den[ok])))


def _profile_test(
    tile: Tile, bad: np.ndarray, cx, cy, angle, s_lo, s_hi, fit_lo, fit_hi, psf: PSF, lsf, config: StreakExpertConfig,
    threshold: float,
) -> bool:
    """A cheap first look along the seed line: is there a uniform trail, long enough?

    The line-spread-weighted profile along the seeds' line (1-pixel steps) is
    fitted with the PSF-convolved segment in one dimension; the candidate goes
    on to the full 2-D fit when the segment is nearly as long as the shortest
    trail, significant, has no empty part, is about as wide as the PSF across
    and stands out from a local background plane.  The same tests as after
    the full fit, with looser limits: it only saves the 2-D fit for what
    clearly is not a trail.
    """
    lsf_t, lsf_v = lsf
    edge = _Edge.from_lsf(lsf)
    ux, uy = math.cos(angle), math.sin(angle)
    s, t, v, var, _, _ = _pixels_near_line(tile, bad, cx, cy, ux, uy, fit_lo, fit_hi, max(1.5 * psf.fwhm, 2.0))
    if len(s) < 10:
        return False
    g = np.interp(t, lsf_t, lsf_v, left=0.0, right=0.0)
    k = np.floor(s - fit_lo).astype(int)
    nb = int(k.max()) + 1
    num = np.bincount(k, v * g / var, nb)
    den = np.bincount(k, g * g / var, nb)
    ok = den > 0
    if ok.sum() < 5:
        return False
    sc = fit_lo + np.arange(nb)[ok] + 0.5
    prof, perr = num[ok] / den[ok], 1.0 / np.sqrt(den[ok])
    sigma = max(psf.sigma, 0.5)
    inner = (sc >= s_lo) & (sc <= s_hi)
    amp0 = float(np.median(prof[inner])) if inner.sum() >= 3 else float(np.median(prof))
    if not amp0 > 0:
        return False
    lo_b, hi_b = [0.0, fit_lo - 3 * sigma, fit_lo - 3 * sigma], [np.inf, fit_hi + 3 * sigma, fit_hi + 3 * sigma]
    p0 = np.clip([amp0, s_lo, s_hi], np.array(lo_b) + 1e-9, np.array(hi_b) - 1e-9)
    try:
        res = optimize.least_squares(
            lambda p: (edge.model(sc, p[0], p[1], p[2]) - prof) / perr, p0, jac=_edge_jac(sc, edge, perr),
            bounds=(lo_b, hi_b), x_scale=[amp0, 1.0, 1.0], loss="soft_l1", f_scale=3.0, max_nfev=60,
        )
    except (ValueError, np.linalg.LinAlgError):
        return False
    amp, s0, s1 = res.x
    s0, s1 = min(s0, s1), max(s0, s1)
    if s1 - s0 < 0.8 * config.min_length(psf.fwhm) or not amp > 0:
        return False
    inside = (sc >= s0) & (sc < s1)
    if inside.sum() < 3:
        return False
    w = 1.0 / perr[inside] ** 2
    snr = float(amp * math.sqrt(np.sum(w)))
    if snr < 0.7 * threshold:
        return False
    gap = _worst_part(sc, prof / perr**2, 1.0 / perr**2, s0, s1, amp, psf)
    if gap < -2.0 * config.gap_sigma:
        return False
    # as wide as the PSF across, and standing out from a local background plane (the seed line
    # may be off the trail by a pixel or two: centre it first)
    body = (s >= s0 + 2 * sigma) & (s <= s1 - 2 * sigma)
    if body.sum() < 10:
        return True
    tb, vb, ib, sb = t[body], v[body], 1.0 / var[body], s[body] - 0.5 * (s0 + s1)
    # the seed line's offset and tilt (grid search maximising the line-spread-weighted signal)
    half = 0.5 * max(s1 - s0, 1.0)
    best, off, tilt = -np.inf, 0.0, 0.0
    for k in np.linspace(-2.0, 2.0, 9) / half:  # ends moved by up to 2 px
        for o in np.arange(-3.0, 3.01, 0.5):
            gain = float(np.sum(vb * np.interp(tb - o - k * sb, lsf_t, lsf_v, left=0.0, right=0.0) * ib))
            if gain > best:
                best, off, tilt = gain, float(o), float(k)
    if _width_scale(tb - off - tilt * sb, vb, ib, lsf) > config.max_width + 0.2:
        return False
    ang = angle + math.atan(tilt)
    mx, my = cx + 0.5 * (s0 + s1) * ux - off * uy, cy + 0.5 * (s0 + s1) * uy + off * ux
    contrast = _local_contrast(
        tile, bad, mx, my, math.cos(ang), math.sin(ang), -half + 2 * sigma, half - 2 * sigma, psf, lsf, amp
    )
    return bool(contrast >= config.min_contrast - 0.2)


def _best_segment_along(p, s, t, v, ivar, keep, edge: "_Edge", lsf) -> tuple[float, float, float] | None:
    """``(A, s0, s1)`` of the contiguous stretch of the profile with the highest S/N.

    The profile along the line ``p = (A, t0, dtheta, ...)`` is binned in
    1-pixel steps (line-spread-function weighted, masked pixels left out);
    over all stretches ``[i, j)`` the S/N of the mean amplitude,
    ``sum(a w) / sqrt(sum w)``, is maximal where a uniform trail begins and
    ends (its half-maximum points), whatever lies beyond.
    """
    lsf_t, lsf_v = lsf
    _, t0, dth = p[0], p[1], p[2]
    c, sn = math.cos(dth), math.sin(dth)
    sr = (s * c + t * sn)[keep]
    tr = (-s * sn + t * c - t0)[keep]
    g = np.interp(tr, lsf_t, lsf_v, left=0.0, right=0.0)
    if len(sr) < 10:
        return None
    lo = math.floor(sr.min())
    k = (np.floor(sr) - lo).astype(int)
    nb = int(k.max()) + 1
    sw = np.bincount(k, v[keep] * g * ivar[keep], nb)  # sum a_k w_k with a_k w_k = sum v g / var
    ww = np.bincount(k, g * g * ivar[keep], nb)
    cs = np.concatenate([[0.0], np.cumsum(sw)])
    cw = np.concatenate([[0.0], np.cumsum(ww)])
    i, j = np.triu_indices(nb + 1, k=1)
    num, den = cs[j] - cs[i], cw[j] - cw[i]
    with np.errstate(divide="ignore", invalid="ignore"):
        score = np.where((den > 0) & (num > 0), num / np.sqrt(den), -np.inf)
    best = int(np.argmax(score))
    if not np.isfinite(score[best]):
        return None
    bi, bj = int(i[best]), int(j[best])
    return float(num[best] / den[best]), float(lo + bi), float(lo + bj)


def _local_contrast(tile, bad, cx, cy, ux, uy, s_lo, s_hi, psf: PSF, lsf, amp: float) -> float:
    """The trail's amplitude with a local plane ``b0 + b1 t`` fitted under it, over ``amp``.

    Linear least squares over the pixels within ``4 FWHM`` of the trail's
    body, iteratively clipping pixels more than 4 sigma off (other sources).  About 1 for a trail on flat sky; near 0 (or negative) for a
    "trail" that is the edge of something broader.
    """
    if not (s_hi > s_lo and amp > 0):
        return 1.0
    lsf_t, lsf_v = lsf
    s, t, v, var, _, _ = _pixels_near_line(tile, bad, cx, cy, ux, uy, s_lo, s_hi, 4.0 * psf.fwhm + 2.0)
    if len(s) < 20:
        return 1.0
    w = 1.0 / np.sqrt(var)
    design = np.column_stack([np.interp(t, lsf_t, lsf_v, left=0.0, right=0.0), np.ones_like(t), t]) * w[:, None]
    target = v * w
    use = np.ones(len(t), bool)
    coef = np.zeros(3)
    for _ in range(3):  # clip the pixels of other sources in the band (4 sigma) and refit
        try:
            coef, *_ = np.linalg.lstsq(design[use], target[use], rcond=None)
        except np.linalg.LinAlgError:
            return 1.0
        new_use = np.abs(target - design @ coef) < 4.0
        if new_use.sum() < 20 or np.array_equal(new_use, use):
            break
        use = new_use
    return float(coef[0] / amp)


def _width_scale(t: np.ndarray, v: np.ndarray, ivar: np.ndarray, lsf) -> float:
    """Scale ``k`` of the line-spread function ``LSF(t / k) / k`` fitting the profile across best.

    Least squares with the amplitude solved for each ``k`` on a grid from
    0.5 to 3 (0.05 steps): cheap and free of local minima.
    """
    lsf_t, lsf_v = lsf
    best, best_k = np.inf, 1.0
    for k in np.arange(0.5, 3.0001, 0.05):
        g = np.interp(t / k, lsf_t, lsf_v, left=0.0, right=0.0) / k
        den = float(np.sum(g * g * ivar))
        if den <= 0:
            continue
        a = float(np.sum(v * g * ivar)) / den
        chi = float(np.sum((v - a * g) ** 2 * ivar))
        if chi < best:
            best, best_k = chi, float(k)
    return best_k


def _fit_trail(tile: Tile, bad: np.ndarray, cx, cy, angle, s_lo, s_hi, fit_lo, fit_hi, psf: PSF, lsf, det_snr: float) -> _Fit | None:
    """Maximum-likelihood fit of a PSF-convolved segment to the pixels around a line.

    The model of a pixel at distance ``s`` along and ``t`` across the line is
    ``A * LSF(t - t0) * [Phi((s - s0) / sigma) - Phi((s - s1) / sigma)]``
    (``LSF`` the PSF's line-spread function, ``sigma`` its Gaussian-equivalent
    width along the line); the line may turn by ``dtheta`` about the seed
    centre.  Parameters ``A, t0, dtheta, s0, s1``; residuals are weighted by
    the noise and passed through a soft-L1 loss so a star or a cosmic ray on
    the trail does not pull the fit.
    """
    lsf_t, lsf_v = lsf
    edge = _Edge.from_lsf(lsf)
    ux, uy = math.cos(angle), math.sin(angle)
    band = max(2.0 * psf.fwhm, 3.0) + 2.0
    s, t, v, var, py, px = _pixels_near_line(tile, bad, cx, cy, ux, uy, fit_lo, fit_hi, band)
    if len(s) < 10:
        return None
    sigma = max(psf.sigma, 0.5)
    ivar = 1.0 / var
    # starting amplitude: median over the seeds' extent of the line-spread-weighted profile
    g = np.interp(t, lsf_t, lsf_v, left=0.0, right=0.0)
    inner = (s >= s_lo) & (s <= s_hi)
    if inner.sum() < 5:
        inner = np.ones_like(s, bool)
    k = np.floor(s[inner] - s[inner].min()).astype(int)
    num = np.bincount(k, v[inner] * g[inner] * ivar[inner])
    den = np.bincount(k, g[inner] ** 2 * ivar[inner])
    amp0 = float(np.median(num[den > 0] / den[den > 0])) if np.any(den > 0) else 0.0
    if not amp0 > 0:
        amp0 = float(np.sum(v * g * ivar) / max(np.sum(g * g * ivar), 1e-30))
        if not amp0 > 0:
            return None
    w = np.sqrt(ivar)

    def model(p):
        amp, t0, dth, a0, a1 = p
        c, sn = math.cos(dth), math.sin(dth)
        sr = s * c + t * sn
        tr = -s * sn + t * c - t0
        return edge.model(sr, amp, a0, a1) * np.interp(tr, lsf_t, lsf_v, left=0.0, right=0.0)

    def resid(p):
        return (model(p) - v) * w

    dlsf_v = np.gradient(lsf_v, lsf_t)

    def jac(p):
        """Analytic derivatives of the weighted residuals (one model evaluation, not six)."""
        amp, t0, dth, a0, a1 = p
        c, sn = math.cos(dth), math.sin(dth)
        sr = s * c + t * sn
        tr = -s * sn + t * c - t0
        prof = edge.model(sr, 1.0, a0, a1)
        n0 = edge.density(sr - a0)
        n1 = edge.density(sr - a1)
        lsf_tr = np.interp(tr, lsf_t, lsf_v, left=0.0, right=0.0)
        dlsf = np.interp(tr, lsf_t, dlsf_v, left=0.0, right=0.0)
        d_sr_dth = -s * sn + t * c
        d_tr_dth = -s * c - t * sn
        out = np.empty((len(s), 5))
        out[:, 0] = prof * lsf_tr
        out[:, 1] = -amp * prof * dlsf
        out[:, 2] = amp * ((n0 - n1) * d_sr_dth * lsf_tr + prof * dlsf * d_tr_dth)
        out[:, 3] = -amp * n0 * lsf_tr
        out[:, 4] = amp * n1 * lsf_tr
        return out * w[:, None]

    span = max(s_hi - s_lo, 4.0 * psf.fwhm)
    dth_max = math.atan(4.0 * psf.fwhm / span) + math.radians(2.0)
    lo_b = [0.0, -band + 1.0, -dth_max, fit_lo - 3 * sigma, fit_lo - 3 * sigma]
    hi_b = [np.inf, band - 1.0, dth_max, fit_hi + 3 * sigma, fit_hi + 3 * sigma]
    p0 = np.clip([amp0, 0.0, 0.0, s_lo, s_hi], np.array(lo_b) + 1e-9, np.array(hi_b) - 1e-9)
    keep = np.ones(len(s), bool)

    def solve(start):
        return optimize.least_squares(
            lambda p: resid(p)[keep], start, jac=lambda p: jac(p)[keep], bounds=(lo_b, hi_b),
            x_scale=[amp0, 0.3, 0.3 / span, 1.0, 1.0],
            loss="soft_l1", f_scale=3.0, max_nfev=100,
        )

    try:
        res = solve(p0)
        # Sources on or beyond the trail (a star at its end pulls the end point): mask pixels
        # where the residual, filtered with the PSF, is a significant point source; refit.
        outliers = _compact_residuals(resid(res.x), py, px, psf)
        if outliers.any():
            keep = ~outliers
            if keep.sum() >= 10:
                res = solve(res.x)
        # The ends of a faint trail are poorly constrained locally (the soft-L1 fit can stop at
        # a noise dip or run on): search the profile along the fitted line globally for the
        # segment of highest signal-to-noise, then refine it locally.
        found = _best_segment_along(res.x, s, t, v, ivar, keep, edge, lsf)
        if found is not None:
            start = np.clip([found[0], res.x[1], res.x[2], found[1], found[2]], np.array(lo_b) + 1e-9, np.array(hi_b) - 1e-9)
            res = solve(start)
    except (ValueError, np.linalg.LinAlgError):
        return None
    amp, t0, dth, s0, s1 = (float(x) for x in res.x)
    if s1 < s0:
        s0, s1 = s1, s0
    try:
        cov = np.linalg.inv(res.jac.T @ res.jac)
        amp_err = float(math.sqrt(max(cov[0, 0], 0.0)))
    except np.linalg.LinAlgError:
        amp_err = float("nan")
    # the fitted line: through the pivot shifted by t0 across, turned by dtheta
    ang = angle + dth
    fux, fuy = math.cos(ang), math.sin(ang)
    pcx, pcy = cx - t0 * fuy, cy + t0 * fux
    # fill: median of the along-line profile inside the trail over A (1 for a uniform trail,
    # ~0 for two stars that a segment filter joined); chi2: robust reduced chi-square
    sr = s * math.cos(dth) + t * math.sin(dth)
    tr = -s * math.sin(dth) + t * math.cos(dth) - t0
    g = np.interp(tr, lsf_t, lsf_v, left=0.0, right=0.0)
    sel = (sr >= s0 + 2 * sigma) & (sr <= s1 - 2 * sigma)
    fill = 1.0
    if sel.sum() >= 10:
        kk = np.floor(sr[sel] - s0).astype(int)
        num = np.bincount(kk, v[sel] * g[sel] * ivar[sel])
        den = np.bincount(kk, g[sel] ** 2 * ivar[sel])
        ok = den > 0
        if ok.sum() >= 3 and amp > 0:
            fill = float(np.median(num[ok] / den[ok]) / amp)
    # gap: the most significant shortfall of a part of the trail below half the amplitude
    # (two stars a segment filter joined leave an empty middle; a trail does not)
    gap = _worst_part(sr, v * g * ivar, g * g * ivar, s0, s1, amp, psf) if s1 > s0 and amp > 0 else 0.0
    r = resid(res.x)[keep]
    chi2 = float(np.median(r * r) / 0.455)
    # width across the trail, in units of the PSF's: the scale of the line-spread function that
    # fits the trail's body best (a trail is exactly as wide as the PSF; a galaxy or a bright
    # star's halo is wider)
    body = keep & (sr >= s0 + 2 * sigma) & (sr <= s1 - 2 * sigma)
    width = _width_scale(tr[body], v[body], ivar[body], lsf) if body.sum() >= 10 else 1.0
    # contrast: the trail's amplitude over a local background plane across it, fitted over a
    # band twice as wide (a line drawn along the wing of a galaxy or a bright star has none)
    contrast = _local_contrast(tile, bad, pcx, pcy, fux, fuy, s0 + 2 * sigma, s1 - 2 * sigma, psf, lsf, amp)
    return _Fit(pcx, pcy, fux, fuy, s0, s1, amp, amp_err, det_snr, fill, chi2, gap, width, contrast)


def _window(tile: Tile, cx, cy, ux, uy, s_lo, s_hi, margin) -> tuple[float, float, bool, bool]:
    """The fit window along the line, limited by the tile's pixels; whether each limit is the image's edge."""
    ny, nx = np.shape(tile.image)
    lo, hi = s_lo - margin, s_hi + margin
    lo_img = hi_img = False
    lo_edge = hi_edge = False
    # Liang-Barsky against the tile's pixel box [-0.5, n - 0.5]
    for p, q_lo, q_hi, at_lo, at_hi in (
        (ux, -0.5 - cx, nx - 0.5 - cx, tile.origin[1] == 0, tile.origin[1] + nx >= tile.image_shape[1]),
        (uy, -0.5 - cy, ny - 0.5 - cy, tile.origin[0] == 0, tile.origin[0] + ny >= tile.image_shape[0]),
    ):
        if abs(p) < 1e-12:
            continue
        a, c = q_lo / p, q_hi / p
        if p > 0:  # increasing s moves towards the high side
            if a > lo:
                lo, lo_edge, lo_img = a, True, at_lo
            if c < hi:
                hi, hi_edge, hi_img = c, True, at_hi
        else:
            if c > lo:
                lo, lo_edge, lo_img = c, True, at_hi
            if a < hi:
                hi, hi_edge, hi_img = a, True, at_lo
    return lo, hi, (lo_edge and lo_img) or not lo_edge, (hi_edge and hi_img) or not hi_edge


def _to_frame(fit: "_Fit", cx, cy, ux, uy, lo: float, hi: float) -> tuple[float, float]:
    """Window limits ``[lo, hi]`` along the line ``(cx, cy) + s (ux, uy)``, in the fit's frame."""
    out = []
    for v in (lo, hi):
        px, py = cx + v * ux, cy + v * uy
        out.append((px - fit.cx) * fit.ux + (py - fit.cy) * fit.uy)
    return min(out), max(out)


def _clip_to_box(x0, y0, x1, y1, box) -> tuple[float, float] | None:
    """Parameter interval ``[u0, u1]`` of the segment inside ``box = (ymin, ymax, xmin, xmax)``."""
    ymin, ymax, xmin, xmax = box
    u0, u1 = 0.0, 1.0
    dx, dy = x1 - x0, y1 - y0
    for p, q in ((-dx, x0 - xmin), (dx, xmax - x0), (-dy, y0 - ymin), (dy, ymax - y0)):
        if abs(p) < 1e-12:
            if q < 0:
                return None
            continue
        r = q / p
        if p < 0:
            u0 = max(u0, r)
        else:
            u1 = min(u1, r)
    return (u0, u1) if u1 > u0 else None


# --------------------------------------------------------------------------- public


_ANGLE_BINS = 12


def _seed_groups(search: _Search, config: StreakExpertConfig, psf: PSF) -> list[tuple]:
    """Groups of seeds as lines on the tile grid: ``(cx, cy, angle, s_lo, s_hi, peak, anisotropy)``.

    Seeds are grouped by connectivity *within* overlapping bins of their best
    angle, so a trail is not swallowed by a blob of seeds around a bright
    neighbour; duplicates from overlapping bins are merged afterwards.
    """
    seeds = (search.line > search.threshold) & (search.line > config.line_over_point * search.point)
    if not seeds.any():
        return []
    b = search.b
    angle_bin = np.floor(search.angle / math.pi * _ANGLE_BINS).astype(int) % _ANGLE_BINS
    out = []
    for j in range(_ANGLE_BINS):
        sel = seeds & ((angle_bin == j) | (angle_bin == (j + 1) % _ANGLE_BINS))
        if not sel.any():
            continue
        labels, _ = ndimage.label(sel, structure=np.ones((3, 3), bool))
        for lab, sl in enumerate(ndimage.find_objects(labels), start=1):
            if sl is None:
                continue
            region = labels[sl] == lab
            yy, xx = np.nonzero(region)
            w = search.line[sl][region]
            angles = search.angle[sl][region]
            peak = int(np.argmax(w))
            # the group's angle: weighted median, unwrapped around the bin centre
            centre = (j + 1) * math.pi / _ANGLE_BINS
            unwrapped = (angles - centre + 0.5 * math.pi) % math.pi - 0.5 * math.pi + centre
            order = np.argsort(unwrapped)
            cum = np.cumsum(w[order])
            angle = float(unwrapped[order][np.searchsorted(cum, 0.5 * cum[-1])])
            ys = (yy + sl[0].start) * b + 0.5 * (b - 1)
            xs = (xx + sl[1].start) * b + 0.5 * (b - 1)
            cx, cy = float(np.average(xs, weights=w)), float(np.average(ys, weights=w))
            if len(xs) >= 5:
                # a long, thin group of seeds gives the angle far better than the filters' steps
                evals, evecs = np.linalg.eigh(np.cov(np.vstack([xs - cx, ys - cy]), aweights=w))
                if evals[1] > 25.0 * max(evals[0], 0.25 * b * b):
                    pca = math.atan2(evecs[1, 1], evecs[0, 1]) % math.pi
                    if abs((pca - angle + 0.5 * math.pi) % math.pi - 0.5 * math.pi) < math.radians(10.0):
                        angle = pca
            ux, uy = math.cos(angle), math.sin(angle)
            proj = (xs - cx) * ux + (ys - cy) * uy
            # anisotropy at the peak: the segment across the line must see much less than along it
            # (a blob or a star's wings look the same in every direction)
            piy, pix = np.array([yy[peak] + sl[0].start]), np.array([xx[peak] + sl[1].start])
            k = config.n_parts
            ang_pk = float(angles[peak])
            perp = max(float(_min_part_at(search, piy, pix, ang_pk + 0.5 * math.pi, lb, k)[0]) for lb in search.lengths_b)
            aniso = float(w[peak]) / max(perp, 1.0)
            out.append((cx, cy, angle % math.pi, float(proj.min()), float(proj.max()), float(w[peak]), aniso))
    return out


def _components(n: int, pairs: list[tuple[int, int]]) -> list[list[int]]:
    """Connected components of ``range(n)`` linked by ``pairs``, each sorted, ordered by first member."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    if not pairs:
        return [[i] for i in range(n)]
    i, j = np.asarray(pairs, dtype=np.int64).T
    graph = coo_matrix((np.ones(len(i)), (i, j)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    groups: dict[int, list[int]] = {}
    for k, lab in enumerate(labels):
        groups.setdefault(int(lab), []).append(k)
    return sorted(groups.values(), key=lambda g: g[0])


def _merge_lines(lines: list, gap: float, width: float, angle_tol: float = math.radians(10.0)) -> list:
    """Join collinear seed groups (one trail seen in two angle bins, or cut by a masked star).

    Two groups are joined when their angles agree within ``angle_tol``, the
    ends of each lie within ``width`` (plus 2 % of the distance) of the
    other's line, and they overlap or are at most ``gap`` apart along it.
    """
    n = len(lines)
    if n <= 1:
        return lines
    arr = np.array([line[:5] for line in lines], dtype=float)
    cx, cy, ang, lo, hi = arr.T
    ux, uy = np.cos(ang), np.sin(ang)
    ex = np.stack([cx + lo * ux, cx + hi * ux], axis=1)  # (n, 2) end x
    ey = np.stack([cy + lo * uy, cy + hi * uy], axis=1)
    pairs = []
    for i in range(n):
        dang = np.abs((ang - ang[i] + 0.5 * math.pi) % math.pi - 0.5 * math.pi)
        dx, dy = ex - cx[i], ey - cy[i]
        s = dx * ux[i] + dy * uy[i]
        t = -dx * uy[i] + dy * ux[i]
        tol = width + 0.02 * np.maximum(np.abs(s).max(axis=1), hi[i] - lo[i])
        ok = (dang <= angle_tol) & np.all(np.abs(t) <= tol[:, None], axis=1)
        ok &= (s.max(axis=1) >= lo[i] - gap) & (s.min(axis=1) <= hi[i] + gap)
        ok[: i + 1] = False
        pairs.extend((i, int(j)) for j in np.nonzero(ok)[0])
    groups = _components(n, pairs)
    merged = []
    for members in groups:
        # the axis of the longest member; the others extend it
        members.sort(key=lambda m: -(lines[m][4] - lines[m][3]))
        line = lines[members[0]]
        for m in members[1:]:
            line = _union(line, lines[m])
        merged.append(line)
    return merged


def _ends(line):
    cx, cy, a, lo, hi = line[:5]
    ux, uy = math.cos(a), math.sin(a)
    return np.array([[cx + lo * ux, cy + lo * uy], [cx + hi * ux, cy + hi * uy]])


def _collinear(a, b, gap: float, width: float, angle_tol: float = math.radians(10.0)) -> bool:
    """``b``'s ends lie within ``width`` of ``a``'s line and the two overlap or nearly touch."""
    cx, cy, ang, lo, hi = a[:5]
    dang = abs((ang - b[2] + 0.5 * math.pi) % math.pi - 0.5 * math.pi)
    if dang > angle_tol:
        return False
    ux, uy = math.cos(ang), math.sin(ang)
    eb = _ends(b)
    s = (eb[:, 0] - cx) * ux + (eb[:, 1] - cy) * uy
    t = -(eb[:, 0] - cx) * uy + (eb[:, 1] - cy) * ux
    length_b = hi - lo
    tol = width + 0.02 * max(abs(s).max(), length_b)
    if np.any(np.abs(t) > tol):
        return False
    return bool(s.max() >= lo - gap and s.min() <= hi + gap)


def _on_line(line, x: float, y: float, width: float) -> bool:
    """The point lies within ``width`` of the segment ``line``."""
    cx, cy, ang, lo, hi = line[:5]
    ux, uy = math.cos(ang), math.sin(ang)
    s = (x - cx) * ux + (y - cy) * uy
    t = -(x - cx) * uy + (y - cy) * ux
    return bool(abs(t) <= width and lo - width <= s <= hi + width)


def _union(a, b):
    cx, cy, ang, lo, hi, peak, aniso = a
    ux, uy = math.cos(ang), math.sin(ang)
    eb = _ends(b)
    s = (eb[:, 0] - cx) * ux + (eb[:, 1] - cy) * uy
    return (cx, cy, ang, min(lo, s.min()), max(hi, s.max()), max(peak, b[5]), aniso if peak >= b[5] else b[6])


def find_streaks(tile: Tile, *, config: StreakExpertConfig = StreakExpertConfig()) -> Table:
    """Trails crossing the tile's core, with end points, length, angle and flux.

    Parameters
    ----------
    tile : Tile
        Background-subtracted pixels with noise, mask and PSF.
    config : StreakExpertConfig
        Search and acceptance options.

    Returns
    -------
    astropy.table.Table
        One row per trail piece owned by the core (:data:`STREAK_COLUMNS`),
        global pixel coordinates; ``x, y`` is the middle of the owned part.
    """
    img = np.asarray(tile.image)
    if img.size == 0 or min(img.shape) < 4 or not np.any(~tile.bad):
        return _empty()
    psf = tile.psf
    bad = _unusable(tile, config)
    search = _coarse_search(tile, config, bad)
    lines = _seed_groups(search, config, psf)
    if not lines:
        return _empty()
    lines = _merge_lines(lines, gap=config.max_gap_fwhm * psf.fwhm, width=1.5 * psf.fwhm + search.b)
    lsf = line_spread_function(psf)
    oy, ox = tile.origin
    cy0, cy1, cx0, cx1 = tile.core
    min_len = config.min_length(psf.fwhm)
    longest = max(config.filter_lengths(psf.fwhm))
    rows = []
    width = psf.fwhm + search.b
    accepted: list[tuple] = []  # fitted trails as lines (tile coordinates)
    for cx, cy, angle, s_lo, s_hi, peak, aniso in sorted(lines, key=lambda r: -r[5]):
        if aniso < config.min_anisotropy:  # a blob, not a line: no need to fit
            continue
        # seeds lying on a trail already fitted are explained by it (whatever their angle: a
        # segment filter crossing a bright trail responds to it)
        if any(_on_line(a, cx, cy, 2.0 * width) for a in accepted):
            continue
        ux, uy = math.cos(angle), math.sin(angle)
        margin = 0.5 * longest + 4.0 * psf.fwhm
        lo, hi, lo_img, hi_img = _window(tile, cx, cy, ux, uy, s_lo, s_hi, margin)
        if hi - lo < 5:
            continue
        if not _profile_test(tile, bad, cx, cy, angle, s_lo, s_hi, lo, hi, psf, lsf, config, search.threshold):
            continue
        fit = _fit_trail(tile, bad, cx, cy, angle, s_lo, s_hi, lo, hi, psf, lsf, peak)
        # A faint trail's seeds may cover only part of it: while a fitted end runs into the
        # window's limit (not the tile's edge), grow the window there and fit again.
        for _ in range(3):
            if fit is None:
                break
            w_lo, w_hi = _to_frame(fit, cx, cy, ux, uy, lo, hi)
            near_lo = fit.s0 - w_lo < 3.0 * psf.fwhm
            near_hi = w_hi - fit.s1 < 3.0 * psf.fwhm
            if not (near_lo or near_hi):
                break
            extra = max(2.0 * margin, fit.s1 - fit.s0)
            lo2, hi2, _, _ = _window(tile, fit.cx, fit.cy, fit.ux, fit.uy, fit.s0 - (extra if near_lo else 0.0),
                                     fit.s1 + (extra if near_hi else 0.0), margin)
            if hi2 - lo2 <= (w_hi - w_lo) + 1.0:
                break  # the tile's edge: nothing more to see here (stitching joins the rest)
            refit = _fit_trail(tile, bad, fit.cx, fit.cy, math.atan2(fit.uy, fit.ux), fit.s0, fit.s1, lo2, hi2,
                               psf, lsf, peak)
            if refit is None:
                break
            cx, cy, ux, uy, lo, hi = fit.cx, fit.cy, fit.ux, fit.uy, lo2, hi2
            fit = refit
        if fit is None:
            continue
        # the window in the fit's own frame, and whether each of its limits is a tile's edge
        lo, hi = _to_frame(fit, cx, cy, ux, uy, lo, hi)
        _, _, lo_img, hi_img = _window(tile, fit.cx, fit.cy, fit.ux, fit.uy, lo - 1.0, hi + 1.0, 0.0)
        length = fit.s1 - fit.s0
        snr_total = fit.amp / fit.amp_err if fit.amp_err > 0 else 0.0
        if length < min_len or not snr_total >= search.threshold:
            continue
        if (
            abs(fit.fill - 1.0) > config.max_fill_deviation
            or fit.gap < -config.gap_sigma
            or fit.width > config.max_width
            or fit.contrast < config.min_contrast
        ):
            continue
        fitted = _as_line(fit)
        mid = fit.point(0.5 * (fit.s0 + fit.s1))
        if any(_collinear(a, fitted, 0.0, width) or _collinear(fitted, a, 0.0, width) for a in accepted) or any(
            _on_line(a, mid[0], mid[1], 2.0 * width) for a in accepted
        ):
            continue
        accepted.append(fitted)
        trunc0 = (not lo_img) and fit.s0 <= lo + 2.0 * psf.sigma + 1.0
        trunc1 = (not hi_img) and fit.s1 >= hi - 2.0 * psf.sigma - 1.0
        gx0, gy0 = fit.point(fit.s0)
        gx1, gy1 = fit.point(fit.s1)
        gx0, gx1, gy0, gy1 = gx0 + ox, gx1 + ox, gy0 + oy, gy1 + oy
        if math.atan2(gy1 - gy0, gx1 - gx0) < 0 or math.atan2(gy1 - gy0, gx1 - gx0) >= math.pi - 1e-12:
            gx0, gy0, gx1, gy1, trunc0, trunc1 = gx1, gy1, gx0, gy0, trunc1, trunc0
        clip = _clip_to_box(gx0, gy0, gx1, gy1, (cy0 - 0.5, cy1 - 0.5, cx0 - 0.5, cx1 - 0.5))
        if clip is None:
            continue
        u0, u1 = clip
        owned = (u1 - u0) * length
        mx = gx0 + 0.5 * (u0 + u1) * (gx1 - gx0)
        my = gy0 + 0.5 * (u0 + u1) * (gy1 - gy0)
        px = int(np.clip(math.floor(mx + 0.5), cx0, cx1 - 1))
        py = int(np.clip(math.floor(my + 0.5), cy0, cy1 - 1))
        flux = fit.amp * owned
        flux_err = fit.amp_err * owned
        flags = _flags(tile, gx0, gy0, gx1, gy1)
        rows.append(
            dict(
                x=mx, y=my, x_peak=px, y_peak=py, flux=flux, flux_err=flux_err,
                snr=flux / flux_err if flux_err > 0 else np.nan, det_snr=peak, kind="streak",
                expert="streak", flags=flags, x0=gx0, y0=gy0, x1=gx1, y1=gy1, length=length,
                angle_deg=math.degrees(math.atan2(gy1 - gy0, gx1 - gx0)) % 180.0,
                line_flux=fit.amp, owned_length=owned, anisotropy=aniso, fill=fit.fill, chi2=fit.chi2, gap=fit.gap, width=fit.width, contrast=fit.contrast, trunc0=trunc0, trunc1=trunc1, n_pieces=1,
            )
        )
    if not rows:
        return _empty()
    out = Table({name: np.array([r[name] for r in rows], dtype=dt) for name, dt in STREAK_COLUMNS})
    out.sort(["y_peak", "x_peak"])
    return out


def _as_line(fit: _Fit) -> tuple[float, float, float, float, float]:
    """The fitted trail as ``(cx, cy, angle in [0, pi), s_lo, s_hi)``, the form the line tests take."""
    angle = math.atan2(fit.uy, fit.ux)
    sign = 1.0 if 0.0 <= angle < math.pi else -1.0  # folding the angle reverses the direction
    a, b = fit.s0 * sign, fit.s1 * sign
    return (fit.cx, fit.cy, angle % math.pi, min(a, b), max(a, b))


def _flags(tile: Tile, x0, y0, x1, y1) -> int:
    flags = 0
    ny, nx = tile.image_shape
    margin = 2.0
    for x, y in ((x0, y0), (x1, y1)):
        if x < margin or y < margin or x > nx - 1 - margin or y > ny - 1 - margin:
            flags |= int(SourceFlag.EDGE)
    return flags


def stitch_streaks(
    table: Table,
    *,
    psf: PSF,
    config: StreakExpertConfig = StreakExpertConfig(),
    image_shape: tuple[int, int] | None = None,
) -> Table:
    """Join the per-tile pieces of each trail into one object.

    Pieces are joined when they are collinear (each one's end points within
    ``1.5 FWHM`` of the other's line) and their fitted extents overlap or
    nearly touch.  The joined trail's end points are the non-truncated ends
    of its pieces (the median where several tiles saw the same end), its flux
    the sum of the pieces' owned fluxes (each pixel of the trail is owned by
    one core), its flux error their quadrature sum.

    Parameters
    ----------
    table : Table
        The streak expert's rows from every tile (:data:`STREAK_COLUMNS`).
    psf : PSF
        The PSF (tolerances scale with its FWHM).
    config : StreakExpertConfig
        ``max_gap_fwhm`` bounds the gap between joined pieces.
    image_shape : tuple of int, optional
        For the edge flag of joined trails.

    Returns
    -------
    Table
        One row per trail, sorted by ``(y_peak, x_peak)``.
    """
    n = len(table)
    if n <= 1:
        return table
    x0, y0 = np.asarray(table["x0"], float), np.asarray(table["y0"], float)
    x1, y1 = np.asarray(table["x1"], float), np.asarray(table["y1"], float)
    width = 1.5 * psf.fwhm
    gap = config.max_gap_fwhm * psf.fwhm
    lines = []
    for i in range(n):
        ang = math.atan2(y1[i] - y0[i], x1[i] - x0[i])
        length = math.hypot(x1[i] - x0[i], y1[i] - y0[i])
        lines.append((x0[i], y0[i], ang, 0.0, length, 0.0, 0.0))
    pairs = [
        (i, j)
        for i in range(n)
        for j in range(i + 1, n)
        if _collinear(lines[i], lines[j], gap, width) and _collinear(lines[j], lines[i], gap, width)
    ]
    groups = _components(n, pairs)
    if len(groups) == n:
        return table
    keep_rows = []
    for members in groups:
        if len(members) == 1:
            keep_rows.append({c: table[c][members[0]] for c in table.colnames})
            continue
        keep_rows.append(_join(table, members, image_shape))
    out = Table({c: np.array([r[c] for r in keep_rows], dtype=table[c].dtype) for c in table.colnames})
    out.sort(["y_peak", "x_peak"])
    return out


def _join(table: Table, members: list[int], image_shape) -> dict:
    """One trail from its pieces (see :func:`stitch_streaks`)."""
    sub = table[members]
    # axis of the longest piece
    k = int(np.argmax(np.asarray(sub["length"])))
    ax0, ay0 = float(sub["x0"][k]), float(sub["y0"][k])
    ang = math.atan2(float(sub["y1"][k]) - ay0, float(sub["x1"][k]) - ax0)
    ux, uy = math.cos(ang), math.sin(ang)

    def s_of(x, y):
        return (np.asarray(x, float) - ax0) * ux + (np.asarray(y, float) - ay0) * uy

    s0, s1 = s_of(sub["x0"], sub["y0"]), s_of(sub["x1"], sub["y1"])
    lo_ok = ~np.asarray(sub["trunc0"], bool)
    hi_ok = ~np.asarray(sub["trunc1"], bool)
    lo = float(np.median(s0[lo_ok])) if lo_ok.any() else float(s0.min())
    hi = float(np.median(s1[hi_ok])) if hi_ok.any() else float(s1.max())
    # the perpendicular offset: flux-weighted mean of the pieces' mid-lines
    t_mid = -(0.5 * (np.asarray(sub["x0"]) + np.asarray(sub["x1"])) - ax0) * uy + (
        0.5 * (np.asarray(sub["y0"]) + np.asarray(sub["y1"])) - ay0
    ) * ux
    wts = np.maximum(np.asarray(sub["owned_length"], float), 1e-6)
    t = float(np.average(t_mid, weights=wts))
    bx, by = ax0 - t * uy, ay0 + t * ux
    gx0, gy0, gx1, gy1 = bx + lo * ux, by + lo * uy, bx + hi * ux, by + hi * uy
    if math.atan2(gy1 - gy0, gx1 - gx0) < 0:
        gx0, gy0, gx1, gy1 = gx1, gy1, gx0, gy0
    flux = float(np.sum(sub["flux"]))
    flux_err = float(np.sqrt(np.sum(np.asarray(sub["flux_err"], float) ** 2)))
    owned = float(np.sum(sub["owned_length"]))
    mx, my = 0.5 * (gx0 + gx1), 0.5 * (gy0 + gy1)
    row = {c: sub[c][0] for c in sub.colnames}
    flags = int(np.bitwise_or.reduce(np.asarray(sub["flags"], np.int64)))
    if image_shape is not None:
        ny, nx = image_shape
        flags &= ~int(SourceFlag.EDGE)
        for x, y in ((gx0, gy0), (gx1, gy1)):
            if x < 2 or y < 2 or x > nx - 3 or y > ny - 3:
                flags |= int(SourceFlag.EDGE)
    row.update(
        x=mx, y=my, x_peak=int(math.floor(mx + 0.5)), y_peak=int(math.floor(my + 0.5)), flux=flux,
        flux_err=flux_err, snr=flux / flux_err if flux_err > 0 else np.nan,
        det_snr=float(np.max(sub["det_snr"])), flags=flags, x0=gx0, y0=gy0, x1=gx1, y1=gy1,
        length=math.hypot(gx1 - gx0, gy1 - gy0), angle_deg=math.degrees(math.atan2(gy1 - gy0, gx1 - gx0)) % 180.0,
        line_flux=flux / owned if owned > 0 else float(np.median(sub["line_flux"])), owned_length=owned,
        trunc0=bool(not lo_ok.any()), trunc1=bool(not hi_ok.any()), n_pieces=int(np.sum(sub["n_pieces"])),
    )
    return row

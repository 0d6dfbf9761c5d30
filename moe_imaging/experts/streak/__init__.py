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

Modules
-------
:mod:`.config`      :class:`StreakExpertConfig`
:mod:`.prior`       :func:`streak_prior_from_header`
:mod:`.columns`     :data:`STREAK_COLUMNS`, the empty table
:mod:`.geometry`    segment samples, windows, clipping, line tests and merging
:mod:`.filters`     binning, binned PSF, segment kernels, the angle grid
:mod:`.masks`       pixels the search and fits leave out
:mod:`.search`      the coarse segment-filter search and seed groups
:mod:`.lsf`         line- and edge-spread functions (:func:`line_spread_function`)
:mod:`.measures`    pixels near a line; gap, ends, contrast and width measures
:mod:`.fit`         the cheap profile test and the maximum-likelihood fit
:mod:`.find`        :func:`find_streaks`: one tile, search to rows
:mod:`.stitch`      :func:`stitch_streaks`: pieces across tiles joined
:mod:`.expert`      :class:`StreakExpert`
"""

from __future__ import annotations

from .columns import STREAK_COLUMNS
from .config import StreakExpertConfig
from .expert import StreakExpert
from .find import find_streaks
from .lsf import line_spread_function
from .prior import streak_prior_from_header
from .stitch import stitch_streaks

__all__ = [
    "StreakExpertConfig",
    "StreakExpert",
    "STREAK_COLUMNS",
    "find_streaks",
    "stitch_streaks",
    "streak_prior_from_header",
    "line_spread_function",
]

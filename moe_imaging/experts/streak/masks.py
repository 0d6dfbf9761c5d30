"""Pixels the trail search and fits leave out (:func:`_unusable`).

Masked and non-finite pixels, saturated stars grown by their size (their
cores and bleed trails are lines, but not trails) and pixels sharper than
the PSF allows (cosmic rays, hot pixels): those lines are the artifact
expert's.

Package-internal: the names are private to :mod:`moe_imaging.experts.streak`.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from contracts.flags import MaskBit

from ...tile import Tile
from .config import StreakExpertConfig

__all__ = ["_unusable"]


def _unusable(tile: Tile, config: StreakExpertConfig) -> np.ndarray:
    """Pixels the trail search ignores.

    Besides masked pixels: saturated regions grown by ``2 FWHM`` plus their
    width across columns (a saturated
    star's core and its bleed trail are lines too, but not trails) and pixels
    sharper than the PSF allows (cosmic rays, hot pixels; a trail is
    PSF-convolved), grown by one pixel.
    """
    from ..artifact import _sharp_significance, psf_peak_ratio

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

"""The one registry of bit flags: pixel mask bits and detection quality flags.

Two registries live here, modelled on photutils ``psf/flags.py`` and the Rubin
mask planes:

* :class:`MaskBit` marks *pixels* (the mask plane of an exposure);
* :class:`SourceFlag` marks *detections* (the ``flags`` column of a catalog).

Every bit has a one-line description (:func:`describe`), which is written into
catalog metadata so a catalog explains its own flags.
"""

from __future__ import annotations

import enum

import numpy as np

__all__ = ["MaskBit", "SourceFlag", "describe", "decode", "MASK_DESCRIPTIONS", "FLAG_DESCRIPTIONS"]


class MaskBit(enum.IntFlag):
    """Pixel mask bits (``uint16`` mask plane)."""

    BAD = 1
    """Pixel flagged bad by the input's own mask plane or zero weight."""
    NONFINITE = 2
    """Pixel value is NaN or infinite."""
    SATURATED = 4
    """Pixel at or above the saturation level (header SATURATE)."""


class SourceFlag(enum.IntFlag):
    """Detection quality flags (``int32`` ``flags`` column)."""

    EDGE = 1
    """The PSF footprint runs off the image edge."""
    SATURATED = 2
    """A saturated pixel lies within the PSF core of the detection."""
    MASKED = 4
    """Masked (bad or non-finite) pixels lie within the PSF core."""
    BLENDED = 8
    """Another detection lies within the blend radius; photometry may be biased."""
    TOO_SHARP = 16
    """More concentrated than the PSF allows (cosmic-ray or hot-pixel like)."""


MASK_DESCRIPTIONS: dict[str, str] = {
    "BAD": "bad pixel from the input mask plane or zero weight",
    "NONFINITE": "pixel value is NaN or infinite",
    "SATURATED": "pixel at or above the saturation level",
}

FLAG_DESCRIPTIONS: dict[str, str] = {
    "EDGE": "PSF footprint runs off the image edge",
    "SATURATED": "saturated pixel within the PSF core",
    "MASKED": "masked (bad or non-finite) pixel within the PSF core",
    "BLENDED": "another detection within the blend radius",
    "TOO_SHARP": "sharper than the PSF allows (cosmic-ray or hot-pixel like)",
}


def describe(registry: type[enum.IntFlag] = SourceFlag) -> dict[str, tuple[int, str]]:
    """Return ``{name: (bit value, description)}`` for a flag registry."""
    table = FLAG_DESCRIPTIONS if registry is SourceFlag else MASK_DESCRIPTIONS
    return {member.name: (int(member.value), table[member.name]) for member in registry}


def decode(value: int, registry: type[enum.IntFlag] = SourceFlag) -> list[str]:
    """Return the names of the bits set in ``value``.

    Examples
    --------
    >>> decode(SourceFlag.EDGE | SourceFlag.BLENDED)
    ['EDGE', 'BLENDED']
    """
    value = int(np.int64(value))
    return [m.name for m in registry if value & m.value]

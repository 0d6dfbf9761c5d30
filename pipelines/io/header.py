"""What a FITS header says: merged headers, the celestial WCS, observation metadata.

:class:`ExposureMeta` collects gain, read noise, saturation, exposure time,
PSF size, pixel scale, zero point, pixel unit, observation mode and target
from a science header (merged with the primary header, the ``INHERIT``
convention); :func:`_oversampling` reads a PSF file's oversampling keywords.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS
from astropy.wcs.utils import proj_plane_pixel_scales

from .hdus import _quiet

__all__ = ["ExposureMeta"]

# Keywords never inherited from the primary header: they describe the
# primary HDU's own structure, data or checksum.
_NOT_INHERITED = frozenset(
    {
        "SIMPLE", "BITPIX", "NAXIS", "EXTEND", "XTENSION", "PCOUNT", "GCOUNT",
        "GROUPS", "EXTNAME", "EXTVER", "EXTLEVEL", "INHERIT", "BSCALE", "BZERO",
        "BLANK", "DATAMIN", "DATAMAX", "CHECKSUM", "DATASUM", "END", "COMMENT",
        "HISTORY", "",
    }
)  # fmt: skip
_NAXIS_KEY = re.compile(r"^NAXIS\d+$")
_WCS_KEY = re.compile(
    r"^(WCSAXES|WCSNAME|CTYPE|CRPIX|CRVAL|CDELT|CUNIT|CROTA|CD\d+_\d+|PC\d+_\d+|"
    r"PV\d+_\d+|PS\d+_\d+|LONPOLE|LATPOLE|RADESYS|RADECSYS|EQUINOX|EPOCH|"
    r"A_|B_|AP_|BP_)"
)

_OVERSAMPLING_KEYS = ("OVERSAMP", "OVERSAMPLE", "PSFOVER")
_OVERSAMPLING_TEXT = (
    # "4-times oversampling", "4x oversampled", "4 times over-sampled"
    re.compile(r"(\d+(?:\.\d+)?)\s*-?\s*(?:times|x)\s*-?\s*over-?sampl", re.IGNORECASE),
    # "oversampled by 4", "oversampling factor of 4", "oversampling: 4"
    re.compile(
        r"over-?sampl\w*\s*(?:by\s+)?(?:a\s+)?(?:factor\s*)?(?:of\s+)?[:=]?\s*(\d+(?:\.\d+)?)",
        re.IGNORECASE,
    ),
)


@dataclass(frozen=True)
class ExposureMeta:
    """Observation metadata read from a FITS header.

    Every value is ``None`` when the header does not carry it (or carries a
    value that is not a usable number).

    Attributes
    ----------
    gain : float or None
        Detector gain in e-/ADU (``GAIN``, else ``EGAIN``); positive.
    rdnoise : float or None
        Read noise in electrons (``RDNOISE``, ``READNOIS``, ``RON``); >= 0.
    saturate : float or None
        Saturation level in ADU, on the scaled pixel values (``SATURATE``,
        ``SATLEVEL``); positive.
    exptime : float or None
        Exposure time in seconds (``EXPTIME``, ``EXPOSURE``); >= 0.
    fwhm_px : float or None
        PSF full width at half maximum in pixels: the ``FWHM`` keyword (taken
        to be in pixels), else ``SEEING`` (arcsec) divided by ``pixscale``.
    fwhm_source : str or None
        ``'header:FWHM'`` or ``'header:SEEING'``; ``None`` when ``fwhm_px`` is.
    pixscale : float or None
        Pixel scale in arcsec/pixel: ``PIXSCALE``/``SECPIX``, else the mean of
        the celestial WCS's projection-plane pixel scales.
    magzp : float or None
        Photometric zero point in magnitudes (``MAGZP``, ``MAGZERO``, ``ZP``).
    bunit : str
        Unit of the pixel values (``BUNIT``; ``'adu'`` when absent or blank).
    obsmode : str
        Observation mode (``OBSMODE``, lower case; ``'sidereal'`` when absent).
    object_name : str or None
        Target name (``OBJECT``).
    """

    gain: float | None
    rdnoise: float | None
    saturate: float | None
    exptime: float | None
    fwhm_px: float | None
    fwhm_source: str | None
    pixscale: float | None
    magzp: float | None
    bunit: str
    obsmode: str
    object_name: str | None


def _merged_header(hdus: Sequence[Any], index: int) -> fits.Header:
    """Header of HDU ``index`` with missing keywords inherited from the primary."""
    header = hdus[index].header.copy()
    if index == 0 or header.get("INHERIT", True) is False:
        return header
    own_wcs = any(_WCS_KEY.match(key) for key in header.keys())
    present = set(header.keys())
    for card in hdus[0].header.cards:
        try:
            key = card.keyword
        except Exception:
            continue
        if (
            key in _NOT_INHERITED
            or key in present
            or _NAXIS_KEY.match(key)
            or (own_wcs and _WCS_KEY.match(key))
        ):
            continue
        try:
            header.append(fits.Card.fromstring(card.image), end=True)
        except Exception:
            continue
        present.add(key)
    return header


def _celestial_wcs(header: fits.Header) -> WCS | None:
    """The 2-D celestial WCS of the image axes, or ``None``."""
    try:
        with _quiet():
            full = WCS(header)
            if not full.has_celestial or {full.wcs.lng, full.wcs.lat} != {0, 1}:
                return None
            celestial = full.sub([1, 2])
            scales = proj_plane_pixel_scales(celestial)
    except Exception:
        return None
    if not np.all(np.isfinite(scales)) or not np.all(scales > 0):
        return None
    return celestial


def _number(header: fits.Header, keys: Sequence[str], *, low: float | None = None,
            strict: bool = False) -> float | None:  # fmt: skip
    """First usable float among ``keys``: finite and ``> low`` (or ``>=``)."""
    for key in keys:
        try:
            value = header.get(key)
        except Exception:
            continue
        if value is None or isinstance(value, bool):
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        if not math.isfinite(number):
            continue
        if low is not None and (number <= low if strict else number < low):
            continue
        return number
    return None


def _text(header: fits.Header, key: str) -> str | None:
    """Stripped string value of ``key``, ``None`` when absent or blank."""
    try:
        value = header.get(key)
    except Exception:
        return None
    if value is None or isinstance(value, bool):
        return None
    text = str(value).strip()
    return text or None


def _exposure_meta(header: fits.Header, wcs: WCS | None) -> ExposureMeta:
    """Collect :class:`ExposureMeta` from a (merged) header and its WCS."""
    pixscale = _number(header, ("PIXSCALE", "SECPIX"), low=0.0, strict=True)
    if pixscale is None and wcs is not None:
        scales = proj_plane_pixel_scales(wcs) * 3600.0  # celestial axes are in deg
        pixscale = float(np.mean(scales))
    fwhm_px = _number(header, ("FWHM",), low=0.0, strict=True)
    fwhm_source = "header:FWHM" if fwhm_px is not None else None
    if fwhm_px is None:
        seeing = _number(header, ("SEEING",), low=0.0, strict=True)
        if seeing is not None and pixscale is not None:
            fwhm_px = seeing / pixscale
            fwhm_source = "header:SEEING"
    return ExposureMeta(
        gain=_number(header, ("GAIN", "EGAIN"), low=0.0, strict=True),
        rdnoise=_number(header, ("RDNOISE", "READNOIS", "RON"), low=0.0),
        saturate=_number(header, ("SATURATE", "SATLEVEL"), low=0.0, strict=True),
        exptime=_number(header, ("EXPTIME", "EXPOSURE"), low=0.0),
        fwhm_px=fwhm_px,
        fwhm_source=fwhm_source,
        pixscale=pixscale,
        magzp=_number(header, ("MAGZP", "MAGZERO", "ZP")),
        bunit=_text(header, "BUNIT") or "adu",
        obsmode=(_text(header, "OBSMODE") or "sidereal").lower(),
        object_name=_text(header, "OBJECT"),
    )


def _oversampling(header: fits.Header, image_pixscale: float | None) -> float:
    """PSF pixels per image pixel (see :func:`read_psf_image`)."""
    factor = _number(header, _OVERSAMPLING_KEYS, low=0.0, strict=True)
    if factor is not None:
        return factor
    texts: list[str] = []
    for key in ("COMMENT", "HISTORY"):
        try:
            texts.extend(str(t) for t in header.get(key, []))
        except Exception:
            continue
    for text in texts:
        for pattern in _OVERSAMPLING_TEXT:
            found = pattern.search(text)
            if found and float(found.group(1)) > 0:
                return float(found.group(1))
    psf_scale = _number(header, ("PIXSCALE", "SECPIX", "PSFSCALE"), low=0.0, strict=True)
    if psf_scale is not None and image_pixscale is not None and image_pixscale > 0:
        return float(image_pixscale) / psf_scale
    return 1.0

"""The trail length an observation's header predicts (:func:`streak_prior_from_header`)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = ["streak_prior_from_header"]


def streak_prior_from_header(header: Mapping[str, Any] | None, pixscale: float | None = None) -> float | None:
    """Trail length (pixels) the header predicts, or ``None``.

    The length is ``rate * EXPTIME / pixel scale``, with the rate (arcsec/s)
    from ``RATE``, or from ``RA_RATE`` and ``DEC_RATE`` (quadrature sum), and
    the pixel scale from ``pixscale`` or ``PIXSCALE``.  In rate-tracking mode
    (``OBSMODE`` = ``rate``/``nonsidereal``) the rate is the telescope's, and
    the *stars* trail by that length; in sidereal mode it is a known mover's.
    Without a rate (ordinary sidereal exposures) there is no prior and the
    expert searches all lengths.

    Parameters
    ----------
    header : mapping or None
        The exposure's FITS header (any mapping of keywords to values).
    pixscale : float, optional
        Pixel scale in arcsec per pixel; default ``PIXSCALE`` from the header.

    Returns
    -------
    float or None
        The trail length in pixels, or ``None`` without a usable rate,
        exposure time or pixel scale, or when the trail is under a pixel.
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

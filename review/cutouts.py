"""Cutouts of review items: a FITS stamp and PNG renderings, content-addressed.

For each item :func:`render_cutouts` cuts a ``cutout_size`` stamp around the
source with :class:`astropy.nddata.Cutout2D` (partial at the image edge, the
outside filled with NaN; the WCS, when given, is cut with it into the FITS
header) and renders PNGs at the configured zoom levels: zoom ``z`` shows the
central ``cutout_size / z`` pixels magnified to ``cutout_display`` screen
pixels (nearest neighbour, so pixels stay visible).

The display scale comes from :mod:`astropy.visualization`, computed once on
the whole stamp so every zoom has the same scale: survey images use
``ZScaleInterval`` with a linear stretch (``stretch="zscale"``) or a 99.5 %
interval with ``AsinhStretch`` (``"asinh"``); microscopy images use a
``PercentileInterval``.  The result is encoded as 8-bit grey PNG with Pillow.
Survey PNGs are flipped so that +y is up (the FITS convention); microscopy
PNGs keep row 0 at the top, as microscopes show them.

Every blob is named by the SHA-256 hex digest of its bytes, so the same stamp
is stored once, and a digest is checked to be 64 hex characters before any
lookup (:func:`review.store.valid_digest`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import warnings
from typing import Any

import numpy as np

from .config import ReviewConfig
from .errors import ReviewError

__all__ = ["MEDIA_FITS", "MEDIA_PNG", "Blob", "as_float_image", "cutout_stamp", "display_limits", "render_cutouts", "render_png"]

MEDIA_FITS = "application/fits"
MEDIA_PNG = "image/png"


@dataclasses.dataclass(frozen=True)
class Blob:
    """Bytes with their media type and SHA-256 hex digest."""

    content: bytes
    media_type: str
    digest: str

    @classmethod
    def of(cls, content: bytes, media_type: str) -> Blob:
        return cls(content, media_type, hashlib.sha256(content).hexdigest())


def as_float_image(image: Any) -> Any:
    """``image`` itself if it holds floats, else a float32 copy (partial cutouts are filled with NaN).

    Convert once before cutting many stamps from an integer image.
    """
    dtype = getattr(image, "dtype", None)
    if dtype is not None and np.issubdtype(dtype, np.floating):
        return image
    return np.asarray(image, dtype=np.float32)


def cutout_stamp(image: Any, x: float, y: float, size: int, wcs=None):
    """A ``size`` x ``size`` :class:`~astropy.nddata.Cutout2D` centred on ``(x, y)`` (0-based pixels).

    Pixels outside the image are NaN.  ``image`` may be any 2-D array-like
    that slices lazily (a memory-mapped FITS section reads only the stamp).
    """
    from astropy.nddata import Cutout2D
    from astropy.nddata.utils import NoOverlapError

    data = as_float_image(image)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return Cutout2D(data, (x, y), (size, size), wcs=wcs, mode="partial", fill_value=np.nan, copy=True)
    except NoOverlapError:
        raise ReviewError(f"cutout at ({x:.1f}, {y:.1f}): outside the image of shape {np.shape(image)}") from None


def display_limits(stamp: np.ndarray, *, mode: str, stretch: str, percentile: float) -> tuple[float, float]:
    """The ``(vmin, vmax)`` display interval of a stamp (finite pixels only)."""
    from astropy.visualization import PercentileInterval, ZScaleInterval

    finite = stamp[np.isfinite(stamp)]
    if finite.size == 0:
        return 0.0, 1.0
    if mode == "microscopy":
        interval = PercentileInterval(percentile)
    elif stretch == "zscale":
        interval = ZScaleInterval()
    else:
        interval = PercentileInterval(99.5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        vmin, vmax = interval.get_limits(finite)
    if not (np.isfinite(vmin) and np.isfinite(vmax)) or vmax <= vmin:
        vmin, vmax = float(finite.min()), float(finite.max())
        if vmax <= vmin:
            vmax = vmin + 1.0
    return float(vmin), float(vmax)


def render_png(stamp: np.ndarray, limits: tuple[float, float], *, zoom: int, display: int, mode: str,
               stretch: str) -> bytes:
    """An 8-bit grey PNG of the central ``len(stamp) / zoom`` pixels magnified to ``display`` pixels."""
    from astropy.visualization import AsinhStretch, ImageNormalize, LinearStretch
    from PIL import Image

    n = stamp.shape[0]
    side = max(1, n // zoom)
    lo = (n - side) // 2
    view = stamp[lo:lo + side, lo:lo + side]
    vmin, vmax = limits
    kind = AsinhStretch() if (mode == "survey" and stretch == "asinh") else LinearStretch()
    norm = ImageNormalize(vmin=vmin, vmax=vmax, stretch=kind, clip=True)
    with np.errstate(invalid="ignore"):
        scaled = np.asarray(norm(np.nan_to_num(view, nan=vmin)), dtype=float)
    u8 = np.clip(np.round(np.nan_to_num(scaled, nan=0.0) * 255.0), 0, 255).astype(np.uint8)
    if mode == "survey":
        u8 = u8[::-1]  # +y up, as DS9 shows FITS images
    img = Image.fromarray(np.ascontiguousarray(u8), mode="L")
    if img.size != (display, display):
        img = img.resize((display, display), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=3)
    return buf.getvalue()


def render_cutouts(image: Any, x: float, y: float, *, wcs=None, mode: str = "survey",
                   config: ReviewConfig | None = None, pixel_scale: float | None = None) -> dict[str, Blob]:
    """The FITS stamp and the PNGs of one source.

    Parameters
    ----------
    image : 2-D array-like
        The image (survey exposure or microscopy plane).
    x, y : float
        0-based pixel position of the source.
    wcs : astropy.wcs.WCS, optional
        The image's WCS; the stamp's WCS goes into the FITS header.
    mode : str
        ``"survey"`` or ``"microscopy"`` (display stretch and orientation).
    config : ReviewConfig, optional
        ``cutout_size``, ``cutout_zooms``, ``cutout_display``, ``stretch``, ``percentile``.
    pixel_scale : float, optional
        Written to the FITS header (``PIXSCALE``).

    Returns
    -------
    dict
        ``{"fits": Blob, "png_zoom<z>": Blob, ...}``.
    """
    from astropy.io import fits

    config = config if config is not None else ReviewConfig()
    cut = cutout_stamp(image, x, y, config.cutout_size, wcs=wcs)
    stamp = np.asarray(cut.data, dtype=np.float32)
    header = cut.wcs.to_header() if cut.wcs is not None else fits.Header()
    ox, oy = cut.origin_original
    header["ORIGX"] = (int(ox), "0-based image x of stamp pixel 0")
    header["ORIGY"] = (int(oy), "0-based image y of stamp pixel 0")
    header["SRCX"] = (float(x), "0-based image x of the source")
    header["SRCY"] = (float(y), "0-based image y of the source")
    if pixel_scale is not None:
        header["PIXSCALE"] = (float(pixel_scale), "arcsec or micron per pixel")
    buf = io.BytesIO()
    fits.PrimaryHDU(stamp, header=header).writeto(buf)
    out = {"fits": Blob.of(buf.getvalue(), MEDIA_FITS)}
    limits = display_limits(stamp, mode=mode, stretch=config.stretch, percentile=config.percentile)
    for z in config.cutout_zooms:
        png = render_png(stamp, limits, zoom=z, display=config.cutout_display, mode=mode, stretch=config.stretch)
        out[f"png_zoom{z}"] = Blob.of(png, MEDIA_PNG)
    return out

"""PSF image files: :func:`read_psf_image`."""

from __future__ import annotations

import math
import os

import numpy as np

from contracts.errors import InputError

from .hdus import _brief, _choose_science, _image_shape, _opened_hdus
from .header import _merged_header, _oversampling

__all__ = ["read_psf_image"]


def read_psf_image(
    path: str | os.PathLike[str],
    *,
    image_pixscale: float | None = None,
) -> tuple[np.ndarray, float]:
    """Read a PSF image and its oversampling factor.

    Parameters
    ----------
    path : str or os.PathLike
        FITS file whose first 2-D image HDU holds the PSF (leading length-1
        axes are dropped).
    image_pixscale : float or None, optional
        Pixel scale of the science image in arcsec/pixel, used when the PSF
        file states only its own pixel scale.

    Returns
    -------
    psf : numpy.ndarray
        2-D ``float64`` PSF with negative and non-finite pixels set to 0,
        normalised to unit sum.
    oversampling : float
        PSF pixels per image pixel, from the first of: keyword ``OVERSAMP``/
        ``OVERSAMPLE``/``PSFOVER``; a ``COMMENT``/``HISTORY`` text such as
        ``"4-times oversampling"``; ``image_pixscale`` divided by the PSF
        pixel scale (``PIXSCALE``/``SECPIX``/``PSFSCALE``); else 1.0.

    Raises
    ------
    InputError
        Missing or invalid file, no 2-D image, or a PSF with no positive
        finite pixel.
    """
    with _opened_hdus(path) as (source, _file, _hdul, hdus):
        index = _choose_science(hdus, None, source)
        shape = _image_shape(hdus[index], index, source, what="PSF image")
        try:
            raw = np.asarray(hdus[index].data)
        except Exception as exc:
            raise InputError(source, f"cannot read the PSF pixels: {_brief(exc)}") from None
        header = _merged_header(hdus, index)
    psf = np.array(raw.reshape(shape), dtype=np.float64)
    psf[~np.isfinite(psf) | (psf < 0)] = 0.0
    total = float(psf.sum())
    if not (total > 0 and math.isfinite(total)):
        raise InputError(source, "PSF image has no positive finite pixel")
    psf /= total
    return psf, _oversampling(header, image_pixscale)

"""Open FITS exposures and microscopy images lazily; read PSF images; write exposures.

An :class:`Exposure` is a small, picklable description of one science image
in a FITS file: where the pixels live (file, HDU, shape, dtype), the header
(merged with the primary header), the celestial WCS and the metadata the
pipeline needs (:class:`ExposureMeta`).  It holds no pixels.  A worker reads
its own tile with :meth:`Exposure.read`, which opens the file and reads only
that section (``hdu.section``: memory-mapped for plain images, tile by tile
for tile-compressed ones, with ``BSCALE``/``BZERO``/``BLANK`` applied), and
returns a :class:`PixelSection`: data, variance (or ``None``) and mask bits.
:meth:`Exposure.to_xarray` wraps the same reads in a lazy, Dask-backed
:class:`xarray.Dataset`.  A :class:`TiffExposure` (:func:`open_tiff`) offers
the same for TIFF and OME-TIFF microscopy images.

Multi-extension files (MEF) are understood by ``EXTNAME``: the science plane
(``SCI``/``SCIENCE``/``IMAGE``, or whichever HDU is chosen), a variance plane
(``VAR``/``VARIANCE``), or failing that a weight plane (``WHT``/``WEIGHT``/
``IVAR``/``INVVAR``, inverse variance) and a mask plane (``MASK``/``DQ``/
``BPM``, non-zero means bad).

Every fault with an input file is raised as
:class:`contracts.errors.InputError` whose message is one line,
``"FILE: cause"``; astropy and numpy exceptions never escape.

Modules
-------
:mod:`~pipelines.io.hdus`
    Opening a FITS file, finding the science HDU and its variance, weight
    and mask planes.
:mod:`~pipelines.io.header`
    Merged headers, the celestial WCS and :class:`ExposureMeta` (gain,
    saturation, exposure time, observation mode, PSF keywords).
:mod:`~pipelines.io.pixels`
    :class:`PixelSection`: windowed, memory-mapped reads and masking rules.
:mod:`~pipelines.io.exposure`
    :class:`Exposure` and :func:`open_exposure`.
:mod:`~pipelines.io.xarray_view`
    The lazy, Dask-backed :class:`xarray.Dataset` of an exposure.
:mod:`~pipelines.io.psf`
    :func:`read_psf_image`.
:mod:`~pipelines.io.write`
    :func:`write_exposure`.
:mod:`~pipelines.io.tiff`
    TIFF, OME-TIFF (read through tifffile's Zarr view) and
    :func:`write_ome_tiff`.
"""

from __future__ import annotations

from .exposure import Exposure, _rebuild_exposure, open_exposure  # noqa: F401 (unpickling)
from .header import ExposureMeta
from .pixels import NONFINITE_SCAN_LIMIT_BYTES, PixelSection, check_not_all_nonfinite
from .psf import read_psf_image
from .tiff import (
    TIFF_SUFFIXES,
    Optics,
    TiffExposure,
    open_tiff,
    parse_ome_optics,
    write_ome_tiff,
)
from .write import write_exposure

__all__ = [
    "ExposureMeta",
    "PixelSection",
    "Exposure",
    "open_exposure",
    "check_not_all_nonfinite",
    "read_psf_image",
    "write_exposure",
    "NONFINITE_SCAN_LIMIT_BYTES",
    "Optics",
    "TiffExposure",
    "open_tiff",
    "parse_ome_optics",
    "write_ome_tiff",
    "TIFF_SUFFIXES",
]

"""Open microscopy images (TIFF, OME-TIFF) lazily, like FITS exposures.

A :class:`TiffExposure` offers what the tile pipeline uses from
:class:`pipelines.io.Exposure` -- ``path``, ``shape``, ``dtype``, ``header``,
``wcs`` (always ``None``), ``meta``, ``read(y0, y1, x0, x1)`` and
``to_xarray()`` -- so a microscopy image is tiled exactly like a survey
exposure.  Pixels are read through tifffile's Zarr view of the file: a tile
task decodes only the TIFF tiles or strips its section touches.

From OME metadata it takes the pixel size (``PhysicalSizeX``), the emission
wavelength of the first channel and the objective's numerical aperture, when
present (:class:`Optics`); the detection configuration supplies what is
missing.  Only single-plane 2-D images (or a leading length-1 axis) are
accepted; a Z stack or time series gives a clear error.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from astropy.io import fits

from contracts.errors import InputError

from .header import ExposureMeta
from .pixels import PixelSection, _assemble

if TYPE_CHECKING:
    import xarray as xr

__all__ = ["Optics", "TiffExposure", "open_tiff", "parse_ome_optics", "write_ome_tiff", "TIFF_SUFFIXES"]

TIFF_SUFFIXES = (".tif", ".tiff", ".ome.tif", ".ome.tiff")

_UM_PER = {"µm": 1.0, "um": 1.0, "nm": 1e-3, "mm": 1e3, "m": 1e6, "Å": 1e-4}


@dataclasses.dataclass(frozen=True)
class Optics:
    """What the image's metadata says about the optics (``None`` when absent)."""

    pixel_size_um: float | None = None
    numerical_aperture: float | None = None
    wavelength_nm: float | None = None


@contextlib.contextmanager
def _quiet_tifffile() -> Iterator[None]:
    """Silence tifffile's own warnings while reading: a damaged file becomes
    one :class:`InputError` line, not a logged warning followed by the error."""
    logger = logging.getLogger("tifffile")
    previous = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(previous)


def _local(tag: str) -> str:
    """An XML tag without its namespace."""
    return tag.rsplit("}", 1)[-1]


def parse_ome_optics(xml: str | None) -> Optics:
    """Pixel size, NA and emission wavelength from an OME-XML document."""
    if not xml:
        return Optics()
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return Optics()
    pixel = na = wavelength = None
    for el in root.iter():
        name = _local(el.tag)
        if name == "Pixels" and pixel is None and "PhysicalSizeX" in el.attrib:
            unit = el.attrib.get("PhysicalSizeXUnit", "µm")
            pixel = float(el.attrib["PhysicalSizeX"]) * _UM_PER.get(unit, 1.0)
        elif name == "Objective" and na is None and "LensNA" in el.attrib:
            na = float(el.attrib["LensNA"])
        elif name == "Channel" and wavelength is None and "EmissionWavelength" in el.attrib:
            unit = el.attrib.get("EmissionWavelengthUnit", "nm")
            wavelength = float(el.attrib["EmissionWavelength"]) * _UM_PER.get(unit, 1e-3) * 1e3
    return Optics(pixel_size_um=pixel, numerical_aperture=na, wavelength_nm=wavelength)


@dataclasses.dataclass(frozen=True, eq=False)
class TiffExposure:
    """A 2-D microscopy image in a TIFF file (see module docs)."""

    path: Path
    shape: tuple[int, int]
    dtype: np.dtype
    meta: ExposureMeta
    optics: Optics
    lead: tuple[int, ...] = ()
    saturate: float | None = None
    hdu: str = "tiff"
    wcs: None = None

    @property
    def header(self) -> fits.Header:
        """A FITS-style header summarising the metadata (for provenance)."""
        h = fits.Header()
        if self.optics.pixel_size_um:
            h["PIXSIZE"] = (self.optics.pixel_size_um, "pixel size in the object plane [um]")
        if self.optics.numerical_aperture:
            h["NA"] = (self.optics.numerical_aperture, "objective numerical aperture")
        if self.optics.wavelength_nm:
            h["EMWAVE"] = (self.optics.wavelength_nm, "emission wavelength [nm]")
        return h

    @property
    def has_variance(self) -> bool:
        """TIFF images carry no variance plane."""
        return False

    def __dask_tokenize__(self) -> tuple[Any, ...]:
        st = self.path.stat() if self.path.exists() else None
        return ("TiffExposure", str(self.path), st.st_size if st else 0, st.st_mtime_ns if st else 0)

    def read(self, y0: int, y1: int, x0: int, x1: int) -> PixelSection:
        """Read ``[y0:y1, x0:x1]``: data as float32, mask (non-finite, saturated)."""
        import tifffile
        import zarr

        ny, nx = self.shape
        if not (0 <= y0 <= y1 <= ny and 0 <= x0 <= x1 <= nx):
            raise ValueError(f"section [{y0}:{y1}, {x0}:{x1}] is outside the image of shape {self.shape}")
        try:
            with _quiet_tifffile(), tifffile.imread(self.path, aszarr=True) as store:
                arr = zarr.open(store, mode="r")
                if isinstance(arr, zarr.Group):  # pyramidal: the full-resolution level
                    arr = arr["0"]
                raw = np.asarray(arr[(*self.lead, slice(y0, y1), slice(x0, x1))])
        except FileNotFoundError:
            raise InputError(str(self.path), "file not found") from None
        except Exception as exc:  # tifffile/zarr/OS faults of any kind
            raise InputError(str(self.path), f"cannot read pixels [{y0}:{y1}, {x0}:{x1}]: {exc}") from None
        data = np.asarray(raw, dtype=np.float64 if raw.dtype == np.float64 else np.float32)
        return _assemble(data, None, None, None, self.saturate)

    def to_xarray(self, chunks: int = 2048) -> xr.Dataset:
        """Lazy Dask-backed ``xarray.Dataset`` with ``data`` and ``mask`` (dims y, x)."""
        import dask
        import dask.array as da
        import xarray as xr

        ny, nx = self.shape
        rows = [(y, min(ny, y + chunks)) for y in range(0, ny, chunks)]
        cols = [(x, min(nx, x + chunks)) for x in range(0, nx, chunks)]
        data_blocks, mask_blocks = [], []
        for y0, y1 in rows:
            drow, mrow = [], []
            for x0, x1 in cols:
                section = dask.delayed(self.read)(y0, y1, x0, x1)
                drow.append(da.from_delayed(section.data, (y1 - y0, x1 - x0), dtype=np.float32))
                mrow.append(da.from_delayed(section.mask, (y1 - y0, x1 - x0), dtype=np.uint16))
            data_blocks.append(drow)
            mask_blocks.append(mrow)
        return xr.Dataset(
            {"data": (("y", "x"), da.block(data_blocks)), "mask": (("y", "x"), da.block(mask_blocks))},
            attrs={"path": str(self.path), "pixel_size_um": self.optics.pixel_size_um or np.nan},
        )


def open_tiff(path: str | os.PathLike) -> TiffExposure:
    """Open a 2-D TIFF or OME-TIFF microscopy image lazily.

    Raises
    ------
    InputError
        Missing or unreadable file, not a TIFF, no 2-D image, empty image.
    """
    import tifffile

    p = Path(path).expanduser().resolve()
    if not p.exists():
        raise InputError(str(path), "file not found")
    try:
        with _quiet_tifffile(), tifffile.TiffFile(p) as tf:
            if not tf.series:
                raise InputError(str(path), "no image in the TIFF file")
            series = tf.series[0]
            shape = tuple(int(n) for n in series.shape)
            dtype = np.dtype(series.dtype)
            xml = tf.ome_metadata if tf.is_ome else None
    except InputError:
        raise
    except Exception as exc:  # tifffile raises TiffFileError and others
        raise InputError(str(path), f"not a readable TIFF file ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    if 0 in shape or len(shape) == 0:
        raise InputError(str(path), "no image data")
    lead = shape[:-2]
    if len(shape) < 2 or any(n != 1 for n in lead):
        raise InputError(str(path), f"expected a single 2-D image plane, got shape {shape} (a stack or multichannel image)")
    optics = parse_ome_optics(xml)
    saturate = float(np.iinfo(dtype).max) if dtype.kind in "ui" else None
    meta = ExposureMeta(
        gain=None, rdnoise=None, saturate=saturate, exptime=None, fwhm_px=None, fwhm_source=None,
        pixscale=None, magzp=None, bunit="adu", obsmode="microscopy", object_name=p.name,
    )
    return TiffExposure(
        path=p, shape=(shape[-2], shape[-1]), dtype=dtype, meta=meta, optics=optics,
        lead=tuple(0 for _ in lead), saturate=saturate,
    )


def write_ome_tiff(
    path: str | os.PathLike,
    image: np.ndarray,
    *,
    pixel_size_um: float | None = None,
    numerical_aperture: float | None = None,
    wavelength_nm: float | None = None,
    tile: int = 256,
) -> Path:
    """Write a 2-D image as a tiled OME-TIFF with the optics in its OME-XML."""
    import tifffile

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    ny, nx = image.shape
    pixels = f'DimensionOrder="XYCZT" Type="{np.dtype(image.dtype).name}" SizeX="{nx}" SizeY="{ny}" SizeC="1" SizeZ="1" SizeT="1"'
    if pixel_size_um:
        pixels += f' PhysicalSizeX="{pixel_size_um}" PhysicalSizeXUnit="&#181;m" PhysicalSizeY="{pixel_size_um}" PhysicalSizeYUnit="&#181;m"'
    channel = '<Channel ID="Channel:0:0" SamplesPerPixel="1"'
    if wavelength_nm:
        channel += f' EmissionWavelength="{wavelength_nm}" EmissionWavelengthUnit="nm"'
    channel += "><LightPath/></Channel>"
    instrument = ""
    objective_ref = ""
    if numerical_aperture:
        instrument = f'<Instrument ID="Instrument:0"><Objective ID="Objective:0" LensNA="{numerical_aperture}"/></Instrument>'
        objective_ref = '<InstrumentRef ID="Instrument:0"/><ObjectiveSettings ID="Objective:0"/>'
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06">'
        f"{instrument}"
        f'<Image ID="Image:0" Name="{p.name}">{objective_ref}'
        f'<Pixels ID="Pixels:0" {pixels}>{channel}<TiffData IFD="0" PlaneCount="1"/></Pixels></Image></OME>'
    )
    tile_shape = (tile, tile) if ny >= tile and nx >= tile else None
    tifffile.imwrite(p, image, description=xml, tile=tile_shape, metadata=None)
    return p

"""The lazy xarray view of an exposure: Dask blocks that read their own section.

:func:`exposure_dataset` (behind :meth:`pipelines.io.Exposure.to_xarray`)
wraps :meth:`~pipelines.io.Exposure.read` in a Dask-backed
:class:`xarray.Dataset`.  Each chunk is read on the worker, once for all the
variables computed together; the task graph carries only the (small)
:class:`~pipelines.io.Exposure`, never pixels.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import numpy as np

from contracts.flags import MaskBit

from .pixels import PixelSection

if TYPE_CHECKING:
    import xarray as xr

    from .exposure import Exposure

__all__ = ["exposure_dataset"]


def exposure_dataset(exposure: Exposure, chunks: int = 2048) -> xr.Dataset:
    """Return ``exposure`` as a lazy, Dask-backed :class:`xarray.Dataset`.

    Parameters
    ----------
    exposure : Exposure
    The exposure to view.
    chunks : int, optional
    Chunk edge in pixels (square chunks; the last ones are smaller).

    Returns
    -------
    xarray.Dataset
    As described in :meth:`pipelines.io.Exposure.to_xarray`.

    Raises
    ------
    ValueError
    If ``chunks`` is not a positive number of pixels.
    """
    import dask.array as da
    import xarray as xr
    from dask.base import tokenize

    chunks = int(chunks)
    if chunks < 1:
        raise ValueError(f"chunks must be a positive number of pixels, got {chunks}")
    ny, nx = exposure.shape
    block_chunks = (_split(ny, chunks), _split(nx, chunks))
    try:
        stat = os.stat(exposure.path)
        signature: tuple[int, int] | None = (stat.st_mtime_ns, stat.st_size)
    except OSError:
        signature = None
    token = tokenize(
        str(exposure.path), exposure.hdu, exposure.variance_hdu, exposure.weight_hdu, exposure.mask_hdu,
        exposure.shape, str(exposure.dtype), exposure.meta.saturate, block_chunks, signature,
    )  # fmt: skip
    sections = da.map_blocks(
        _read_block,
        exposure,
        name=f"read-fits-{token}",
        chunks=block_chunks,
        dtype=object,
        meta=np.empty((0, 0), dtype=object),
    )
    work = exposure.pixel_dtype

    def plane(field: str, dtype: np.dtype) -> Any:
        return sections.map_blocks(
            _section_field,
            field,
            name=f"{field}-{token}",
            dtype=dtype,
            meta=np.empty((0, 0), dtype=dtype),
        )

    flag_bits = list(MaskBit)
    data_vars: dict[str, Any] = {
        "data": (("y", "x"), plane("data", work), {"units": exposure.meta.bunit}),
        "mask": (
            ("y", "x"),
            plane("mask", np.dtype(np.uint16)),
            {
                "flag_masks": [int(b.value) for b in flag_bits],
                "flag_meanings": " ".join(str(b.name) for b in flag_bits),
            },
        ),
    }
    if exposure.has_variance:
        data_vars["variance"] = (
            ("y", "x"),
            plane("variance", work),
            {"units": f"({exposure.meta.bunit})^2"},
        )
    attrs: dict[str, Any] = {"path": str(exposure.path), "hdu": exposure.hdu, "shape": exposure.shape}
    for key, value in vars(exposure.meta).items():
        if value is not None:
            attrs[key] = value
    return xr.Dataset(data_vars, attrs=attrs)


def _split(length: int, chunk: int) -> tuple[int, ...]:
    """Chunk sizes covering ``length`` in pieces of ``chunk``."""
    full, rest = divmod(length, chunk)
    return (chunk,) * full + ((rest,) if rest else ())


def _read_block(exposure: Exposure, block_info: dict[Any, Any] | None = None) -> PixelSection:
    """Dask block function: read the block's section of the exposure."""
    if block_info is None:  # dask probing without a location
        return exposure.read(0, 0, 0, 0)
    (y0, y1), (x0, x1) = block_info[None]["array-location"]
    return exposure.read(y0, y1, x0, x1)


def _section_field(section: PixelSection, field: str) -> np.ndarray:
    """Dask block function: one plane of a :class:`PixelSection`."""
    return getattr(section, field)

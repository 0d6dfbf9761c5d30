"""Sky coordinates of catalog rows from the image's WCS."""

from __future__ import annotations

import warnings

import astropy.units as u
import numpy as np
from astropy.coordinates import ICRS, SkyCoord
from astropy.table import Column, Table
from astropy.wcs import WCS, FITSFixedWarning

from contracts.errors import InputError

from .schema import SCHEMA_VERSION, CatalogSchemaError, get_column

__all__ = ["add_sky_coordinates", "pixel_to_icrs"]


def pixel_to_icrs(
    x: np.ndarray, y: np.ndarray, wcs: WCS | None
) -> tuple[np.ndarray, np.ndarray]:
    """Return ICRS ``(ra, dec)`` in degrees for 0-based pixel coordinates.

    Parameters
    ----------
    x, y : array_like
        0-based pixel coordinates (pixel centres at integers), same shape.
    wcs : astropy.wcs.WCS or None
        The image's WCS.  Distortions (SIP, lookup tables) are applied.  A
        non-ICRS celestial frame (FK5, FK4, Galactic, ...) is converted to ICRS.

    Returns
    -------
    ra, dec : numpy.ndarray
        float64 degrees, ``ra`` in [0, 360); all NaN when ``wcs`` is ``None``
        or has no celestial axes; NaN where ``x`` or ``y`` is not finite.

    Raises
    ------
    InputError
        If the WCS is celestial but has more than two pixel axes, or a frame
        that cannot be converted to ICRS.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    ra = np.full(x.shape, np.nan)
    dec = np.full(x.shape, np.nan)
    if wcs is None or not wcs.has_celestial or x.size == 0:
        return ra, dec
    cel = wcs.celestial if wcs.pixel_n_dim != 2 else wcs
    if cel.pixel_n_dim != 2:
        raise InputError("WCS", f"celestial WCS has {cel.pixel_n_dim} pixel axes; expected 2")
    ok = np.isfinite(x) & np.isfinite(y)
    if not ok.any():
        return ra, dec
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        try:
            coord = cel.pixel_to_world(x[ok], y[ok])
        except Exception as exc:  # noqa: BLE001 - astropy raises several types here
            raise InputError("WCS", f"cannot map pixels to sky: {exc}") from None
    if not isinstance(coord, SkyCoord):
        raise InputError("WCS", f"celestial axes give {type(coord).__name__}, not sky coordinates")
    try:
        icrs = coord if isinstance(coord.frame, ICRS) else coord.transform_to(ICRS())
    except Exception as exc:  # noqa: BLE001 - e.g. a planetary or unknown frame
        raise InputError(
            "WCS", f"cannot convert frame {coord.frame.name!r} to ICRS: {exc}"
        ) from None
    ra[ok] = icrs.ra.to_value(u.deg)
    dec[ok] = icrs.dec.to_value(u.deg)
    return ra, dec


def _as_float(col: object) -> np.ndarray:
    """Return a column's values as float64 with masked entries NaN."""
    if isinstance(col, u.Quantity):
        col = col.to_value(u.pix) if col.unit.is_equivalent(u.pix) else col.value
    return np.ma.filled(np.ma.asarray(col, dtype=np.float64), np.nan)


def add_sky_coordinates(table: Table, wcs: WCS | None) -> Table:
    """Return a copy of ``table`` with ``ra``/``dec`` filled from ``(x, y)``.

    Parameters
    ----------
    table : astropy.table.Table
        A catalog with 0-based ``x`` and ``y`` columns.  ``ra``/``dec`` are
        replaced, or added after the other columns if absent.
    wcs : astropy.wcs.WCS or None
        The image's WCS.  ``None`` or a WCS without celestial axes gives NaN.

    Returns
    -------
    astropy.table.Table
        The new table; ``ra`` and ``dec`` are ICRS degrees (float64).

    Raises
    ------
    CatalogSchemaError
        If ``x`` or ``y`` is missing.
    InputError
        If the WCS cannot be used (see :func:`pixel_to_icrs`).
    """
    for name in ("x", "y"):
        if name not in table.colnames:
            raise CatalogSchemaError(
                f"catalog: missing column {name!r} needed for sky coordinates "
                f"(catalog schema {SCHEMA_VERSION})"
            )
    x, y = (_as_float(table[name]) for name in ("x", "y"))
    ra, dec = pixel_to_icrs(x, y, wcs)
    out = table.copy()
    for name, values in (("ra", ra), ("dec", dec)):
        spec = get_column(name)
        out[name] = Column(values, name=name, unit=spec.unit, description=spec.description)
    return out

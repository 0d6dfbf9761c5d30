"""The nucleus expert: fluorescent nuclei in widefield microscopy images.

The scale comes from physics, not tuning: the expected nucleus diameter (in
micrometres, converted with the pixel size, :meth:`NucleusExpertConfig.from_optics`)
and the optical PSF.  Steps on one :class:`~moe_imaging.tile.Tile`:

1. **Significance map**: the image is smoothed with a Gaussian of a sixth of
   the smallest expected diameter (normalised convolution, so masked pixels
   carry no weight) and divided by the smoothed noise,
   ``sigma / (2 sqrt(pi) s)`` for white noise of RMS ``sigma`` and smoothing
   ``s``.  A dim nucleus spread over hundreds of pixels is therefore
   significant even when each of its pixels is not.
2. **Foreground**: significance >= ``threshold`` in components that reach
   ``seed_threshold`` somewhere (hysteresis); holes filled; components
   smaller than ``min_area_fraction`` of the smallest expected nucleus
   removed.
3. **Markers**: maxima of the distance transform of the half-maximum cores
   (pixels above half the maximum within half a nucleus diameter; the
   significance contour of a bright nucleus lies far out in its blurred
   wings, where touching neighbours merge), at least
   ``min_separation_fraction`` of the smallest diameter apart and a quarter
   of its radius deep: touching convex nuclei have one maximum each.
4. **Marker-controlled watershed** (scikit-image) of the inverted distance
   transform splits touching nuclei along their necks; the faint rims are
   then flooded from the nearest core.
5. **Measurements** per nucleus: flux and error over the whole region (rims
   included), S/N; flux-weighted centroid, area, equivalent diameter and
   ``a``/``b``/``theta`` (RMS axes, position angle) of its half-maximum core,
   whose edge is the nucleus's edge; and flags (``EDGE``: touches the image edge; ``MASKED``: contains
   masked pixels; ``BLENDED``: shares a boundary with another nucleus).

Only nuclei whose marker lies in the tile's core are returned.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from astropy.table import Table
from scipy import ndimage
from skimage.feature import peak_local_max
from skimage.filters import apply_hysteresis_threshold
from skimage.segmentation import watershed

from contracts.config import Config, check_range
from contracts.errors import ConfigError
from contracts.flags import SourceFlag

from ..background import (
    BackgroundConfig,
    BackgroundModel,
    estimate_background,
    source_mask,
)
from ..psf import PSF
from ..tile import Tile
from .base import CANDIDATE_COLUMNS, register, sample_at_candidates

__all__ = [
    "NucleusExpertConfig",
    "NucleusExpert",
    "find_nuclei",
    "nucleus_smoothing",
    "MicroscopyBackgroundPasses",
    "microscopy_background_passes",
    "microscopy_background",
    "NUCLEUS_COLUMNS",
]

NUCLEUS_COLUMNS: tuple[tuple[str, str], ...] = CANDIDATE_COLUMNS + (
    ("area", "f8"),
    ("diameter", "f8"),
    ("a", "f8"),
    ("b", "f8"),
    ("theta", "f8"),
    ("background", "f8"),
    ("noise", "f8"),
)
"""Columns of the nucleus expert's candidate table (pixels, data units)."""


@dataclasses.dataclass(frozen=True)
class NucleusExpertConfig(Config):
    """Options of the nucleus expert.

    Attributes
    ----------
    diameter_px : tuple of float
        Expected range of nucleus diameters in pixels (smallest, largest).
    threshold : float
        Foreground significance threshold (sigma of the smoothed image): the
        extent of a nucleus.  Smoothing over a nucleus-scale kernel multiplies
        a per-pixel background error by ``2 sqrt(pi) s`` (about 15 here), so a
        0.1--0.2 sigma background error is already 1.5--3 sigma of the
        smoothed map: the default keeps clear of it.
    seed_threshold : float
        A foreground component must reach this significance somewhere
        (hysteresis), so noise blobs at the lower threshold are not nuclei.
    min_area_fraction : float
        Smallest accepted area, as a fraction of the smallest expected nucleus.
    min_separation_fraction : float
        Markers are at least this fraction of the smallest diameter apart.
    """

    diameter_px: tuple[float, float] = (25.0, 43.0)
    threshold: float = 5.0
    seed_threshold: float = 10.0
    min_area_fraction: float = 0.25
    min_separation_fraction: float = 0.4

    def __post_init__(self) -> None:
        d = tuple(self.diameter_px)
        if len(d) != 2:
            raise ConfigError(f"nucleus.diameter_px: expected (smallest, largest), got {self.diameter_px!r}")
        check_range("nucleus.diameter_px[0]", d[0], low=3.0, high=2000.0)
        check_range("nucleus.diameter_px[1]", d[1], low=d[0], high=4000.0)
        check_range("nucleus.threshold", self.threshold, low=1.0, high=100.0)
        check_range("nucleus.seed_threshold", self.seed_threshold, low=self.threshold, high=1000.0)
        check_range("nucleus.min_area_fraction", self.min_area_fraction, low=0.01, high=1.0)
        check_range("nucleus.min_separation_fraction", self.min_separation_fraction, low=0.1, high=2.0)

    @classmethod
    def from_optics(
        cls, *, diameter_um: tuple[float, float] = (8.0, 14.0), pixel_size_um: float, **options: float
    ) -> "NucleusExpertConfig":
        """Configuration for nuclei of ``diameter_um`` imaged at ``pixel_size_um`` per pixel."""
        if not pixel_size_um > 0:
            raise ConfigError(f"nucleus: pixel size must be positive, got {pixel_size_um}")
        return cls(diameter_px=(diameter_um[0] / pixel_size_um, diameter_um[1] / pixel_size_um), **options)


def nucleus_smoothing(config: NucleusExpertConfig, psf: PSF) -> float:
    """Smoothing (pixels) of the significance map: a sixth of the smallest diameter."""
    return _smoothing(config, psf)


def _smoothing(config: NucleusExpertConfig, psf: PSF) -> float:
    return max(psf.sigma, config.diameter_px[0] / 6.0)


@dataclasses.dataclass(frozen=True)
class MicroscopyBackgroundPasses:
    """The two background passes of a microscopy image (:func:`microscopy_background_passes`)."""

    coarse: BackgroundConfig
    fine: BackgroundConfig
    smoothing: float
    threshold: float
    grow: int


def microscopy_background_passes(config: NucleusExpertConfig, psf: PSF,
                                 background: BackgroundConfig = BackgroundConfig()) -> MicroscopyBackgroundPasses:
    """How the background of a microscopy image is estimated: two passes.

    Nuclei fill much of an ordinary background mesh and would bias it
    upwards.  The first pass uses coarse meshes four of the largest nuclei
    wide; nuclei significant against it (smoothed like the expert's
    significance map, above its seed threshold, grown by a quarter diameter)
    are masked, and the second pass uses the ordinary meshes (``background``)
    so it follows the vignetting.  When nuclei cover every ordinary mesh (a
    small, dense field) the second pass has nothing to measure and the coarse
    model is kept.  The pipeline runs these passes block by
    block on Dask; :func:`microscopy_background` runs them on an in-memory
    image (the nucleus triage's training fields), with the same result.
    """
    coarse = background.replace(mesh_size=max(background.mesh_size, int(math.ceil(4 * config.diameter_px[1]))))
    return MicroscopyBackgroundPasses(coarse=coarse, fine=background, smoothing=nucleus_smoothing(config, psf),
                                      threshold=config.seed_threshold, grow=int(math.ceil(config.diameter_px[1] / 4)))


def microscopy_background(image: np.ndarray, config: NucleusExpertConfig, psf: PSF,
                          background: BackgroundConfig = BackgroundConfig()) -> BackgroundModel:
    """The two-pass background model (:func:`microscopy_background_passes`) of a whole image."""
    passes = microscopy_background_passes(config, psf, background)
    data = np.asarray(image, dtype=np.float64)
    first = estimate_background(data, config=passes.coarse)
    level, rms = first.evaluate(0, data.shape[0], 0, data.shape[1])
    sources = source_mask(data, level, rms, smoothing=passes.smoothing, threshold=passes.threshold, grow=passes.grow)
    try:
        return estimate_background(data, sources, config=passes.fine)
    except ValueError:  # nuclei everywhere: no mesh left once they are masked; keep the coarse model
        return first


@register
class NucleusExpert:
    """Fluorescent nuclei, touching ones split by marker-controlled watershed."""

    name = "nucleus"
    kinds = ("nucleus",)

    def __init__(self, config: NucleusExpertConfig = NucleusExpertConfig()) -> None:
        self.config = config

    def footprint(self, psf: PSF) -> int:
        """A whole nucleus of the largest size, plus the smoothing kernel, beyond the core."""
        return int(math.ceil(1.5 * self.config.diameter_px[1] + 4 * _smoothing(self.config, psf) + 2 * psf.fwhm))

    def propose(self, tile: Tile) -> Table:
        """Segment and measure the nuclei owned by ``tile`` (see module docs)."""
        return find_nuclei(tile, config=self.config)

    def score(self, tile: Tile, candidates: Table) -> Table:
        """``nucleus_snr``: the smoothed significance at each candidate's position."""
        return Table({"nucleus_snr": sample_at_candidates(tile, candidates, lambda t: _significance(t, self.config))})


def _empty() -> Table:
    return Table({name: np.zeros(0, dtype=dt) for name, dt in NUCLEUS_COLUMNS})


def _significance(tile: Tile, config: NucleusExpertConfig) -> np.ndarray:
    """Smoothed image over its noise (normalised convolution; 0 where no data)."""
    img = np.asarray(tile.image, dtype=np.float64)
    good = ~tile.bad
    var = np.where(good, np.asarray(tile.variance, dtype=np.float64), 0.0)
    s = _smoothing(config, tile.psf)
    weight = ndimage.gaussian_filter(good.astype(np.float64), s, mode="constant")
    smooth = ndimage.gaussian_filter(np.where(good, img, 0.0), s, mode="constant")
    mean_var = ndimage.gaussian_filter(var, s, mode="constant")
    with np.errstate(divide="ignore", invalid="ignore"):
        level = smooth / weight
        # noise of the normalised Gaussian average of white noise
        noise = np.sqrt(mean_var / weight) / (2.0 * math.sqrt(math.pi) * s)
        sig = np.where(weight > 0.2, level / noise, 0.0)
    return np.nan_to_num(sig, nan=0.0, posinf=0.0, neginf=0.0)


def _half_maximum_cores(img: np.ndarray, fg: np.ndarray, smoothing: float, d_min: float) -> np.ndarray:
    """Foreground pixels above half the local maximum of the lightly smoothed image.

    The smoothing is kept at the resolution (about a pixel): more would fill
    the necks between touching nuclei.  The chromatin texture that frays the
    core's edge is handled by the h-maxima marker test instead.  "Local" is a box of half the smallest nucleus diameter, so a dim nucleus
    next to a bright one keeps its own core, while the neck between two
    touching nuclei of similar brightness stays in both.
    """
    smooth = ndimage.gaussian_filter(img, smoothing)
    local_max = ndimage.maximum_filter(smooth, size=max(3, int(round(d_min / 2.0))) | 1)
    core = fg & (smooth >= 0.5 * local_max)
    return ndimage.binary_fill_holes(core)


def _deep_markers(
    dist: np.ndarray, peaks: np.ndarray, labels: np.ndarray, *, h: float, reach: float
) -> np.ndarray:
    """Keep distance-map maxima that dip by at least ``h`` towards every higher one.

    The dip is taken along the straight line to each higher maximum of the
    same core within ``reach`` pixels: the h-maxima criterion for convex
    shapes, at a tiny fraction of a morphological reconstruction's cost.
    """
    if len(peaks) < 2:
        return peaks
    height = dist[peaks[:, 0], peaks[:, 1]]
    comp = labels[peaks[:, 0], peaks[:, 1]]
    order = np.lexsort((peaks[:, 1], peaks[:, 0], -height))  # highest first, ties row-major
    kept: list[int] = []
    for i in order:
        shallow = False
        for j in kept:
            if comp[j] != comp[i]:
                continue
            length = float(np.hypot(*(peaks[j] - peaks[i])))
            if length > reach:
                continue
            t = np.linspace(0.0, 1.0, max(3, int(2 * length) + 1))
            ys = peaks[i, 0] + (peaks[j, 0] - peaks[i, 0]) * t
            xs = peaks[i, 1] + (peaks[j, 1] - peaks[i, 1]) * t
            saddle = ndimage.map_coordinates(dist, [ys, xs], order=1).min()
            if height[i] - saddle < h:
                shallow = True
                break
        if not shallow:
            kept.append(int(i))
    return peaks[np.sort(np.asarray(kept))]


def find_nuclei(tile: Tile, *, config: NucleusExpertConfig = NucleusExpertConfig()) -> Table:
    """Segment fluorescent nuclei on a tile (pure function).

    Returns
    -------
    astropy.table.Table
        One row per nucleus owned by the tile, columns :data:`NUCLEUS_COLUMNS`,
        sorted by ``(y_peak, x_peak)``; empty with the same columns if none.
    """
    img = np.asarray(tile.image, dtype=np.float64)
    if img.size == 0 or not (~tile.bad).any():
        return _empty()
    sig = _significance(tile, config)
    # hysteresis: a component must reach the seed threshold somewhere to be a
    # nucleus; its extent is where it stays above the lower threshold
    fg = ndimage.binary_fill_holes(
        apply_hysteresis_threshold(sig, config.threshold, config.seed_threshold)
    )
    d_min = config.diameter_px[0]
    min_area = config.min_area_fraction * math.pi * (d_min / 2.0) ** 2
    comps, n = ndimage.label(fg)
    if n == 0:
        return _empty()
    sizes = np.bincount(comps.ravel())
    keep = sizes >= min_area
    keep[0] = False
    fg = keep[comps]
    if not fg.any():
        return _empty()
    # Shapes for splitting come from each component's half-maximum core: the
    # significance contour of a bright nucleus lies far out in its blurred
    # wings, where touching neighbours merge and their neck disappears.
    # cores: above half the local maximum and clearly significant, so faint
    # foreground between nuclei never seeds a nucleus of its own
    core = _half_maximum_cores(img, fg & (sig >= config.seed_threshold), max(1.0, tile.psf.sigma), d_min)
    dist = ndimage.distance_transform_edt(core)
    core_labels = ndimage.label(core)[0]
    markers_yx = peak_local_max(
        dist,
        min_distance=max(1, int(round(config.min_separation_fraction * d_min))),
        threshold_abs=0.25 * d_min / 2.0,
        labels=core_labels,
        exclude_border=False,
    )
    # Only maxima of the distance map at least `h` deep count (as h-maxima):
    # two nuclei meet at a neck much narrower than their radii; the ripples of
    # an edge frayed by chromatin texture are shallow.
    markers_yx = _deep_markers(dist, markers_yx, core_labels, h=max(1.5, 0.12 * d_min / 2.0), reach=config.diameter_px[1])
    if len(markers_yx) == 0:
        return _empty()
    # deterministic marker order (row-major), as peak_local_max sorts by height
    markers_yx = markers_yx[np.lexsort((markers_yx[:, 1], markers_yx[:, 0]))]
    markers = np.zeros(img.shape, dtype=np.int32)
    markers[markers_yx[:, 0], markers_yx[:, 1]] = np.arange(1, len(markers_yx) + 1)
    # flood the cores by depth first, then the faint rims from the nearest core
    labels = watershed(np.where(core, -dist, 0.0), markers, mask=fg)

    oy, ox = tile.origin
    cy0, cy1, cx0, cx1 = tile.core
    my, mx = markers_yx[:, 0] + oy, markers_yx[:, 1] + ox
    owned = (my >= cy0) & (my < cy1) & (mx >= cx0) & (mx < cx1)
    if not owned.any():
        return _empty()
    ny_img, nx_img = tile.image_shape
    var = np.asarray(tile.variance, dtype=np.float64)
    bad = tile.bad
    background = np.asarray(tile.background, dtype=np.float64)
    # nuclei sharing a boundary: a labelled pixel with a different label among
    # its 8 neighbours (the largest neighbour label is higher, or the smallest
    # positive one is lower)
    highest = ndimage.grey_dilation(labels, size=3)
    lowest = ndimage.grey_erosion(np.where(labels > 0, labels, np.iinfo(np.int32).max), size=3)
    touching = set(np.unique(labels[(labels > 0) & ((highest > labels) | (lowest < labels))]).tolist())
    objects = ndimage.find_objects(labels)
    rows = []
    for k in np.flatnonzero(owned):
        lab = k + 1
        sl = objects[k] if k < len(objects) else None
        if sl is None:
            continue
        region = labels[sl] == lab
        # flux over the whole region (faint rims included); shape and size
        # from the half-maximum core, whose edge is the nucleus's edge
        body = region & core[sl]
        if not body.any():
            continue
        yy, xx = np.nonzero(body)
        w = np.clip(img[sl][body], 0, None)
        wsum = w.sum()
        if wsum <= 0:
            continue
        yc = (yy * w).sum() / wsum + sl[0].start
        xc = (xx * w).sum() / wsum + sl[1].start
        flux = float(img[sl][region].sum())
        flux_err = float(math.sqrt(max(var[sl][region].sum(), 0.0)))
        dy, dx = yy + sl[0].start - yc, xx + sl[1].start - xc
        cov = np.array([[np.mean(dx * dx), np.mean(dx * dy)], [np.mean(dx * dy), np.mean(dy * dy)]])
        vals, vecs = np.linalg.eigh(cov)
        theta = math.degrees(math.atan2(vecs[1, 1], vecs[0, 1]))
        theta = theta + 180 if theta <= -90 else (theta - 180 if theta > 90 else theta)
        flags = 0
        gy0, gy1 = sl[0].start + oy, sl[0].stop + oy
        gx0, gx1 = sl[1].start + ox, sl[1].stop + ox
        if gy0 == 0 or gx0 == 0 or gy1 == ny_img or gx1 == nx_img:
            flags |= int(SourceFlag.EDGE)
        if bad[sl][region].any():
            flags |= int(SourceFlag.MASKED)
        if lab in touching:
            flags |= int(SourceFlag.BLENDED)
        area = float(body.sum())
        py, px = markers_yx[k]
        rows.append(
            (xc + ox, yc + oy, int(mx[k]), int(my[k]), flux, flux_err,
             flux / flux_err if flux_err > 0 else np.nan, float(sig[py, px]), "nucleus", "nucleus", flags,
             area, 2.0 * math.sqrt(area / math.pi), math.sqrt(max(vals[1], 0.0)), math.sqrt(max(vals[0], 0.0)),
             theta, float(background[py, px]), float(math.sqrt(max(var[py, px], 0.0))))
        )
    if not rows:
        return _empty()
    cols = list(zip(*rows))
    table = Table({name: np.asarray(col, dtype=dt) for (name, dt), col in zip(NUCLEUS_COLUMNS, cols)})
    order = np.lexsort((np.asarray(table["x_peak"]), np.asarray(table["y_peak"])))
    return table[order]

"""The extended-source expert: galaxies, segmented and deblended.

Galaxies are the PSF convolved with a light profile, so the detection kernels
are the PSF convolved with exponential disks (the matched filters for faint
disk galaxies) at two scales, for small and large galaxies.  Steps on one
:class:`~moe_imaging.tile.Tile` (photutils does the segmentation, as in
Source Extractor):

1. **Detection image**: the significance of the tile filtered with each kernel
   (normalised convolution; noise ``sqrt(sum K^2 var)``), the larger of the two.
2. **Segmentation**: connected pixels above ``threshold`` sigma, at least a
   PSF's area (``photutils.segmentation.detect_sources``).
3. **Deblending**: Source Extractor's multi-threshold method
   (``deblend_sources``, 32 levels, contrast 0.005).  Unlike SEP, which hands
   pixels between two peaks to one of them at random, photutils assigns them
   with a watershed: the result is deterministic.
4. **Measurement** (``SourceCatalog``): centroid, Kron flux and error,
   second-moment axes ``a``/``b`` and angle, half-light radius ``hlr``, and
   ``extent`` = ``hlr`` over the PSF's half-light radius -- the evidence the
   gate weighs between galaxy and star (every segment is proposed as a galaxy
   hypothesis, as the point expert proposes every peak as a star).

Only segments whose significance peak lies in the tile's core are returned.
"""

from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np
from astropy.table import Table
from scipy import ndimage, signal

from contracts.config import Config, check_range
from contracts.flags import MaskBit, SourceFlag

from ..detection import find_peaks
from ..psf import PSF
from ..tile import Tile
from .base import CANDIDATE_COLUMNS, register, sample_at_candidates

__all__ = ["ExtendedExpertConfig", "ExtendedExpert", "find_extended", "galaxy_kernel", "EXTENDED_COLUMNS"]

EXTENDED_COLUMNS: tuple[tuple[str, str], ...] = CANDIDATE_COLUMNS + (
    ("a", "f8"),
    ("b", "f8"),
    ("theta", "f8"),
    ("hlr", "f8"),
    ("extent", "f8"),
    ("area", "f8"),
)
"""Columns of the extended expert's candidate table."""


@dataclasses.dataclass(frozen=True)
class ExtendedExpertConfig(Config):
    """Options of the extended-source expert.

    Attributes
    ----------
    disk_scales_px : tuple of float
        Exponential scale lengths of the detection kernels' galaxy profiles.
    threshold : float
        Detection threshold in sigma of the filtered images.
    contrast : float
        Deblending contrast (Source Extractor's DEBLEND_MINCONT).
    n_levels : int
        Deblending thresholds (DEBLEND_NTHRESH).
    """

    disk_scales_px: tuple[float, ...] = (1.0, 3.0)
    threshold: float = 5.0
    contrast: float = 0.005
    n_levels: int = 32

    def __post_init__(self) -> None:
        for i, scale in enumerate(tuple(self.disk_scales_px)):
            check_range(f"extended.disk_scales_px[{i}]", scale, low=0.3, high=100.0)
        check_range("extended.threshold", self.threshold, low=2.0, high=100.0)
        check_range("extended.contrast", self.contrast, low=0.0, high=1.0)
        check_range("extended.n_levels", self.n_levels, low=1, high=256)


def galaxy_kernel(psf: PSF, disk_scale_px: float) -> np.ndarray:
    """The PSF convolved with an exponential disk of scale ``disk_scale_px`` (sum 1)."""
    r = int(math.ceil(4 * disk_scale_px))
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    disk = np.exp(-np.hypot(yy, xx) / disk_scale_px)
    kernel = np.clip(signal.fftconvolve(psf.image, disk / disk.sum(), mode="full"), 0.0, None)
    return kernel / kernel.sum()


def _psf_hlr(psf: PSF) -> float:
    """Half-light radius of the PSF image (pixels)."""
    c = psf.half_size
    yy, xx = np.mgrid[-c : c + 1, -c : c + 1]
    r = np.hypot(yy, xx).ravel()
    order = np.argsort(r)
    cum = np.cumsum(psf.image.ravel()[order])
    return float(r[order][np.searchsorted(cum, 0.5 * cum[-1])])


@register
class ExtendedExpert:
    """Galaxies: galaxy-matched filters, segmentation, deterministic deblending."""

    name = "extended"
    kinds = ("galaxy",)

    def __init__(self, config: ExtendedExpertConfig = ExtendedExpertConfig()) -> None:
        self.config = config

    def footprint(self, psf: PSF) -> int:
        """The largest kernel plus a large galaxy's segment."""
        widest = max(galaxy_kernel(psf, s).shape[0] for s in self.config.disk_scales_px)
        return int(widest // 2 + 40 + 6 * psf.fwhm)

    def propose(self, tile: Tile) -> Table:
        """Segments owned by the tile, as galaxy hypotheses."""
        return find_extended(tile, config=self.config)

    def score(self, tile: Tile, candidates: Table) -> Table:
        """``extended_snr``: the galaxy-filtered significance at each candidate's pixel."""
        return Table({"extended_snr": sample_at_candidates(tile, candidates, lambda t: _significance(t, self.config))})


def _empty() -> Table:
    return Table({name: np.zeros(0, dtype=dt) for name, dt in EXTENDED_COLUMNS})


def _significance(tile: Tile, config: ExtendedExpertConfig) -> np.ndarray:
    """The larger galaxy-filtered significance over the kernel scales."""
    f32 = np.float32
    good = ~tile.bad
    img = np.where(good, np.asarray(tile.image, dtype=f32), f32(0))
    var = np.where(good, np.asarray(tile.variance, dtype=f32), f32(0))
    best = np.zeros(img.shape, dtype=f32)
    for scale in config.disk_scales_px:
        k = galaxy_kernel(tile.psf, scale)[::-1, ::-1].astype(f32)
        weight = signal.fftconvolve(good.astype(f32), k, mode="same")
        filt = signal.fftconvolve(img, k, mode="same")
        fvar = signal.fftconvolve(var, k * k, mode="same")
        with np.errstate(divide="ignore", invalid="ignore"):
            sig = np.where(weight > 0.5, filt / np.sqrt(np.clip(fvar, 1e-30, None)), f32(0))
        np.maximum(best, np.nan_to_num(sig, nan=0.0, posinf=0.0, neginf=0.0), out=best)
    return best


def _one_per_saturated_region(tile: Tile, py, px, flux, flags) -> np.ndarray:
    """Keep one segment per saturated region, flagged SATURATED; drop the others.

    A saturated star and its bleed trail break into several segments (the
    trail's charge, the core's ring); they are one object, reported once by
    the brightest segment whose peak lies within a FWHM of the region, as the
    point expert does.  Modifies ``flags`` in place; returns the keep mask.
    """
    keep = np.ones(len(py), bool)
    mask = np.asarray(tile.mask)
    saturated = (mask & np.uint16(MaskBit.SATURATED)) != 0
    if not saturated.any() or len(py) == 0:
        return keep
    labels, _ = ndimage.label(saturated)
    dist, (iy, ix) = ndimage.distance_transform_edt(~saturated, return_indices=True)
    near = dist[py, px] <= max(1.0, tile.psf.fwhm)
    region = np.where(near, labels[iy[py, px], ix[py, px]], 0)
    for lab in np.unique(region[region > 0]):
        members = np.nonzero(region == lab)[0]
        best = members[np.argmax(np.nan_to_num(flux[members], nan=-np.inf))]
        keep[members] = False
        keep[best] = True
        flags[best] |= int(SourceFlag.SATURATED)
    return keep


def find_extended(tile: Tile, *, config: ExtendedExpertConfig = ExtendedExpertConfig()) -> Table:
    """Segment, deblend and measure sources on a tile as galaxy hypotheses (pure function)."""
    from photutils.segmentation import SourceCatalog, deblend_sources, detect_sources

    img = np.asarray(tile.image, dtype=np.float64)
    if img.size == 0 or not (~tile.bad).any() or min(img.shape) < 3:
        return _empty()
    psf = tile.psf
    sig = _significance(tile, config).astype(np.float64)
    n_pixels = max(5, int(math.ceil(math.pi * psf.fwhm**2 / 4)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        segm = detect_sources(sig, config.threshold, n_pixels=n_pixels)
        if segm is None:
            return _empty()
        # only segments holding several significance peaks can need deblending
        py0, px0 = find_peaks(sig, threshold=config.threshold)
        seg_of_peak = segm.data[py0, px0]
        ids, n_peaks = np.unique(seg_of_peak[seg_of_peak > 0], return_counts=True)
        multi = ids[n_peaks > 1]
        if len(multi):
            segm = deblend_sources(
                sig, segm, n_pixels=n_pixels, labels=multi, n_levels=config.n_levels,
                contrast=config.contrast, progress_bar=False,
            )
        noise = np.sqrt(np.clip(np.asarray(tile.variance, dtype=np.float64), 0, None))
        cat = SourceCatalog(np.where(tile.bad, 0.0, img), segm, error=noise, mask=tile.bad)
        x = np.asarray(cat.x_centroid, dtype=np.float64)
        y = np.asarray(cat.y_centroid, dtype=np.float64)
        kron = np.asarray(cat.kron_flux, dtype=np.float64)
        kron_err = np.asarray(cat.kron_flux_err, dtype=np.float64)
        hlr = np.asarray(cat.flux_radius(0.5), dtype=np.float64)
        a = np.asarray(cat.semimajor_axis.value, dtype=np.float64)
        b = np.asarray(cat.semiminor_axis.value, dtype=np.float64)
        theta = np.asarray(cat.orientation.value, dtype=np.float64)
        area = np.asarray(cat.area.value, dtype=np.float64)
        labels = np.asarray(cat.labels)
    # each segment's highest significance peak (ownership and ids); a segment
    # with no local maximum (a plateau) falls back to its brightest pixel
    py = np.asarray(cat.max_value_yindex, dtype=np.int64)
    px = np.asarray(cat.max_value_xindex, dtype=np.int64)
    pk_seg = segm.data[py0, px0]
    order = np.lexsort((px0, py0, -sig[py0, px0], pk_seg))
    first = np.ones(len(order), bool)
    first[1:] = pk_seg[order][1:] != pk_seg[order][:-1]
    best = order[first]
    index = {int(lab): i for i, lab in enumerate(labels)}
    for k in best:
        i = index.get(int(pk_seg[k]))
        if i is not None:
            py[i], px[i] = py0[k], px0[k]
    oy, ox = tile.origin
    cy0, cy1, cx0, cx1 = tile.core
    keep = (py + oy >= cy0) & (py + oy < cy1) & (px + ox >= cx0) & (px + ox < cx1) & np.isfinite(x) & np.isfinite(y)
    if not keep.any():
        return _empty()
    flags = np.zeros(len(labels), dtype=np.int32)
    parent_of = ndimage.label(segm.data > 0)[0][py, px]
    parents, counts = np.unique(parent_of, return_counts=True)
    flags[np.isin(parent_of, parents[counts > 1])] |= int(SourceFlag.BLENDED)
    keep &= _one_per_saturated_region(tile, py, px, kron, flags)
    ny_img, nx_img = tile.image_shape
    edge = (py + oy < 2) | (px + ox < 2) | (py + oy >= ny_img - 2) | (px + ox >= nx_img - 2)
    flags[edge] |= int(SourceFlag.EDGE)
    with np.errstate(divide="ignore", invalid="ignore"):
        snr = np.where(kron_err > 0, kron / kron_err, np.nan)
    cols = {
        "x": x + ox, "y": y + oy, "x_peak": px + ox, "y_peak": py + oy,
        "flux": kron, "flux_err": kron_err, "snr": snr, "det_snr": sig[py, px],
        "kind": np.full(len(x), "galaxy"), "expert": np.full(len(x), "extended"), "flags": flags,
        "a": a, "b": b, "theta": theta, "hlr": hlr, "extent": hlr / _psf_hlr(psf), "area": area,
    }
    table = Table({name: np.asarray(cols[name], dtype=dt)[keep] for name, dt in EXTENDED_COLUMNS})
    order = np.lexsort((np.asarray(table["x_peak"]), np.asarray(table["y_peak"])))
    return table[order]

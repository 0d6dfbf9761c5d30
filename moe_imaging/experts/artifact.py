"""The artifact expert: cosmic rays, hot pixels, saturated cores and bleed trails.

Cosmic rays and hot pixels are recognised by being *sharper than the PSF
allows*, in the spirit of L.A.Cosmic (van Dokkum 2001) but with the PSF as
the prior instead of a tuned ratio:

* a real source's peak pixel can exceed the mean of its four nearest
  neighbours at most by the PSF's own ratio ``rho_max = P(0) / mean(P(+-1))``
  (largest for a source centred on the pixel; about 1.5 for a FWHM of 3 px,
  much more for an undersampled PSF);
* a pixel is *too sharp* when ``I0 - rho_max * mean4 > k sigma``, with
  ``sigma`` the noise of that difference -- no PSF-shaped source, however
  bright, can do that; a cosmic ray or a hot pixel, whose charge is not
  spread by the optics, does it easily;
* too-sharp pixels are grown into their neighbours that stand ``grow_sigma``
  above the local median (a cosmic-ray track), and each connected group is
  one artifact: ``bleed`` when it touches saturated pixels (the unsaturated
  end of a bleed trail), else ``cosmic_ray`` when it spans several pixels, ``hot_pixel``
  when it is a single pixel (one exposure cannot tell a single-pixel hit from
  a hot pixel; a stack of exposures can).

Saturation comes from the mask (the header's ``SATURATE``): each saturated
region is one artifact, ``saturation`` when its core is a blob (a saturated
star) and ``bleed`` when it is only a thin column.

Only artifacts whose peak pixel lies in the tile's core are returned.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from astropy.table import Table
from scipy import ndimage

from contracts.config import Config, check_range
from contracts.flags import MaskBit, SourceFlag

from ..detection import connected_regions
from ..psf import PSF
from ..tile import Tile
from .base import CANDIDATE_COLUMNS, register, sample_at_candidates

__all__ = ["ArtifactExpertConfig", "ArtifactExpert", "find_artifacts", "psf_peak_ratio", "ARTIFACT_COLUMNS"]

ARTIFACT_COLUMNS: tuple[tuple[str, str], ...] = CANDIDATE_COLUMNS + (
    ("subtype", "U16"),
    ("npix", "i8"),
    ("sharp_sigma", "f8"),
)
"""Columns of the artifact expert's candidate table."""


@dataclasses.dataclass(frozen=True)
class ArtifactExpertConfig(Config):
    """Options of the artifact expert.

    Attributes
    ----------
    sharp_sigma : float
        Significance of the excess over the sharpest PSF-shaped profile for a
        pixel to be a cosmic-ray or hot-pixel seed.
    grow_sigma : float
        Neighbours of a seed this many sigma above the local 5x5 median join it.
    """

    sharp_sigma: float = 5.0
    grow_sigma: float = 3.0

    def __post_init__(self) -> None:
        check_range("artifact.sharp_sigma", self.sharp_sigma, low=2.0, high=100.0)
        check_range("artifact.grow_sigma", self.grow_sigma, low=1.0, high=self.sharp_sigma)


def psf_peak_ratio(psf: PSF) -> float:
    """Largest peak / mean-of-4-neighbours ratio a PSF-shaped source can show.

    Evaluated on the pixel-integrated PSF over sub-pixel centrings (a source
    centred on the pixel gives the largest ratio).
    """
    img = psf.image
    c = psf.half_size
    best = 0.0
    for dy in (-0.25, 0.0, 0.25):
        for dx in (-0.25, 0.0, 0.25):
            shifted = ndimage.shift(img, (dy, dx), order=3, mode="constant")
            four = (shifted[c - 1, c] + shifted[c + 1, c] + shifted[c, c - 1] + shifted[c, c + 1]) / 4.0
            if four > 0:
                best = max(best, float(shifted[c, c] / four))
    return best if best > 0 else math.inf


@register
class ArtifactExpert:
    """Cosmic rays, hot pixels, saturated cores and bleed trails (see module docs)."""

    name = "artifact"
    kinds = ("artifact",)

    def __init__(self, config: ArtifactExpertConfig = ArtifactExpertConfig()) -> None:
        self.config = config

    def footprint(self, psf: PSF) -> int:
        """Local medians, the track growth and a saturated star's core."""
        return int(math.ceil(8 + 4 * psf.fwhm))

    def propose(self, tile: Tile) -> Table:
        """Artifacts owned by the tile."""
        return find_artifacts(tile, config=self.config)

    def score(self, tile: Tile, candidates: Table) -> Table:
        """``artifact_sharp_sigma``: the too-sharp significance at each candidate's pixel."""
        sharp = sample_at_candidates(tile, candidates, lambda t: _sharp_significance(t, psf_peak_ratio(t.psf)))
        return Table({"artifact_sharp_sigma": sharp})


def _empty() -> Table:
    return Table({name: np.zeros(0, dtype=dt) for name, dt in ARTIFACT_COLUMNS})


def _sharp_significance(tile: Tile, rho: float) -> np.ndarray:
    """``(I0 - rho * mean4) / sigma`` per pixel (0 where undefined).

    ``sigma`` treats the noise variance as locally constant over the five
    pixels: ``var * (1 + rho^2 / n)`` with ``n`` good neighbours.
    """
    f32 = np.float32
    good = ~tile.bad
    x = np.where(good, np.asarray(tile.image, dtype=f32), f32(0))
    g = good.astype(f32)
    s = np.zeros_like(x)
    n = np.zeros_like(x)
    for arr, out in ((x, s), (g, n)):
        out[1:, :] += arr[:-1, :]
        out[:-1, :] += arr[1:, :]
        out[:, 1:] += arr[:, :-1]
        out[:, :-1] += arr[:, 1:]
    var = np.asarray(tile.variance, dtype=f32)
    with np.errstate(divide="ignore", invalid="ignore"):
        sig = (x - f32(rho) * s / n) / np.sqrt(var * (f32(1) + f32(rho * rho) / n))
    sig[~good | (n < 3)] = 0.0
    return np.nan_to_num(sig, nan=0.0, posinf=0.0, neginf=0.0)


def find_artifacts(tile: Tile, *, config: ArtifactExpertConfig = ArtifactExpertConfig()) -> Table:
    """Cosmic rays, hot pixels and saturated regions on a tile (pure function)."""
    img = np.asarray(tile.image, dtype=np.float64)
    if img.size == 0:
        return _empty()
    mask = np.asarray(tile.mask)
    good = ~tile.bad
    noise = np.sqrt(np.clip(np.asarray(tile.variance, dtype=np.float64), 0.0, None))
    rho = psf_peak_ratio(tile.psf)
    sharp = _sharp_significance(tile, rho)
    seeds = sharp >= config.sharp_sigma
    rows = []
    oy, ox = tile.origin
    cy0, cy1, cx0, cx1 = tile.core
    if seeds.any():
        # Work only around the seeds: a track is at most ~a dozen pixels long.
        reach = 12
        saturated_all = (mask & np.uint16(MaskBit.SATURATED)) != 0
        ny, nx = img.shape
        zones = ndimage.maximum_filter(seeds.view(np.uint8), size=2 * reach + 1) > 0
        for zone_sl, _ in connected_regions(zones):
            y0, y1 = max(0, zone_sl[0].start - 2), min(ny, zone_sl[0].stop + 2)
            x0, x1 = max(0, zone_sl[1].start - 2), min(nx, zone_sl[1].stop + 2)
            box = (slice(y0, y1), slice(x0, x1))
            sub, sub_good, sub_noise, sub_seeds = img[box], good[box], noise[box], seeds[box]
            local = ndimage.median_filter(np.where(sub_good, sub, 0.0), size=5, mode="nearest")
            with np.errstate(divide="ignore", invalid="ignore"):
                excess = np.where(sub_noise > 0, (sub - local) / sub_noise, 0.0)
            # grow seeds into the track: neighbours standing out of the local median
            grown = ndimage.binary_propagation(
                sub_seeds, structure=np.ones((3, 3), bool), mask=((excess >= config.grow_sigma) & sub_good) | sub_seeds
            )
            for sl, region in connected_regions(grown):
                vals = np.where(region, sub[sl], -np.inf)
                py, px = np.unravel_index(int(np.argmax(vals)), vals.shape)
                py, px = py + sl[0].start, px + sl[1].start
                gy, gx = py + y0 + oy, px + x0 + ox
                if not (cy0 <= gy < cy1 and cx0 <= gx < cx1):
                    continue
                diff = (sub[sl] - local[sl])[region]
                flux = float(np.sum(diff))
                err = float(np.sqrt(np.sum((sub_noise[sl] ** 2)[region])))
                npix = int(region.sum())
                ry, rx = np.nonzero(region)
                # a too-sharp group touching saturated pixels is the unsaturated end of a bleed
                # trail (or charge spilled beside a saturated core), not a cosmic ray
                by, bx = ry + sl[0].start + y0, rx + sl[1].start + x0
                touches_sat = any(
                    saturated_all[np.clip(by + dy, 0, ny - 1), np.clip(bx + dx, 0, nx - 1)].any()
                    for dy in (-1, 0, 1) for dx in (-1, 0, 1)
                )
                subtype = "bleed" if touches_sat else ("cosmic_ray" if npix > 1 else "hot_pixel")
                w = np.clip(diff, 0, None)
                wsum = w.sum() if w.sum() > 0 else 1.0
                rows.append((
                    float((rx * w).sum() / wsum + sl[1].start + x0 + ox),
                    float((ry * w).sum() / wsum + sl[0].start + y0 + oy),
                    gx, gy, flux, err, flux / err if err > 0 else np.nan, float(sharp[py + y0, px + x0]),
                    "artifact", "artifact", int(SourceFlag.TOO_SHARP),
                    subtype, npix, float(sharp[py + y0, px + x0]),
                ))
    saturated = ((mask & np.uint16(MaskBit.SATURATED)) != 0) & ((mask & np.uint16(MaskBit.BAD)) == 0)
    if saturated.any():
        smooth = ndimage.gaussian_filter(saturated.astype(np.float64), max(1.0, tile.psf.sigma), mode="constant")
        for sl, region in connected_regions(saturated):
            vals = np.where(region, smooth[sl], -1.0)
            py, px = np.unravel_index(int(np.argmax(vals)), vals.shape)
            blob = vals[py, px] >= 0.5  # a saturated disc, not a one-pixel column
            py, px = py + sl[0].start, px + sl[1].start
            gy, gx = py + oy, px + ox
            if not (cy0 <= gy < cy1 and cx0 <= gx < cx1):
                continue
            npix = int(region.sum())
            rows.append((
                float(gx), float(gy), gx, gy, np.nan, np.nan, np.nan, np.nan,
                "artifact", "artifact", int(SourceFlag.SATURATED),
                "saturation" if blob else "bleed", npix, np.nan,
            ))
    if not rows:
        return _empty()
    cols = list(zip(*rows))
    table = Table({name: np.asarray(col, dtype=dt) for (name, dt), col in zip(ARTIFACT_COLUMNS, cols)})
    order = np.lexsort((np.asarray(table["x_peak"]), np.asarray(table["y_peak"])))
    return table[order]

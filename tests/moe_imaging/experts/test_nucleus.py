"""The nucleus expert on synthetic fluorescence images with known nuclei."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import signal
from scipy.spatial import cKDTree

from contracts.errors import ConfigError
from contracts.flags import SourceFlag
from moe_imaging.experts.nucleus import NucleusExpert, NucleusExpertConfig, find_nuclei
from moe_imaging.psf import airy_psf, measure_fwhm
from moe_imaging.tile import Tile

PIXEL_UM = 0.325
PSF = airy_psf(numerical_aperture=0.75, wavelength_nm=520.0, pixel_size_um=PIXEL_UM)
CONFIG = NucleusExpertConfig.from_optics(diameter_um=(8.0, 14.0), pixel_size_um=PIXEL_UM)


def _ellipse(shape, y, x, a, b, angle):
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    c, s = math.cos(angle), math.sin(angle)
    u = (xx - x) * c + (yy - y) * s
    v = -(xx - x) * s + (yy - y) * c
    return (u / a) ** 2 + (v / b) ** 2 <= 1.0


def _scene(seed=0, shape=(600, 600), sigma=5.0):
    """Isolated nuclei (some dim), touching pairs, Airy blur, Gaussian noise."""
    rng = np.random.default_rng(seed)
    truth = []
    obj = np.zeros(shape)
    taken = np.zeros(shape, bool)

    def place(y, x, a, b, ang, amp):
        m = _ellipse(shape, y, x, a, b, ang)
        obj[m] = np.maximum(obj[m], amp)
        taken[_ellipse(shape, y, x, a + 4, b + 4, ang)] = True
        truth.append((x, y, amp))

    tries = 0
    while len(truth) < 18 and tries < 2000:
        tries += 1
        y, x = rng.uniform(40, shape[0] - 40, 2)
        a = rng.uniform(14, 20)
        b = a * rng.uniform(0.7, 1.0)
        if taken[_ellipse(shape, y, x, a + 4, b + 4, 0.0)].any():
            continue
        amp = 200.0 if len(truth) % 4 else 25.0  # every 4th one dim: 5 sigma per pixel
        place(y, x, a, b, rng.uniform(0, math.pi), amp)
    pairs = []
    for _ in range(3):  # touching pairs: centres 1.7 radii apart
        for _ in range(500):
            y, x = rng.uniform(50, shape[0] - 50, 2)
            r = 16.0
            if not taken[_ellipse(shape, y, x, 3 * r, 2 * r, 0.0)].any():
                break
        place(y, x - 0.85 * r, r, r, 0.0, 200.0)
        place(y, x + 0.85 * r, r, r, 0.0, 150.0)
        pairs.append((len(truth) - 2, len(truth) - 1))
    blurred = signal.fftconvolve(obj, PSF.image, mode="same")
    image = blurred + rng.normal(0, sigma, shape)
    return image, np.array(truth), pairs


def test_airy_psf_matches_diffraction_theory() -> None:
    fine = airy_psf(numerical_aperture=0.75, wavelength_nm=520.0, pixel_size_um=0.05)
    expected = 0.514 * 0.520 / 0.75 / 0.05
    assert fine.fwhm == pytest.approx(expected, rel=1e-6)
    assert measure_fwhm(fine.image) == pytest.approx(expected, rel=0.05)
    assert fine.image.sum() == pytest.approx(1.0) and fine.model == "airy"


def test_config_from_optics() -> None:
    assert CONFIG.diameter_px == pytest.approx((8.0 / PIXEL_UM, 14.0 / PIXEL_UM))
    with pytest.raises(ConfigError):
        NucleusExpertConfig.from_optics(pixel_size_um=0.0)
    with pytest.raises(ConfigError):
        NucleusExpertConfig(diameter_px=(30.0, 20.0))


@pytest.fixture(scope="module")
def found():
    image, truth, pairs = _scene()
    table = find_nuclei(Tile.from_image(image, PSF, noise=5.0), config=CONFIG)
    return table, truth, pairs


def test_finds_bright_and_dim_nuclei(found) -> None:
    table, truth, _ = found
    d, _ = cKDTree(np.column_stack([table["x"], table["y"]])).query(truth[:, :2])
    assert np.mean(d < 4.0) >= 0.95
    dim = truth[:, 2] < 100
    assert dim.sum() >= 3 and np.all(d[dim] < 4.0)
    assert set(np.asarray(table["kind"]).astype(str)) == {"nucleus"}


def test_touching_nuclei_are_split_and_flagged(found) -> None:
    table, truth, pairs = found
    tree = cKDTree(np.column_stack([table["x"], table["y"]]))
    for i, j in pairs:
        di, ki = tree.query(truth[i, :2])
        dj, kj = tree.query(truth[j, :2])
        assert di < 4.0 and dj < 4.0 and ki != kj
        assert table["flags"][ki] & int(SourceFlag.BLENDED)
        assert table["flags"][kj] & int(SourceFlag.BLENDED)


def test_no_spurious_nuclei(found) -> None:
    table, truth, _ = found
    d, _ = cKDTree(truth[:, :2]).query(np.column_stack([table["x"], table["y"]]))
    assert np.all(d < 6.0)
    # areas are those of nuclei, not of noise blobs
    assert np.min(table["area"]) > 0.25 * math.pi * (CONFIG.diameter_px[0] / 2) ** 2


def test_ownership_by_core() -> None:
    image, truth, _ = _scene(seed=1)
    tile = Tile.from_image(image, PSF, noise=5.0)
    left = Tile(image=tile.image, variance=tile.variance, mask=tile.mask, background=tile.background,
                psf=PSF, core=(0, 600, 0, 300))
    right = Tile(image=tile.image, variance=tile.variance, mask=tile.mask, background=tile.background,
                 psf=PSF, core=(0, 600, 300, 600))
    whole = find_nuclei(tile, config=CONFIG)
    halves = [find_nuclei(t, config=CONFIG) for t in (left, right)]
    assert len(halves[0]) + len(halves[1]) == len(whole)
    assert np.all(halves[0]["x_peak"] < 300) and np.all(halves[1]["x_peak"] >= 300)


def test_footprint_scales_with_the_expected_size() -> None:
    small = NucleusExpert(NucleusExpertConfig(diameter_px=(10.0, 20.0))).footprint(PSF)
    large = NucleusExpert(NucleusExpertConfig(diameter_px=(20.0, 40.0))).footprint(PSF)
    assert large > small >= 30


def test_microscopy_background_is_the_pipelines_and_survives_a_field_full_of_nuclei(tmp_path) -> None:
    """The two-pass background on an in-memory image equals detect_image's (Dask, blocks, tiles);
    on a small field packed with nuclei (no mesh left once they are masked) the coarse pass is kept."""
    from moe_imaging.experts.nucleus import microscopy_background
    from moe_imaging.psf import airy_psf
    from moe_imaging.simulate_microscopy import MicroscopySimConfig, simulate_microscopy
    from pipelines import detect_image
    from pipelines.io import write_ome_tiff

    for name, cfg in (("vignetted", MicroscopySimConfig(shape=(512, 512), seed=11, density_per_mm2=2500.0,
                                                        clump_fraction=0.45, vignetting=0.3)),
                      ("packed", MicroscopySimConfig(shape=(256, 256), seed=3, density_per_mm2=3000.0,
                                                     pixel_size_um=1.3))):
        sim = simulate_microscopy(cfg)
        path = write_ome_tiff(tmp_path / f"{name}.ome.tif", sim.image, pixel_size_um=cfg.pixel_size_um,
                              numerical_aperture=cfg.numerical_aperture, wavelength_nm=cfg.emission_wavelength_nm)
        res = detect_image(path, tile_size=128, checksum=False)
        expert = NucleusExpertConfig.from_optics(diameter_um=tuple(cfg.nucleus_diameter_um),
                                                 pixel_size_um=cfg.pixel_size_um)
        psf = airy_psf(numerical_aperture=cfg.numerical_aperture, wavelength_nm=cfg.emission_wavelength_nm,
                       pixel_size_um=cfg.pixel_size_um)
        ny, nx = cfg.shape
        here = microscopy_background(sim.image, expert, psf).evaluate(0, ny, 0, nx)
        there = res.background.evaluate(0, ny, 0, nx)
        assert np.allclose(here[0], there[0], rtol=1e-9) and np.allclose(here[1], there[1], rtol=1e-9), name
        # the estimate is the sky, not the nuclei: within a few noise units of the simulator's truth
        true_level = cfg.background_e / cfg.gain
        assert abs(np.median(here[0]) - true_level) < 3 * np.median(here[1]), name

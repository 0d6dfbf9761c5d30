"""Tests of moe_imaging.simulate_microscopy: the fluorescence simulator and its label truth."""

from __future__ import annotations

import math

import numpy as np
import pytest
from astropy.table import Table
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from contracts.errors import ConfigError, PSFError
from moe_imaging.psf import measure_fwhm
from moe_imaging.simulate_microscopy import (
    MicroscopySimConfig,
    SimulatedMicroscopy,
    simulate_microscopy,
    true_airy_psf,
)

TRUTH_COLUMNS = [
    "label",
    "x",
    "y",
    "x_center",
    "y_center",
    "area_px",
    "major_um",
    "minor_um",
    "angle_deg",
    "brightness_e",
    "dim",
    "clump_id",
    "touching",
]


def _vignetting(shape: tuple[int, int], vig: float) -> np.ndarray:
    """The expected vignetting map, written out independently of the module."""
    ny, nx = shape
    yy, xx = np.mgrid[0:ny, 0:nx].astype(float)
    yc, xc = (ny - 1) / 2.0, (nx - 1) / 2.0
    return 1.0 - vig * ((xx - xc) ** 2 + (yy - yc) ** 2) / (xc**2 + yc**2)


def _cores(labels: np.ndarray, iterations: int) -> dict[int, tuple[tuple, np.ndarray]]:
    """Per label: its bounding box (padded) and the eroded mask inside it."""
    out = {}
    for k, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None:
            continue
        box = tuple(slice(max(0, s.start - 1), s.stop + 1) for s in sl)
        out[k] = (box, ndimage.binary_erosion(labels[box] == k, iterations=iterations))
    return out


def _empty(**kw: object) -> MicroscopySimConfig:
    """A field with no nuclei (pure background)."""
    return MicroscopySimConfig(**{"shape": (256, 256), "density_per_mm2": 0.0, **kw})


@pytest.fixture(scope="module")
def default_sim() -> SimulatedMicroscopy:
    return simulate_microscopy(MicroscopySimConfig())


@pytest.fixture(scope="module")
def dense_sim() -> SimulatedMicroscopy:
    """More nuclei for population statistics (about 440 on a 1024^2 field)."""
    return simulate_microscopy(MicroscopySimConfig(density_per_mm2=4000.0, seed=7))


# --------------------------------------------------------------------------- basics


def test_default_field_types_schema_and_metadata(default_sim: SimulatedMicroscopy) -> None:
    sim = default_sim
    cfg = MicroscopySimConfig()
    assert sim.image.shape == sim.labels.shape == (1024, 1024)
    assert sim.image.dtype == np.uint16
    assert sim.labels.dtype == np.int32
    assert isinstance(sim.truth, Table)
    assert sim.truth.colnames == TRUTH_COLUMNS
    # 1500 per mm^2 over (1024 * 0.325 um)^2 = 0.1108 mm^2 -> 166.2 nuclei, all fit
    expected = 1500.0 * (1024 * 0.325e-3) ** 2
    assert abs(len(sim.truth) - expected) <= 1.0
    md = sim.metadata
    assert md["pixel_size_um"] == 0.325
    assert md["numerical_aperture"] == 0.75
    assert md["emission_wavelength_nm"] == 520.0
    assert md["gain"] == 1.0 and md["read_noise_e"] == 2.0
    assert md["saturation_adu"] == 65535
    assert md["n_nuclei"] == len(sim.truth)
    assert md["psf_fwhm_px"] == pytest.approx(0.514 * 0.520 / 0.75 / 0.325, rel=2e-3)
    assert md["config_hash"] == cfg.config_hash()
    assert sim.truth.meta["config_hash"] == cfg.config_hash()


def test_deterministic_for_a_seed_and_different_for_another() -> None:
    cfg = MicroscopySimConfig(shape=(256, 320), seed=11, density_per_mm2=3000.0)
    a, b = simulate_microscopy(cfg), simulate_microscopy(cfg)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.psf_image, b.psf_image)
    assert len(a.truth) > 3
    for name in TRUTH_COLUMNS:
        np.testing.assert_array_equal(a.truth[name], b.truth[name])
    c = simulate_microscopy(cfg.replace(seed=12))
    assert not np.array_equal(a.labels, c.labels)
    assert not np.array_equal(a.image, c.image)


def test_noise_stream_is_independent_of_the_scene() -> None:
    cfg = MicroscopySimConfig(shape=(256, 256), seed=5, density_per_mm2=3000.0)
    a = simulate_microscopy(cfg)
    b = simulate_microscopy(cfg.replace(read_noise_e=8.0))
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.truth["brightness_e"], b.truth["brightness_e"])
    assert not np.array_equal(a.image, b.image)


def test_empty_field_has_full_schema() -> None:
    sim = simulate_microscopy(_empty())
    assert len(sim.truth) == 0
    assert sim.truth.colnames == TRUTH_COLUMNS
    assert not sim.labels.any()
    assert sim.metadata["n_nuclei"] == 0


# --------------------------------------------------------------------------- labels and truth


def test_labels_consistent_with_truth(default_sim: SimulatedMicroscopy) -> None:
    sim, t = default_sim, default_sim.truth
    n = len(t)
    assert n > 100
    np.testing.assert_array_equal(t["label"], np.arange(1, n + 1))
    assert int(sim.labels.max()) == n and int(sim.labels.min()) == 0
    counts = np.bincount(sim.labels.ravel(), minlength=n + 1)[1:]
    assert np.all(counts > 0)  # every nucleus is visible
    np.testing.assert_array_equal(t["area_px"], counts)
    com = np.array(ndimage.center_of_mass(np.ones(sim.labels.shape), sim.labels, t["label"]))
    assert np.max(np.abs(com[:, 1] - t["x"])) < 0.5
    assert np.max(np.abs(com[:, 0] - t["y"])) < 0.5
    # isolated nuclei: the mask is the ellipse (centre and area), independently of the mask
    iso = np.asarray(t["clump_id"]) == -1
    assert iso.sum() > 50
    d = np.hypot(t["x"] - t["x_center"], t["y"] - t["y_center"])
    assert np.max(d[iso]) < 0.5
    ellipse_area = np.pi / 4.0 * t["major_um"] * t["minor_um"] / 0.325**2
    ratio = np.asarray(t["area_px"] / ellipse_area)
    assert np.all(np.abs(ratio[iso] - 1.0) < 0.04)
    # clump members can be partly covered by a later one, never by more than 40 %
    assert np.all(ratio[~iso] > 0.6 * 0.97)
    assert np.all(ratio < 1.04)
    # shape parameters within the configured ranges
    assert np.all((t["major_um"] >= 8.0) & (t["major_um"] <= 14.0))
    q = t["minor_um"] / t["major_um"]
    assert np.all((q >= 0.6 - 1e-9) & (q <= 1.0 + 1e-9))
    assert np.all((t["angle_deg"] >= 0.0) & (t["angle_deg"] < 180.0))
    # every nucleus lies inside the field
    assert sim.labels[0, :].max() == sim.labels[-1, :].max() == 0
    assert sim.labels[:, 0].max() == sim.labels[:, -1].max() == 0


def test_clumps_touch_and_isolated_nuclei_do_not(dense_sim: SimulatedMicroscopy) -> None:
    t = dense_sim.truth
    n = len(t)
    clump = np.asarray(t["clump_id"])
    members = clump >= 0
    ids, sizes = np.unique(clump[members], return_counts=True)
    np.testing.assert_array_equal(ids, np.arange(ids.size))  # numbered 0..K-1
    assert np.all((sizes >= 2) & (sizes <= 4))
    assert np.unique(sizes).size >= 2  # a mix of clump sizes
    assert abs(members.mean() - 0.3) < 0.08
    touching = np.asarray(t["touching"])
    assert touching[members].mean() >= 0.95
    assert not touching[~members].any()
    # the flag agrees with an independent dilation test of each label
    slices = ndimage.find_objects(dense_sim.labels)
    for k in np.flatnonzero(members)[:20].tolist() + np.flatnonzero(~members)[:20].tolist():
        box = tuple(slice(max(0, s.start - 2), s.stop + 2) for s in slices[k])
        region = dense_sim.labels[box] == k + 1
        ring = ndimage.binary_dilation(region) & ~region  # 4-neighbours: a shared edge
        others = dense_sim.labels[box][ring]
        assert bool(np.any(others > 0)) == bool(touching[k]), k
    assert n > 300


def test_dim_population(dense_sim: SimulatedMicroscopy) -> None:
    sim, t = dense_sim, dense_sim.truth
    dim = np.asarray(t["dim"])
    assert abs(dim.mean() - 0.15) < 0.01
    b = np.asarray(t["brightness_e"])
    ratio = np.median(b[~dim]) / np.median(b[dim])
    assert 5.0 < ratio < 10.0
    assert np.max(b[dim]) < np.min(b[~dim])  # two separate populations
    assert np.mean(b[~dim]) == pytest.approx(2000.0, rel=0.06)
    # the image carries the truth brightness: interior signal / (brightness * vignetting)
    vmap = _vignetting(sim.image.shape, 0.3)
    signal = sim.image.astype(float) - 100.0 * vmap
    measured = []
    cores = _cores(sim.labels, 3)
    for row in t[np.asarray(t["clump_id"]) == -1]:
        box, core = cores[int(row["label"])]
        measured.append(signal[box][core].mean() / (row["brightness_e"] * vmap[box][core].mean()))
    measured = np.array(measured)
    assert np.median(measured) == pytest.approx(1.0, abs=0.05)
    assert np.all(np.abs(measured - 1.0) < 0.35)


def test_texture_modulates_nucleus_interiors() -> None:
    base = {"shape": (512, 512), "seed": 3, "clump_fraction": 0.0, "dim_fraction": 0.0}

    def interior_cv(texture: float) -> float:
        sim = simulate_microscopy(MicroscopySimConfig(texture=texture, **base))
        cvs = []
        for box, core in _cores(sim.labels, 4).values():
            pix = sim.image[box][core].astype(float) - 100.0
            cvs.append(pix.std() / pix.mean())
        return float(np.median(cvs))

    flat, textured = interior_cv(0.0), interior_cv(0.25)
    assert flat < 0.05  # Poisson (2.2 % at 2000 e-) and a little vignetting
    assert 0.12 < textured < 0.3


# --------------------------------------------------------------------------- PSF


@pytest.mark.parametrize(
    ("na", "wavelength", "pixel"),
    [(0.75, 520.0, 0.065), (1.4, 520.0, 0.04), (0.75, 520.0, 0.1), (0.45, 650.0, 0.2)],
)
def test_airy_fwhm_matches_0514_lambda_over_na(na: float, wavelength: float, pixel: float) -> None:
    psf, fwhm = true_airy_psf(na, wavelength, pixel)
    expected = 0.514 * wavelength * 1e-3 / na / pixel
    assert fwhm == pytest.approx(expected, rel=2e-3)
    assert expected > 3.0  # sampled finely enough for pixel integration to matter < 5 %
    assert measure_fwhm(psf) == pytest.approx(expected, rel=0.05)


def test_airy_psf_shape_normalisation_and_rings() -> None:
    psf, _fwhm = true_airy_psf(0.75, 520.0, 0.065)
    n = psf.shape[0]
    assert psf.shape == (n, n) and n % 2 == 1
    assert psf.sum() == pytest.approx(1.0, abs=1e-12)
    c = n // 2
    assert np.unravel_index(np.argmax(psf), psf.shape) == (c, c)
    np.testing.assert_allclose(psf, psf[::-1, :], rtol=1e-10, atol=1e-15)
    np.testing.assert_allclose(psf, psf.T, rtol=1e-10, atol=1e-15)
    # the first dark ring at 0.61 lambda / NA: the horizontal profile has its minimum there
    ring1 = 0.6098 * 0.520 / 0.75 / 0.065  # 6.50 px
    profile = psf[c, c:]
    first_min = int(np.argmin(profile[: int(ring1) + 3]))
    assert abs(first_min - ring1) <= 1.0
    assert profile[first_min] < 0.01 * profile[0]
    # the image reaches at least the third dark ring, 1.619 lambda / NA
    assert c >= 1.619 * 0.520 / 0.75 / 0.065


@settings(max_examples=25, deadline=None)
@given(
    na=st.floats(0.4, 1.5),
    wavelength=st.floats(350.0, 900.0),
    pixel=st.floats(0.08, 2.0),
)
def test_airy_psf_properties(na: float, wavelength: float, pixel: float) -> None:
    psf, fwhm = true_airy_psf(na, wavelength, pixel)
    assert psf.ndim == 2 and psf.shape[0] == psf.shape[1] and psf.shape[0] % 2 == 1
    assert psf.shape[0] >= 5
    assert np.all(psf >= 0.0)
    assert psf.sum() == pytest.approx(1.0, abs=1e-9)
    c = psf.shape[0] // 2
    assert psf[c, c] == psf.max()
    assert c >= 1.619 * wavelength * 1e-3 / na / pixel  # third dark ring covered
    assert fwhm == pytest.approx(0.5145 * wavelength * 1e-3 / na / pixel, rel=1e-3)


def test_airy_psf_rejects_bad_arguments() -> None:
    with pytest.raises(PSFError, match="numerical_aperture"):
        true_airy_psf(0.0, 520.0, 0.1)
    with pytest.raises(PSFError, match="wavelength_nm"):
        true_airy_psf(0.5, -1.0, 0.1)
    with pytest.raises(PSFError, match="oversample"):
        true_airy_psf(0.5, 520.0, 0.1, oversample=0)
    with pytest.raises(PSFError, match="FWHM"):
        true_airy_psf(0.1, 520.0, 0.01)  # 268 px per FWHM


def test_image_psf_is_the_airy_psf(default_sim: SimulatedMicroscopy) -> None:
    psf, fwhm = true_airy_psf(0.75, 520.0, 0.325)
    np.testing.assert_array_equal(default_sim.psf_image, psf)
    assert default_sim.metadata["psf_fwhm_px"] == fwhm


# --------------------------------------------------------------------------- detector


@pytest.mark.parametrize("vig", [0.0, 0.3, 0.6])
def test_vignetting_darkens_the_corners(vig: float) -> None:
    cfg = _empty(background_e=1000.0, vignetting=vig, seed=2)
    img = simulate_microscopy(cfg).image.astype(float)
    vmap = _vignetting(img.shape, vig)
    box = 24
    centre = img[128 - box // 2 : 128 + box // 2, 128 - box // 2 : 128 + box // 2].mean()
    corners = [
        (img[sy, sx].mean(), vmap[sy, sx].mean())
        for sy in (slice(0, box), slice(-box, None))
        for sx in (slice(0, box), slice(-box, None))
    ]
    assert centre == pytest.approx(1000.0, rel=0.01)
    for mean, v in corners:
        assert mean / centre == pytest.approx(v, abs=0.012)
    # the corner pixels themselves are down by the configured fraction
    corner_px = np.mean([img[0, 0], img[0, -1], img[-1, 0], img[-1, -1]])
    assert corner_px / 1000.0 == pytest.approx(1.0 - vig, abs=0.15)


@pytest.mark.parametrize(("gain", "read"), [(1.0, 2.0), (2.0, 2.0), (0.5, 10.0)])
def test_background_noise_matches_poisson_plus_read(gain: float, read: float) -> None:
    bg, vig = 100.0, 0.3
    img = simulate_microscopy(_empty(gain=gain, read_noise_e=read, seed=4)).image.astype(float)
    expected_e = bg * _vignetting(img.shape, vig)
    var_adu = (expected_e + read**2) / gain**2 + 1.0 / 12.0  # + rounding to integer ADU
    z = (img - expected_e / gain) / np.sqrt(var_adu)
    assert z.mean() == pytest.approx(0.0, abs=0.02)
    assert z.std() == pytest.approx(1.0, abs=0.02)
    # in electrons, in the central region: sqrt(background * vignetting + read^2)
    core = img[96:160, 96:160] * gain
    expected = math.sqrt(bg * float(_vignetting(img.shape, vig)[96:160, 96:160].mean()) + read**2)
    assert core.std() == pytest.approx(expected, rel=0.05)


def test_background_noise_between_nuclei(default_sim: SimulatedMicroscopy) -> None:
    sim = default_sim
    far = ~ndimage.binary_dilation(sim.labels > 0, iterations=12)
    assert far.mean() > 0.5
    expected_e = 100.0 * _vignetting(sim.image.shape, 0.3)
    z = (sim.image[far] - expected_e[far]) / np.sqrt(expected_e[far] + 4.0 + 1.0 / 12.0)
    assert z.mean() == pytest.approx(0.0, abs=0.01)
    assert z.std() == pytest.approx(1.0, abs=0.01)


def test_uint16_saturates_without_wrap_around() -> None:
    cfg = MicroscopySimConfig(
        shape=(256, 256), seed=9, brightness_e=2e5, dim_fraction=0.0, texture=0.0
    )
    sim = simulate_microscopy(cfg)
    assert sim.image.dtype == np.uint16
    assert sim.image.max() == 65535
    cores = ndimage.binary_erosion(sim.labels > 0, iterations=3)
    assert cores.any()
    # a wrapped value would be small; every nucleus core is at the ceiling
    assert np.all(sim.image[cores] == 65535)
    sim12 = simulate_microscopy(cfg.replace(bit_depth=12))
    assert sim12.image.max() == 4095
    assert np.all(sim12.image[cores] == 4095)
    assert sim12.metadata["saturation_adu"] == 4095


def test_low_signal_clips_at_zero() -> None:
    sim = simulate_microscopy(_empty(background_e=0.0, read_noise_e=5.0))
    assert sim.image.min() == 0
    assert 0 < np.mean(sim.image == 0) < 0.7  # the negative half of the read noise


# --------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("shape", (8, 256)),
        ("shape", (256.0, 256)),
        ("shape", 256),
        ("shape", (256, 256, 1)),
        ("seed", -1),
        ("seed", 1.5),
        ("pixel_size_um", 0.0),
        ("numerical_aperture", 0.0),
        ("numerical_aperture", 2.0),
        ("emission_wavelength_nm", 100.0),
        ("nucleus_diameter_um", (14.0, 8.0)),
        ("nucleus_diameter_um", (0.0, 8.0)),
        ("nucleus_diameter_um", (8.0, 500.0)),
        ("nucleus_diameter_um", 10.0),
        ("axis_ratio_range", (0.5, 1.5)),
        ("axis_ratio_range", (0.0, 1.0)),
        ("density_per_mm2", -1.0),
        ("clump_fraction", 1.5),
        ("dim_fraction", -0.1),
        ("brightness_e", 0.0),
        ("texture", 2.0),
        ("background_e", -1.0),
        ("vignetting", 1.2),
        ("read_noise_e", -1.0),
        ("gain", 0.0),
        ("gain", "1"),
        ("bit_depth", 32),
        ("bit_depth", 12.0),
        ("bit_depth", True),
    ],
)
def test_config_validation_names_the_field(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=field):
        MicroscopySimConfig(**{field: value})


def test_config_derived_constraints() -> None:
    # nuclei under 2 px across their minor axis
    with pytest.raises(ConfigError, match="nucleus_diameter_um"):
        MicroscopySimConfig(pixel_size_um=5.0)
    # the PSF would be sampled by > 50 px per FWHM
    with pytest.raises(ConfigError, match="pixel_size_um"):
        MicroscopySimConfig(pixel_size_um=0.005, nucleus_diameter_um=(0.1, 0.2))


def test_config_from_mapping_and_hash() -> None:
    cfg = MicroscopySimConfig.from_mapping({"shape": [128, 160], "nucleus_diameter_um": [6, 9]})
    assert cfg.shape == (128, 160) and cfg.nucleus_diameter_um == (6, 9)
    assert hash(cfg) == hash(MicroscopySimConfig(shape=(128, 160), nucleus_diameter_um=(6, 9)))
    with pytest.raises(ConfigError, match="densty"):
        MicroscopySimConfig.from_mapping({"densty_per_mm2": 1.0})
    assert cfg.config_hash() != MicroscopySimConfig().config_hash()
    sim = simulate_microscopy(cfg)
    assert sim.image.shape == (128, 160)

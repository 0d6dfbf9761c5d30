"""End to end with the other ways an exposure can come: a PSF image as the prior
(the real Spitzer/IRAC PSF) and a multi-extension file with variance and mask planes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from scipy import ndimage
from scipy.spatial import cKDTree

from contracts.flags import SourceFlag
from moe_cli import main
from moe_imaging.psf import psf_from_image
from moe_imaging.simulate import SurveySimConfig, simulate_survey
from pipelines import detect_image
from pipelines.io import read_psf_image, write_exposure

DATA = Path(__file__).resolve().parents[1] / "data"
IRAC = DATA / "psf" / "irac_ch1_flight.fits"


def _place(shape, psf_image, ys, xs, fluxes):
    """Point sources with a given detector-grid PSF, sub-pixel positions by spline shift."""
    out = np.zeros(shape)
    h = psf_image.shape[0] // 2
    for y, x, f in zip(ys, xs, fluxes):
        iy, ix = int(round(y)), int(round(x))
        stamp = ndimage.shift(psf_image, (y - iy, x - ix), order=3, mode="constant") * f
        out[iy - h : iy + h + 1, ix - h : ix + h + 1] += stamp
    return out


@pytest.fixture(scope="module")
def irac_field(tmp_path_factory):
    image, oversampling = read_psf_image(IRAC)
    psf = psf_from_image(image, oversampling=oversampling)
    rng = np.random.default_rng(3)
    n, sigma = 150, 5.0
    shape = (600, 600)
    ys = rng.uniform(30, shape[0] - 30, n)
    xs = rng.uniform(30, shape[1] - 30, n)
    snr = np.exp(rng.uniform(np.log(20), np.log(300), n))
    fluxes = snr * sigma / np.sqrt((psf.image**2).sum())
    data = 100.0 + _place(shape, psf.image, ys, xs, fluxes) + rng.normal(0, sigma, shape)
    path = tmp_path_factory.mktemp("irac") / "irac_field.fits"
    write_exposure(path, data.astype(np.float32), fits.Header({"GAIN": 1.0}))  # no PSF keywords
    return path, ys, xs


def test_psf_image_prior_from_the_command_line(irac_field, tmp_path) -> None:
    path, ys, xs = irac_field
    out = tmp_path / "cat.ecsv"
    assert main(["detect", str(path), "--out", str(out), "--psf", str(IRAC), "--quiet"]) == 0
    from catalogs import read_catalog

    cat = read_catalog(out)
    assert cat.meta["provenance"]["psf"]["source"] == "image:irac_ch1_flight.fits"
    assert cat.meta["provenance"]["psf"]["model"] == "empirical"
    d, _ = cKDTree(np.column_stack([cat["y"], cat["x"]])).query(np.column_stack([ys, xs]))
    assert np.mean(d < 1.0) >= 0.95  # all these stars have S/N >= 20
    assert np.median(d) < 0.2


def test_psf_image_prior_beats_a_wrong_gaussian_guess(irac_field) -> None:
    """The undersampled IRAC PSF (FWHM ~1.4 px, with wings) as the prior gives
    better positions than a header-style FWHM guess of 3 px."""
    path, ys, xs = irac_field
    with_psf = detect_image(path, psf_file=IRAC, checksum=False).catalog
    from pipelines import DetectionConfig
    from pipelines.config import PSFConfig

    guess = detect_image(path, config=DetectionConfig(psf=PSFConfig(fwhm=3.0)), checksum=False).catalog
    tree = cKDTree(np.column_stack([ys, xs]))
    d1, _ = tree.query(np.column_stack([with_psf["y"], with_psf["x"]]))
    d2, _ = tree.query(np.column_stack([guess["y"], guess["x"]]))
    assert np.median(d1[d1 < 1.5]) <= np.median(d2[d2 < 1.5]) + 1e-3


@pytest.fixture(scope="module")
def mef_pair(tmp_path_factory):
    """The same simulated field as a plain image and as SCI + VAR + MASK (a bad column)."""
    sim = simulate_survey(SurveySimConfig(size=768, seed=21))
    folder = tmp_path_factory.mktemp("mef")
    plain = write_exposure(folder / "plain.fits", sim.image, sim.header)
    gain, rdn = sim.header["GAIN"], sim.header["RDNOISE"]
    variance = (np.clip(sim.image, 0, None) / gain + (rdn / gain) ** 2).astype(np.float32)
    mask = np.zeros(sim.image.shape, np.uint8)
    mask[:, 400] = 1  # a bad column
    data = sim.image.copy()
    data[:, 400] = 1e5  # garbage under the mask must be ignored
    mef = write_exposure(folder / "mef.fits", data, sim.header, variance=variance, mask=mask)
    return plain, mef, sim


def test_mef_with_variance_and_mask_planes(mef_pair) -> None:
    plain, mef, sim = mef_pair
    with fits.open(mef) as hdul:
        assert {h.name for h in hdul} >= {"SCI", "VAR", "MASK"}
    a = detect_image(plain, checksum=False).catalog
    b = detect_image(mef, checksum=False).catalog
    # nothing is detected on the masked column's garbage
    on_column = np.abs(np.asarray(b["x"]) - 400) < 1.0
    assert not on_column.any()
    # detections next to it carry MASKED
    near = (np.abs(np.asarray(b["x"]) - 400) < 2.5) & ~on_column
    assert np.all((np.asarray(b["flags"])[near] & int(SourceFlag.MASKED)) != 0)
    # elsewhere the two agree: the variance plane includes the sources' own
    # Poisson noise, which lowers the S/N of bright and very sharp objects
    # (a few cosmic rays drop out), not what is found
    far_a = np.abs(np.asarray(a["x"]) - 400) > 15
    far_b = np.abs(np.asarray(b["x"]) - 400) > 15
    ta = cKDTree(np.column_stack([a["y"][far_a], a["x"][far_a]]))
    d, _ = ta.query(np.column_stack([b["y"][far_b], b["x"][far_b]]))
    assert np.mean(d < 0.5) > 0.97
    assert abs(far_a.sum() - far_b.sum()) <= max(5, 0.05 * far_a.sum())


def test_distributed_cluster_gives_the_same_catalog(mef_pair) -> None:
    """One task per tile on a real (process-based) Dask cluster: the exposure
    travels as a small handle, workers read their own pixels, same catalog."""
    from distributed import Client, LocalCluster

    plain, _, _ = mef_pair
    local = detect_image(plain, tile_size=256, checksum=False).catalog
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with Client(cluster) as client:
            remote = detect_image(plain, tile_size=256, checksum=False, client=client).catalog
    np.testing.assert_array_equal(remote["source_id"], local["source_id"])
    np.testing.assert_allclose(remote["flux"], local["flux"], rtol=1e-6)


def test_union_of_survey_experts_labels_cosmic_rays_as_artifacts(tmp_path) -> None:
    """point + extended + artifact, fused: cosmic rays end up as artifacts, not sources."""
    from pipelines import DetectionConfig

    sim = simulate_survey(SurveySimConfig(size=768, seed=23, cosmic_ray_density=60.0))
    path = write_exposure(tmp_path / "union.fits", sim.image, sim.header)
    cfg = DetectionConfig(experts=("point", "extended", "artifact"))
    cat = detect_image(path, config=cfg, checksum=False).catalog
    kind = np.asarray(cat["kind"]).astype(str)
    assert {"star", "artifact"} <= set(kind)
    assert {"experts", "point_snr", "artifact_snr", "extended_snr"} <= set(cat.colnames)
    truth = sim.truth
    cr = np.asarray(truth["kind"]).astype(str) == "cosmic_ray"
    d, j = cKDTree(np.column_stack([cat["x"], cat["y"]])).query(np.column_stack([truth["x"][cr], truth["y"][cr]]))
    near = d <= 1.5 + 0.5 * np.asarray(truth["npix"])[cr]
    assert near.mean() >= 0.95
    assert np.mean(near & (kind[j] != "artifact")) <= 0.05
    # the same catalog whatever the tiling
    tiled = detect_image(path, config=cfg, tile_size=256, checksum=False).catalog
    np.testing.assert_array_equal(tiled["source_id"], cat["source_id"])

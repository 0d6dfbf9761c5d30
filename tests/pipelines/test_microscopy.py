"""Microscopy mode: TIFF/OME-TIFF in, nucleus catalog out, the same way as FITS."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
from scipy.spatial import cKDTree

from catalogs import read_catalog
from moe_cli import main
from pipelines import detect_image
from pipelines.io import open_tiff, parse_ome_optics, write_ome_tiff

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "moe_imaging" / "experts"))
from test_nucleus import _scene  # noqa: E402  (the synthetic fluorescence scene)


@pytest.fixture(scope="module")
def nuclei_tiff(tmp_path_factory):
    image, truth, pairs = _scene(seed=2)
    img = np.clip(image + 300.0, 0, 65535).astype(np.uint16)
    path = write_ome_tiff(
        tmp_path_factory.mktemp("mic") / "nuclei.ome.tif", img,
        pixel_size_um=0.325, numerical_aperture=0.75, wavelength_nm=520.0,
    )
    return path, img, truth, pairs


def test_ome_metadata_is_read(nuclei_tiff) -> None:
    path, img, _, _ = nuclei_tiff
    exp = open_tiff(path)
    assert exp.shape == img.shape and exp.dtype == np.uint16
    assert exp.optics.pixel_size_um == pytest.approx(0.325)
    assert exp.optics.numerical_aperture == pytest.approx(0.75)
    assert exp.optics.wavelength_nm == pytest.approx(520.0)
    section = exp.read(100, 150, 20, 90)
    np.testing.assert_array_equal(section.data, img[100:150, 20:90].astype(np.float32))
    lazy = exp.to_xarray(chunks=256)
    np.testing.assert_array_equal(lazy["data"].values, img.astype(np.float32))


def test_ome_units_are_converted() -> None:
    xml = ('<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06"><Image ID="Image:0">'
           '<Pixels ID="Pixels:0" PhysicalSizeX="325" PhysicalSizeXUnit="nm">'
           '<Channel ID="Channel:0" EmissionWavelength="0.6" EmissionWavelengthUnit="µm"/></Pixels></Image></OME>')
    optics = parse_ome_optics(xml)
    assert optics.pixel_size_um == pytest.approx(0.325)
    assert optics.wavelength_nm == pytest.approx(600.0)
    assert parse_ome_optics("not xml") == parse_ome_optics(None)


def test_detect_finds_the_nuclei_and_splits_touching_ones(nuclei_tiff, tmp_path) -> None:
    path, _, truth, pairs = nuclei_tiff
    out = tmp_path / "nuclei.parquet"
    assert main(["detect", str(path), "--out", str(out), "--quiet"]) == 0
    cat = read_catalog(out)
    prov = cat.meta["provenance"]
    assert prov["mode"] == "microscopy" and prov["psf"]["model"] == "airy"
    assert set(np.asarray(cat["kind"]).astype(str)) == {"nucleus"}
    assert np.all(np.isnan(cat["ra"]))
    tree = cKDTree(np.column_stack([cat["x"], cat["y"]]))
    d, k = tree.query(truth[:, :2])
    assert np.mean(d < 4.0) >= 0.95
    for i, j in pairs:
        assert k[i] != k[j]
    expected_area = math.pi * 16.0**2
    split = [cat["area"][k[i]] for pair in pairs for i in pair]
    assert np.median(split) == pytest.approx(expected_area, rel=0.25)


def test_microscopy_catalog_does_not_depend_on_tiling(nuclei_tiff) -> None:
    path = nuclei_tiff[0]
    whole = detect_image(path, tile_size=None, checksum=False).catalog
    tiled = detect_image(path, tile_size=256, checksum=False).catalog
    np.testing.assert_array_equal(tiled["source_id"], whole["source_id"])
    np.testing.assert_allclose(tiled["x"], whole["x"], atol=1e-4)
    np.testing.assert_allclose(tiled["flux"], whole["flux"], rtol=1e-4)


def test_plain_tiff_needs_a_pixel_size(tmp_path, capsys) -> None:
    path = tmp_path / "plain.tif"
    tifffile.imwrite(path, np.random.default_rng(0).normal(100, 5, (200, 200)).astype(np.float32))
    rc = main(["detect", str(path), "--out", str(tmp_path / "c.ecsv"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert "plain.tif" in err and "--pixel-size" in err
    assert main(["detect", str(path), "--out", str(tmp_path / "c.ecsv"), "--quiet", "--pixel-size", "0.325"]) == 0


@pytest.mark.parametrize(
    "case,cause",
    [("corrupt", ("not a readable TIFF", "no image")), ("stack", ("single 2-D image plane",))],
)
def test_bad_tiff_gives_one_line(tmp_path, capsys, case, cause) -> None:
    path = tmp_path / f"{case}.tif"
    if case == "corrupt":
        path.write_bytes(b"II*\x00" + bytes(range(200)))
    else:
        tifffile.imwrite(path, np.zeros((3, 64, 64), np.uint16), photometric="minisblack")
    rc = main(["detect", str(path), "--out", str(tmp_path / "c.ecsv"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and str(path.name) in err
    assert any(c in err for c in cause)


def test_unknown_file_type_names_the_mode_option(tmp_path, capsys) -> None:
    path = tmp_path / "image.png"
    path.write_bytes(b"\x89PNG")
    rc = main(["detect", str(path), "--out", str(tmp_path / "c.ecsv"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "--mode" in err

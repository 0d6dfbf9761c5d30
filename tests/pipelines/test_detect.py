"""End-to-end tests of ``pipelines.detect_image`` and the ``moe-imaging detect`` CLI.

* the catalog does not depend on the tiling (simulated field with saturated stars,
  bleed trails, cosmic rays and streaks; stars on tile seams);
* parity with Source Extractor on SEP's reference image;
* bad input gives one line on stderr and exit status 2, never a traceback;
* the catalog files, their provenance and sky coordinates;
* the lazy xarray view of an exposure; the false-detection rate on pure noise.
"""

from __future__ import annotations

import hashlib
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS
from scipy.spatial import cKDTree

from catalogs import read_catalog
from contracts.flags import SourceFlag
from moe_cli import main
from moe_imaging import __version__
from moe_imaging.simulate import SurveySimConfig, simulate_survey
from pipelines import DetectionConfig, detect_image, open_exposure
from pipelines.io import Exposure, write_exposure

DATA = Path(__file__).resolve().parents[1] / "data"
SEP_DIR = DATA / "sep"
CONSOLE_SCRIPT = Path(sys.executable).with_name("moe-imaging")

FLOAT_COLUMNS = ("x", "y", "flux", "flux_err", "snr", "a", "b", "theta", "ra", "dec")
EXACT_COLUMNS = ("source_id", "x_peak", "y_peak", "flags", "kind")

SATURATED = int(SourceFlag.SATURATED)


# ----------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------


def _moffat(shape: tuple[int, int], x0: float, y0: float, flux: float, *,
            fwhm: float = 3.0, beta: float = 4.765, sub: int = 5) -> np.ndarray:
    """A Moffat star of total ``flux`` at (x0, y0) (0-based), integrated over pixels
    by ``sub`` x ``sub`` sampling."""
    alpha = fwhm / (2.0 * math.sqrt(2.0 ** (1.0 / beta) - 1.0))
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64)
    out = np.zeros(shape)
    offsets = (np.arange(sub) + 0.5) / sub - 0.5
    for oy in offsets:
        for ox in offsets:
            r2 = ((xx + ox - x0) ** 2 + (yy + oy - y0) ** 2) / alpha**2
            out += (1.0 + r2) ** (-beta)
    return flux * out * (beta - 1.0) / (math.pi * alpha**2) / sub**2


def _noise(shape: tuple[int, int], seed: int, *, sky: float = 1000.0, sigma: float = 10.0) -> np.ndarray:
    return sky + sigma * np.random.default_rng(seed).standard_normal(shape)


def _fwhm_header(fwhm: float = 3.0, **cards: object) -> fits.Header:
    header = fits.Header()
    header["FWHM"] = (fwhm, "[px] PSF FWHM")
    for key, value in cards.items():
        header[key] = value
    return header


def _assert_same_rows(got, ref, *, label: str) -> None:
    """Same rows in the same order, equal integer and string columns."""
    assert len(got) == len(ref), (
        f"{label}: {len(got)} rows vs {len(ref)}; only in {label}: "
        f"{sorted(set(got['source_id']) - set(ref['source_id']))[:10]}, only in reference: "
        f"{sorted(set(ref['source_id']) - set(got['source_id']))[:10]}"
    )
    for name in EXACT_COLUMNS:
        np.testing.assert_array_equal(np.asarray(got[name]), np.asarray(ref[name]), err_msg=f"{label}: {name}")


def _theta_tolerance(cat, rows: np.ndarray) -> np.ndarray:
    """Allowed |d theta| in degrees: 1e-4 rad times the condition number of the angle,
    ``(a^2 + b^2) / (a^2 - b^2)`` (a near-round source has a nearly undefined angle, so
    float32 round-off in its moments turns into a large angle change), plus 1e-4 relative."""
    a = np.asarray(cat["a"], dtype=np.float64)[rows]
    b = np.asarray(cat["b"], dtype=np.float64)[rows]
    with np.errstate(divide="ignore", invalid="ignore"):
        kappa = np.where(a > b, (a**2 + b**2) / (a**2 - b**2), np.inf)
    theta = np.asarray(cat["theta"], dtype=np.float64)[rows]
    return np.degrees(1e-4 * kappa) + 1e-4 * np.abs(theta)


def _assert_same_measurements(got, ref, *, label: str) -> None:
    """Float columns equal to rtol 1e-4 / atol 1e-4 on the rows both catalogs have (by
    ``source_id``).  ``theta`` (an axis angle in degrees) is compared modulo 180 with
    :func:`_theta_tolerance`."""
    common, i, j = np.intersect1d(np.asarray(got["source_id"]), np.asarray(ref["source_id"]), return_indices=True)
    assert len(common) >= 0.99 * max(len(got), len(ref)), f"{label}: too few common rows"
    for name in FLOAT_COLUMNS:
        a = np.asarray(got[name], dtype=np.float64)[i]
        b = np.asarray(ref[name], dtype=np.float64)[j]
        if name == "theta":
            diff = np.abs((a - b + 90.0) % 180.0 - 90.0)
            bad = ~(diff <= _theta_tolerance(ref, j)) & ~(np.isnan(a) & np.isnan(b))
        else:
            bad = ~np.isclose(a, b, rtol=1e-4, atol=1e-4, equal_nan=True)
        assert not bad.any(), (
            f"{label}: {name} differs for source_id {common[bad][:5].tolist()}: "
            f"{a[bad][:5].tolist()} vs {b[bad][:5].tolist()}"
        )


def _assert_same_catalog(got, ref, *, label: str) -> None:
    _assert_same_rows(got, ref, label=label)
    _assert_same_measurements(got, ref, label=label)


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    rc = main(["detect", *args])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def _assert_one_line_error(rc: int, err: str, path: Path | str, *causes: str) -> None:
    assert rc == 2, err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, f"stderr is not one line: {err!r}"
    line = lines[0]
    assert line.startswith("moe-imaging: error: "), line
    assert str(path) in line, f"file name missing: {line}"
    for cause in causes:
        assert cause.lower() in line.lower(), f"cause {cause!r} missing: {line}"


# ----------------------------------------------------------------------------
# tiling invariance on a simulated survey field
# ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def survey_field(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    """A 2560^2 simulated exposure (stars, galaxies, saturated stars with bleed trails,
    cosmic rays, hot pixels, streaks) with its truth table."""
    sim = simulate_survey(SurveySimConfig(size=2560, seed=11))
    path = write_exposure(tmp_path_factory.mktemp("survey") / "survey_2560_seed11.fits", sim.image, sim.header)
    return path, sim.truth


@pytest.fixture(scope="module")
def survey_catalogs(survey_field: tuple[Path, object]) -> dict[int | None, object]:
    """``detect_image`` results for the field, one per tile size, computed once."""
    path, _ = survey_field
    return {size: detect_image(path, tile_size=size, checksum=False) for size in (None, 512, 1024, 2048)}


def test_survey_field_is_a_meaningful_tiling_check(survey_field, survey_catalogs) -> None:
    _, truth = survey_field
    kinds = set(str(k) for k in truth["kind"])
    assert {"star", "saturated_star", "cosmic_ray", "streak"} <= kinds
    whole = survey_catalogs[None]
    assert whole.provenance.n_tiles == 1
    n_tiles = {size: survey_catalogs[size].provenance.n_tiles for size in (512, 1024, 2048)}
    assert n_tiles == {512: 25, 1024: 9, 2048: 4}
    cat = whole.catalog
    assert len(cat) > 800
    assert np.all(np.diff(cat["source_id"]) > 0)  # unique, sorted by (y_peak, x_peak)
    np.testing.assert_array_equal(cat["source_id"], cat["y_peak"] * 2560 + cat["x_peak"])
    # saturated stars are reported (flagged), and tile seams cut through some bleed trails
    assert int(np.count_nonzero(cat["flags"] & SATURATED)) >= 5
    sat = truth[truth["kind"] == "saturated_star"]
    crosses_512 = [(int(r["bleed_y0"]) // 512) != (int(r["bleed_y1"]) // 512) for r in sat if r["bleed_y0"] >= 0]
    assert any(crosses_512), "no bleed trail crosses a 512-px tile seam: the test would prove little"


@pytest.mark.parametrize(
    "tile_size", [512, 1024, 2048]
)
def test_catalog_rows_do_not_depend_on_tile_size(survey_catalogs, tile_size: int) -> None:
    """Same ``source_id`` (same order), ``x_peak``, ``y_peak``, ``flags``, ``kind``."""
    _assert_same_rows(
        survey_catalogs[tile_size].catalog, survey_catalogs[None].catalog, label=f"tile_size={tile_size}"
    )


@pytest.mark.parametrize(
    "tile_size", [512, 1024, 2048]
)
def test_measurements_do_not_depend_on_tile_size(survey_catalogs, tile_size: int) -> None:
    """x, y, flux, flux_err, snr, a, b, theta, ra, dec to 1e-4 (float32 FFTs make them
    differ in the last digits); theta with a tolerance scaled by its conditioning."""
    _assert_same_measurements(
        survey_catalogs[tile_size].catalog, survey_catalogs[None].catalog, label=f"tile_size={tile_size}"
    )


def test_provenance_is_the_same_for_any_tiling_except_tiles(survey_catalogs) -> None:
    ref = survey_catalogs[None].provenance
    for size in (512, 1024, 2048):
        prov = survey_catalogs[size].provenance
        assert prov.config_hash == ref.config_hash
        assert prov.threshold == ref.threshold
        assert prov.psf == ref.psf
        assert prov.tile_size == size


SEAM_STARS = [
    (511.5, 300.0),  # on the vertical seam x = 511.5 between two tiles
    (700.0, 511.5),  # on the horizontal seam
    (511.5, 511.5),  # on the corner of four tiles
    (512.0, 850.3),  # first column of the right-hand tiles
    (511.0, 150.2),  # last column of the left-hand tiles
    (200.3, 512.0),  # first row of the lower tiles
]


@pytest.fixture(scope="module")
def seam_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    shape = (1024, 1024)
    image = _noise(shape, seed=0)
    for x, y in SEAM_STARS:
        image += _moffat(shape, x, y, 2e5)
    return write_exposure(tmp_path_factory.mktemp("seam") / "seam.fits", image.astype(np.float32), _fwhm_header())


@pytest.mark.parametrize("tile_size", [256, 512])
def test_stars_on_tile_seams_are_found_exactly_once(seam_image: Path, tile_size: int) -> None:
    tiled = detect_image(seam_image, tile_size=tile_size, checksum=False)
    whole = detect_image(seam_image, tile_size=None, checksum=False)
    assert tiled.provenance.n_tiles == (1024 // tile_size) ** 2
    cat = tiled.catalog
    for x, y in SEAM_STARS:
        d = np.hypot(np.asarray(cat["x"]) - x, np.asarray(cat["y"]) - y)
        assert np.count_nonzero(d < 3.0) == 1, f"star at ({x}, {y}): {np.count_nonzero(d < 3.0)} detections"
        i = int(np.argmin(d))
        assert d[i] < 0.05, (x, y, d[i])
        assert cat["flags"][i] == 0
        assert abs(cat["flux"][i] / 2e5 - 1) < 0.05
    assert len(cat) == len(SEAM_STARS)  # and nothing else on pure noise
    _assert_same_catalog(cat, whole.catalog, label=f"seam tile_size={tile_size}")


@pytest.fixture(scope="module")
def bleed_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saturated star at (300.2, 700.3) whose bleed trail runs along column 300 from
    y = 633 to y = 768 (its tip ends on the 256-px seam y = 768), plus a normal star."""
    shape, saturate = (1024, 1024), 60000.0
    image = _noise(shape, seed=0) + _moffat(shape, 300.2, 700.3, 3e7) + _moffat(shape, 800.0, 200.0, 2e5)
    for c in np.flatnonzero((image > saturate).any(axis=0)):  # bleed the excess up and down the column
        col = image[:, c]
        over = np.flatnonzero(col > saturate)
        a, b = over[0], over[-1]
        excess = float(np.sum(col[a : b + 1] - saturate))
        col[a : b + 1] = saturate
        for seg in (col[b + 1 :], col[:a][::-1]):
            room = np.cumsum(np.maximum(saturate - seg, 0.0))
            k = int(np.searchsorted(room, excess / 2))
            seg[:k] = saturate
            if k < seg.size:
                seg[k] += excess / 2 - (room[k - 1] if k else 0.0)
    ys, _ = np.nonzero(image >= saturate)
    assert (ys.min(), ys.max()) == (633, 768)
    header = _fwhm_header(SATURATE=saturate)
    return write_exposure(tmp_path_factory.mktemp("bleed") / "bleed.fits", image.astype(np.float32), header)


def test_saturated_star_with_bleed_trail_on_one_tile(bleed_image: Path) -> None:
    cat = detect_image(bleed_image, tile_size=None, checksum=False).catalog
    assert len(cat) == 2
    np.testing.assert_array_equal(cat["x_peak"], [800, 300])
    np.testing.assert_array_equal(cat["flags"] & SATURATED, [0, SATURATED])
    assert abs(cat["y"][1] - 700.3) < 1.0


@pytest.mark.parametrize("tile_size", [256])
def test_bleed_trail_tip_cut_from_its_star(bleed_image: Path, tile_size: int) -> None:
    tiled = detect_image(bleed_image, tile_size=tile_size, checksum=False).catalog
    whole = detect_image(bleed_image, tile_size=None, checksum=False).catalog
    _assert_same_catalog(tiled, whole, label=f"bleed tile_size={tile_size}")


@pytest.fixture(scope="module")
def half_pixel_saturated_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saturated star whose saturated core is a 4x8 block centred on (600.5, 300.5), so
    its centroid is exactly half-integer; Moffat beta 3 in the header gives an odd halo."""
    shape, saturate = (1024, 1024), 60000.0
    image = _noise(shape, seed=0)
    for dy in np.linspace(-3.5, 3.5, 8):
        image += _moffat(shape, 600.5, 300.5 + dy, 6e5 / 8, beta=3.0)
    image[297:305, 599:603] = saturate
    image = np.minimum(image, saturate)
    header = _fwhm_header(SATURATE=saturate, PSFMODEL="moffat", BETA=3.0)
    return write_exposure(tmp_path_factory.mktemp("halfsat") / "halfsat.fits", image.astype(np.float32), header)


def test_saturated_star_at_half_pixel_found_once(half_pixel_saturated_image: Path) -> None:
    whole = detect_image(half_pixel_saturated_image, tile_size=None, checksum=False)
    tiled = detect_image(half_pixel_saturated_image, tile_size=256, checksum=False)
    assert whole.provenance.extra["halo_px"] % 2 == 1  # tile origins 256 k - halo are odd
    for cat in (whole.catalog, tiled.catalog):
        assert len(cat) == 1
        assert (cat["x"][0], cat["y"][0]) == (600.5, 300.5)
        assert cat["flags"][0] & SATURATED
    _assert_same_rows(tiled.catalog, whole.catalog, label="half-pixel saturated, rows")


def test_saturated_star_at_half_pixel_on_odd_tile_origin(half_pixel_saturated_image: Path) -> None:
    """A saturated star's centroid is the centre of mass of its saturated pixels (no FFT) and
    its shape comes from the same pixels on any tile: so a, b, theta and sharpness must agree
    to round-off, far tighter than the float32-FFT tolerance of the other columns."""
    whole = detect_image(half_pixel_saturated_image, tile_size=None, checksum=False).catalog
    tiled = detect_image(half_pixel_saturated_image, tile_size=256, checksum=False).catalog
    _assert_same_catalog(tiled, whole, label="half-pixel saturated")
    for name in ("a", "b", "theta", "sharpness"):
        np.testing.assert_allclose(tiled[name], whole[name], rtol=1e-9, atol=1e-9, err_msg=name)


# ----------------------------------------------------------------------------
# Source Extractor reference (SEP's test image)
# ----------------------------------------------------------------------------


def _read_ascii_head(path: Path) -> dict[str, np.ndarray]:
    """Read a Source Extractor ASCII_HEAD catalog: ``#  N NAME ...`` header lines give
    1-based column numbers (vector columns span until the next number)."""
    names: list[tuple[int, str]] = []
    rows: list[list[float]] = []
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            number, name = line[1:].split()[:2]
            names.append((int(number) - 1, name))
        elif line.strip():
            rows.append([float(v) for v in line.split()])
    table = np.array(rows, dtype=np.float64)
    bounds = [start for start, _ in names[1:]] + [table.shape[1]]
    columns = {}
    for (start, name), stop in zip(names, bounds):
        columns[name] = table[:, start] if stop - start == 1 else table[:, start:stop]
    return columns


def test_sep_catalog_reader() -> None:
    sex = _read_ascii_head(SEP_DIR / "image.cat")
    assert len(sex["NUMBER"]) == 65
    np.testing.assert_array_equal(sex["NUMBER"], np.arange(1, 66))
    assert sex["FLUX_RADIUS"].shape == (65, 3)
    assert set(np.unique(sex["FLAGS"])) <= set(range(256))
    assert sex["FLAGS"][0] == 0 and sex["FLAGS"][2] == 24  # the file's first and third rows
    assert sex["X_IMAGE"][0] == pytest.approx(165.1449)


def test_detections_match_source_extractor_catalog() -> None:
    sex = _read_ascii_head(SEP_DIR / "image.cat")
    clean = sex["FLAGS"] == 0
    x_ref = sex["X_IMAGE"][clean] - 1.0  # FITS 1-based -> 0-based
    y_ref = sex["Y_IMAGE"][clean] - 1.0
    assert len(x_ref) == 53

    result = detect_image(SEP_DIR / "image.fits")
    assert result.provenance.psf["source"].startswith("stars:"), result.provenance.psf
    assert 2.0 < result.psf.fwhm < 5.0
    cat = result.catalog
    d, _ = cKDTree(np.column_stack([cat["x"], cat["y"]])).query(np.column_stack([x_ref, y_ref]))
    matched = d < 1.0
    fraction = float(matched.mean())
    print(f"SEP reference: {matched.sum()}/{len(matched)} = {fraction:.3f} of FLAGS==0 sources matched within 1 px")
    assert fraction >= 0.90, f"only {fraction:.1%} of Source Extractor's clean sources recovered"
    assert float(np.median(d[matched])) < 0.3  # centroids agree well, not just within 1 px


# ----------------------------------------------------------------------------
# bad input through the CLI
# ----------------------------------------------------------------------------


@pytest.fixture
def star_image() -> np.ndarray:
    shape = (256, 256)
    image = _noise(shape, seed=3)
    for x, y in [(60.3, 70.8), (180.5, 40.1), (128.0, 200.4)]:
        image += _moffat(shape, x, y, 1e5)
    return image


@pytest.fixture
def good_fits(tmp_path: Path, star_image: np.ndarray) -> Path:
    return write_exposure(tmp_path / "good.fits", star_image.astype(np.float32), _fwhm_header())


def test_missing_file(tmp_path: Path, capsys) -> None:
    path = tmp_path / "nope.fits"
    out = tmp_path / "cat.parquet"
    rc, _, err = _cli(capsys, str(path), "--out", str(out))
    _assert_one_line_error(rc, err, path, "not found")
    assert not out.exists()


def test_truncated_fits(tmp_path: Path, good_fits: Path, capsys) -> None:
    raw = good_fits.read_bytes()
    path = tmp_path / "truncated.fits"
    path.write_bytes(raw[: 2880 + (len(raw) - 2880) // 2])  # header intact, half the data
    rc, _, err = _cli(capsys, str(path), "--out", str(tmp_path / "cat.parquet"))
    _assert_one_line_error(rc, err, path, "truncated")


def test_corrupt_file(tmp_path: Path, capsys) -> None:
    path = tmp_path / "random.fits"
    path.write_bytes(np.random.default_rng(7).bytes(20000))
    rc, _, err = _cli(capsys, str(path), "--out", str(tmp_path / "cat.parquet"))
    _assert_one_line_error(rc, err, path, "not a valid FITS file")


def test_zero_size_data(tmp_path: Path, capsys) -> None:
    path = tmp_path / "empty.fits"
    fits.PrimaryHDU().writeto(path)
    assert fits.getheader(path)["NAXIS"] == 0
    rc, _, err = _cli(capsys, str(path), "--out", str(tmp_path / "cat.parquet"))
    _assert_one_line_error(rc, err, path, "no image data")


@pytest.mark.parametrize(
    ("shape", "cause"),
    [((100,), "1-D"), ((3, 64, 64), "(3, 64, 64)")],
    ids=["1d", "3d"],
)
def test_not_a_2d_image(tmp_path: Path, capsys, shape: tuple[int, ...], cause: str) -> None:
    path = tmp_path / f"cube_{len(shape)}d.fits"
    fits.PrimaryHDU(np.ones(shape, np.float32), header=_fwhm_header()).writeto(path)
    rc, _, err = _cli(capsys, str(path), "--out", str(tmp_path / "cat.parquet"))
    _assert_one_line_error(rc, err, path, "2-D", cause)


def test_table_hdu_selected(tmp_path: Path, star_image: np.ndarray, capsys) -> None:
    path = tmp_path / "with_table.fits"
    table = fits.BinTableHDU.from_columns([fits.Column(name="a", format="E", array=np.arange(3.0))])
    fits.HDUList([fits.PrimaryHDU(star_image.astype(np.float32), header=_fwhm_header()), table]).writeto(path)
    rc, _, err = _cli(capsys, str(path), "--out", str(tmp_path / "cat.parquet"), "--hdu", "1")
    _assert_one_line_error(rc, err, path, "HDU 1", "table", "not an image")


def test_all_nan_image(tmp_path: Path, capsys) -> None:
    path = write_exposure(tmp_path / "nan.fits", np.full((64, 64), np.nan, np.float32), _fwhm_header())
    rc, _, err = _cli(capsys, str(path), "--out", str(tmp_path / "cat.parquet"))
    _assert_one_line_error(rc, err, path, "NaN")


def test_no_psf_keywords_and_no_stars(tmp_path: Path, capsys) -> None:
    path = write_exposure(tmp_path / "noise.fits", _noise((256, 256), seed=4).astype(np.float32))
    out = tmp_path / "cat.parquet"
    rc, _, err = _cli(capsys, str(path), "--out", str(out))
    _assert_one_line_error(rc, err, path, "PSF", "--psf-fwhm")
    assert not out.exists()


def test_unknown_output_extension(tmp_path: Path, good_fits: Path, capsys) -> None:
    out = tmp_path / "catalog.txt"
    rc, _, err = _cli(capsys, str(good_fits), "--out", str(out))
    _assert_one_line_error(rc, err, out, "unknown catalog format", ".txt")
    assert not out.exists()


def test_integer_image_works(tmp_path: Path, star_image: np.ndarray, capsys) -> None:
    path = write_exposure(tmp_path / "int16.fits", np.round(star_image).astype(np.int16), _fwhm_header())
    assert fits.getdata(path).dtype.kind == "i"
    out = tmp_path / "cat.parquet"
    rc, stdout, err = _cli(capsys, str(path), "--out", str(out), "--quiet")
    assert rc == 0, err
    assert "Traceback" not in err
    cat = read_catalog(out)
    assert len(cat) == 3
    np.testing.assert_allclose(np.sort(cat["x"]), [60.3, 128.0, 180.5], atol=0.1)


def test_no_wcs_works_with_nan_sky_coordinates(tmp_path: Path, good_fits: Path, capsys) -> None:
    assert open_exposure(good_fits).wcs is None
    out = tmp_path / "cat.ecsv"
    rc, stdout, err = _cli(capsys, str(good_fits), "--out", str(out))
    assert rc == 0, err
    assert "3 detections" in stdout
    cat = read_catalog(out)
    assert len(cat) == 3
    assert np.all(np.isnan(cat["ra"])) and np.all(np.isnan(cat["dec"]))
    assert np.all(np.isfinite(cat["x"]))


@pytest.mark.parametrize("case", ["missing", "corrupt"])
def test_console_script_exit_code_and_no_traceback(tmp_path: Path, case: str) -> None:
    assert CONSOLE_SCRIPT.exists(), f"console script not installed next to {sys.executable}"
    path = tmp_path / f"{case}.fits"
    if case == "corrupt":
        path.write_bytes(b"SIMPLE  = this is not FITS" + bytes(range(256)) * 20)
    proc = subprocess.run(
        [str(CONSOLE_SCRIPT), "detect", str(path), "--out", str(tmp_path / "cat.parquet")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    _assert_one_line_error(proc.returncode, proc.stderr, path, "not found" if case == "missing" else "FITS")
    assert proc.stdout == ""


# ----------------------------------------------------------------------------
# outputs: catalog files, provenance, sky coordinates, configuration
# ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_survey(tmp_path_factory: pytest.TempPathFactory) -> Path:
    sim = simulate_survey(SurveySimConfig(size=512, seed=5))
    return write_exposure(tmp_path_factory.mktemp("small") / "survey_512.fits", sim.image, sim.header)


@pytest.fixture(scope="module")
def small_result(small_survey: Path):
    return detect_image(small_survey)


@pytest.mark.parametrize("ext", [".parquet", ".fits", ".ecsv"])
def test_detect_writes_catalog_files_that_read_back(
    tmp_path: Path, small_survey: Path, small_result, ext: str, capsys
) -> None:
    out = tmp_path / f"catalog{ext}"
    rc, stdout, err = _cli(capsys, str(small_survey), "--out", str(out))
    assert rc == 0, err
    assert f"catalog: {out}" in stdout
    cat = read_catalog(out)
    ref = small_result.catalog
    assert len(ref) > 20
    assert cat.colnames[: len(ref.colnames)] == ref.colnames
    for name in ref.colnames:
        a, b = np.asarray(cat[name]), np.asarray(ref[name])
        if a.dtype.kind == "f":
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=0, equal_nan=True, err_msg=name)
        else:
            np.testing.assert_array_equal(a, b, err_msg=name)
    prov = cat.meta["provenance"]
    assert prov["package_version"] == __version__
    assert prov["config_hash"] == DetectionConfig().science_hash() == small_result.provenance.config_hash
    assert prov["input_checksum"] == hashlib.sha256(small_survey.read_bytes()).hexdigest()
    assert re.fullmatch(r"[0-9a-f]{64}", prov["input_checksum"])
    assert prov["psf"]["source"] == "header:FWHM"
    assert prov["psf"]["fwhm_px"] == pytest.approx(3.0)
    assert prov["runtime_s"] > 0
    assert prov["threshold"] == pytest.approx(small_result.provenance.threshold)
    assert tuple(prov["image_shape"]) == (512, 512)


def test_result_provenance(small_survey: Path, small_result) -> None:
    prov = small_result.provenance
    assert prov.package_version == __version__
    assert prov.config_hash == DetectionConfig().science_hash()
    assert re.fullmatch(r"[0-9a-f]{64}", prov.input_checksum)
    assert prov.input_checksum == hashlib.sha256(small_survey.read_bytes()).hexdigest()
    assert prov.psf["source"] == "header:FWHM"
    assert prov.runtime_s is not None and prov.runtime_s > 0
    assert small_result.catalog.meta["provenance"]["config_hash"] == prov.config_hash
    # checksum=False leaves it out
    assert detect_image(small_survey, checksum=False).provenance.input_checksum == ""


def test_sky_coordinates_follow_the_wcs(small_survey: Path, small_result) -> None:
    cat = small_result.catalog
    ra, dec = np.asarray(cat["ra"]), np.asarray(cat["dec"])
    assert np.all(np.isfinite(ra)) and np.all(np.isfinite(dec))
    sky = WCS(fits.getheader(small_survey)).pixel_to_world(np.asarray(cat["x"]), np.asarray(cat["y"]))
    dra = (ra - sky.ra.deg + 180.0) % 360.0 - 180.0
    np.testing.assert_allclose(dra * np.cos(np.radians(dec)), 0.0, atol=1e-6)
    np.testing.assert_allclose(dec, sky.dec.deg, rtol=0, atol=1e-6)
    # the reference pixel (CRPIX 1-based) maps to CRVAL: guards against a 0/1-based slip
    header = fits.getheader(small_survey)
    w = WCS(header)
    ref = w.pixel_to_world(header["CRPIX1"] - 1.0, header["CRPIX2"] - 1.0)
    assert ref.ra.deg == pytest.approx(header["CRVAL1"]) and ref.dec.deg == pytest.approx(header["CRVAL2"])


def test_config_file_sets_the_threshold(tmp_path: Path, small_survey: Path, small_result, capsys) -> None:
    config = tmp_path / "detect.toml"
    config.write_text("[point]\nthreshold = 6.0\n")
    out = tmp_path / "cat.parquet"
    rc, _, err = _cli(capsys, str(small_survey), "--out", str(out), "--config", str(config), "--quiet")
    assert rc == 0, err
    cat = read_catalog(out)
    prov = cat.meta["provenance"]
    assert prov["threshold"] == 6.0
    assert prov["config"]["point"]["threshold"] == 6.0
    assert prov["config_hash"] != small_result.provenance.config_hash
    assert small_result.provenance.threshold < 6.0  # so the higher threshold removes sources
    assert 0 < len(cat) < len(small_result.catalog)
    assert set(cat["source_id"]) <= set(small_result.catalog["source_id"])


def test_config_file_with_unknown_key(tmp_path: Path, small_survey: Path, capsys) -> None:
    config = tmp_path / "detect.toml"
    config.write_text("[point]\nthreshhold = 6.0\n")
    out = tmp_path / "cat.parquet"
    rc, _, err = _cli(capsys, str(small_survey), "--out", str(out), "--config", str(config))
    _assert_one_line_error(rc, err, config, "threshhold")
    assert not out.exists()


# ----------------------------------------------------------------------------
# xarray / dask view
# ----------------------------------------------------------------------------


def test_to_xarray_is_lazy_and_matches_the_data(small_survey: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import dask

    reads: list[tuple[int, int, int, int]] = []
    original = Exposure.read

    def counting_read(self, y0, y1, x0, x1):
        reads.append((y0, y1, x0, x1))
        return original(self, y0, y1, x0, x1)

    monkeypatch.setattr(Exposure, "read", counting_read)
    ds = open_exposure(small_survey).to_xarray(chunks=128)
    assert dask.is_dask_collection(ds["data"].data)
    assert ds["data"].dims == ("y", "x") and ds["data"].shape == (512, 512)
    assert ds["data"].data.chunks == ((128,) * 4, (128,) * 4)
    assert [r for r in reads if r[0] != r[1]] == []  # nothing read yet
    corner = ds["data"][:100, :100].values  # one chunk
    assert [r for r in reads if r[0] != r[1]] == [(0, 128, 0, 128)]
    truth = fits.getdata(small_survey)
    np.testing.assert_array_equal(corner, truth[:100, :100])
    with dask.config.set(scheduler="sync"):
        np.testing.assert_array_equal(ds["data"].values, truth)
    assert ds["data"].dtype == np.float32
    assert ds.attrs["shape"] == (512, 512)


# ----------------------------------------------------------------------------
# false detections on pure noise
# ----------------------------------------------------------------------------


def test_pure_noise_false_detection_rate(tmp_path: Path) -> None:
    image = _noise((2048, 2048), seed=0).astype(np.float32)
    path = write_exposure(tmp_path / "noise_2048.fits", image, _fwhm_header())
    result = detect_image(path, checksum=False)
    config = DetectionConfig()
    assert config.point.false_detections_per_mpix == 0.5  # -> ~2 expected on 4.2 Mpix
    assert result.provenance.threshold == pytest.approx(config.point.detection_threshold(result.psf))
    assert 4.0 < result.provenance.threshold < 6.0
    n = len(result.catalog)
    assert n <= 10, f"{n} detections on pure noise (expected ~2)"

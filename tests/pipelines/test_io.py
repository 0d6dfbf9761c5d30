"""Tests of ``pipelines.io``: lazy FITS exposures, PSF images, writing."""

from __future__ import annotations

import os
import pickle
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from contracts.errors import InputError
from contracts.flags import MaskBit
from pipelines.io import (
    Exposure,
    PixelSection,
    check_not_all_nonfinite,
    open_exposure,
    read_psf_image,
    write_exposure,
)

SEP_IMAGE = Path("/work/shared/data/sep/image.fits")
IRAC_PSF = Path("/work/shared/data/psf/irac_ch1_flight.fits")

BAD = int(MaskBit.BAD)
NONFINITE = int(MaskBit.NONFINITE)
SATURATED = int(MaskBit.SATURATED)


def _image(ny: int = 40, nx: int = 50, dtype: type = np.float32) -> np.ndarray:
    rng = np.random.default_rng(1)
    return (100 + 10 * rng.standard_normal((ny, nx))).astype(dtype)


def _wcs_header(scale_arcsec: float = 0.2) -> fits.Header:
    header = fits.Header()
    header["CTYPE1"] = "RA---TAN"
    header["CTYPE2"] = "DEC--TAN"
    header["CRPIX1"] = 25.0
    header["CRPIX2"] = 20.0
    header["CRVAL1"] = 150.0
    header["CRVAL2"] = 2.0
    header["CD1_1"] = -scale_arcsec / 3600
    header["CD1_2"] = 0.0
    header["CD2_1"] = 0.0
    header["CD2_2"] = scale_arcsec / 3600
    return header


def _expect_input_error(path: Path, cause: str, **kwargs: object) -> InputError:
    with pytest.raises(InputError) as info:
        open_exposure(path, **kwargs)
    _check_message(info.value, path, cause)
    return info.value


def _check_message(error: InputError, path: Path, cause: str) -> None:
    text = str(error)
    assert "\n" not in text
    assert path.name in text
    assert cause in text, text


# --------------------------------------------------------------------------
# Opening and reading
# --------------------------------------------------------------------------


def test_primary_hdu(tmp_path: Path) -> None:
    data = _image()
    path = write_exposure(tmp_path / "img.fits", data)
    exposure = open_exposure(path)
    assert isinstance(exposure, Exposure)
    assert exposure.hdu == 0
    assert exposure.shape == (40, 50)
    assert exposure.dtype == np.float32
    assert exposure.variance_hdu is None and exposure.weight_hdu is None
    assert exposure.mask_hdu is None
    assert exposure.wcs is None
    assert exposure.meta.bunit == "adu" and exposure.meta.obsmode == "sidereal"
    section = exposure.read(5, 15, 10, 30)
    assert section.data.dtype == np.float32
    np.testing.assert_array_equal(section.data, data[5:15, 10:30])
    assert section.mask.dtype == np.uint16 and not section.mask.any()
    assert section.variance is None
    whole = exposure.read(0, 40, 0, 50)
    np.testing.assert_array_equal(whole.data, data)


def test_read_rejects_out_of_bounds(tmp_path: Path) -> None:
    exposure = open_exposure(write_exposure(tmp_path / "img.fits", _image()))
    with pytest.raises(ValueError, match="outside the image"):
        exposure.read(0, 41, 0, 10)
    assert exposure.read(3, 3, 0, 10).data.shape == (0, 10)


def test_named_extension_and_inheritance(tmp_path: Path) -> None:
    data = _image()
    primary = fits.PrimaryHDU()
    primary.header["GAIN"] = 2.5
    primary.header["OBJECT"] = "M31"
    primary.header["EXPTIME"] = 30.0
    sci = fits.ImageHDU(data, name="SCI")
    sci.header["EXPTIME"] = 60.0  # the extension's own value wins
    table = fits.BinTableHDU.from_columns([fits.Column("a", "E", array=np.zeros(3))], name="CAT")
    path = tmp_path / "mef.fits"
    fits.HDUList([primary, table, sci]).writeto(path)

    for selector in (None, "SCI", "sci", 2):
        exposure = open_exposure(path, hdu=selector)
        assert exposure.hdu == 2
        assert exposure.header["EXTNAME"] == "SCI"
        np.testing.assert_array_equal(exposure.read(0, 40, 0, 50).data, data)
    assert exposure.meta.gain == 2.5
    assert exposure.meta.object_name == "M31"
    assert exposure.meta.exptime == 60.0


def test_inherit_false_turns_inheritance_off(tmp_path: Path) -> None:
    primary = fits.PrimaryHDU()
    primary.header["GAIN"] = 2.5
    sci = fits.ImageHDU(_image(), name="SCI")
    sci.header["INHERIT"] = False
    path = tmp_path / "mef.fits"
    fits.HDUList([primary, sci]).writeto(path)
    assert open_exposure(path).meta.gain is None


def test_mef_sci_var_mask(tmp_path: Path) -> None:
    data = _image()
    variance = np.full(data.shape, 4.0, np.float32)
    variance[1, 1] = -1.0
    variance[2, 2] = np.nan
    mask = np.zeros(data.shape, np.uint16)
    mask[3, 4] = 16
    path = write_exposure(tmp_path / "mef.fits", data, variance=variance, mask=mask)
    exposure = open_exposure(path)
    assert exposure.hdu == 1
    assert exposure.header["EXTNAME"] == "SCI"
    assert (exposure.variance_hdu, exposure.weight_hdu, exposure.mask_hdu) == (2, None, 3)
    section = exposure.read(0, 40, 0, 50)
    assert section.variance is not None and section.variance.dtype == np.float32
    assert section.variance[0, 0] == 4.0
    assert section.variance[1, 1] == 0 and section.variance[2, 2] == 0
    expected = np.zeros(data.shape, np.uint16)
    expected[1, 1] = expected[2, 2] = expected[3, 4] = BAD
    np.testing.assert_array_equal(section.mask, expected)


def test_mef_sci_weight(tmp_path: Path) -> None:
    data = _image()
    weight = np.full(data.shape, 0.25, np.float32)
    weight[0, :3] = [0.0, -1.0, np.nan]
    path = tmp_path / "wht.fits"
    fits.HDUList(
        [fits.PrimaryHDU(), fits.ImageHDU(data, name="SCI"), fits.ImageHDU(weight, name="WHT")]
    ).writeto(path)
    exposure = open_exposure(path)
    assert exposure.weight_hdu == 2 and exposure.variance_hdu is None
    section = exposure.read(0, 2, 0, 5)
    assert section.variance is not None
    np.testing.assert_allclose(section.variance[1], 4.0)
    np.testing.assert_array_equal(section.variance[0, :3], 0.0)
    assert section.variance[0, 3] == 4.0
    np.testing.assert_array_equal(section.mask[0, :4], [BAD, BAD, BAD, 0])


def test_aux_plane_of_other_shape_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "bad_var.fits"
    fits.HDUList(
        [
            fits.PrimaryHDU(),
            fits.ImageHDU(_image(), name="SCI"),
            fits.ImageHDU(np.ones((10, 10), np.float32), name="VAR"),
        ]
    ).writeto(path)
    _expect_input_error(path, "has shape (10, 10)")


def test_compressed_extension(tmp_path: Path) -> None:
    data = _image(64, 96)
    path = tmp_path / "comp.fits"
    compressed = fits.CompImageHDU(data, name="SCI", compression_type="GZIP_1")
    fits.HDUList([fits.PrimaryHDU(), compressed]).writeto(path)
    expected = fits.getdata(path, "SCI")  # quantised on writing
    np.testing.assert_allclose(expected, data, atol=1.0)
    exposure = open_exposure(path)
    assert exposure.hdu == 1 and exposure.shape == (64, 96)
    np.testing.assert_array_equal(exposure.read(10, 50, 20, 90).data, expected[10:50, 20:90])


def test_sep_int16_scaled_image() -> None:
    exposure = open_exposure(SEP_IMAGE)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = fits.getdata(SEP_IMAGE)
    assert exposure.shape == (256, 256)
    assert exposure.dtype == np.float32
    assert exposure.wcs is None  # CTYPE '' with CDELT=1: not a celestial WCS
    assert exposure.meta.exptime == 1200.0
    section = exposure.read(100, 164, 30, 94)
    assert section.data.dtype == np.float32
    np.testing.assert_array_equal(section.data, expected[100:164, 30:94])
    assert len(pickle.dumps(exposure)) < 100_000


def test_unsigned_and_wide_integers(tmp_path: Path) -> None:
    u16 = (np.arange(200, dtype=np.uint16).reshape(10, 20) * 300).astype(np.uint16)
    path = write_exposure(tmp_path / "u16.fits", u16)
    exposure = open_exposure(path)
    section = exposure.read(0, 10, 0, 20)
    assert section.data.dtype == np.float32
    np.testing.assert_array_equal(section.data, u16.astype(np.float32))

    i32 = np.arange(200, dtype=np.int32).reshape(10, 20) * 100_000
    exposure = open_exposure(write_exposure(tmp_path / "i32.fits", i32))
    section = exposure.read(0, 10, 0, 20)
    assert section.data.dtype == np.float64
    np.testing.assert_array_equal(section.data, i32.astype(np.float64))

    f64 = _image(dtype=np.float64)
    section = open_exposure(write_exposure(tmp_path / "f64.fits", f64)).read(0, 40, 0, 50)
    assert section.data.dtype == np.float64


def test_nonfinite_pixels_are_zeroed_and_masked(tmp_path: Path) -> None:
    data = _image()
    data[2, 3] = np.nan
    data[4, 5] = np.inf
    data[6, 7] = -np.inf
    section = open_exposure(write_exposure(tmp_path / "nan.fits", data)).read(0, 40, 0, 50)
    for y, x in ((2, 3), (4, 5), (6, 7)):
        assert section.data[y, x] == 0
        assert section.mask[y, x] == NONFINITE
    assert np.count_nonzero(section.mask) == 3
    assert np.isfinite(section.data).all()


def test_saturation_from_header(tmp_path: Path) -> None:
    data = _image()
    data[10, 10] = 5000.0
    data[11, 11] = 1000.0
    header = fits.Header()
    header["SATURATE"] = 1000.0
    exposure = open_exposure(write_exposure(tmp_path / "sat.fits", data, header))
    assert exposure.meta.saturate == 1000.0
    section = exposure.read(0, 40, 0, 50)
    assert section.mask[10, 10] == SATURATED and section.mask[11, 11] == SATURATED
    assert np.count_nonzero(section.mask) == 2
    assert section.data[10, 10] == 5000.0  # saturated pixels keep their values


def test_saturation_applies_to_scaled_values(tmp_path: Path) -> None:
    raw = np.array([[0, 100], [200, 300]], dtype=np.int16)
    hdu = fits.PrimaryHDU(raw)
    hdu.header["BSCALE"] = 2.0
    hdu.header["BZERO"] = 1000.0
    hdu.header["SATURATE"] = 1400.0  # scaled: 1000, 1200, 1400, 1600
    path = tmp_path / "scaled.fits"
    # Keep the raw integers: scale_back writes BSCALE/BZERO as given.
    hdu.data = raw
    fits.HDUList([hdu]).writeto(path, output_verify="ignore")
    exposure = open_exposure(path)
    assert exposure.dtype == np.float32
    section = exposure.read(0, 2, 0, 2)
    np.testing.assert_array_equal(section.data, [[1000, 1200], [1400, 1600]])
    np.testing.assert_array_equal(section.mask, [[0, 0], [SATURATED, SATURATED]])


def test_wcs_present_and_pixscale(tmp_path: Path) -> None:
    exposure = open_exposure(write_exposure(tmp_path / "wcs.fits", _image(), _wcs_header(0.2)))
    assert exposure.wcs is not None
    assert exposure.wcs.naxis == 2 and exposure.wcs.has_celestial
    assert exposure.meta.pixscale == pytest.approx(0.2)
    ra, dec = exposure.wcs.pixel_to_world_values(24.0, 19.0)
    assert (float(ra), float(dec)) == pytest.approx((150.0, 2.0))


def test_wcs_inherited_into_mef_sci(tmp_path: Path) -> None:
    exposure = open_exposure(
        write_exposure(tmp_path / "mef.fits", _image(), _wcs_header(0.3), mask=np.zeros((40, 50)))
    )
    assert exposure.hdu == 1 and exposure.wcs is not None
    assert exposure.meta.pixscale == pytest.approx(0.3)


def test_non_celestial_wcs_is_none(tmp_path: Path) -> None:
    header = fits.Header()
    header["CTYPE1"] = "LINEAR"
    header["CTYPE2"] = "LINEAR"
    header["CDELT1"] = 1.0
    header["CDELT2"] = 1.0
    exposure = open_exposure(write_exposure(tmp_path / "lin.fits", _image(), header))
    assert exposure.wcs is None and exposure.meta.pixscale is None


def test_fwhm_keyword(tmp_path: Path) -> None:
    header = fits.Header()
    header["FWHM"] = 3.2
    header["SEEING"] = 1.0
    header["PIXSCALE"] = 0.5
    meta = open_exposure(write_exposure(tmp_path / "fwhm.fits", _image(), header)).meta
    assert meta.fwhm_px == 3.2 and meta.fwhm_source == "header:FWHM"
    assert meta.pixscale == 0.5


def test_seeing_and_pixscale(tmp_path: Path) -> None:
    header = fits.Header()
    header["SEEING"] = 1.2
    header["PIXSCALE"] = 0.4
    header["GAIN"] = 1.5
    header["RDNOISE"] = 4.0
    header["MAGZP"] = 25.1
    header["OBSMODE"] = "TRACKING"
    header["BUNIT"] = "e-"
    meta = open_exposure(write_exposure(tmp_path / "seeing.fits", _image(), header)).meta
    assert meta.fwhm_px == pytest.approx(3.0) and meta.fwhm_source == "header:SEEING"
    assert (meta.gain, meta.rdnoise, meta.magzp) == (1.5, 4.0, 25.1)
    assert meta.obsmode == "tracking" and meta.bunit == "e-"


def test_seeing_with_wcs_scale_and_without_scale(tmp_path: Path) -> None:
    header = _wcs_header(0.25)
    header["SEEING"] = 1.0
    meta = open_exposure(write_exposure(tmp_path / "a.fits", _image(), header)).meta
    assert meta.fwhm_px == pytest.approx(4.0) and meta.fwhm_source == "header:SEEING"
    header = fits.Header()
    header["SEEING"] = 1.0
    meta = open_exposure(write_exposure(tmp_path / "b.fits", _image(), header)).meta
    assert meta.fwhm_px is None and meta.fwhm_source is None


# --------------------------------------------------------------------------
# Laziness, memory, pickling
# --------------------------------------------------------------------------


def test_to_xarray_is_lazy_and_reads_each_chunk_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _image(50, 70)
    data[0, 0] = np.nan
    variance = np.full(data.shape, 9.0, np.float32)
    path = write_exposure(tmp_path / "x.fits", data, variance=variance)
    exposure = open_exposure(path)

    calls: list[tuple[int, int, int, int]] = []
    original = Exposure.read

    def counting_read(self: Exposure, y0: int, y1: int, x0: int, x1: int) -> PixelSection:
        calls.append((y0, y1, x0, x1))
        return original(self, y0, y1, x0, x1)

    monkeypatch.setattr(Exposure, "read", counting_read)
    ds = exposure.to_xarray(chunks=32)
    assert calls == []
    assert set(ds.data_vars) == {"data", "mask", "variance"}
    assert ds["data"].dims == ("y", "x") and ds["data"].shape == (50, 70)
    assert ds["data"].chunks == ((32, 18), (32, 32, 6))
    assert ds.attrs["path"] == str(exposure.path) and ds.attrs["hdu"] == 1
    assert calls == []

    computed = ds.compute()
    assert len(calls) == 6  # one read per chunk for all three variables
    expected = data.copy()
    expected[0, 0] = 0
    np.testing.assert_array_equal(computed["data"].values, expected)
    assert computed["mask"].values[0, 0] == NONFINITE
    assert computed["mask"].dtype == np.uint16
    np.testing.assert_array_equal(computed["variance"].values, variance)


def test_to_xarray_without_variance(tmp_path: Path) -> None:
    exposure = open_exposure(write_exposure(tmp_path / "x.fits", _image()))
    ds = exposure.to_xarray()
    assert set(ds.data_vars) == {"data", "mask"}
    np.testing.assert_array_equal(ds["data"].values, _image())


def _write_big_float32(path: Path, n: int = 4096) -> int:
    """Write an n x n float32 primary image quickly (sparse zeros + a marker)."""
    header = fits.Header()
    header["SIMPLE"] = True
    header["BITPIX"] = -32
    header["NAXIS"] = 2
    header["NAXIS1"] = n
    header["NAXIS2"] = n
    text = header.tostring().encode("ascii")
    data_bytes = n * n * 4
    total = len(text) + data_bytes + (-data_bytes) % 2880
    with open(path, "wb") as stream:
        stream.write(text)
        stream.truncate(total)
    pixels = np.memmap(path, dtype=">f4", mode="r+", offset=len(text), shape=(n, n))
    pixels[2000:2064, 3000:3064] = np.arange(64 * 64, dtype=np.float32).reshape(64, 64)
    pixels.flush()
    del pixels
    return total


def test_section_read_is_memory_bounded(tmp_path: Path) -> None:
    path = tmp_path / "big.fits"
    size = _write_big_float32(path)
    assert size > 60 * 2**20

    tracemalloc.start()
    try:
        exposure = open_exposure(path)  # includes the bounded all-NaN scan
        _, open_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        section = exposure.read(2000, 2064, 3000, 3064)
        _, read_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(section.data.ravel(), np.arange(64 * 64, dtype=np.float32))
    assert read_peak < 2 * 2**20, read_peak
    assert open_peak < 16 * 2**20, open_peak
    assert exposure.shape == (4096, 4096)


def test_pickle_is_small_and_reads_after_unpickling(tmp_path: Path) -> None:
    data = _image()
    header = _wcs_header()
    for i in range(200):
        header["HISTORY"] = f"processing step {i}"
    path = write_exposure(tmp_path / "p.fits", data, header, mask=np.zeros((40, 50)))
    exposure = open_exposure(path)
    blob = pickle.dumps(exposure)
    assert len(blob) < 100_000
    clone = pickle.loads(blob)
    assert clone.shape == exposure.shape and clone.meta == exposure.meta
    assert clone.wcs is not None and clone.header["CTYPE1"] == "RA---TAN"
    np.testing.assert_array_equal(clone.read(0, 5, 0, 5).data, data[:5, :5])


# --------------------------------------------------------------------------
# Bad input: one-line InputError naming the file
# --------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    _expect_input_error(tmp_path / "nope.fits", "file not found")


def test_random_bytes(tmp_path: Path) -> None:
    path = tmp_path / "random.fits"
    path.write_bytes(np.random.default_rng(0).bytes(10_000))
    _expect_input_error(path, "not a valid FITS file")


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.fits"
    path.write_bytes(b"")
    _expect_input_error(path, "not a valid FITS file")


def test_truncated_data(tmp_path: Path) -> None:
    path = write_exposure(tmp_path / "cut.fits", _image(100, 100))
    blob = path.read_bytes()
    path.write_bytes(blob[: 2880 + 20_000])
    _expect_input_error(path, "truncated file")


def test_file_truncated_after_open_fails_in_read(tmp_path: Path) -> None:
    path = write_exposure(tmp_path / "late.fits", _image(100, 100))
    exposure = open_exposure(path)
    blob = path.read_bytes()
    path.write_bytes(blob[:4000])
    with pytest.raises(InputError) as info:
        exposure.read(90, 100, 0, 100)
    _check_message(info.value, path, "cannot read pixels [90:100, 0:100]")
    path.unlink()
    with pytest.raises(InputError) as info:
        exposure.read(0, 1, 0, 1)
    _check_message(info.value, path, "file not found")


def test_no_image_data(tmp_path: Path) -> None:
    path = tmp_path / "empty_primary.fits"
    fits.PrimaryHDU().writeto(path)
    _expect_input_error(path, "no image data")
    _expect_input_error(path, "no image data", hdu=0)


def test_zero_length_axis(tmp_path: Path) -> None:
    header = fits.Header()
    header["SIMPLE"] = True
    header["BITPIX"] = -32
    header["NAXIS"] = 2
    header["NAXIS1"] = 0
    header["NAXIS2"] = 10
    path = tmp_path / "zero_axis.fits"
    path.write_bytes(header.tostring().encode("ascii"))
    _expect_input_error(path, "no image data")


def test_one_dimensional(tmp_path: Path) -> None:
    path = tmp_path / "line.fits"
    fits.PrimaryHDU(np.ones(100, np.float32)).writeto(path)
    _expect_input_error(path, "expected a 2-D image, got 1-D data with shape (100,)")


def test_three_dimensional(tmp_path: Path) -> None:
    path = tmp_path / "cube.fits"
    fits.PrimaryHDU(np.ones((3, 10, 12), np.float32)).writeto(path)
    _expect_input_error(path, "expected a 2-D image, got 3-D data with shape (3, 10, 12)")


def test_leading_length_one_axes_are_squeezed(tmp_path: Path) -> None:
    data = _image(10, 12)
    path = tmp_path / "cube1.fits"
    fits.PrimaryHDU(data[np.newaxis, np.newaxis]).writeto(path)
    exposure = open_exposure(path)
    assert exposure.shape == (10, 12)
    np.testing.assert_array_equal(exposure.read(2, 8, 1, 11).data, data[2:8, 1:11])
    np.testing.assert_array_equal(exposure.to_xarray(chunks=4)["data"].values, data)


def test_table_hdu_selected(tmp_path: Path) -> None:
    path = tmp_path / "table.fits"
    table = fits.BinTableHDU.from_columns([fits.Column("a", "E", array=np.zeros(3))], name="EVENTS")
    fits.HDUList([fits.PrimaryHDU(), table]).writeto(path)
    _expect_input_error(path, "HDU 1 is a binary table, not an image", hdu=1)
    _expect_input_error(path, "HDU 1 is a binary table, not an image", hdu="EVENTS")
    error = _expect_input_error(path, "no image HDU in the file")
    assert "EVENTS (binary table)" in str(error)


def test_missing_named_hdu_lists_available(tmp_path: Path) -> None:
    path = write_exposure(tmp_path / "mef.fits", _image(), variance=np.ones((40, 50)))
    error = _expect_input_error(path, "no HDU named 'WHT'", hdu="WHT")
    assert "1 SCI (image)" in str(error) and "2 VAR (image)" in str(error)
    _expect_input_error(path, "HDU 7 does not exist", hdu=7)


def test_all_nan_image(tmp_path: Path) -> None:
    path = write_exposure(tmp_path / "nan.fits", np.full((30, 40), np.nan, np.float32))
    _expect_input_error(path, "all pixels are NaN or infinite")
    exposure = open_exposure(path, check_finite=False)
    with pytest.raises(InputError) as info:
        check_not_all_nonfinite(exposure)
    _check_message(info.value, path, "all pixels are NaN or infinite")


def test_check_not_all_nonfinite_passes_on_partial_nan(tmp_path: Path) -> None:
    data = np.full((30, 40), np.nan, np.float32)
    data[-1, -1] = 1.0
    exposure = open_exposure(write_exposure(tmp_path / "almost.fits", data))
    check_not_all_nonfinite(exposure)


# --------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------


def test_write_exposure_validation(tmp_path: Path) -> None:
    path = tmp_path / "w.fits"
    with pytest.raises(InputError, match="2-D"):
        write_exposure(path, np.ones(5))
    with pytest.raises(InputError, match="variance shape"):
        write_exposure(path, np.ones((4, 4)), variance=np.ones((3, 4)))
    write_exposure(path, np.ones((4, 4)))
    with pytest.raises(InputError, match="file exists"):
        write_exposure(path, np.ones((4, 4)), overwrite=False)
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_write_exposure_bool_mask_roundtrip(tmp_path: Path) -> None:
    mask = np.zeros((40, 50), bool)
    mask[5, 6] = True
    exposure = open_exposure(write_exposure(tmp_path / "m.fits", _image(), mask=mask))
    assert exposure.read(0, 40, 0, 50).mask[5, 6] == BAD


# --------------------------------------------------------------------------
# PSF images
# --------------------------------------------------------------------------


def test_irac_psf_oversampling() -> None:
    psf, oversampling = read_psf_image(IRAC_PSF)
    assert oversampling == 4.0
    assert psf.shape == (81, 81) and psf.dtype == np.float64
    assert (psf >= 0).all() and psf.sum() == pytest.approx(1.0)
    # The comment wins over the pixel-scale ratio.
    assert read_psf_image(IRAC_PSF, image_pixscale=1.2)[1] == 4.0


def _psf(shape: tuple[int, ...] = (15, 15)) -> np.ndarray:
    y, x = np.indices(shape[-2:])
    core = np.exp(-((y - shape[-2] // 2) ** 2 + (x - shape[-1] // 2) ** 2) / 8.0)
    return np.broadcast_to(core, shape).astype(np.float32)


def test_psf_oversampling_sources(tmp_path: Path) -> None:
    path = tmp_path / "psf.fits"
    hdu = fits.PrimaryHDU(_psf())
    hdu.header["OVERSAMP"] = 3
    hdu.writeto(path)
    assert read_psf_image(path)[1] == 3.0

    hdu = fits.PrimaryHDU(_psf())
    hdu.header["PSFSCALE"] = 0.05
    hdu.writeto(path, overwrite=True)
    assert read_psf_image(path, image_pixscale=0.2)[1] == pytest.approx(4.0)
    assert read_psf_image(path)[1] == 1.0

    hdu = fits.PrimaryHDU(_psf())
    hdu.header["COMMENT"] = "PSF oversampled by a factor of 2"
    hdu.writeto(path, overwrite=True)
    assert read_psf_image(path)[1] == 2.0


def test_psf_negative_and_nan_pixels_are_zeroed(tmp_path: Path) -> None:
    psf = _psf()
    psf[0, 0] = -1.0
    psf[0, 1] = np.nan
    path = tmp_path / "psf.fits"
    fits.PrimaryHDU(psf).writeto(path)
    out, _ = read_psf_image(path)
    assert out[0, 0] == 0 and out[0, 1] == 0
    assert np.isfinite(out).all() and out.sum() == pytest.approx(1.0)


def test_psf_bad_inputs(tmp_path: Path) -> None:
    path = tmp_path / "zero_psf.fits"
    fits.PrimaryHDU(np.zeros((9, 9), np.float32)).writeto(path)
    with pytest.raises(InputError) as info:
        read_psf_image(path)
    _check_message(info.value, path, "no positive finite pixel")

    cube = tmp_path / "cube_psf.fits"
    fits.PrimaryHDU(_psf((3, 9, 9))).writeto(cube)
    with pytest.raises(InputError) as info:
        read_psf_image(cube)
    _check_message(info.value, cube, "expected a 2-D PSF image")

    with pytest.raises(InputError) as info:
        read_psf_image(tmp_path / "missing_psf.fits")
    _check_message(info.value, tmp_path / "missing_psf.fits", "file not found")


def test_write_exposure_accepts_a_mapping_header(tmp_path: Path) -> None:
    path = write_exposure(tmp_path / "m.fits", _image(), {"GAIN": 2.0, "NAXIS": 7, "EXPTIME": 3})
    exposure = open_exposure(path)
    assert exposure.shape == (40, 50)
    assert (exposure.meta.gain, exposure.meta.exptime) == (2.0, 3.0)

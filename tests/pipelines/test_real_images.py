"""Real sky images that ship with astropy (no PSF keywords in any of them):
the PSF is estimated from their stars and detection runs end to end.

* ``m13.fits``: the M13 globular cluster, tile-compressed, crowded;
* ``comp.fits``: NGC 1316 and a star-rich plate, undersampled stars;
* ``dss.14.29.56-62.41.05.fits.gz``: a Galactic-plane DSS field, 100x100, crowded;
* ``dist_lookup.fits.gz``: an HST-like cutout with cosmic rays.
"""

from __future__ import annotations

from pathlib import Path

import astropy
import numpy as np
import pytest

from pipelines import detect_image

ASTROPY = Path(astropy.__file__).parent
IMAGES = {
    "m13": (ASTROPY / "io/fits/hdu/compressed/tests/data/m13.fits", (2.5, 4.5), 200),
    "comp": (ASTROPY / "io/fits/tests/data/comp.fits", (1.2, 2.5), 200),
    "dss": (ASTROPY / "wcs/tests/data/dss.14.29.56-62.41.05.fits.gz", (2.0, 4.0), 40),
    "hst": (ASTROPY / "wcs/tests/data/dist_lookup.fits.gz", (1.2, 2.5), 15),
}


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_psf_is_estimated_from_the_stars_and_sources_are_found(name: str) -> None:
    path, (fwhm_lo, fwhm_hi), min_found = IMAGES[name]
    if not path.exists():
        pytest.skip(f"astropy does not ship {path.name} in this version")
    result = detect_image(path, checksum=False)
    assert result.psf.source.startswith("stars:")
    assert fwhm_lo <= result.psf.fwhm <= fwhm_hi
    cat = result.catalog
    assert len(cat) >= min_found
    assert np.all(np.isfinite(cat["x"])) and np.all(np.isfinite(cat["flux"]))
    # the bulk of the detections are significant, well-measured point sources
    assert np.median(cat["snr"]) > 10

"""One contract, run over every registered expert (kornia's ``BaseTester`` idea).

Whatever the expert, it must survive hostile tiles (empty, pure noise, fully
masked, NaNs, tiny), be deterministic, not care whether pixels are float32
or float64, return the candidate-table contract, and score any candidates.
New experts get these tests by being registered.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from contracts.flags import MaskBit
from contracts.vocabulary import KINDS
from moe_imaging.experts import CANDIDATE_COLUMNS, REGISTRY, Expert
from moe_imaging.psf import moffat_psf
from moe_imaging.tile import Tile
from pipelines.modality import make_configured_expert

PSF = moffat_psf(3.0)
EXPERTS = sorted(REGISTRY)


def _stars(shape=(160, 160), seed=0, n=12, sigma=1.0):
    rng = np.random.default_rng(seed)
    img = rng.normal(0.0, sigma, shape)
    h = PSF.half_size
    for _ in range(n):
        y, x = rng.uniform(h + 2, shape[0] - h - 2), rng.uniform(h + 2, shape[1] - h - 2)
        iy, ix = int(round(y)), int(round(x))
        stamp = ndimage.shift(PSF.image, (y - iy, x - ix), order=3) * 40.0 * sigma / np.sqrt((PSF.image**2).sum())
        img[iy - h : iy + h + 1, ix - h : ix + h + 1] += stamp
    return img


def _blobs(shape=(200, 200), seed=0, n=4, sigma=1.0):
    """Nucleus-sized filled discs (radius 15 px), bright, on noise."""
    rng = np.random.default_rng(seed)
    img = rng.normal(0.0, sigma, shape)
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    centres = [(50, 50), (50, 150), (150, 50), (150, 150)][:n]
    for y, x in centres:
        img[(yy - y - rng.uniform(-3, 3)) ** 2 + (xx - x - rng.uniform(-3, 3)) ** 2 <= 15**2] += 30.0 * sigma
    return img


def _hits(shape=(160, 160), seed=0, n=6, sigma=1.0):
    """Stars plus cosmic-ray hits: single pixels and short tracks, not PSF-blurred."""
    rng = np.random.default_rng(seed)
    img = _stars(shape, seed=seed, n=6, sigma=sigma)
    for k in range(n):
        y, x = 15 + 25 * (k // 3), 20 + 50 * (k % 3)
        length = 1 + k % 3
        img[y, x : x + length] += rng.uniform(30, 80) * sigma
    return img


def _trails(shape=(160, 160), seed=0, sigma=1.0):
    """Stars plus two trails: the PSF dragged along a segment (S/N about 60 each)."""
    rng = np.random.default_rng(seed)
    img = _stars(shape, seed=seed, n=6, sigma=sigma)
    scene = np.zeros(shape)
    for y0, x0, y1, x1 in ((30, 20, 60 + rng.uniform(-5, 5), 130), (130, 30, 90 + rng.uniform(-5, 5), 140)):
        n = int(np.hypot(y1 - y0, x1 - x0) * 2)
        for f in np.linspace(0, 1, n):
            scene[int(round(y0 + f * (y1 - y0))), int(round(x0 + f * (x1 - x0)))] += 1.0 / n
    scene = ndimage.convolve(scene, PSF.image)
    return img + scene * 60.0 * sigma / np.sqrt((scene**2).sum() / 2)


def _scene(expert, seed=0):
    """A scene holding objects of the kind the expert speaks for."""
    if tuple(expert.kinds) == ("streak",):
        return _trails(seed=seed)
    if "nucleus" in expert.kinds:
        return _blobs(seed=seed)
    if "artifact" in expert.kinds:
        return _hits(seed=seed)
    return _stars(seed=seed)


def _check_contract(table, expert) -> None:
    for name, dtype in CANDIDATE_COLUMNS:
        assert name in table.colnames, f"{expert.name}: missing column {name}"
        assert np.dtype(table[name].dtype).kind == np.dtype(dtype).kind, f"{expert.name}: {name} dtype"
    if len(table):
        assert set(np.asarray(table["kind"]).astype(str)) <= set(KINDS)
        assert set(np.asarray(table["expert"]).astype(str)) == {expert.name}
        assert np.all(np.isfinite(np.asarray(table["x"]))) and np.all(np.isfinite(np.asarray(table["y"])))


@pytest.fixture(params=EXPERTS)
def expert(request) -> Expert:
    return make_configured_expert(request.param)  # the learned expert is handed its network


def test_is_an_expert(expert) -> None:
    assert isinstance(expert, Expert)
    assert expert.name in REGISTRY and set(expert.kinds) <= set(KINDS)
    small, large = expert.footprint(moffat_psf(2.0)), expert.footprint(moffat_psf(6.0))
    assert isinstance(small, int) and 0 < small < large


def test_empty_tile(expert) -> None:
    table = expert.propose(Tile.from_image(np.zeros((64, 64)), PSF, noise=1.0))
    _check_contract(table, expert)
    assert len(table) == 0


def test_pure_noise_gives_few_candidates(expert) -> None:
    rng = np.random.default_rng(1)
    table = expert.propose(Tile.from_image(rng.normal(0, 1, (512, 512)), PSF, noise=1.0))
    _check_contract(table, expert)
    assert len(table) <= 5  # ~0.13 expected at 0.5 per Mpix


def test_fully_masked_tile(expert) -> None:
    img = _scene(expert)
    mask = np.full(img.shape, int(MaskBit.BAD), np.uint16)
    table = expert.propose(Tile.from_image(img, PSF, noise=1.0, mask=mask))
    _check_contract(table, expert)
    assert len(table) == 0


def test_nans_are_tolerated(expert) -> None:
    img = _scene(expert)
    img[40:60, :] = np.nan
    table = expert.propose(Tile.from_image(img, PSF, noise=1.0))
    _check_contract(table, expert)
    assert not np.any((np.asarray(table["y"]) > 41) & (np.asarray(table["y"]) < 58))


@pytest.mark.parametrize("shape", [(1, 1), (5, 5), (3, 200)])
def test_tiny_tiles(expert, shape) -> None:
    table = expert.propose(Tile.from_image(np.random.default_rng(2).normal(0, 1, shape), PSF, noise=1.0))
    _check_contract(table, expert)


def test_deterministic(expert) -> None:
    tile = Tile.from_image(_scene(expert, seed=3), PSF, noise=1.0)
    a, b = expert.propose(tile), expert.propose(tile)
    assert len(a) == len(b) > 0
    for name in a.colnames:
        np.testing.assert_array_equal(np.asarray(a[name]), np.asarray(b[name]))


def test_float32_and_float64_agree(expert) -> None:
    img = _scene(expert, seed=4)
    a = expert.propose(Tile.from_image(img, PSF, noise=1.0))
    b = expert.propose(Tile.from_image(img.astype(np.float32), PSF, noise=1.0))
    np.testing.assert_array_equal(a["x_peak"], b["x_peak"])
    np.testing.assert_allclose(a["x"], b["x"], atol=1e-3)
    np.testing.assert_allclose(a["flux"], b["flux"], rtol=1e-4)


def test_finds_what_it_speaks_for(expert) -> None:
    # the scenes hold 4 nuclei, 12 stars, 6 stars + 6 hits (artifact experts) or
    # 6 stars + 2 trails (streak experts): count what the expert speaks for
    if tuple(expert.kinds) == ("streak",):
        table = expert.propose(Tile.from_image(_scene(expert, seed=5), PSF, noise=1.0))
        assert len(table) == 2 and set(np.asarray(table["kind"]).astype(str)) == {"streak"}
        return
    if "nucleus" in expert.kinds:
        expected = 4
    elif "artifact" in expert.kinds:
        expected = 6 + (6 if "star" in expert.kinds else 0)
    else:
        expected = 12
    table = expert.propose(Tile.from_image(_scene(expert, seed=5), PSF, noise=1.0))
    assert expected - 2 <= len(table) <= expected + 2


def test_scores_every_candidate_in_order(expert) -> None:
    tile = Tile.from_image(_scene(expert, seed=6), PSF, noise=1.0)
    cands = expert.propose(tile)
    evidence = expert.score(tile, cands)
    assert len(evidence) == len(cands) > 0
    assert all(np.isfinite(np.asarray(evidence[c], dtype=float)).all() for c in evidence.colnames)
    # candidates off the tile get NaN evidence; none at all gives an empty table
    far = cands[:1].copy()
    far["x"] = [1e6]
    assert np.isnan(np.asarray(expert.score(tile, far)[evidence.colnames[0]], dtype=float)).all()
    assert len(expert.score(tile, cands[:0])) == 0


def test_constant_tile(expert) -> None:
    table = expert.propose(Tile.from_image(np.full((128, 128), 7.0), PSF, noise=1.0, background=7.0))
    _check_contract(table, expert)
    assert len(table) == 0


def test_psf_larger_than_the_tile(expert) -> None:
    big = moffat_psf(12.0)  # image ~100 px across
    img = np.random.default_rng(7).normal(0, 1, (40, 40))
    table = expert.propose(Tile.from_image(img, big, noise=1.0))
    _check_contract(table, expert)


def test_nan_psf_is_a_clear_error() -> None:
    from contracts.errors import PSFError
    from moe_imaging.psf import PSF as PSFClass

    bad = np.full((11, 11), np.nan)
    with pytest.raises(PSFError, match="finite"):
        PSFClass(image=bad, fwhm=3.0, source="test", model="empirical")

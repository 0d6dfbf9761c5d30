"""The learned expert: a small CNN over candidate stamps, with the PSF as input.

Candidates come from the point expert's matched filter
(:func:`~moe_imaging.experts.point.find_point_sources`, so ownership by the
tile core is the point expert's); each is classified by the network in
:mod:`moe_imaging.learned.model` as ``star``, ``galaxy``, ``streak`` or
``artifact`` from a 31 x 31 px noise-normalised stamp, the tile's PSF image
and its FWHM, averaged over the eight rotations and flips of the square (D4
test-time augmentation).

Columns added to the candidate contract (and returned by :meth:`score`):

``p_star``, ``p_galaxy``, ``p_streak``, ``p_artifact``
    Class probabilities (tempered toward uniform out of the PSF range).
``learned_confidence``
    The largest of them.
``learned_stability``
    Agreement of the eight D4 views, ``1 -`` their mean total-variation
    distance to the average, in ``[0, 1]`` (NaN without test-time augmentation).
``learned_in_range``
    Whether the tile's PSF FWHM lies in the range the network was trained on
    (stated in the model card).  Outside it the probabilities are mixed toward
    uniform (:func:`~moe_imaging.learned.model.temper_probabilities`), so the
    expert abstains rather than being confidently wrong.

Weights load once per process (cached); inference runs in batches on the
configured torch device and is deterministic.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np
from astropy.table import Table

from contracts.config import Config, check_choice, check_int, check_range
from contracts.errors import ConfigError
from contracts.vocabulary import SURVEY_CLASSES

from ..psf import PSF
from ..tile import Tile
from .base import CANDIDATE_COLUMNS, empty_candidates, register
from .point import PointExpert, PointExpertConfig, find_point_sources

if TYPE_CHECKING:  # torch is imported only where the network runs
    from ..learned.model import LearnedModel

__all__ = ["LearnedExpertConfig", "LearnedExpert", "LEARNED_COLUMNS", "learned_evidence"]

_CLASSES = SURVEY_CLASSES

LEARNED_COLUMNS: tuple[tuple[str, str], ...] = tuple((f"p_{c}", "f8") for c in _CLASSES) + (
    ("learned_confidence", "f8"),
    ("learned_stability", "f8"),
    ("learned_in_range", "?"),
)
"""Evidence columns (name, numpy dtype) of the learned expert."""


@dataclasses.dataclass(frozen=True)
class LearnedExpertConfig(Config):
    """Options of the learned expert.

    Attributes
    ----------
    weights : str or None
        Path of a weights file from ``moe-imaging train learned``; ``None``
        uses the shipped ``moe_imaging/models/learned_v1.pt``.
    device : str
        Torch device for inference: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"``.
    batch_size : int
        Stamps per forward pass (each pass holds 8x as many with ``tta``).
    tta : bool
        Average over the D4 group (and report ``learned_stability``).
    temper_factor : float
        Probabilities are uniform when the PSF FWHM is this factor beyond the
        trained range (linear in log FWHM in between).
    point : PointExpertConfig
        Options of the matched-filter proposals.
    """

    weights: str | None = None
    device: str = "cpu"
    batch_size: int = 256
    tta: bool = True
    temper_factor: float = 1.5
    point: PointExpertConfig = PointExpertConfig()

    def __post_init__(self) -> None:
        if self.weights is not None and not isinstance(self.weights, str):
            raise ConfigError(f"learned.weights: expected a path or None, got {self.weights!r}")
        if not isinstance(self.device, str):
            raise ConfigError(f"learned.device: expected a string, got {self.device!r}")
        check_choice("learned.device", self.device.split(":")[0], ("cpu", "cuda", "mps"))
        check_int("learned.batch_size", self.batch_size)
        check_range("learned.batch_size", self.batch_size, low=1, high=1_000_000)
        if not isinstance(self.tta, bool):
            raise ConfigError(f"learned.tta: expected True or False, got {self.tta!r}")
        check_range("learned.temper_factor", self.temper_factor, low=1.0, high=100.0, low_inclusive=False)
        if not isinstance(self.point, PointExpertConfig):
            raise ConfigError(f"learned.point: expected a PointExpertConfig, got {self.point!r}")


def learned_evidence(
    tile: Tile, y: np.ndarray, x: np.ndarray, *, model: LearnedModel,
    config: LearnedExpertConfig = LearnedExpertConfig(),
) -> dict[str, np.ndarray]:
    """The learned expert's evidence at global positions (pure function of the tile).

    Parameters
    ----------
    tile : Tile
        The tile the positions lie on.
    y, x : numpy.ndarray
        Global 0-based positions; the stamp is centred on the nearest pixel.
    model : moe_imaging.learned.model.LearnedModel
        The network (``pipelines.models.load_learned`` reads it; the caller
        chooses its device).
    config : LearnedExpertConfig
        Batching, test-time augmentation, tempering.

    Returns
    -------
    dict
        One array per :data:`LEARNED_COLUMNS` entry; NaN for positions off
        the tile (``learned_in_range`` describes the tile's PSF for every row).
    """
    from ..learned.model import classify_stamps, extract_stamps, temper_probabilities

    y = np.asarray(y, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    n = len(y)
    out = {name: np.full(n, np.nan) for name, _ in LEARNED_COLUMNS[:-1]}
    img = np.asarray(tile.image)
    oy, ox = tile.origin
    iy = np.floor(y - oy + 0.5)
    ix = np.floor(x - ox + 0.5)
    inside = np.isfinite(iy) & np.isfinite(ix) & (iy >= 0) & (ix >= 0) & (iy < img.shape[0]) & (ix < img.shape[1])
    _, in_range, _ = temper_probabilities(np.ones(len(model.classes)), tile.psf.fwhm, model.fwhm_range, config.temper_factor)
    out["learned_in_range"] = np.full(n, in_range, dtype=bool)
    if not inside.any():
        return out
    yx = np.column_stack([iy[inside], ix[inside]]).astype(np.int64)
    stamps = extract_stamps(img, tile.variance, tile.mask, yx, size=model.stamp_size)
    probs, stab = classify_stamps(
        stamps, tile.psf.image, tile.psf.fwhm, model, batch_size=config.batch_size, tta=config.tta
    )
    probs, _, _ = temper_probabilities(probs, tile.psf.fwhm, model.fwhm_range, config.temper_factor)
    for j, c in enumerate(model.classes):
        out[f"p_{c}"][inside] = probs[:, j]
    out["learned_confidence"][inside] = probs.max(axis=1)
    out["learned_stability"][inside] = stab
    return out


@register
class LearnedExpert:
    """Star / galaxy / streak / artifact classification by a small CNN (see module docs).

    Parameters
    ----------
    config : LearnedExpertConfig
        The expert's options.
    """

    name = "learned"
    kinds = _CLASSES

    def __init__(self, config: LearnedExpertConfig = LearnedExpertConfig(), *, model: LearnedModel | None = None) -> None:
        if model is None:
            raise ConfigError("the learned expert needs its network: load it with "
                              "pipelines.models.load_learned(config.weights, device=config.device) and pass model=")
        self.config = config
        self.model = model

    def footprint(self, psf: PSF) -> int:
        """Halo (pixels): the point expert's, or the stamp's half-size if larger."""
        from ..learned.model import STAMP_SIZE

        return max(PointExpert(self.config.point).footprint(psf), STAMP_SIZE // 2 + 1)

    def propose(self, tile: Tile) -> Table:
        """Matched-filter candidates owned by the tile, classified by the network."""
        cands = find_point_sources(tile, config=self.config.point)
        if len(cands) == 0:
            return empty_candidates(LEARNED_COLUMNS)
        ev = learned_evidence(
            tile, np.asarray(cands["y_peak"], float), np.asarray(cands["x_peak"], float), model=self.model,
            config=self.config,
        )
        probs = np.column_stack([ev[f"p_{c}"] for c in _CLASSES])
        cols = {name: np.asarray(cands[name], dtype=dt) for name, dt in CANDIDATE_COLUMNS}
        cols["kind"] = np.asarray(_CLASSES, dtype="U16")[probs.argmax(axis=1)]
        cols["expert"] = np.full(len(cands), self.name, dtype="U16")
        for name, dt in LEARNED_COLUMNS:
            cols[name] = np.asarray(ev[name], dtype=dt)
        table = Table(cols)
        table.meta["threshold"] = cands.meta.get("threshold")
        return table

    def score(self, tile: Tile, candidates: Table) -> Table:
        """Class evidence at each candidate's ``(x, y)`` (one row each, in order; NaN off the tile)."""
        if len(candidates) == 0:
            return Table({name: np.zeros(0, dtype=dt) for name, dt in LEARNED_COLUMNS})
        ev = learned_evidence(tile, np.asarray(candidates["y"], float), np.asarray(candidates["x"], float),
                              model=self.model, config=self.config)
        return Table({name: np.asarray(ev[name], dtype=dt) for name, dt in LEARNED_COLUMNS})

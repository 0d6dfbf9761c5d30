"""The one triage model protocol: detections and their context in, calibrated probabilities out.

Survey (the gate over the experts, :mod:`moe_imaging.triage.survey`) and
microscopy (the nucleus triage, :mod:`moe_imaging.triage.microscopy`) are two
*heads* of one lifecycle:

1. a head turns a detection table and its :class:`TriageContext` into a
   :class:`TriagePrediction`: calibrated class probabilities, the triage
   stratum of each detection, and the evidence in words;
2. :func:`moe_imaging.triage.apply.apply_triage` turns those into decisions
   with the certified thresholds fitted on the head's
   :class:`CalibrationSplit` (:mod:`moe_imaging.triage.certify`);
3. :func:`moe_imaging.triage.recalibrate.recalibrate_with_labels` adds
   reviewers' labels to that split and returns a new head;
4. ``training`` renders each trained head's model card, and ``pipelines.models.save_model`` writes it.

Heads are plain objects handed in by the caller: reading and writing their
weights happens outside the science core (``pipelines.models``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from typing import Any, Protocol, runtime_checkable

import numpy as np
from astropy.table import Table

__all__ = ["TriageContext", "TriagePrediction", "CalibrationSplit", "TriageModel"]


@dataclasses.dataclass(frozen=True)
class TriageContext:
    """What a head needs to know about the exposure besides its detections.

    Attributes
    ----------
    mode : str
        ``"survey"`` or ``"microscopy"`` (the prefix of the strata names).
    psf_fwhm : float
        PSF FWHM of the exposure, pixels (a ``psf_fwhm`` column, where
        present, gives it per detection).
    threshold : float
        Detection threshold in sigma (survey: "near threshold" in the reasons).
    image_shape : (int, int) or None
        ``(ny, nx)`` of the whole exposure: crowding near the edges, field density.
    diameter_px : (float, float) or None
        Microscopy: the expected nucleus diameter range, pixels.
    evidence : astropy.table.Table or None
        Survey: every expert's score columns, one row per detection, in order.
    """

    mode: str = "survey"
    psf_fwhm: float = math.nan
    threshold: float = math.nan
    image_shape: tuple[int, int] | None = None
    diameter_px: tuple[float, float] | None = None
    evidence: Table | None = None


@dataclasses.dataclass(frozen=True)
class TriagePrediction:
    """A head's output for ``n`` detections.

    Attributes
    ----------
    probs : numpy.ndarray, shape (n, k)
        Calibrated probabilities over the head's ``classes``.
    strata : numpy.ndarray of str, shape (n,)
        The triage stratum of each detection.
    reasons : list of str
        The evidence in words (the catalog's ``gate_reason``).
    columns : dict
        Extra per-detection columns the head reports (e.g. the gate's
        expert weights ``w_<expert>``), in order.
    meta : dict
        Extra exposure-level facts for the catalog's ``meta["gate"]``.
    """

    probs: np.ndarray
    strata: np.ndarray
    reasons: list[str]
    columns: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, eq=False)
class CalibrationSplit:
    """The held-out detections the certified thresholds are fitted on.

    Attributes
    ----------
    scores : numpy.ndarray of float
        The head's calibrated confidence (top probability) of each item.
    errors : numpy.ndarray of bool
        Whether the head's class was wrong.
    strata : numpy.ndarray of str
        The stratum of each item.
    never : tuple of str
        Strata that are never calibrated: their rows are left out of every fit,
        so their detections always go to review.
    """

    scores: np.ndarray
    errors: np.ndarray
    strata: np.ndarray
    never: tuple[str, ...] = ()
    _digest: str | None = dataclasses.field(default=None, init=False, repr=False)

    @classmethod
    def from_lists(cls, scores: Any, errors: Any, strata: Any, never: tuple[str, ...] = ()) -> CalibrationSplit:
        """Build from the plain lists stored with a model's weights."""
        return cls(np.asarray(scores, dtype=float), np.asarray(errors).astype(bool),
                   np.asarray(strata).astype(str), tuple(never))

    def fitted(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(scores, errors, strata)`` without the rows of the :attr:`never` strata."""
        keep = ~np.isin(self.strata, list(self.never)) if self.never else np.ones(len(self.scores), bool)
        return self.scores[keep], self.errors[keep], self.strata[keep]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CalibrationSplit) and self.fingerprint() == other.fingerprint()

    def __hash__(self) -> int:
        return hash(self.fingerprint())

    def fingerprint(self) -> str:
        """A digest of the content: splits with equal content are equal (the thresholds' cache key)."""
        if self._digest is None:
            object.__setattr__(self, "_digest", self._compute_digest())
        return self._digest

    def _compute_digest(self) -> str:
        h = hashlib.sha256()
        h.update(np.ascontiguousarray(self.scores, dtype=np.float64).tobytes())
        h.update(np.ascontiguousarray(self.errors, dtype=np.uint8).tobytes())
        h.update("\x1f".join(self.strata.tolist()).encode())
        h.update("\x1f".join(self.never).encode())
        return h.hexdigest()


@runtime_checkable
class TriageModel(Protocol):
    """A trained triage head (survey gate or nucleus triage).

    Attributes
    ----------
    classes : tuple of str
        Output order of the probabilities; ``"artifact"`` is the class whose
        automatic decision is ``rejected``.
    temperature : float
        Fitted on the calibration split.
    source : str
        Where the weights came from (a file name), for provenance.
    """

    classes: tuple[str, ...]
    temperature: float
    source: str

    def predict(self, table: Table, context: TriageContext) -> TriagePrediction:
        """Calibrated probabilities, strata and reasons for every row of ``table``."""
        ...

    def calibration_split(self) -> CalibrationSplit:
        """The held-out split the thresholds are fitted on."""
        ...

    def label_strata(self) -> tuple[str, ...]:
        """Strata the simulated split never holds that reviewers' labels alone may calibrate."""
        ...

    def label_history(self) -> list[dict[str, Any]]:
        """The label sets added to the calibration split so far (oldest first)."""
        ...

    def with_calibration(self, split: CalibrationSplit, label_sets: list[dict[str, Any]]) -> TriageModel:
        """A copy of this head whose calibration split is ``split`` (after adding labels)."""
        ...

"""The PSF-convolved segment along a trail: line-spread and edge-spread functions.

Across a trail the profile is the PSF's line-spread function
(:func:`line_spread_function`); along it, a segment convolved with it, the
difference of two edge-spread functions (:class:`_Edge`), whose half-maximum
points are the trail's ends.

Only :func:`line_spread_function` is public; the rest is private to
:mod:`moe_imaging.experts.streak`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from ...psf import PSF

__all__ = ["line_spread_function", "_Edge", "_edge_jac"]


def line_spread_function(psf: PSF) -> tuple[np.ndarray, np.ndarray]:
    """The PSF's line-spread function: offsets (pixels) and values (sum 1).

    The marginal of the PSF image across a line, symmetrised (the average of
    the x and y marginals): the profile across a trail.

    Parameters
    ----------
    psf : PSF
        The PSF (its pixel image).

    Returns
    -------
    t : numpy.ndarray
        Offsets across the line, ``-half_size .. half_size`` pixels.
    lsf : numpy.ndarray
        The line-spread function at ``t``, summing to 1.
    """
    img = np.asarray(psf.image)
    h = psf.half_size
    lsf = 0.5 * (img.sum(axis=0) + img.sum(axis=1))
    lsf = 0.5 * (lsf + lsf[::-1])
    return np.arange(-h, h + 1, dtype=float), lsf / lsf.sum()


@dataclasses.dataclass(frozen=True)
class _Edge:
    """The profile along a trail: a segment convolved with the PSF's line-spread function.

    ``C`` is the cumulative line-spread function (the edge-spread function),
    exact at half-integer offsets for a pixel-integrated LSF and linear in
    between; the trail's profile is ``A [C(s - s0) - C(s - s1)]``, and its
    ends are where it falls to half (for any symmetric PSF).
    """

    x: np.ndarray  # half-integer offsets
    cum: np.ndarray  # C at x
    lsf_t: np.ndarray
    lsf_v: np.ndarray

    @classmethod
    def from_lsf(cls, lsf: tuple[np.ndarray, np.ndarray]) -> "_Edge":
        """The edge-spread function of a line-spread function ``(t, v)``."""
        t, v = lsf
        x = np.concatenate([[t[0] - 0.5], t + 0.5])
        cum = np.concatenate([[0.0], np.cumsum(v)])
        return cls(x, cum / cum[-1], t, v)

    def model(self, s: np.ndarray, amp: float, s0: float, s1: float) -> np.ndarray:
        """The profile ``amp [C(s - s0) - C(s - s1)]`` at ``s``."""
        return amp * (
            np.interp(s - s0, self.x, self.cum, left=0.0, right=1.0)
            - np.interp(s - s1, self.x, self.cum, left=0.0, right=1.0)
        )

    def density(self, u: np.ndarray) -> np.ndarray:
        """d C / d u (the LSF, piecewise constant like the interpolated C)."""
        idx = np.clip(np.searchsorted(self.x, u) - 1, 0, len(self.lsf_v) - 1)
        inside = (u > self.x[0]) & (u < self.x[-1])
        return np.where(inside, self.lsf_v[idx], 0.0)


def _edge_jac(sc: np.ndarray, edge: "_Edge", perr: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """Jacobian of ``(edge.model(sc, A, s0, s1) - data) / perr`` with respect to ``(A, s0, s1)``."""

    def jac(p):
        amp, a0, a1 = p
        out = np.empty((len(sc), 3))
        out[:, 0] = edge.model(sc, 1.0, a0, a1)
        out[:, 1] = -amp * edge.density(sc - a0)
        out[:, 2] = amp * edge.density(sc - a1)
        return out / perr[:, None]

    return jac

"""The maximum-likelihood fit of a PSF-convolved segment, and the cheap look before it.

:func:`_profile_test` fits the profile along a seed line in one dimension
and applies the acceptance tests with loose limits; :func:`_fit_trail` fits
``A LSF(t - t0) [C(s - s0) - C(s - s1)]`` to the pixels around the line
(soft-L1 loss, point-like residuals masked, ends from the stretch of highest
S/N) and measures ``fill``, ``chi2``, ``gap``, ``width`` and ``contrast``
(:class:`_Fit`) for the acceptance in :func:`~.find.find_streaks`.

Package-internal: the names are private to :mod:`moe_imaging.experts.streak`.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy import optimize

from ...psf import PSF
from ...tile import Tile
from .config import StreakExpertConfig
from .lsf import _Edge, _edge_jac
from .measures import (
    _best_segment_along,
    _compact_residuals,
    _local_contrast,
    _pixels_near_line,
    _width_scale,
    _worst_part,
)

__all__ = ["_Fit", "_to_frame", "_as_line", "_profile_test", "_fit_trail"]


@dataclasses.dataclass
class _Fit:
    """A fitted trail: the line ``(cx, cy) + s (ux, uy)``, its ends ``s0 < s1``, amplitude and measures."""

    cx: float
    cy: float
    ux: float
    uy: float
    s0: float
    s1: float
    amp: float
    amp_err: float
    det_snr: float
    fill: float  # median of the profile inside the trail over the fitted amplitude (1 for a uniform trail)
    chi2: float  # robust reduced chi-square of the trail model
    gap: float  # most negative (part amplitude - A/2) / error over parts of the trail
    width: float  # width across the trail over the PSF's (1 for a trail)
    contrast: float  # amplitude over a local background plane, over the plain fit's (1 for a trail)

    def point(self, s: float) -> tuple[float, float]:
        """The point at ``s`` along the fitted line."""
        return self.cx + s * self.ux, self.cy + s * self.uy


def _to_frame(fit: "_Fit", cx: float, cy: float, ux: float, uy: float, lo: float, hi: float) -> tuple[float, float]:
    """Window limits ``[lo, hi]`` along the line ``(cx, cy) + s (ux, uy)``, in the fit's frame."""
    out = []
    for v in (lo, hi):
        px, py = cx + v * ux, cy + v * uy
        out.append((px - fit.cx) * fit.ux + (py - fit.cy) * fit.uy)
    return min(out), max(out)


def _as_line(fit: _Fit) -> tuple[float, float, float, float, float]:
    """The fitted trail as ``(cx, cy, angle in [0, pi), s_lo, s_hi)``, the form the line tests take."""
    angle = math.atan2(fit.uy, fit.ux)
    sign = 1.0 if 0.0 <= angle < math.pi else -1.0  # folding the angle reverses the direction
    a, b = fit.s0 * sign, fit.s1 * sign
    return (fit.cx, fit.cy, angle % math.pi, min(a, b), max(a, b))


def _profile_test(
    tile: Tile, bad: np.ndarray, cx: float, cy: float, angle: float, s_lo: float, s_hi: float, fit_lo: float,
    fit_hi: float, psf: PSF, lsf: tuple[np.ndarray, np.ndarray], config: StreakExpertConfig, threshold: float,
) -> bool:
    """A cheap first look along the seed line: is there a uniform trail, long enough?

    The line-spread-weighted profile along the seeds' line (1-pixel steps) is
    fitted with the PSF-convolved segment in one dimension; the candidate goes
    on to the full 2-D fit when the segment is nearly as long as the shortest
    trail, significant, has no empty part, is about as wide as the PSF across
    and stands out from a local background plane.  The same tests as after
    the full fit, with looser limits: it only saves the 2-D fit for what
    clearly is not a trail.
    """
    lsf_t, lsf_v = lsf
    edge = _Edge.from_lsf(lsf)
    ux, uy = math.cos(angle), math.sin(angle)
    s, t, v, var, _, _ = _pixels_near_line(tile, bad, cx, cy, ux, uy, fit_lo, fit_hi, max(1.5 * psf.fwhm, 2.0))
    if len(s) < 10:
        return False
    g = np.interp(t, lsf_t, lsf_v, left=0.0, right=0.0)
    k = np.floor(s - fit_lo).astype(int)
    nb = int(k.max()) + 1
    num = np.bincount(k, v * g / var, nb)
    den = np.bincount(k, g * g / var, nb)
    ok = den > 0
    if ok.sum() < 5:
        return False
    sc = fit_lo + np.arange(nb)[ok] + 0.5
    prof, perr = num[ok] / den[ok], 1.0 / np.sqrt(den[ok])
    sigma = max(psf.sigma, 0.5)
    inner = (sc >= s_lo) & (sc <= s_hi)
    amp0 = float(np.median(prof[inner])) if inner.sum() >= 3 else float(np.median(prof))
    if not amp0 > 0:
        return False
    lo_b, hi_b = [0.0, fit_lo - 3 * sigma, fit_lo - 3 * sigma], [np.inf, fit_hi + 3 * sigma, fit_hi + 3 * sigma]
    p0 = np.clip([amp0, s_lo, s_hi], np.array(lo_b) + 1e-9, np.array(hi_b) - 1e-9)
    try:
        res = optimize.least_squares(
            lambda p: (edge.model(sc, p[0], p[1], p[2]) - prof) / perr, p0, jac=_edge_jac(sc, edge, perr),
            bounds=(lo_b, hi_b), x_scale=[amp0, 1.0, 1.0], loss="soft_l1", f_scale=3.0, max_nfev=60,
        )
    except (ValueError, np.linalg.LinAlgError):
        return False
    amp, s0, s1 = res.x
    s0, s1 = min(s0, s1), max(s0, s1)
    if s1 - s0 < 0.8 * config.min_length(psf.fwhm) or not amp > 0:
        return False
    inside = (sc >= s0) & (sc < s1)
    if inside.sum() < 3:
        return False
    w = 1.0 / perr[inside] ** 2
    snr = float(amp * math.sqrt(np.sum(w)))
    if snr < 0.7 * threshold:
        return False
    gap = _worst_part(sc, prof / perr**2, 1.0 / perr**2, s0, s1, amp, psf)
    if gap < -2.0 * config.gap_sigma:
        return False
    # as wide as the PSF across, and standing out from a local background plane (the seed line
    # may be off the trail by a pixel or two: centre it first)
    body = (s >= s0 + 2 * sigma) & (s <= s1 - 2 * sigma)
    if body.sum() < 10:
        return True
    tb, vb, ib, sb = t[body], v[body], 1.0 / var[body], s[body] - 0.5 * (s0 + s1)
    # the seed line's offset and tilt (grid search maximising the line-spread-weighted signal)
    half = 0.5 * max(s1 - s0, 1.0)
    best, off, tilt = -np.inf, 0.0, 0.0
    for k in np.linspace(-2.0, 2.0, 9) / half:  # ends moved by up to 2 px
        for o in np.arange(-3.0, 3.01, 0.5):
            gain = float(np.sum(vb * np.interp(tb - o - k * sb, lsf_t, lsf_v, left=0.0, right=0.0) * ib))
            if gain > best:
                best, off, tilt = gain, float(o), float(k)
    if _width_scale(tb - off - tilt * sb, vb, ib, lsf) > config.max_width + 0.2:
        return False
    ang = angle + math.atan(tilt)
    mx, my = cx + 0.5 * (s0 + s1) * ux - off * uy, cy + 0.5 * (s0 + s1) * uy + off * ux
    contrast = _local_contrast(
        tile, bad, mx, my, math.cos(ang), math.sin(ang), -half + 2 * sigma, half - 2 * sigma, psf, lsf, amp
    )
    return bool(contrast >= config.min_contrast - 0.2)


def _fit_trail(
    tile: Tile, bad: np.ndarray, cx: float, cy: float, angle: float, s_lo: float, s_hi: float, fit_lo: float,
    fit_hi: float, psf: PSF, lsf: tuple[np.ndarray, np.ndarray], det_snr: float,
) -> _Fit | None:
    """Maximum-likelihood fit of a PSF-convolved segment to the pixels around a line.

    The model of a pixel at distance ``s`` along and ``t`` across the line is
    ``A * LSF(t - t0) * [Phi((s - s0) / sigma) - Phi((s - s1) / sigma)]``
    (``LSF`` the PSF's line-spread function, ``sigma`` its Gaussian-equivalent
    width along the line); the line may turn by ``dtheta`` about the seed
    centre.  Parameters ``A, t0, dtheta, s0, s1``; residuals are weighted by
    the noise and passed through a soft-L1 loss so a star or a cosmic ray on
    the trail does not pull the fit.
    """
    lsf_t, lsf_v = lsf
    edge = _Edge.from_lsf(lsf)
    ux, uy = math.cos(angle), math.sin(angle)
    band = max(2.0 * psf.fwhm, 3.0) + 2.0
    s, t, v, var, py, px = _pixels_near_line(tile, bad, cx, cy, ux, uy, fit_lo, fit_hi, band)
    if len(s) < 10:
        return None
    sigma = max(psf.sigma, 0.5)
    ivar = 1.0 / var
    # starting amplitude: median over the seeds' extent of the line-spread-weighted profile
    g = np.interp(t, lsf_t, lsf_v, left=0.0, right=0.0)
    inner = (s >= s_lo) & (s <= s_hi)
    if inner.sum() < 5:
        inner = np.ones_like(s, bool)
    k = np.floor(s[inner] - s[inner].min()).astype(int)
    num = np.bincount(k, v[inner] * g[inner] * ivar[inner])
    den = np.bincount(k, g[inner] ** 2 * ivar[inner])
    amp0 = float(np.median(num[den > 0] / den[den > 0])) if np.any(den > 0) else 0.0
    if not amp0 > 0:
        amp0 = float(np.sum(v * g * ivar) / max(np.sum(g * g * ivar), 1e-30))
        if not amp0 > 0:
            return None
    w = np.sqrt(ivar)

    def model(p):
        amp, t0, dth, a0, a1 = p
        c, sn = math.cos(dth), math.sin(dth)
        sr = s * c + t * sn
        tr = -s * sn + t * c - t0
        return edge.model(sr, amp, a0, a1) * np.interp(tr, lsf_t, lsf_v, left=0.0, right=0.0)

    def resid(p):
        return (model(p) - v) * w

    dlsf_v = np.gradient(lsf_v, lsf_t)

    def jac(p):
        """Analytic derivatives of the weighted residuals (one model evaluation, not six)."""
        amp, t0, dth, a0, a1 = p
        c, sn = math.cos(dth), math.sin(dth)
        sr = s * c + t * sn
        tr = -s * sn + t * c - t0
        prof = edge.model(sr, 1.0, a0, a1)
        n0 = edge.density(sr - a0)
        n1 = edge.density(sr - a1)
        lsf_tr = np.interp(tr, lsf_t, lsf_v, left=0.0, right=0.0)
        dlsf = np.interp(tr, lsf_t, dlsf_v, left=0.0, right=0.0)
        d_sr_dth = -s * sn + t * c
        d_tr_dth = -s * c - t * sn
        out = np.empty((len(s), 5))
        out[:, 0] = prof * lsf_tr
        out[:, 1] = -amp * prof * dlsf
        out[:, 2] = amp * ((n0 - n1) * d_sr_dth * lsf_tr + prof * dlsf * d_tr_dth)
        out[:, 3] = -amp * n0 * lsf_tr
        out[:, 4] = amp * n1 * lsf_tr
        return out * w[:, None]

    span = max(s_hi - s_lo, 4.0 * psf.fwhm)
    dth_max = math.atan(4.0 * psf.fwhm / span) + math.radians(2.0)
    lo_b = [0.0, -band + 1.0, -dth_max, fit_lo - 3 * sigma, fit_lo - 3 * sigma]
    hi_b = [np.inf, band - 1.0, dth_max, fit_hi + 3 * sigma, fit_hi + 3 * sigma]
    p0 = np.clip([amp0, 0.0, 0.0, s_lo, s_hi], np.array(lo_b) + 1e-9, np.array(hi_b) - 1e-9)
    keep = np.ones(len(s), bool)

    def solve(start):
        return optimize.least_squares(
            lambda p: resid(p)[keep], start, jac=lambda p: jac(p)[keep], bounds=(lo_b, hi_b),
            x_scale=[amp0, 0.3, 0.3 / span, 1.0, 1.0],
            loss="soft_l1", f_scale=3.0, max_nfev=100,
        )

    try:
        res = solve(p0)
        # Sources on or beyond the trail (a star at its end pulls the end point): mask pixels
        # where the residual, filtered with the PSF, is a significant point source; refit.
        outliers = _compact_residuals(resid(res.x), py, px, psf)
        if outliers.any():
            keep = ~outliers
            if keep.sum() >= 10:
                res = solve(res.x)
        # The ends of a faint trail are poorly constrained locally (the soft-L1 fit can stop at
        # a noise dip or run on): search the profile along the fitted line globally for the
        # segment of highest signal-to-noise, then refine it locally.
        found = _best_segment_along(res.x, s, t, v, ivar, keep, edge, lsf)
        if found is not None:
            start = np.clip([found[0], res.x[1], res.x[2], found[1], found[2]], np.array(lo_b) + 1e-9, np.array(hi_b) - 1e-9)
            res = solve(start)
    except (ValueError, np.linalg.LinAlgError):
        return None
    amp, t0, dth, s0, s1 = (float(x) for x in res.x)
    if s1 < s0:
        s0, s1 = s1, s0
    try:
        cov = np.linalg.inv(res.jac.T @ res.jac)
        amp_err = float(math.sqrt(max(cov[0, 0], 0.0)))
    except np.linalg.LinAlgError:
        amp_err = float("nan")
    # the fitted line: through the pivot shifted by t0 across, turned by dtheta
    ang = angle + dth
    fux, fuy = math.cos(ang), math.sin(ang)
    pcx, pcy = cx - t0 * fuy, cy + t0 * fux
    # fill: median of the along-line profile inside the trail over A (1 for a uniform trail,
    # ~0 for two stars that a segment filter joined); chi2: robust reduced chi-square
    sr = s * math.cos(dth) + t * math.sin(dth)
    tr = -s * math.sin(dth) + t * math.cos(dth) - t0
    g = np.interp(tr, lsf_t, lsf_v, left=0.0, right=0.0)
    sel = (sr >= s0 + 2 * sigma) & (sr <= s1 - 2 * sigma)
    fill = 1.0
    if sel.sum() >= 10:
        kk = np.floor(sr[sel] - s0).astype(int)
        num = np.bincount(kk, v[sel] * g[sel] * ivar[sel])
        den = np.bincount(kk, g[sel] ** 2 * ivar[sel])
        ok = den > 0
        if ok.sum() >= 3 and amp > 0:
            fill = float(np.median(num[ok] / den[ok]) / amp)
    # gap: the most significant shortfall of a part of the trail below half the amplitude
    # (two stars a segment filter joined leave an empty middle; a trail does not)
    gap = _worst_part(sr, v * g * ivar, g * g * ivar, s0, s1, amp, psf) if s1 > s0 and amp > 0 else 0.0
    r = resid(res.x)[keep]
    chi2 = float(np.median(r * r) / 0.455)
    # width across the trail, in units of the PSF's: the scale of the line-spread function that
    # fits the trail's body best (a trail is exactly as wide as the PSF; a galaxy or a bright
    # star's halo is wider)
    body = keep & (sr >= s0 + 2 * sigma) & (sr <= s1 - 2 * sigma)
    width = _width_scale(tr[body], v[body], ivar[body], lsf) if body.sum() >= 10 else 1.0
    # contrast: the trail's amplitude over a local background plane across it, fitted over a
    # band twice as wide (a line drawn along the wing of a galaxy or a bright star has none)
    contrast = _local_contrast(tile, bad, pcx, pcy, fux, fuy, s0 + 2 * sigma, s1 - 2 * sigma, psf, lsf, amp)
    return _Fit(pcx, pcy, fux, fuy, s0, s1, amp, amp_err, det_snr, fill, chi2, gap, width, contrast)

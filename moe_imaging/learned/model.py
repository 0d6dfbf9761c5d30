"""The learned expert's network and its pure functions (stamps in, probabilities out).

The classifier looks at a fixed-size stamp around each candidate and at the
PSF, and returns probabilities over :data:`SURVEY_CLASSES`.  Everything here is a
pure function of arrays, except the weights, which are loaded once per
process (``pipelines.models.load_learned``).

Input of the network, per candidate (``C = 4`` channels of ``S x S`` pixels,
``S =`` :data:`STAMP_SIZE`, centred on the candidate's pixel):

0. ``asinh(snr / ASINH_SCALE)`` -- the pixels in units of their noise
   (``image / sqrt(variance)``), compressed so bright sources do not dominate;
1. ``snr / max(peak, 3)`` clipped to ``[-1, 2]`` -- the shape, independent of
   brightness (``peak`` is the largest ``snr`` in the central 3 x 3 pixels);
2. the bad-pixel mask (masked, non-finite, zero-variance or off the image: 1;
   those pixels are 0 in channels 0 and 1);
3. the PSF image, centred and scaled to a peak of 1 (the same for every
   candidate of a tile).

The PSF FWHM also conditions the features (FiLM) and enters the dense head as
``log2(FWHM / 3 px)``.  Test-time augmentation averages the softmax over the
eight rotations and flips of the square (the D4 group); the spread of the
eight answers gives a *stability* score in ``[0, 1]``.

Out of range: the network was trained for a range of PSF FWHM (stored with
the weights, :attr:`LearnedModel.fwhm_range`).  Outside it,
:func:`temper_probabilities` mixes the probabilities toward uniform, fully
once the FWHM is a factor :data:`TEMPER_FACTOR` beyond the range, so the
expert is never confidently wrong about a PSF it has not seen.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from contracts.vocabulary import SURVEY_CLASSES

__all__ = [
    "STAMP_SIZE",
    "ASINH_SCALE",
    "TEMPER_FACTOR",
    "StampNet",
    "LearnedModel",
    "extract_stamps",
    "psf_channel",
    "fwhm_feature",
    "d4_transforms",
    "classify_stamps",
    "temper_probabilities",
    "learned_from_state",
    "learned_to_state",
]

STAMP_SIZE: int = 31
"""Side of the stamps (pixels, odd): +-15 px, i.e. +-2.5 FWHM at the largest
trained FWHM (6 px) and +-10 FWHM at the smallest (1.5 px)."""

ASINH_SCALE: float = 3.0
"""Pixels of ``snr`` below this are linear in channel 0, above it logarithmic."""

TEMPER_FACTOR: float = 1.5
"""A FWHM this factor beyond the trained range gives uniform probabilities."""


# --------------------------------------------------------------------------- network


class _Block(nn.Module):
    """Two 3x3 convolutions with batch norm and ReLU."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.body(x)


class StampNet(nn.Module):
    """A small CNN over stamps, conditioned on the PSF FWHM (thin module).

    Three convolution blocks (``width``, ``2 width``, ``4 width`` channels,
    2x2 max-pooling between them), FiLM of the last block's features by
    ``log2(FWHM / 3)``, global average and max pooling, and a two-layer head
    that also sees the FWHM feature.

    Parameters
    ----------
    in_channels : int
        Stamp channels (4: see module docs).
    n_classes : int
        Output logits.
    width : int
        Channels of the first block.
    """

    def __init__(self, in_channels: int = 4, n_classes: int = len(SURVEY_CLASSES), width: int = 16) -> None:
        super().__init__()
        self.features = nn.Sequential(
            _Block(in_channels, width),
            nn.MaxPool2d(2),
            _Block(width, 2 * width),
            nn.MaxPool2d(2),
            _Block(2 * width, 4 * width),
        )
        c = 4 * width
        self.film = nn.Linear(1, 2 * c)
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)
        self.head = nn.Sequential(
            nn.Linear(2 * c + 1, 64),
            nn.ReLU(inplace=True),
            nn.Dropout(0.1),
            nn.Linear(64, n_classes),
        )

    def forward(self, x: torch.Tensor, fwhm_feat: torch.Tensor) -> torch.Tensor:
        """Logits ``(n, n_classes)`` for stamps ``x (n, C, S, S)`` and ``fwhm_feat (n,)``."""
        h = self.features(x)
        f = fwhm_feat.reshape(-1, 1).to(h.dtype)
        gamma, beta = self.film(f).chunk(2, dim=1)
        h = torch.relu(h * (1.0 + gamma[:, :, None, None]) + beta[:, :, None, None])
        pooled = torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3)), f], dim=1)
        return self.head(pooled)


@dataclass(eq=False)
class LearnedModel:
    """A trained :class:`StampNet` with what is needed to use it.

    Attributes
    ----------
    net : StampNet
        The network, in eval mode.
    classes : tuple of str
        Output order.
    stamp_size : int
        Stamp side the network was trained on.
    fwhm_range : tuple of float
        PSF FWHM range (pixels) of the training data.
    metadata : dict
        Everything else stored with the weights (train config, metrics, versions).
    """

    net: StampNet
    classes: tuple[str, ...] = SURVEY_CLASSES
    stamp_size: int = STAMP_SIZE
    fwhm_range: tuple[float, float] = (1.5, 6.0)
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def device(self) -> torch.device:
        """Where the weights live."""
        return next(self.net.parameters()).device

    def to_state(self) -> dict[str, Any]:
        """:func:`learned_to_state` of this model."""
        return learned_to_state(self)


def learned_to_state(model: LearnedModel) -> dict[str, Any]:
    """The weights and metadata as tensors and plain types (``pipelines.models.save_model`` writes them)."""
    state = {k: v.detach().cpu().clone() for k, v in model.net.state_dict().items()}
    return {
        "format": "moe-imaging-learned/1",
        "state_dict": state,
        "width": int(model.net.features[0].body[0].out_channels),
        "classes": list(model.classes),
        "stamp_size": int(model.stamp_size),
        "fwhm_range": [float(v) for v in model.fwhm_range],
        "asinh_scale": ASINH_SCALE,
        # plain JSON types only, so the file loads with ``weights_only=True``
        "metadata": json.loads(json.dumps(model.metadata, default=str)),
    }


def learned_from_state(state: dict[str, Any], *, device: str = "cpu") -> LearnedModel:
    """The model :func:`learned_to_state` describes, on ``device``, in eval mode.

    Raises
    ------
    ValueError
        When ``state`` is not a learned-expert state.
    """
    if state.get("format") != "moe-imaging-learned/1":
        raise ValueError("not a moe-imaging learned-expert weights file")
    net = StampNet(width=int(state["width"]), n_classes=len(state["classes"]))
    net.load_state_dict(state["state_dict"])
    net.to(device).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return LearnedModel(
        net=net,
        classes=tuple(state["classes"]),
        stamp_size=int(state["stamp_size"]),
        fwhm_range=tuple(float(v) for v in state["fwhm_range"]),
        metadata=dict(state.get("metadata", {})),
    )


# --------------------------------------------------------------------------- stamps


def extract_stamps(
    image: np.ndarray,
    variance: np.ndarray,
    mask: np.ndarray | None,
    yx: np.ndarray,
    size: int = STAMP_SIZE,
) -> np.ndarray:
    """Noise-normalised stamps around integer pixel positions (pure function).

    Parameters
    ----------
    image : numpy.ndarray
        Background-subtracted pixels, 2-D.
    variance : numpy.ndarray
        Noise variance, same shape.
    mask : numpy.ndarray or None
        Non-zero marks a bad pixel.
    yx : numpy.ndarray
        ``(n, 2)`` integer ``(row, column)`` of the stamp centres (local to
        ``image``); centres may lie off the image.
    size : int
        Odd stamp side.

    Returns
    -------
    numpy.ndarray
        ``float32 (n, 3, size, size)``: channels 0-2 of the module docs
        (the PSF channel is added by :func:`classify_stamps`).
    """
    if size % 2 != 1:
        raise ValueError(f"stamp size must be odd, got {size}")
    img = np.asarray(image, dtype=np.float64)
    var = np.asarray(variance, dtype=np.float64)
    yx = np.asarray(yx, dtype=np.int64).reshape(-1, 2)
    n = len(yx)
    out = np.zeros((n, 3, size, size), np.float32)
    if n == 0 or img.size == 0:
        if n:
            out[:, 2] = 1.0
        return out
    bad = ~np.isfinite(img) | ~(var > 0) | ~np.isfinite(var)
    if mask is not None:
        bad |= np.asarray(mask) != 0
    with np.errstate(divide="ignore", invalid="ignore"):
        snr = np.where(bad, 0.0, img / np.sqrt(np.where(bad, 1.0, var)))
    h = size // 2
    snr_p = np.pad(snr, h, mode="constant", constant_values=0.0)
    bad_p = np.pad(bad, h, mode="constant", constant_values=True)
    ny, nx = img.shape
    # centres far off the image read only padding: clip them to its border region
    cy = np.clip(yx[:, 0], -h - 1, ny + h) + h
    cx = np.clip(yx[:, 1], -h - 1, nx + h) + h
    off = np.arange(-h, h + 1)
    rows = cy[:, None, None] + off[None, :, None]
    cols = cx[:, None, None] + off[None, None, :]
    inside = (rows >= 0) & (rows < snr_p.shape[0]) & (cols >= 0) & (cols < snr_p.shape[1])
    rr = np.clip(rows, 0, snr_p.shape[0] - 1)
    cc = np.clip(cols, 0, snr_p.shape[1] - 1)
    s = np.where(inside, snr_p[rr, cc], 0.0)
    b = np.where(inside, bad_p[rr, cc], True)
    peak = s[:, h - 1 : h + 2, h - 1 : h + 2].reshape(n, -1).max(axis=1)
    out[:, 0] = np.arcsinh(s / ASINH_SCALE)
    out[:, 1] = np.clip(s / np.maximum(peak, 3.0)[:, None, None], -1.0, 2.0)
    out[:, 2] = b
    return out


def psf_channel(psf_image: np.ndarray, size: int = STAMP_SIZE) -> np.ndarray:
    """The PSF image centred on a ``size x size`` grid (cropped or zero-padded), peak 1."""
    p = np.asarray(psf_image, dtype=np.float64)
    out = np.zeros((size, size), np.float64)
    h, c = size // 2, p.shape[0] // 2
    r = min(h, c)
    out[h - r : h + r + 1, h - r : h + r + 1] = p[c - r : c + r + 1, c - r : c + r + 1]
    peak = out.max()
    if not (peak > 0) or not np.all(np.isfinite(out)):
        return np.zeros((size, size), np.float32)
    return (out / peak).astype(np.float32)


def fwhm_feature(fwhm: float | np.ndarray) -> np.ndarray:
    """The FWHM conditioning input: ``log2(FWHM / 3 px)``."""
    return np.log2(np.asarray(fwhm, dtype=np.float64) / 3.0).astype(np.float32)


def d4_transforms(x: torch.Tensor) -> list[torch.Tensor]:
    """The eight images of ``x (..., S, S)`` under the rotations and flips of the square."""
    out = []
    for flip in (False, True):
        base = torch.flip(x, dims=(-1,)) if flip else x
        for k in range(4):
            out.append(torch.rot90(base, k, dims=(-2, -1)))
    return out


def temper_probabilities(
    probs: np.ndarray, fwhm: float, fwhm_range: tuple[float, float], factor: float = TEMPER_FACTOR
) -> tuple[np.ndarray, bool, float]:
    """Mix probabilities toward uniform when the FWHM lies outside the trained range.

    The weight of the uniform distribution is ``min(1, |log(FWHM / clip(FWHM,
    range))| / log(factor))``: 0 inside the range, 1 at ``factor`` times
    beyond it.

    Returns
    -------
    probs : numpy.ndarray
        The tempered probabilities (rows still sum to 1).
    in_range : bool
        Whether the FWHM is inside the range.
    weight : float
        The uniform weight used.
    """
    lo, hi = fwhm_range
    f = float(fwhm)
    if not (math.isfinite(f) and f > 0):
        w = 1.0
    else:
        dist = abs(math.log(f / min(max(f, lo), hi)))
        w = min(1.0, dist / math.log(factor))
    p = np.asarray(probs, dtype=np.float64)
    k = p.shape[-1] if p.ndim else 1
    return (1.0 - w) * p + w / k, w == 0.0, w


def classify_stamps(
    stamps: np.ndarray,
    psf_image: np.ndarray,
    fwhm: float,
    model: LearnedModel,
    *,
    device: str | None = None,
    batch_size: int = 256,
    tta: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Class probabilities and D4 stability for stamps (pure function of its inputs).

    Parameters
    ----------
    stamps : numpy.ndarray
        ``(n, 3, S, S)`` from :func:`extract_stamps`.
    psf_image : numpy.ndarray
        The tile's PSF image (added as channel 3).
    fwhm : float
        The PSF FWHM in pixels (conditioning).
    model : LearnedModel
        Weights from :func:`load_model`.
    device : str, optional
        Torch device for inference; default the model's.
    batch_size : int
        Stamps per forward pass.
    tta : bool
        Average over the eight D4 transforms (stability is then their
        agreement); without it stability is NaN.

    Returns
    -------
    probs : numpy.ndarray
        ``float64 (n, len(classes))``, *not* tempered (see
        :func:`temper_probabilities`).
    stability : numpy.ndarray
        ``float64 (n,)``: ``1 -`` the mean total-variation distance between
        each transform's probabilities and their mean, in ``[0, 1]``.
    """
    stamps = np.asarray(stamps, dtype=np.float32)
    n = len(stamps)
    k = len(model.classes)
    if n == 0:
        return np.zeros((0, k)), np.zeros(0)
    size = stamps.shape[-1]
    dev = torch.device(device) if device is not None else model.device
    net = model.net if dev == model.device else copy.deepcopy(model.net).to(dev)
    psf = torch.from_numpy(psf_channel(psf_image, size)).to(dev)
    feat = float(fwhm_feature(fwhm)) if math.isfinite(fwhm) and fwhm > 0 else 0.0
    probs = np.zeros((n, k))
    stab = np.full(n, np.nan)
    with torch.inference_mode():
        for start in range(0, n, batch_size):
            x = torch.from_numpy(stamps[start : start + batch_size]).to(dev)
            x = torch.cat([x, psf.expand(len(x), 1, size, size)], dim=1)
            f = torch.full((len(x),), feat, device=dev)
            views = d4_transforms(x) if tta else [x]
            p = torch.stack([torch.softmax(net(v.contiguous(), f).double(), dim=1) for v in views])
            mean = p.mean(dim=0)
            probs[start : start + len(x)] = mean.cpu().numpy()
            if tta:
                tv = 0.5 * (p - mean[None]).abs().sum(dim=2).mean(dim=0)
                stab[start : start + len(x)] = (1.0 - tv).clamp(0.0, 1.0).cpu().numpy()
    return probs, stab

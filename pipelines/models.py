"""Model weights on disk: the one place they are read and written.

The science core never opens a file: its models (the survey gate, the nucleus
triage, the learned expert's CNN) are plain objects with ``to_state()`` /
``from_state()``, and this module turns them into files and back.

* :func:`load_gate`, :func:`load_nucleus_triage`, :func:`load_learned` read a
  weights file (default: the shipped one) and return the model.  Models are
  cached by the file's **content** (its SHA-256), not its path, so a file
  refitted in place is read again, and two copies of one file share a model.
* :func:`open_triage` is the same for a file a user named in the
  configuration: a missing or unreadable file is one :class:`InputError`
  naming it.
* :func:`save_model` writes a model (and its model card beside it)
  atomically.

The shipped weights live in ``moe_imaging/models/`` (package data); ``moe-imaging
train ...`` reproduces them.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import pickle
from pathlib import Path
from typing import Any

import moe_imaging
from contracts.errors import InputError
from contracts.files import atomic_write, atomic_write_text

__all__ = [
    "MODELS_DIR",
    "DEFAULT_GATE_WEIGHTS",
    "DEFAULT_NUCLEUS_TRIAGE_WEIGHTS",
    "DEFAULT_LEARNED_WEIGHTS",
    "load_gate",
    "load_nucleus_triage",
    "load_learned",
    "open_triage",
    "save_model",
    "save_card",
]

MODELS_DIR = Path(moe_imaging.__file__).resolve().parent / "models"
"""Where the shipped weights and model cards live."""

DEFAULT_GATE_WEIGHTS = MODELS_DIR / "gate_v1.pt"
"""The shipped survey gate (``moe-imaging train gate`` reproduces it)."""

DEFAULT_NUCLEUS_TRIAGE_WEIGHTS = MODELS_DIR / "nucleus_triage_v1.pt"
"""The shipped nucleus triage (``moe-imaging train nucleus-triage --seed 1`` reproduces it)."""

DEFAULT_LEARNED_WEIGHTS = MODELS_DIR / "learned_v1.pt"
"""The shipped learned expert (``moe-imaging train learned`` reproduces it)."""

_TRAIN_COMMAND = {"gate": "moe-imaging train gate", "nucleus_triage": "moe-imaging train nucleus-triage",
                  "learned": "moe-imaging train learned"}


def _read(path: Path, kind: str) -> tuple[str, bytes]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no {kind.replace('_', ' ')} weights (run `{_TRAIN_COMMAND[kind]}`)")
    data = path.read_bytes()
    return hashlib.sha256(data).hexdigest(), data


@functools.lru_cache(maxsize=8)
def _build(kind: str, digest: str, data: bytes, source: str, device: str) -> Any:
    """The model in ``data`` (cached by content digest; ``data`` itself is compared only on a hash collision)."""
    import torch  # only where a model is read: the command line starts without it

    if kind == "learned":
        from moe_imaging.learned.model import learned_from_state

        with torch.serialization.safe_globals([torch.torch_version.TorchVersion]):
            state = torch.load(io.BytesIO(data), map_location=device, weights_only=True)
        return learned_from_state(state, device=device)
    state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)
    if kind == "gate":
        from moe_imaging.triage.survey import GateModel

        return GateModel.from_state(state, source=source)
    from moe_imaging.triage.microscopy import NucleusTriageModel

    return NucleusTriageModel.from_state(state, source=source)


def _load(kind: str, path: str | os.PathLike[str] | None, default: Path, device: str = "cpu") -> Any:
    p = Path(path) if path is not None else default
    digest, data = _read(p, kind)
    return _build(kind, digest, data, p.name, str(device))


def load_gate(path: str | os.PathLike[str] | None = None):
    """The survey gate at ``path`` (default: the shipped one).

    Raises
    ------
    FileNotFoundError
        When the file does not exist.
    """
    return _load("gate", path, DEFAULT_GATE_WEIGHTS)


def load_nucleus_triage(path: str | os.PathLike[str] | None = None):
    """The nucleus triage at ``path`` (default: the shipped one).

    Raises
    ------
    FileNotFoundError
        When the file does not exist.
    """
    return _load("nucleus_triage", path, DEFAULT_NUCLEUS_TRIAGE_WEIGHTS)


def load_learned(path: str | os.PathLike[str] | None = None, *, device: str = "cpu"):
    """The learned expert's network at ``path`` (default: the shipped one) on ``device``.

    Raises
    ------
    contracts.errors.InputError
        When the file is missing or is not a learned-expert weights file.
    """
    p = Path(path if path is not None else DEFAULT_LEARNED_WEIGHTS).resolve()
    if not p.is_file():
        raise InputError(str(p), "learned-expert weights not found (run `moe-imaging train learned`)")
    try:
        return _load("learned", p, DEFAULT_LEARNED_WEIGHTS, device)
    except (ValueError, RuntimeError, KeyError, OSError, EOFError, pickle.UnpicklingError) as exc:
        raise InputError(str(p), f"cannot load learned-expert weights: {' '.join(str(exc).split())[:200]}") from None


def open_triage(kind: str, path: str | os.PathLike[str] | None = None):
    """A triage head (``"gate"`` or ``"nucleus_triage"``) from a file a user named.

    Raises
    ------
    contracts.errors.InputError
        Naming the file: it does not exist, or it is not a model of that kind
        (torch cannot read it, or it holds another model).
    """
    default = DEFAULT_GATE_WEIGHTS if kind == "gate" else DEFAULT_NUCLEUS_TRIAGE_WEIGHTS
    name = str(path) if path is not None else str(default)
    what = kind.replace("_", " ")
    try:
        return _load(kind, path, default)
    except FileNotFoundError:
        fix = f"'{_TRAIN_COMMAND[kind]}' or 'moe-imaging calibrate --model {kind.replace('_', '-')}' makes one"
        raise InputError(name, f"no such {what} weights file ({fix})") from None
    except Exception:  # torch cannot read it, or it holds another model
        raise InputError(name, f"not a {what} model") from None


def save_model(model: Any, path: str | os.PathLike[str], *, card: str | None = None,
               card_name: str | None = None) -> Path:
    """Write ``model`` (its ``to_state()``) to ``path`` atomically, and its model card beside it.

    Parameters
    ----------
    model : object with ``to_state()``
        A gate, a nucleus triage or a learned model.
    path : str or path-like
        The weights file (``.pt``).
    card : str, optional
        Model card text (Markdown), written to ``card_name`` in the same folder.
    card_name : str, optional
        Default ``<stem>_MODEL_CARD.md``.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    import torch

    path = Path(path)
    state = model.to_state()
    atomic_write(path, lambda tmp: torch.save(state, tmp))
    if card is not None:
        save_card(path, card, card_name or f"{path.stem}_MODEL_CARD.md")
    return path


def save_card(weights: str | os.PathLike[str], card: str, name: str) -> Path:
    """Write a model card (Markdown text) named ``name`` beside the weights file ``weights``."""
    return atomic_write_text(Path(weights).with_name(name), card)

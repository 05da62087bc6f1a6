"""Model checkpoints: the one place a model is saved to, and rebuilt from, a plain dict of tensors and primitives.

Below both training (which saves and resumes) and inference (which runs a saved model): neither rebuilds a model
from a checkpoint itself. Written atomically and read with ``weights_only=True`` (:mod:`dlkdd.torch_file`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from dlkdd.models.build import Normalized, build_model
from dlkdd.torch_file import load_weights_only, save_atomic

DEFAULT_WIDTH = 24  # tiny3d's width in checkpoints written before the width was saved with the model


def save_model(path: str | Path, model: torch.nn.Module, arch: str, classes: list[str], num_frames: int, size: int,
               **extra: Any) -> None:
    """Everything needed to run the model alone on a raw clip: weights, architecture, classes, input geometry."""
    save_atomic({"arch": arch, "classes": list(classes), "num_frames": num_frames, "size": size,
                 "state_dict": model.state_dict(), **extra}, path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """The dict :func:`save_model` wrote; FileNotFoundError / ValueError with one line naming ``path``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such model file")
    return load_weights_only(path, "dlkdd checkpoint")


def model_from_checkpoint(ckpt: Any, path: str | Path) -> Normalized:
    """The model ``ckpt`` (read from ``path``) holds, its weights loaded, in eval mode; ValueError (one line naming
    ``path``) when it is not a dlkdd checkpoint, names an arch this version does not know, or its weights do not fit
    its arch and classes."""
    try:
        if not isinstance(ckpt, dict):
            raise TypeError(f"a {type(ckpt).__name__}, not a dict")
        arch, num_classes = str(ckpt["arch"]), len(ckpt["classes"])
        state = dict(ckpt["state_dict"])
        width = int(ckpt.get("width", DEFAULT_WIDTH))
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise ValueError(f"{path}: not a dlkdd model checkpoint ({type(err).__name__}: {err})") from None
    try:
        model = build_model(arch, num_classes, width=width)
    except ValueError as err:  # an arch this version does not know
        raise ValueError(f"{path}: {err}") from None
    _load_state(model, state, path, arch, num_classes)
    return model.eval()


def _load_state(model: Normalized, state: dict, path: str | Path, arch: str, num_classes: int) -> None:
    """Load ``state`` into ``model``; ValueError naming the first key that does not fit (no torch traceback)."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    bad = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or bad:
        what = (f"'{bad[0]}' is {tuple(state[bad[0]].shape)}, the arch needs {tuple(own[bad[0]].shape)}" if bad
                else f"{len(missing)} missing / {len(unexpected)} unexpected weights, e.g. "
                     f"'{(missing or unexpected)[0]}'")
        raise ValueError(f"{path}: weights do not fit arch '{arch}' with {num_classes} classes ({what}); "
                         "the checkpoint is damaged or was edited")
    model.load_state_dict(state)


def load_model(path: str | Path) -> tuple[Normalized, dict[str, Any]]:
    """Rebuild the model of a checkpoint, in eval mode, with its metadata."""
    ckpt = load_checkpoint(path)
    return model_from_checkpoint(ckpt, path), ckpt


def load_training_state(path: str | Path) -> dict[str, Any] | None:
    """The resume state written by the trainer after an epoch, or None if there is none (or it is unreadable)."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        return load_weights_only(path, "training state")
    except ValueError:  # a torn or foreign file: start fresh rather than crash (save_atomic never leaves one)
        return None

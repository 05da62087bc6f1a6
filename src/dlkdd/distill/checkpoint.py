"""Checkpoints: plain dicts of tensors and primitives, written atomically, read with ``weights_only=True``."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from dlkdd.atomic import atomic_path
from dlkdd.checkpoint_io import load_weights_only
from dlkdd.models.build import Normalized, build_model


def save_atomic(obj: Any, path: str | Path) -> None:
    """torch.save to a temp file beside ``path``, then rename: a crash never leaves a half-written file.

    Saved through an open file, not a path: torch names the zip's records after the file it is given, and the temp
    name holds the pid, so the same weights gave other bytes (and another md5 in dvc.lock) in every run."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        torch.save(obj, fh)


def save_model(path: str | Path, model: torch.nn.Module, arch: str, classes: list[str], num_frames: int, size: int,
               **extra: Any) -> None:
    """Everything needed to run the model alone on a raw clip: weights, architecture, classes, input geometry."""
    save_atomic({"arch": arch, "classes": list(classes), "num_frames": num_frames, "size": size,
                 "state_dict": model.state_dict(), **extra}, path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such model file")
    return load_weights_only(path, "dlkdd checkpoint")


def load_model(path: str | Path) -> tuple[Normalized, dict[str, Any]]:
    """Rebuild the model of a checkpoint, in eval mode, with its metadata."""
    ckpt = load_checkpoint(path)
    model = build_model(ckpt["arch"], len(ckpt["classes"]), width=ckpt.get("width", 24))
    model.load_state_dict(ckpt["state_dict"])
    return model.eval(), ckpt


def load_training_state(path: str | Path) -> dict[str, Any] | None:
    """The resume state written by the trainer after an epoch, or None if there is none (or it is unreadable)."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        return load_weights_only(path, "training state")
    except ValueError:  # a torn or foreign file: start fresh rather than crash (save_atomic never leaves one)
        return None

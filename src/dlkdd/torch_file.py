"""Torch files, read and written safely: the one loader for every checkpoint, cache and weights file the project
reads, and the one atomic writer.

Always ``weights_only=True`` (a file can hold no code to run) and onto the CPU (the caller moves what it needs).
It sits below :mod:`dlkdd.models` (pretrained weights are read through it) and knows no model: building a model from
a checkpoint is :mod:`dlkdd.checkpoint`'s job, one layer up; the teacher-logit cache and Zero-DCE read through this
module alone, so their stages do not depend on the model code.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from dlkdd.atomic import atomic_path


def load_weights_only(path: str | Path, what: str) -> Any:
    """The object ``torch.save`` wrote to ``path``; ValueError ``<path>: not a readable <what> (<error type>)`` when
    the file is absent, truncated, corrupt or holds anything but tensors and primitives (one line, no traceback)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated/corrupt files raise EOFError, RuntimeError, UnpicklingError, ...
        raise ValueError(f"{path}: not a readable {what} ({type(err).__name__})") from None


def save_atomic(obj: Any, path: str | Path) -> None:
    """torch.save to a temp file beside ``path``, then rename: a crash never leaves a half-written file.

    Saved through an open file, not a path: torch names the zip's records after the file it is given, and the temp
    name holds the pid, so the same weights gave other bytes (and another md5 in dvc.lock) in every run."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        torch.save(obj, fh)

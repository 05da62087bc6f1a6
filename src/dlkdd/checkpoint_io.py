"""Reading torch files: one loader for every checkpoint, cache and weights file the project reads.

Always ``weights_only=True`` (a file can hold no code to run) and onto the CPU (the caller moves what it needs).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch


def load_weights_only(path: str | Path, what: str) -> Any:
    """The object ``torch.save`` wrote to ``path``; ValueError ``<path>: not a readable <what> (<error type>)`` when
    the file is absent, truncated, corrupt or holds anything but tensors and primitives (one line, no traceback)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated/corrupt files raise EOFError, RuntimeError, UnpicklingError, ...
        raise ValueError(f"{path}: not a readable {what} ({type(err).__name__})") from None

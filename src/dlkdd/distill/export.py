"""Ship the student alone: TorchScript export with its metadata, and one loader for either model format."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dlkdd.atomic import atomic_path
from dlkdd.distill.checkpoint import load_model

META = "dlkdd.json"  # extra file inside the TorchScript archive: classes, num_frames, size, arch


def export_torchscript(model_path: str | Path, out: str | Path) -> dict[str, Any]:
    """Trace the checkpoint's model on a (1, 3, T, S, S) clip and save it (temp file + rename); returns its metadata."""
    model, ckpt = load_model(model_path)
    meta = {k: ckpt[k] for k in ("arch", "classes", "num_frames", "size")}
    example = torch.zeros(1, 3, meta["num_frames"], meta["size"], meta["size"])
    with torch.inference_mode():
        traced = torch.jit.trace(model, example, check_trace=False)
        if not torch.allclose(traced(example), model(example), atol=1e-5):
            raise ValueError(f"{model_path}: the traced model disagrees with the original; cannot export")
    out = Path(out)
    with atomic_path(out) as tmp:
        torch.jit.save(traced, str(tmp), _extra_files={META: json.dumps(meta)})
    return meta


def is_torchscript(path: Path) -> bool:
    """A TorchScript archive written by :func:`export_torchscript` (a zip holding ``extra/dlkdd.json``)."""
    try:
        with zipfile.ZipFile(path) as z:
            return any(n.endswith(f"extra/{META}") for n in z.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def load_any(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """A runnable model (eval mode) and its metadata from a dlkdd checkpoint or an exported TorchScript file.

    Raises FileNotFoundError / ValueError with one line for a missing or unreadable file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such model file")
    if is_torchscript(path):
        extra = {META: ""}
        try:
            model = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
            meta = json.loads(extra[META])
        except Exception as err:
            raise ValueError(f"{path}: not a readable TorchScript export ({type(err).__name__})") from None
        return model.eval(), meta
    return load_model(path)

"""Teacher logits computed once, so a KD epoch costs what a no-KD epoch costs.

The teacher's input is deterministic: the frame cache fixes the sampled frames, and the only training augmentation is
a horizontal flip, itself deterministic. So each clip gets two cached logit rows, for the plain and the flipped clip,
and training picks per sample the row matching the flip the student got. Augmentation stays on and the teacher never
runs during student training.

With ``kd.teacher=dual_light`` the file also holds ``baseline_logits``: the no-KD dark network's rows for the dark
clips, same layout. They are fused at train time (:func:`dlkdd.distill.targets.load_kd_targets`): the fusion
depends on kd.T.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset
from tqdm import tqdm

from dlkdd.torch_file import load_weights_only
from dlkdd.data.dataset import ClipDataset, to_float

FLIPS = (False, True)  # row 0 = clip as cached, row 1 = clip flipped left-right


@torch.inference_mode()
def compute_teacher_logits(teacher: nn.Module, clips: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
    """uint8 clips (N, 3, T, H, W) → float32 logits (N, 2, K) for the plain and the flipped clip."""
    teacher.eval()
    device = next(teacher.parameters()).device
    out = []
    for i in tqdm(range(0, len(clips), batch_size), desc="teacher logits", unit="batch", leave=False):
        x = to_float(clips[i:i + batch_size].to(device))
        out.append(torch.stack([teacher(x.flip(-1) if f else x).float().cpu() for f in FLIPS], dim=1))
    return torch.cat(out)


def save_teacher_logits(path: str | Path, logits: torch.Tensor, clip_ids: list[str], **meta: Any) -> None:
    from dlkdd.torch_file import save_atomic

    save_atomic({"logits": logits.contiguous(), "clip_ids": list(clip_ids), **meta}, path)


def load_teacher_logits(path: str | Path, clip_ids: list[str], key: str = "logits") -> torch.Tensor:
    """The cached (len(clip_ids), 2, K) rows of ``key`` for ``clip_ids``, in that order; ValueError (one line) if the
    file, the key or a clip is absent."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no teacher-logit cache "
                         "(run the teacher_logits stage, or set kd.teacher_logits=online)")
    cache = load_weights_only(path, "teacher-logit cache")
    try:
        row = {cid: i for i, cid in enumerate(cache["clip_ids"])}
    except Exception as err:  # a readable file of another kind
        raise ValueError(f"{path}: not a readable teacher-logit cache ({type(err).__name__})") from None
    if key not in cache:
        raise ValueError(f"{path}: no '{key}' in the teacher-logit cache; re-run the teacher_logits stage "
                         "(baseline_logits are written only with kd.teacher=dual_light)")
    logits = cache[key]
    missing = [c for c in clip_ids if c not in row]
    if missing:
        raise ValueError(f"{path}: no cached logits for {len(missing)} clips (e.g. '{missing[0]}'); "
                         "re-run the teacher_logits stage")
    return logits[torch.tensor([row[c] for c in clip_ids], dtype=torch.long)]


class CachedLogitsDataset(Dataset):
    """Item ``i`` is ``(clip (3, T, H, W) uint8, teacher logits (2, K), label)``: the student's view plus cached
    rows."""

    def __init__(self, base: ClipDataset, logits: torch.Tensor) -> None:
        if len(logits) != len(base):
            raise ValueError(f"{len(logits)} cached logit rows for {len(base)} clips")
        self.base, self.logits = base, logits

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, ...]:
        return self.base.views[0][i], self.logits[i], self.base.labels[i]

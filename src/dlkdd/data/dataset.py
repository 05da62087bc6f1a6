"""Datasets over a frame cache. Clips are small (8x64x64x3 uint8 = 98 KB), so a split is held in memory as uint8."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset


def load_clips(clip_dir: Path, clip_ids: list[str]) -> torch.Tensor:
    """Stack ``<clip_dir>/<id>.npy`` files (T, H, W, 3) into a uint8 tensor (N, 3, T, H, W)."""
    arrays = [np.load(clip_dir / f"{cid}.npy") for cid in clip_ids]
    return torch.from_numpy(np.stack(arrays)).permute(0, 4, 1, 2, 3).contiguous()


class ClipDataset(Dataset):
    """Clips of one split from one or more aligned frame caches (e.g. dark + enhanced versions of the same frames).

    Item ``i`` is ``(view_0, ..., view_k, label)`` with each view a uint8 tensor (3, T, H, W).
    """

    def __init__(self, index: pd.DataFrame, clip_dirs: list[Path], split: str | None = None) -> None:
        rows = index if split is None else index[index["split"] == split]
        if rows.empty:
            raise ValueError(f"no clips in split '{split}'")
        self.index = rows.reset_index(drop=True)
        ids = self.index["clip_id"].astype(str).tolist()
        self.views = [load_clips(Path(d), ids) for d in clip_dirs]
        self.labels = torch.tensor(self.index["label"].to_numpy(), dtype=torch.long)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, ...]:
        return (*(v[i] for v in self.views), self.labels[i])


def to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 clips (B, 3, T, H, W) → float in [0, 1], what every model takes."""
    return x.float().div_(255.0)


"""Train one classifier on a frame cache: the shared body of the teacher, baseline and student stages."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
from torch import nn
from torch.utils.data import DataLoader

from dlkdd.config import KDConfig, ModelConfig, TrainConfig
from dlkdd.data.dataset import ClipDataset
from dlkdd.distill.trainer import FitResult, fit, seed_everything
from dlkdd.models.build import build_model


def train_classifier(index: pd.DataFrame, num_classes: int, clip_dirs: list[Path], model_cfg: ModelConfig,
                     train_cfg: TrainConfig, seed: int, teacher: nn.Module | None = None,
                     kd: KDConfig | None = None, desc: str = "model") -> tuple[nn.Module, FitResult]:
    """Train ``model_cfg.arch`` on the ``train`` split of ``clip_dirs[0]``; select on ``val`` of the same view.

    With a ``teacher``, ``clip_dirs[1]`` is the teacher's view (enhanced frames aligned with the student's).
    """
    generator = seed_everything(seed, train_cfg.threads)
    model = build_model(model_cfg.arch, num_classes, model_cfg.dropout)
    train_set = ClipDataset(index, clip_dirs, "train")
    val_set = ClipDataset(index, clip_dirs[:1], "val")
    train_loader = DataLoader(train_set, batch_size=train_cfg.batch_size, shuffle=True, generator=generator,
                              drop_last=len(train_set) > train_cfg.batch_size)
    val_loader = DataLoader(val_set, batch_size=64)
    result = fit(model, train_loader, val_loader, train_cfg, generator, teacher, kd, desc)
    return model, result

"""Optimizers and learning-rate schedules by name; schedules step once per optimizer step."""
from __future__ import annotations

import math

import torch
from torch import nn

from dlkdd.config import TrainConfig


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.9, nesterov=True,
                               weight_decay=cfg.weight_decay)
    raise ValueError(f"train.optimizer must be adamw or sgd; got '{cfg.optimizer}'")


class WarmupLambda:
    """lr factor at optimizer step ``s``: linear warm-up, then cosine to 0 or a step decay.

    A callable object (not a closure) so LambdaLR's state_dict carries it and resuming restores it exactly.
    """

    def __init__(self, kind: str, warmup: int, total: int, steps_per_epoch: int, step_size: int, gamma: float):
        self.kind, self.warmup, self.total = kind, warmup, total
        self.steps_per_epoch, self.step_size, self.gamma = steps_per_epoch, step_size, gamma

    def __call__(self, s: int) -> float:
        if s < self.warmup:
            return (s + 1) / self.warmup
        if self.kind == "cosine":
            progress = (s - self.warmup) / max(1, self.total - self.warmup)
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
        return self.gamma ** ((s // self.steps_per_epoch) // max(1, self.step_size))


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig,
                    steps_per_epoch: int) -> torch.optim.lr_scheduler.LRScheduler:
    total = max(1, cfg.epochs * steps_per_epoch)
    if cfg.schedule == "onecycle":  # the embedded default: warm-up is its first 15 %
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr, total_steps=total, pct_start=0.15)
    if cfg.schedule in ("cosine", "step"):
        warmup = int(round(cfg.warmup_epochs * steps_per_epoch))
        fn = WarmupLambda(cfg.schedule, warmup, total, steps_per_epoch, cfg.step_size, cfg.step_gamma)
        return torch.optim.lr_scheduler.LambdaLR(optimizer, fn)
    raise ValueError(f"train.schedule must be onecycle, cosine or step; got '{cfg.schedule}'")

"""Training and evaluation loops for the teacher, the no-KD baseline and the KD student.

One loop serves all three: a model, a loader of ``(x, [x_teacher,] y)`` batches and, for the student, a frozen teacher
that sees the enhanced version of the same frames (and the same flip) the student sees.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from dlkdd.config import KDConfig, TrainConfig
from dlkdd.data.dataset import random_hflip, to_float
from dlkdd.distill.kd import KDLoss
from dlkdd.distill.metrics import accuracy


@dataclass
class EpochStats:
    loss: float
    acc: float
    clips_per_s: float


@dataclass
class FitResult:
    best_epoch: int
    best_val_top1: float
    history: list[dict[str, float]] = field(default_factory=list)


def seed_everything(seed: int, threads: int) -> torch.Generator:
    """Seed torch, fix the thread count and ask for deterministic kernels; returns a generator for shuffling."""
    torch.manual_seed(seed)
    torch.set_num_threads(max(1, threads))
    torch.use_deterministic_algorithms(True, warn_only=True)
    return torch.Generator().manual_seed(seed)


def train_one_epoch(model: nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer,
                    scheduler: torch.optim.lr_scheduler.LRScheduler, loss_fn: KDLoss, teacher: nn.Module | None,
                    hflip: bool, generator: torch.Generator, desc: str = "train") -> EpochStats:
    """One pass over ``loader``; batches are ``(x, y)`` or, with a teacher, ``(x, x_teacher, y)``."""
    model.train()
    total_loss, correct, seen, t0 = 0.0, 0, 0, time.perf_counter()
    bar = tqdm(loader, desc=desc, unit="batch", leave=False)
    for *views, y in bar:
        if hflip:
            views = random_hflip(views, generator)
        x = to_float(views[0])  # (B, 3, T, H, W)
        teacher_logits = None
        if teacher is not None:
            with torch.inference_mode():
                teacher_logits = teacher(to_float(views[1])).clone()  # (B, K), frozen
        logits = model(x)
        loss = loss_fn(logits, teacher_logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        total_loss += float(loss) * len(y)
        correct += int((logits.argmax(1) == y).sum())
        seen += len(y)
        bar.set_postfix(loss=f"{total_loss / seen:.3f}", acc=f"{correct / seen:.3f}")
    return EpochStats(total_loss / seen, correct / seen, seen / (time.perf_counter() - t0))


@torch.inference_mode()
def predict(model: nn.Module, loader: DataLoader, view: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (N, K) and labels (N,) over ``loader`` in order, from view ``view`` of each batch."""
    model.eval()
    logits, labels = [], []
    for batch in loader:
        logits.append(model(to_float(batch[view])))
        labels.append(batch[-1])
    return torch.cat(logits), torch.cat(labels)


def evaluate(model: nn.Module, loader: DataLoader, view: int = 0) -> dict[str, float]:
    """Clip-level top-1/top-5 on ``loader``."""
    return accuracy(*predict(model, loader, view))


def fit(model: nn.Module, train_loader: DataLoader, val_loader: DataLoader, cfg: TrainConfig,
        generator: torch.Generator, teacher: nn.Module | None = None, kd: KDConfig | None = None,
        desc: str = "model") -> FitResult:
    """Train for ``cfg.epochs`` with AdamW + one-cycle cosine LR; keep the weights of the best val top-1 epoch.

    The model is left holding the best weights. ``teacher`` (frozen) and ``kd`` turn on distillation.
    """
    if teacher is not None:
        teacher.eval().requires_grad_(False)
    alpha = kd.alpha if (kd is not None and teacher is not None) else 0.0
    loss_fn = KDLoss(kd.temperature if kd else 1.0, alpha, cfg.label_smoothing)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = max(1, cfg.epochs * len(train_loader))
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr, total_steps=steps, pct_start=0.15)
    best, best_state, history = FitResult(0, -math.inf), copy.deepcopy(model.state_dict()), []
    for epoch in (bar := tqdm(range(1, cfg.epochs + 1), desc=desc, unit="epoch")):
        stats = train_one_epoch(model, train_loader, optimizer, scheduler, loss_fn, teacher, cfg.hflip, generator)
        val = evaluate(model, val_loader)
        history.append({"epoch": epoch, "train_loss": stats.loss, "train_acc": stats.acc, "val_top1": val["top1"],
                        "val_top5": val["top5"], "clips_per_s": stats.clips_per_s})
        if val["top1"] > best.best_val_top1:
            best = FitResult(epoch, val["top1"])
            best_state = copy.deepcopy(model.state_dict())
        bar.set_postfix(loss=f"{stats.loss:.3f}", val=f"{val['top1']:.3f}", best=f"{best.best_val_top1:.3f}")
    model.load_state_dict(best_state)
    best.history = history
    return best

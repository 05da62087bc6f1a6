"""Training loops for the teacher, the no-KD baseline and the KD student: train_one_epoch, val_accuracy (model
selection on the val split), fit.

One loop serves all three. Batches are ``(x, y)`` (no KD), ``(x, x_teacher, y)`` (online KD: the frozen teacher sees
the enhanced version of the same frames and the same flip; a :class:`DualLightTeacher` also sees ``x``) or
``(x, cached_logits, y)`` with cached logits (B, 2, K) for the plain and flipped clip (see
:mod:`dlkdd.distill.logit_cache`). With ``kd.mixup`` the student's and the teacher's views are mixed with the same λ and
pairs after the flip (function matching); ``kd.hint`` adds a feature-hint term (:mod:`dlkdd.distill.hint`). Both need
the online teacher.
"""
from __future__ import annotations

import contextlib
import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler
from tqdm import tqdm

from dlkdd.config import KDConfig, TrainConfig, to_dict
from dlkdd.data.dataset import to_float
from dlkdd.distill.checkpoint import load_training_state, save_atomic
from dlkdd.distill.hint import Hint
from dlkdd.distill.kd import DualLightTeacher, KDLoss, draw_mixup, mix
from dlkdd.distill.metrics import accuracy
from dlkdd.distill.runtime import (Runtime, all_reduce_sum, amp_dtype, rng_state, seed_everything,  # noqa: F401
                                   set_rng_state)
from dlkdd.distill.schedule import build_optimizer, build_scheduler


class KDSource(str, Enum):
    """Where a batch's teacher logits come from: decided once (by :func:`fit`'s caller) and passed down, never guessed
    from a dataset's type or a tensor's rank."""

    NONE = "none"      # batches (x, y) or (x, x_teacher, y) with no teacher: cross-entropy only
    ONLINE = "online"  # batches (x, x_teacher, y): the frozen teacher runs on x_teacher
    CACHED = "cached"  # batches (x, cached_logits (B, 2, K), y): the teacher_logits stage's rows, plain and flipped

    @staticmethod
    def of(teacher: nn.Module | None, cached: bool = False) -> KDSource:
        return KDSource.CACHED if cached else KDSource.ONLINE if teacher is not None else KDSource.NONE


@dataclass
class EpochStats:
    loss: float
    acc: float
    clips_per_s: float


@dataclass(frozen=True)
class Best:
    """The best epoch so far while training (0 and -inf before the first)."""

    epoch: int
    val_top1: float


@dataclass
class FitResult:
    """What :func:`fit` returns: the best epoch (whose weights the model holds), the per-epoch curves, early stop."""

    best_epoch: int
    best_val_top1: float
    history: list[dict[str, float]] = field(default_factory=list)
    stopped_early: bool = False


@dataclass
class StepConfig:
    """How one optimisation step runs; defaults reproduce the plain float32 CPU loop."""

    accumulate: int = 1
    grad_clip: float = 0.0
    amp: torch.dtype | None = None  # autocast dtype on CUDA
    scaler: torch.amp.GradScaler | None = None  # fp16 only
    channels_last: bool = False
    device: torch.device = torch.device("cpu")
    rt: Runtime = field(default_factory=Runtime)


def flip_mask(batch: int, generator: torch.Generator | None) -> torch.Tensor:
    """(B,) bool: which clips of the batch to flip, each with probability 1/2 (one draw per clip from ``generator``)."""
    return torch.rand(batch, generator=generator) < 0.5


def _apply_flip(views: list[torch.Tensor], flip: torch.Tensor,
                source: KDSource = KDSource.NONE) -> list[torch.Tensor]:
    """Flip clips (B, 3, T, H, W) where ``flip``; with ``source`` CACHED, ``views[1]`` holds cached logits (B, 2, K)
    and picks row 1 (flipped) or row 0 instead."""
    out = []
    for i, v in enumerate(views):
        if i == 1 and source is KDSource.CACHED:
            out.append(v[torch.arange(len(v)), flip.long()])  # (B, K)
        elif not flip.any():
            out.append(v)
        else:
            out.append(torch.where(flip.view(-1, 1, 1, 1, 1), v.flip(-1), v))
    return out


def _prepare(x: torch.Tensor, step: StepConfig) -> torch.Tensor:
    x = to_float(x.to(step.device, non_blocking=True))
    if step.channels_last:
        x = x.contiguous(memory_format=torch.channels_last_3d)
    return x


def _teacher_logits(views: list[torch.Tensor], teacher: nn.Module | None, step: StepConfig,
                    x: torch.Tensor | None = None, source: KDSource = KDSource.NONE) -> torch.Tensor | None:
    """(B, K) teacher logits per ``source``: none, the cached row of the flip the student got (already selected by
    :func:`_apply_flip`), or the frozen ``teacher`` run online.

    Online, ``views[1]`` is the teacher's clip, uint8 or already prepared (float, e.g. mixed); ``x`` is the student's
    prepared view, which a :class:`DualLightTeacher` runs its dark-view network on.
    """
    if source is KDSource.NONE:
        return None
    if source is KDSource.CACHED:
        return views[1].to(step.device).float()
    x_t = views[1] if views[1].is_floating_point() else _prepare(views[1], step)
    with torch.inference_mode(), torch.autocast(step.device.type, dtype=step.amp, enabled=step.amp is not None):
        if isinstance(teacher, DualLightTeacher):
            return teacher(x_t, x if x is not None else _prepare(views[0], step)).float().clone()
        return teacher(x_t).float().clone()


def train_one_epoch(model: nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer,
                    scheduler: torch.optim.lr_scheduler.LRScheduler, loss_fn: KDLoss, teacher: nn.Module | None,
                    hflip: bool, generator: torch.Generator, desc: str = "train",
                    step: StepConfig | None = None, mixup: float = 0.0, hint: Hint | None = None,
                    source: KDSource | None = None) -> EpochStats:
    """One pass over ``loader``; ``model`` may be DDP-wrapped. Loss/accuracy are reduced over ranks.

    ``source``: where the teacher logits come from (:class:`KDSource`); by default online if ``teacher`` is given,
    else none (a loader of cached logits must say CACHED).

    ``mixup`` > 0: each batch's student and teacher views are mixed with one λ ~ Beta(mixup, mixup) and one pairing
    (accuracy still counts the unmixed labels). The draw happens only then, so mixup=0 keeps the random streams.
    ``hint``: its term is added to each batch's loss."""
    step = step or StepConfig()
    source = source or KDSource.of(teacher)
    model.train()
    total_loss, correct, seen, t0 = 0.0, 0, 0, time.perf_counter()
    n = len(loader)
    bar = tqdm(loader, desc=desc, unit="batch", leave=False, disable=not step.rt.is_main)
    optimizer.zero_grad(set_to_none=True)
    for i, (*views, y) in enumerate(bar):
        # the flip draw happens only with hflip, so turning it off does not shift the random streams
        flip = flip_mask(len(y), generator) if hflip else torch.zeros(len(y), dtype=torch.bool)
        views = _apply_flip(views, flip, source)
        y = y.to(step.device)
        x = _prepare(views[0], step)  # (B, 3, T, H, W)
        lam, perm = draw_mixup(len(y), mixup, generator) if mixup > 0 else (1.0, None)
        if perm is not None:
            x = mix(x, lam, perm)
            views = [views[0], *(mix(_prepare(v, step), lam, perm) for v in views[1:])]
        t_logits = _teacher_logits(views, teacher, step, x, source)
        boundary = (i + 1) % step.accumulate == 0 or i + 1 == n
        # DDP: only all-reduce gradients on the micro-batch that steps
        sync = contextlib.nullcontext() if boundary or not isinstance(model, DistributedDataParallel) \
            else model.no_sync()
        with sync:
            with torch.autocast(step.device.type, dtype=step.amp, enabled=step.amp is not None):
                logits = model(x)
            # loss in float32 whatever the autocast dtype
            loss = loss_fn(logits.float(), t_logits, y) if perm is None \
                else loss_fn.mixed(logits.float(), t_logits, y, y[perm.to(y.device)], lam)
            if hint is not None:
                loss = loss + hint()
            scaled = loss / step.accumulate
            (step.scaler.scale(scaled) if step.scaler else scaled).backward()
        if boundary:
            if step.grad_clip > 0:
                if step.scaler:
                    step.scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), step.grad_clip)
            if step.scaler:
                step.scaler.step(optimizer)
                step.scaler.update()
            else:
                optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
        total_loss += float(loss.detach()) * len(y)
        correct += int((logits.argmax(1) == y).sum())
        seen += len(y)
        rate = seen / (time.perf_counter() - t0)
        bar.set_postfix(loss=f"{total_loss / seen:.3f}", acc=f"{correct / seen:.3f}", clips_s=f"{rate:.1f}")
    total_loss, correct, seen = all_reduce_sum([total_loss, correct, seen], step.rt)
    return EpochStats(total_loss / seen, correct / seen, seen / (time.perf_counter() - t0))


@torch.inference_mode()
def predict(model: nn.Module, loader: DataLoader, view: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (N, K) and labels (N,) over ``loader`` in order, from view ``view`` of each batch (on CPU)."""
    model.eval()
    device = next(model.parameters()).device
    logits, labels = [], []
    for batch in loader:
        logits.append(model(to_float(batch[view].to(device))).float().cpu())
        labels.append(batch[-1])
    return torch.cat(logits), torch.cat(labels)


def val_accuracy(model: nn.Module, loader: DataLoader, view: int = 0) -> dict[str, float]:
    """Clip-level top-1/top-5 on ``loader`` (the val split, for model selection; the test split's metrics are
    :mod:`dlkdd.distill.evaluation`)."""
    return accuracy(*predict(model, loader, view))


def content_hash(*arrays: torch.Tensor | bytes) -> str:
    """Short hex digest of tensors' bytes (and dtype/shape) or raw bytes: a cheap identity for data held in memory.

    BLAKE2b runs at ~1 GB/s: the embedded default's clip cache (~40 MB) costs tens of milliseconds.
    """
    h = hashlib.blake2b(digest_size=16)
    for a in arrays:
        if isinstance(a, torch.Tensor):
            t = a.detach().to("cpu").contiguous()
            h.update(f"{t.dtype}{tuple(t.shape)}".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy())  # bytes of any dtype (bf16 has no numpy twin)
        else:
            h.update(a)
    return h.hexdigest()


def _fingerprint(cfg: TrainConfig, model: nn.Module, loader: DataLoader, kd: KDConfig | None, rt: Runtime,
                 inputs: dict | None) -> dict:
    """What must match for a saved state to be resumable: every input that changes the result.

    The train/kd config, model shapes, batches per epoch and world size, plus ``inputs`` from the caller: the seed,
    model and frames config and content hashes of the index, clips and teacher (see ``train_classifier``).
    """
    shapes = [list(p.shape) for p in model.state_dict().values()]
    return {**(inputs or {}), "train": to_dict(cfg), "kd": to_dict(kd) if kd else {}, "shapes": shapes,
            "batches": len(loader), "world": rt.world}


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def _show(v: Any) -> str:
    text = "absent" if v is None else repr(v)
    return text if len(text) <= 24 else text[:21] + "..."


def stale_reason(saved: dict | None, current: dict, limit: int = 3) -> str | None:
    """Why a saved fingerprint is not this run's, naming what differs (``seed changed (0 → 1)``), or None if equal."""
    if saved == current:
        return None
    a, b = _flat(saved or {}), _flat(current)
    diffs = []
    for key in sorted(set(a) | set(b), key=lambda k: (k not in b, k)):
        if a.get(key) != b.get(key):
            old, new = a.get(key), b.get(key)
            if key.endswith("_hash"):  # a digest means nothing to a reader: say whose content changed
                diffs.append(f"{key.removesuffix('_hash')} content changed")
            else:
                diffs.append(f"{key} changed ({_show(old)} → {_show(new)})")
    more = f" and {len(diffs) - limit} more" if len(diffs) > limit else ""
    return ", ".join(diffs[:limit]) + more


def fit(model: nn.Module, train_loader: DataLoader, val_loader: DataLoader, cfg: TrainConfig,
        generator: torch.Generator, teacher: nn.Module | None = None, kd: KDConfig | None = None,
        desc: str = "model", rt: Runtime | None = None, resume_path: str | Path | None = None,
        on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
        inputs: dict | None = None, cached_logits: bool = False) -> FitResult:
    """Train for ``cfg.epochs`` (early-stopping on val top-1 if ``cfg.patience``); keep the best val epoch's weights.

    ValueError (one line) for ``kd.mixup`` > 0 with cached teacher logits: they cannot follow a mixed input; nor
    ``kd.hint`` > 0 without the online teacher. The hint's projection trains with the model (same optimizer).

    The model is left holding the best weights, on CPU. ``teacher`` (frozen) or ``cached_logits`` (the train loader's
    batches are ``(x, logits (B, 2, K), y)``) plus ``kd`` turn on distillation. With ``resume_path`` the full
    training state is written there (atomically) after every epoch, a run finding one resumes from it only if its
    fingerprint (config, shapes and ``inputs``: seed, model and frames config, data content hashes) equals this
    run's, and it is deleted when the run completes. ``on_epoch_end`` is called after the checkpoint is written (tests
    use it to kill a run).
    """
    if cached_logits and teacher is not None:
        raise ValueError("give the teacher or cached teacher logits, not both")
    source = KDSource.of(teacher, cached_logits)
    if kd is not None and kd.mixup > 0 and source is KDSource.CACHED:
        raise ValueError(f"kd.mixup={kd.mixup:g} needs the online teacher (cached logits are per clip, not per mixed "
                         "pair): set kd.teacher_logits=online")
    if kd is not None and kd.hint > 0 and teacher is None:
        raise ValueError(f"kd.hint={kd.hint:g} needs the online teacher (its features are not cached): "
                         "set kd.teacher_logits=online")
    rt = rt or Runtime()
    device = rt.device
    model.to(device)
    step = StepConfig(accumulate=max(1, cfg.accumulate), grad_clip=cfg.grad_clip, amp=amp_dtype(cfg.amp, device),
                      channels_last=cfg.channels_last and device.type == "cuda", device=device, rt=rt)
    if step.amp is torch.float16:
        step.scaler = torch.amp.GradScaler("cuda")
    if step.channels_last:
        model.to(memory_format=torch.channels_last_3d)
    if teacher is not None:
        teacher.eval().requires_grad_(False).to(device)
    kd_on = kd is not None and source is not KDSource.NONE
    loss_fn = KDLoss(kd.temperature if kd else 1.0, kd.alpha if kd_on else 0.0, cfg.label_smoothing)
    hint = Hint(model, teacher, kd.hint) if kd_on and kd.hint > 0 else None
    if hint is not None:
        hint.loss.to(device)
    # the hint's projection is optimised with the model; without it the optimizer is exactly the model's
    optimizer = build_optimizer(model if hint is None else nn.ModuleList([model, hint.loss]), cfg)
    scheduler = build_scheduler(optimizer, cfg, math.ceil(len(train_loader) / step.accumulate))
    runner: nn.Module = model
    if cfg.compile:
        runner = torch.compile(runner)
    if rt.distributed:
        runner = DistributedDataParallel(runner, device_ids=[device.index] if device.type == "cuda" else None)

    best, best_state, history, bad, start = Best(0, -math.inf), _cpu_state(model), [], 0, 1
    fingerprint = _fingerprint(cfg, model, train_loader, kd if kd_on else None, rt, inputs)
    state = load_training_state(resume_path) if resume_path else None
    why = stale_reason(state.get("fingerprint"), fingerprint) if state is not None else None
    if state is not None and why is None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if hint is not None:
            hint.loss.load_state_dict(state["hint"])
        if step.scaler and state.get("scaler"):
            step.scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"][rt.rank], generator)
        best = Best(state["best_epoch"], state["best_val_top1"])
        best_state, history, bad, start = state["best_state"], state["history"], state["bad_epochs"], state["epoch"] + 1
        if rt.is_main:
            tqdm.write(f"{desc}: resuming after epoch {state['epoch']} from {resume_path}")
    elif state is not None and rt.is_main:
        tqdm.write(f"{desc}: ignoring {resume_path}: {why}; starting fresh")

    stop = False
    bar = tqdm(range(start, cfg.epochs + 1), desc=desc, unit="epoch", disable=not rt.is_main,
               initial=start - 1, total=cfg.epochs)
    for epoch in bar:
        if isinstance(train_loader.sampler, DistributedSampler):
            train_loader.sampler.set_epoch(epoch)  # a different shuffle every epoch, the same on every rank
        stats = train_one_epoch(runner, train_loader, optimizer, scheduler, loss_fn, teacher, cfg.hflip, generator,
                                step=step, mixup=kd.mixup if kd else 0.0, hint=hint, source=source)
        val = val_accuracy(model, val_loader)  # every rank sees the whole (small) val split → identical decisions
        row = {"epoch": epoch, "train_loss": stats.loss, "train_acc": stats.acc, "val_top1": val["top1"],
               "val_top5": val["top5"], "clips_per_s": stats.clips_per_s, "lr": optimizer.param_groups[0]["lr"]}
        history.append(row)
        if val["top1"] > best.val_top1:
            best, best_state, bad = Best(epoch, val["top1"]), _cpu_state(model), 0
        else:
            bad += 1
        stop = cfg.patience > 0 and bad >= cfg.patience
        if resume_path:
            _save_state(resume_path, epoch, model, optimizer, scheduler, step, best, best_state, history, bad,
                        fingerprint, generator, rt, hint)
        bar.set_postfix(loss=f"{stats.loss:.3f}", val=f"{val['top1']:.3f}", best=f"{best.val_top1:.3f}",
                        clips_s=f"{stats.clips_per_s:.0f}")
        if on_epoch_end:
            on_epoch_end(epoch, row)
        if stop:
            if rt.is_main:
                tqdm.write(f"{desc}: early stop at epoch {epoch} ({cfg.patience} epochs without a better val top-1)")
            break
    if hint is not None:
        hint.remove()
    model.load_state_dict(best_state)
    model.to("cpu", memory_format=torch.contiguous_format)
    if resume_path and rt.is_main:
        Path(resume_path).unlink(missing_ok=True)  # finished: a later run must not "resume" a completed one
    return FitResult(best.epoch, best.val_top1, history, stopped_early=stop)


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}


def _save_state(path, epoch, model, optimizer, scheduler, step, best, best_state, history, bad, fingerprint,
                generator, rt: Runtime, hint: Hint | None = None) -> None:
    """Everything needed to continue after ``epoch`` exactly as if never stopped; rank 0 writes it."""
    rngs = [rng_state(generator)]
    if rt.distributed:
        import torch.distributed as dist

        rngs = [None] * rt.world
        dist.all_gather_object(rngs, rng_state(generator))  # each rank's flip/dropout streams
    if not rt.is_main:
        return
    save_atomic({"epoch": epoch, "model": _cpu_state(model), "optimizer": optimizer.state_dict(),
                 "scheduler": scheduler.state_dict(), "scaler": step.scaler.state_dict() if step.scaler else {},
                 "best_epoch": best.epoch, "best_val_top1": best.val_top1, "best_state": best_state,
                 "history": history, "bad_epochs": bad, "fingerprint": fingerprint, "rng": rngs,
                 **({"hint": hint.loss.state_dict()} if hint is not None else {})}, path)

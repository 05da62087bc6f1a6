"""Training loops for the teacher, the no-KD baseline and the KD student: train_one_epoch, val_accuracy (model
selection on the val split), fit.

One loop serves all three; what differs is the criterion it is given (:mod:`dlkdd.distill.targets`): plain
cross-entropy on batches ``(x, y)``, or the KD loss with its teacher targets, cached or online, mixup and hint. The loop
draws the flip (train.hflip) and runs the optimisation step; the criterion makes each batch's input and target.
"""
from __future__ import annotations

import contextlib
import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler
from tqdm import tqdm

from dlkdd.checkpoint import load_training_state
from dlkdd.config import TrainConfig, to_dict
from dlkdd.data.dataset import to_float
from dlkdd.distill.metrics import accuracy
from dlkdd.distill.runtime import (Runtime, all_reduce_sum, amp_dtype, rng_state, seed_everything,  # noqa: F401
                                   set_rng_state)
from dlkdd.distill.schedule import build_optimizer, build_scheduler
from dlkdd.torch_file import save_atomic


@dataclass(frozen=True)
class Placement:
    """Where a batch's tensors go and the autocast dtype the networks run in (set by ``fit`` from the train config)."""

    device: torch.device = torch.device("cpu")
    amp: torch.dtype | None = None
    channels_last: bool = False

    def clips(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 clips (B, 3, T, H, W) → float in [0, 1] on the device."""
        x = to_float(x.to(self.device, non_blocking=True))
        return x.contiguous(memory_format=torch.channels_last_3d) if self.channels_last else x

    def autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=self.amp, enabled=self.amp is not None)


class Criterion(Protocol):
    """What the loop asks of a run's loss (:class:`dlkdd.distill.targets.Criterion` is the one built from kd): the
    loop knows nothing of teachers."""

    record: dict  # the kd section for the resume fingerprint ({} without KD)

    def batch(self, views: list[torch.Tensor], y: torch.Tensor, flip: torch.Tensor, generator: torch.Generator,
              place: Placement) -> tuple[torch.Tensor, Any]:
        """A batch's items before the label → the student's input (B, 3, T, H, W) on the device and its target."""

    def __call__(self, logits: torch.Tensor, target: Any) -> torch.Tensor: ...

    def trainable(self) -> list[nn.Module]: ...

    def to(self, device: torch.device) -> Any: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...

    def close(self) -> None: ...


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

    @property
    def place(self) -> Placement:
        return Placement(self.device, self.amp, self.channels_last)


def flip_mask(batch: int, generator: torch.Generator | None) -> torch.Tensor:
    """(B,) bool: which clips of the batch to flip, each with probability 1/2 (one draw per clip from ``generator``)."""
    return torch.rand(batch, generator=generator) < 0.5


def train_one_epoch(model: nn.Module, criterion: Criterion, loader: DataLoader, optimizer: torch.optim.Optimizer,
                    scheduler: torch.optim.lr_scheduler.LRScheduler, generator: torch.Generator, hflip: bool = True,
                    desc: str = "train", step: StepConfig | None = None) -> EpochStats:
    """One pass over ``loader``; ``model`` may be DDP-wrapped. Loss/accuracy are reduced over ranks.

    ``criterion`` (:mod:`dlkdd.distill.targets`) turns each batch into the student's input and target and gives the
    loss: the loop is the same with or without a teacher. Accuracy counts the unmixed labels."""
    step = step or StepConfig()
    model.train()
    total_loss, correct, seen, labelled, t0 = 0.0, 0, 0, 0, time.perf_counter()
    n = len(loader)
    bar = tqdm(loader, desc=desc, unit="batch", leave=False, disable=not step.rt.is_main)
    optimizer.zero_grad(set_to_none=True)
    for i, (*views, y) in enumerate(bar):
        # the flip draw happens only with hflip, so turning it off does not shift the random streams
        flip = flip_mask(len(y), generator) if hflip else torch.zeros(len(y), dtype=torch.bool)
        y = y.to(step.device)
        x, target = criterion.batch(views, y, flip, generator, step.place)
        boundary = (i + 1) % step.accumulate == 0 or i + 1 == n
        # DDP: only all-reduce gradients on the micro-batch that steps
        sync = contextlib.nullcontext() if boundary or not isinstance(model, DistributedDataParallel) \
            else model.no_sync()
        with sync:
            with step.place.autocast():
                logits = model(x)
            loss = criterion(logits.float(), target)  # in float32 whatever the autocast dtype
            scaled = loss / step.accumulate
            (step.scaler.scale(scaled) if step.scaler else scaled).backward()
        if boundary:
            _optimizer_step(model, optimizer, scheduler, step)
        total_loss += float(loss.detach()) * len(y)
        correct += int((logits.argmax(1) == y).sum())  # a pool clip's label (-1) is never a prediction
        seen += len(y)
        labelled += int((y >= 0).sum())  # accuracy is over the clips that have a label
        rate = seen / (time.perf_counter() - t0)
        bar.set_postfix(loss=f"{total_loss / seen:.3f}", acc=f"{correct / max(labelled, 1):.3f}",
                        clips_s=f"{rate:.1f}")
    total_loss, correct, seen, labelled = all_reduce_sum([total_loss, correct, seen, labelled], step.rt)
    return EpochStats(total_loss / seen, correct / max(labelled, 1), seen / (time.perf_counter() - t0))


def _optimizer_step(model: nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: torch.optim.lr_scheduler.LRScheduler, step: StepConfig) -> None:
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


def _fingerprint(cfg: TrainConfig, model: nn.Module, loader: DataLoader, kd: dict, rt: Runtime,
                 inputs: dict | None) -> dict:
    """What must match for a saved state to be resumable: every input that changes the result.

    The train config, the kd section (``{}`` without KD), model shapes, batches per epoch and world size, plus
    ``inputs`` from the caller: the seed, model and frames config and content hashes of the index, clips and teacher
    (see ``train_classifier``).
    """
    shapes = [list(p.shape) for p in model.state_dict().values()]
    return {**(inputs or {}), "train": to_dict(cfg), "kd": kd, "shapes": shapes,
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


@dataclass
class _Run:
    """What one :func:`fit` carries from epoch to epoch."""

    step: StepConfig
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    runner: nn.Module  # the model as trained: compiled and/or DDP-wrapped
    best: Best = Best(0, -math.inf)
    best_state: dict = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)
    bad: int = 0
    start: int = 1


def fit(model: nn.Module, criterion: Criterion, train_loader: DataLoader, val_loader: DataLoader, cfg: TrainConfig,
        generator: torch.Generator, desc: str = "model", rt: Runtime | None = None,
        resume_path: str | Path | None = None, on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
        inputs: dict | None = None) -> FitResult:
    """Train for ``cfg.epochs`` (early-stopping on val top-1 if ``cfg.patience``); keep the best val epoch's weights.

    ``criterion`` (:func:`dlkdd.distill.targets.build_criterion`) is the loss and its teacher targets; the loader's
    batches are the ones it reads. Its trainable parts (the hint's projection) train with the model (same optimizer).
    The model is left holding the best weights, on CPU. With ``resume_path`` the full training state is written there
    (atomically) after every epoch, a run finding one resumes from it only if its fingerprint (config, shapes and
    ``inputs``: seed, model and frames config, data content hashes) equals this run's, and it is deleted when the run
    completes. ``on_epoch_end`` is called after the checkpoint is written (tests use it to kill a run).
    """
    rt = rt or Runtime()
    run = _setup(model, criterion, train_loader, cfg, rt)
    fingerprint = _fingerprint(cfg, model, train_loader, criterion.record, rt, inputs)
    if resume_path:
        _resume(resume_path, fingerprint, model, criterion, run, generator, rt, desc)
    stop = False
    bar = tqdm(range(run.start, cfg.epochs + 1), desc=desc, unit="epoch", disable=not rt.is_main,
               initial=run.start - 1, total=cfg.epochs)
    for epoch in bar:
        if isinstance(train_loader.sampler, DistributedSampler):
            train_loader.sampler.set_epoch(epoch)  # a different shuffle every epoch, the same on every rank
        stats = train_one_epoch(run.runner, criterion, train_loader, run.optimizer, run.scheduler, generator,
                                cfg.hflip, step=run.step)
        val = val_accuracy(model, val_loader)  # every rank sees the whole (small) val split → identical decisions
        row = {"epoch": epoch, "train_loss": stats.loss, "train_acc": stats.acc, "val_top1": val["top1"],
               "val_top5": val["top5"], "clips_per_s": stats.clips_per_s, "lr": run.optimizer.param_groups[0]["lr"]}
        run.history.append(row)
        if val["top1"] > run.best.val_top1:
            run.best, run.best_state, run.bad = Best(epoch, val["top1"]), _cpu_state(model), 0
        else:
            run.bad += 1
        stop = cfg.patience > 0 and run.bad >= cfg.patience
        if resume_path:
            _save_state(resume_path, epoch, model, criterion, run, fingerprint, generator, rt)
        bar.set_postfix(loss=f"{stats.loss:.3f}", val=f"{val['top1']:.3f}", best=f"{run.best.val_top1:.3f}",
                        clips_s=f"{stats.clips_per_s:.0f}")
        if on_epoch_end:
            on_epoch_end(epoch, row)
        if stop:
            if rt.is_main:
                tqdm.write(f"{desc}: early stop at epoch {epoch} ({cfg.patience} epochs without a better val top-1)")
            break
    criterion.close()
    model.load_state_dict(run.best_state)
    model.to("cpu", memory_format=torch.contiguous_format)
    if resume_path and rt.is_main:
        Path(resume_path).unlink(missing_ok=True)  # finished: a later run must not "resume" a completed one
    return FitResult(run.best.epoch, run.best.val_top1, run.history, stopped_early=stop)


def _setup(model: nn.Module, criterion: Criterion, train_loader: DataLoader, cfg: TrainConfig, rt: Runtime) -> _Run:
    """Model, criterion and optimizer on the device; the optimizer and schedule; compile and DDP wrap."""
    device = rt.device
    model.to(device)
    step = StepConfig(accumulate=max(1, cfg.accumulate), grad_clip=cfg.grad_clip, amp=amp_dtype(cfg.amp, device),
                      channels_last=cfg.channels_last and device.type == "cuda", device=device, rt=rt)
    if step.amp is torch.float16:
        step.scaler = torch.amp.GradScaler("cuda")
    if step.channels_last:
        model.to(memory_format=torch.channels_last_3d)
    criterion.to(device)
    extra = criterion.trainable()
    # the hint's projection is optimised with the model; without it the optimizer is exactly the model's
    optimizer = build_optimizer(nn.ModuleList([model, *extra]) if extra else model, cfg)
    scheduler = build_scheduler(optimizer, cfg, math.ceil(len(train_loader) / step.accumulate))
    runner: nn.Module = model
    if cfg.compile:
        runner = torch.compile(runner)
    if rt.distributed:
        runner = DistributedDataParallel(runner, device_ids=[device.index] if device.type == "cuda" else None)
    return _Run(step, optimizer, scheduler, runner, best_state=_cpu_state(model))


def _resume(path: str | Path, fingerprint: dict, model: nn.Module, criterion: Criterion, run: _Run,
            generator: torch.Generator, rt: Runtime, desc: str) -> None:
    """Continue from the state at ``path`` if it came from this run's inputs (else say why it is ignored)."""
    state = load_training_state(path)
    if state is None:
        return
    why = stale_reason(state.get("fingerprint"), fingerprint)
    if why is not None:
        if rt.is_main:
            tqdm.write(f"{desc}: ignoring {path}: {why}; starting fresh")
        return
    model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    criterion.load_state_dict(state)
    if run.step.scaler and state.get("scaler"):
        run.step.scaler.load_state_dict(state["scaler"])
    set_rng_state(state["rng"][rt.rank], generator)
    run.best, run.best_state = Best(state["best_epoch"], state["best_val_top1"]), state["best_state"]
    run.history, run.bad, run.start = state["history"], state["bad_epochs"], state["epoch"] + 1
    if rt.is_main:
        tqdm.write(f"{desc}: resuming after epoch {state['epoch']} from {path}")


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}


def _save_state(path: str | Path, epoch: int, model: nn.Module, criterion: Criterion, run: _Run, fingerprint: dict,
                generator: torch.Generator, rt: Runtime) -> None:
    """Everything needed to continue after ``epoch`` exactly as if never stopped; rank 0 writes it."""
    rngs = [rng_state(generator)]
    if rt.distributed:
        import torch.distributed as dist

        rngs = [None] * rt.world
        dist.all_gather_object(rngs, rng_state(generator))  # each rank's flip/dropout streams
    if not rt.is_main:
        return
    step = run.step
    save_atomic({"epoch": epoch, "model": _cpu_state(model), "optimizer": run.optimizer.state_dict(),
                 "scheduler": run.scheduler.state_dict(), "scaler": step.scaler.state_dict() if step.scaler else {},
                 "best_epoch": run.best.epoch, "best_val_top1": run.best.val_top1, "best_state": run.best_state,
                 "history": run.history, "bad_epochs": run.bad, "fingerprint": fingerprint, "rng": rngs,
                 **criterion.state_dict()}, path)

"""The training criterion of every classifier run, built in one place from :class:`~dlkdd.config.KDConfig`.

:func:`target_source` reads ``kd`` (which teacher, cached or online) and returns where a batch's soft targets come
from; :func:`build_criterion` adds the loss (plain cross-entropy without ``kd``, else :class:`~dlkdd.distill.kd.KDLoss`
at kd.T and kd.α), function-matching mixup and the FitNets hint where ``kd`` sets them. The loop
(:func:`dlkdd.distill.trainer.train_one_epoch`) only calls ``criterion.batch`` and ``criterion(logits, target)``.

Target sources, one class each; a source says which clip folders its dataset reads, what a batch item between the
student's clip and the label is, how it follows the flip and the mixup, and what (B, K) logits it gives:

- :class:`Source` (no teacher; teacher, baseline): batches ``(x, y)``, plain cross-entropy.
- :class:`CachedRows`: batches ``(x, rows (B, 2, K), y)`` from the teacher_logits stage's file (plain and flipped
  clip, :mod:`dlkdd.distill.logit_cache`); for ``kd.teacher=dual_light`` the teacher's and baseline's rows fused at
  kd.T here, at train time, so a kd.T change never recomputes the cache.
- :class:`OnlineTeacher` / :class:`OnlineDualLight`: batches ``(x, x_teacher, y)``; the frozen teacher runs on the
  enhanced view (the dual-light one also runs the baseline on the student's dark view).

A new source (e.g. unlabelled clips that get the KL term only: teacher soft targets, no label) plugs in as one more
:class:`Source` subclass (its ``dataset``, ``flip``, ``logits``) and one branch in :func:`target_source`; the loop,
:func:`~dlkdd.distill.trainer.fit` and the stages do not change.
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from dlkdd.config import KDConfig, to_dict
from dlkdd.data.dataset import ClipDataset
from dlkdd.checkpoint import load_model
from dlkdd.distill.hint import Hint
from dlkdd.distill.kd import DualLightTeacher, KDLoss, draw_mixup, fuse_logits, mix
from dlkdd.distill.logit_cache import CachedLogitsDataset, load_teacher_logits
from dlkdd.distill.trainer import Placement


class Target(NamedTuple):
    """What one batch's loss compares the student's logits (B, K) with."""

    labels: torch.Tensor  # (B,), unmixed (accuracy counts these)
    soft: torch.Tensor | None = None  # (B, K) teacher logits, or None
    labels_b: torch.Tensor | None = None  # labels[perm] of a mixed batch
    lam: float = 1.0


def flip_clips(x: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Clips (B, 3, T, H, W) flipped left-right where ``flip`` (B,) bool."""
    return torch.where(flip.view(-1, 1, 1, 1, 1), x.flip(-1), x) if flip.any() else x


class Source:
    """No teacher: batches ``(x, y)``, no soft targets. The base of every target source."""

    views = 1  # clip folders the training set reads: the student's (and the teacher's)
    teacher: nn.Module | None = None  # the network run online (the hint taps it)

    def dataset(self, train_set: ClipDataset) -> Dataset:
        return train_set

    def identity(self) -> torch.Tensor | nn.Module | None:
        """What the resume fingerprint hashes as the teacher (None: no teacher); asked after :meth:`dataset`."""
        return None

    def to(self, device: torch.device) -> None:
        pass

    def flip(self, extra: list[torch.Tensor], flip: torch.Tensor) -> list[torch.Tensor]:
        return extra

    def mix(self, extra: list[torch.Tensor], lam: float, perm: torch.Tensor, place: Placement) -> list[torch.Tensor]:
        return extra

    def logits(self, extra: list[torch.Tensor], x: torch.Tensor, place: Placement) -> torch.Tensor | None:
        return None


class CachedRows(Source):
    """The teacher_logits stage's rows (a file, or a (N, 2, K) tensor in train-split order); the teacher never runs."""

    def __init__(self, rows: torch.Tensor | str | Path, teacher: str, temperature: float) -> None:
        self.rows, self.kind, self.temperature = rows, teacher, temperature  # kind: kd.teacher
        self.loaded: list[torch.Tensor] = []  # the rows of each dataset asked for, in order (the resume identity)

    def dataset(self, train_set: ClipDataset) -> Dataset:
        """The clips of ``train_set`` (the train split, or the pool: the file holds both) with their cached rows."""
        if isinstance(self.rows, torch.Tensor):  # rows given in memory: the train split's, in its order
            if self.loaded:
                raise ValueError("cached teacher rows given as a tensor cover the train split only; pass the "
                                 "teacher_logits stage's file to train with a pool")
            rows = self.rows
        else:
            rows = load_kd_targets(self.rows, train_set.index["clip_id"].astype(str).tolist(), self.kind,
                                   self.temperature)
        self.loaded.append(rows)
        return CachedLogitsDataset(train_set, rows)

    def identity(self) -> torch.Tensor:
        return self.loaded[0] if len(self.loaded) == 1 else torch.cat(self.loaded)

    def flip(self, extra: list[torch.Tensor], flip: torch.Tensor) -> list[torch.Tensor]:
        return [extra[0][torch.arange(len(extra[0])), flip.long()]]  # (B, K): the row of the flip the student got

    def logits(self, extra: list[torch.Tensor], x: torch.Tensor, place: Placement) -> torch.Tensor:
        return extra[0].to(place.device).float()


class OnlineTeacher(Source):
    """The frozen ``teacher`` run on every batch's enhanced view, flipped and mixed as the student's view."""

    views = 2

    def __init__(self, teacher: nn.Module) -> None:
        self.teacher = teacher

    def identity(self) -> nn.Module:
        return self.teacher

    def to(self, device: torch.device) -> None:
        self.teacher.eval().requires_grad_(False).to(device)

    def flip(self, extra: list[torch.Tensor], flip: torch.Tensor) -> list[torch.Tensor]:
        return [flip_clips(extra[0], flip)]

    def mix(self, extra: list[torch.Tensor], lam: float, perm: torch.Tensor, place: Placement) -> list[torch.Tensor]:
        return [mix(place.clips(extra[0]), lam, perm)]

    def logits(self, extra: list[torch.Tensor], x: torch.Tensor, place: Placement) -> torch.Tensor:
        x_t = extra[0] if extra[0].is_floating_point() else place.clips(extra[0])
        with torch.inference_mode(), place.autocast():
            return self._run(x_t, x).float().clone()

    def _run(self, x_teacher: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.teacher(x_teacher)


class OnlineDualLight(OnlineTeacher):
    """The two-stream model online: the teacher on the enhanced view, the no-KD baseline on the student's (dark,
    prepared, maybe mixed) view, fused at kd.T (:class:`~dlkdd.distill.kd.DualLightTeacher`)."""

    def __init__(self, teacher: nn.Module, baseline: nn.Module, temperature: float) -> None:
        super().__init__(DualLightTeacher(teacher, baseline, temperature))

    def _run(self, x_teacher: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.teacher(x_teacher, x)


def load_kd_targets(path: str | Path, clip_ids: list[str], teacher: str, temperature: float) -> torch.Tensor:
    """The (len(clip_ids), 2, K) target logits the student distils from (kd.teacher): the teacher's cached rows, or
    for ``dual_light`` the teacher's and the baseline's rows fused at ``temperature``."""
    logits = load_teacher_logits(path, clip_ids)
    if teacher == "dual_light":
        logits = fuse_logits([logits, load_teacher_logits(path, clip_ids, "baseline_logits")], temperature)
    return logits


def _network(model: nn.Module | str | Path | None, what: str) -> nn.Module:
    if model is None:
        raise ValueError(f"kd.teacher_logits=online needs the {what} checkpoint")
    return model if isinstance(model, nn.Module) else load_model(model)[0]


def target_source(kd: KDConfig | None, teacher: nn.Module | str | Path | None = None,
                  baseline: nn.Module | str | Path | None = None,
                  logits: torch.Tensor | str | Path | None = None) -> Source:
    """Where the soft targets come from, as ``kd`` says: none (no ``kd``), the cached ``logits`` (the teacher_logits
    stage's file or a tensor) or, online, the ``teacher`` (and for dual_light the ``baseline``) network or checkpoint.
    The inputs ``kd`` does not ask for are never read. ValueError (one line) for a lever the source cannot serve."""
    if kd is None:
        return Source()
    online = kd.teacher_logits == "online"
    if kd.mixup > 0 and not online:
        raise ValueError(f"kd.mixup={kd.mixup:g} needs the online teacher (cached logits are per clip, not per mixed "
                         "pair): set kd.teacher_logits=online")
    if kd.hint > 0 and not online:
        raise ValueError(f"kd.hint={kd.hint:g} needs the online teacher (its features are not cached): "
                         "set kd.teacher_logits=online")
    if not online:
        if logits is None:
            raise ValueError("kd.teacher_logits=cached needs the teacher_logits stage's file")
        return CachedRows(logits, kd.teacher, kd.temperature)
    if kd.teacher == "dual_light":
        return OnlineDualLight(_network(teacher, "teacher"), _network(baseline, "baseline"), kd.temperature)
    return OnlineTeacher(_network(teacher, "teacher"))


class CrossEntropy(nn.Module):
    """The no-KD loss with :class:`~dlkdd.distill.kd.KDLoss`'s call: soft targets are ignored."""

    def __init__(self, label_smoothing: float) -> None:
        super().__init__()
        self.label_smoothing = label_smoothing

    def forward(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor | None,
                labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(student_logits, labels, label_smoothing=self.label_smoothing)


class Criterion:
    """One training run's loss and the inputs it needs, what ``train_one_epoch`` takes (as torchvision's takes its
    ``criterion``; the loop's side of the contract is :class:`dlkdd.distill.trainer.Criterion`): :meth:`batch` turns
    a loader batch into the student's input and its :class:`Target`, calling it gives the loss. Built by
    :func:`build_criterion`."""

    def __init__(self, loss: nn.Module, source: Source | None = None, mixup: float = 0.0, hint: Hint | None = None,
                 record: dict | None = None) -> None:
        self.loss, self.source, self.mixup, self.hint = loss, source or Source(), mixup, hint
        self.record = record or {}  # the kd section as the resume fingerprint holds it ({} without KD)

    def batch(self, views: list[torch.Tensor], y: torch.Tensor, flip: torch.Tensor, generator: torch.Generator,
              place: Placement) -> tuple[torch.Tensor, Target]:
        """``views`` = a batch's items before the label, ``flip`` (B,) the clips to flip. With mixup > 0 one λ and one
        pairing are drawn from ``generator`` (only then: mixup=0 keeps the random streams) and mix the student's and
        the teacher's views alike."""
        x, extra = place.clips(flip_clips(views[0], flip)), self.source.flip(views[1:], flip)
        lam, perm = draw_mixup(len(y), self.mixup, generator) if self.mixup > 0 else (1.0, None)
        if perm is not None:
            x, extra = mix(x, lam, perm), self.source.mix(extra, lam, perm, place)
        soft = self.source.logits(extra, x, place)
        return x, Target(y, soft, None if perm is None else y[perm.to(y.device)], lam)

    def __call__(self, logits: torch.Tensor, target: Target) -> torch.Tensor:
        if target.labels_b is None:
            loss = self.loss(logits, target.soft, target.labels)
        else:
            loss = self.loss.mixed(logits, target.soft, target.labels, target.labels_b, target.lam)
        return loss if self.hint is None else loss + self.hint()

    def trainable(self) -> list[nn.Module]:
        """Modules optimised with the model (the hint's projection)."""
        return [] if self.hint is None else [self.hint.loss]

    def to(self, device: torch.device) -> Criterion:
        self.source.to(device)
        for m in self.trainable():
            m.to(device)
        return self

    def state_dict(self) -> dict:
        return {} if self.hint is None else {"hint": self.hint.loss.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        if self.hint is not None:
            self.hint.loss.load_state_dict(state["hint"])

    def close(self) -> None:
        if self.hint is not None:
            self.hint.remove()


def build_criterion(kd: KDConfig | None, source: Source, model: nn.Module, label_smoothing: float) -> Criterion:
    """The criterion of a run training ``model``: plain cross-entropy without ``kd`` (teacher, baseline), else the
    KD loss at kd.T and kd.α against ``source`` (:func:`target_source`), with kd.mixup and the kd.hint term."""
    if kd is None:
        return Criterion(CrossEntropy(label_smoothing))
    hint = Hint(model, source.teacher, kd.hint) if kd.hint > 0 else None
    return Criterion(KDLoss(kd.temperature, kd.alpha, label_smoothing, kd.unlabeled_weight), source, kd.mixup, hint,
                     to_dict(kd))

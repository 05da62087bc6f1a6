"""One training run on a frame cache (datasets, loaders, model, criterion, resume identity → :func:`fit`): the shared
body of the teacher, baseline and student stages. The criterion and its teacher targets are built by
:mod:`dlkdd.distill.targets`, the loops are in :mod:`dlkdd.distill.trainer`."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from torch import nn
from torch.utils.data import ConcatDataset, DataLoader, Dataset, RandomSampler
from torch.utils.data.distributed import DistributedSampler

from dlkdd.config import KDConfig, ModelConfig, TrainConfig, to_dict
from dlkdd.data.dataset import ClipDataset
from dlkdd.distill.runtime import Runtime, init_runtime
from dlkdd.distill.targets import build_criterion, target_source
from dlkdd.distill.trainer import FitResult, content_hash, fit, seed_everything
from dlkdd.models.build import build_model, check_input


@dataclass(frozen=True)
class Pool:
    """The unlabelled pool a student also learns from: its frame-cache index (split ``unlabeled``, label -1) and its
    clip folders, aligned with the train clips' (dark, then enhanced)."""

    index: pd.DataFrame
    clip_dirs: list[Path]


def make_train_loader(dataset: Dataset, cfg: TrainConfig, generator: torch.Generator, rt: Runtime,
                      seed: int, epoch_clips: int | None = None) -> DataLoader:
    """Shuffled batches; under torchrun each rank gets a disjoint shard (DistributedSampler, reshuffled per epoch).

    ``epoch_clips`` < len(dataset) (labelled clips + a pool): an epoch is that many clips drawn without replacement
    from the whole set, a fresh draw each epoch, so a pool adds data, not compute (kd.epochs is the budget)."""
    if epoch_clips is not None and epoch_clips < len(dataset):
        if rt.distributed:
            raise ValueError("training with the unlabelled pool runs in one process for now (under torchrun the "
                             "epoch draw is not sharded): set kd.use_pool=false or drop torchrun")
        sampler = RandomSampler(dataset, num_samples=epoch_clips, generator=generator)
        return DataLoader(dataset, batch_size=cfg.batch_size, sampler=sampler, num_workers=cfg.num_workers,
                          drop_last=epoch_clips > cfg.batch_size, persistent_workers=cfg.num_workers > 0)
    if rt.distributed:
        sampler = DistributedSampler(dataset, num_replicas=rt.world, rank=rt.rank, shuffle=True, seed=seed,
                                     drop_last=True)
        return DataLoader(dataset, batch_size=cfg.batch_size, sampler=sampler, num_workers=cfg.num_workers,
                          drop_last=len(dataset) // rt.world > cfg.batch_size)
    return DataLoader(dataset, batch_size=cfg.batch_size, shuffle=True, generator=generator,
                      num_workers=cfg.num_workers, drop_last=len(dataset) > cfg.batch_size,
                      persistent_workers=cfg.num_workers > 0)


def train_classifier(index: pd.DataFrame, num_classes: int, clip_dirs: list[Path], model_cfg: ModelConfig,
                     train_cfg: TrainConfig, seed: int, teacher: nn.Module | str | Path | None = None,
                     kd: KDConfig | None = None, desc: str = "model",
                     teacher_logits: torch.Tensor | Path | str | None = None, rt: Runtime | None = None,
                     resume_path: str | Path | None = None,
                     on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
                     context: dict | None = None,
                     baseline: nn.Module | str | Path | None = None,
                     pool: Pool | None = None) -> tuple[nn.Module, FitResult]:
    """Train ``model_cfg.arch`` on the ``train`` split of ``clip_dirs[0]``; select on ``val`` of the same view.

    Without ``kd``: cross-entropy. With it, the targets come from where ``kd`` says
    (:func:`dlkdd.distill.targets.target_source`): ``teacher_logits`` (the teacher_logits stage's file, or a (N, 2, K)
    tensor in train-split order) or, online, the ``teacher`` (and for dual_light the ``baseline``) network or
    checkpoint run on ``clip_dirs[1]``, the enhanced frames aligned with the student's. Inputs ``kd`` does not ask for
    are never read. Under ``torchrun`` the process group is joined here (``rt``); the returned model is the same on
    every rank. A resume state at ``resume_path`` is used only if it came from the same inputs (:func:`resume_inputs`,
    plus ``context``: the caller's params that shaped the data, e.g. the frames section).

    With ``kd`` and a non-empty ``pool``, the pool's clips join the training set with their teacher targets and no
    label (the KD term only, :func:`dlkdd.distill.kd.pool_kd_loss`); an epoch stays len(train split) clips.
    """
    source = target_source(kd, teacher, baseline, teacher_logits)  # before the seed: loading builds networks
    rt = rt or init_runtime()
    generator = seed_everything(seed, train_cfg.threads, train_cfg.deterministic)
    if rt.distributed:
        generator.manual_seed(seed + rt.rank)  # different flips per rank; shuffling is the sampler's
    train_set = ClipDataset(index, clip_dirs[:source.views], "train")  # the teacher's frames only when it runs
    _, t, h, w = train_set.views[0].shape[1:]
    check_input(model_cfg.arch, t, h)
    model = build_model(model_cfg.arch, num_classes, model_cfg.dropout, model_cfg.pretrained, model_cfg.width)
    criterion = build_criterion(kd, source, model, train_cfg.label_smoothing)
    dataset = source.dataset(train_set)
    pool_set = None
    if kd is not None and pool is not None and len(pool.index):
        pool_set = ClipDataset(pool.index, pool.clip_dirs[:source.views], "unlabeled")
        pool_set.labels = torch.full_like(pool_set.labels, -1)  # whatever its index says: no label reaches the CE
        dataset = ConcatDataset([dataset, source.dataset(pool_set)])
    val_set = ClipDataset(index, clip_dirs[:1], "val")
    train_loader = make_train_loader(dataset, train_cfg, generator, rt, seed,
                                     len(train_set) if pool_set is not None else None)
    val_loader = DataLoader(val_set, batch_size=64)
    if resume_path:
        pool_views = [] if pool_set is None else pool_set.views
        extra = context or {}
        if pool_set is not None:  # only with a pool: a run without one keeps the identity it always had
            extra = {**extra, "pool_hash": content_hash(pool_set.index.to_csv(index=False).encode(), *pool_views)}
        inputs = resume_inputs(seed, model_cfg, index, [*train_set.views, *val_set.views], source.identity(), extra)
    else:
        inputs = None
    result = fit(model, criterion, train_loader, val_loader, train_cfg, generator, desc, rt=rt,
                 resume_path=resume_path, on_epoch_end=on_epoch_end, inputs=inputs)
    return model, result


def resume_inputs(seed: int, model_cfg: ModelConfig, index: pd.DataFrame, clips: list[torch.Tensor],
                  teacher: torch.Tensor | nn.Module | None, context: dict | None = None) -> dict:
    """Everything outside the train config that changes a training run's result, for the resume fingerprint.

    Content hashes, not paths or mtimes: the index rows, the clip bytes as loaded (uint8 (N, 3, T, H, W) per view and
    split) and the teacher's logits (N, 2, K) or, online, its weights. ``clip_shape`` (T, H, W) names a frames change.
    """
    if isinstance(teacher, nn.Module):
        teacher_hash = content_hash(*teacher.state_dict().values())
    else:
        teacher_hash = content_hash(teacher) if teacher is not None else ""
    return {"seed": seed, "model": to_dict(model_cfg), **(context or {}),
            "clip_shape": list(clips[0].shape[2:]),
            "index_hash": content_hash(index.to_csv(index=False).encode()),
            "clips_hash": content_hash(*clips), "teacher_hash": teacher_hash}

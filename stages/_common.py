"""What every stage script shares: read params.yaml through the schema, exiting with one line on a bad key.

Importing this module puts the workspace's own ``src/`` first on ``sys.path``: a stage run by ``dvc exp run --queue``
or ``--temp`` happens in a copy of the repository, and must run that copy's library (the one DVC hashed as a dep),
not whatever an editable install points at.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import pandas as pd

from dlkdd.atomic import write_csv_atomic
from dlkdd.config import ConfigError, Params, load_params


def params_or_exit(path: str = "params.yaml") -> Params:
    try:
        return load_params(path)
    except ConfigError as err:
        sys.exit(f"error: {err}")


def load_zerodce_or_exit(path: str):
    """The trained Zero-DCE (GPU when present); one error line when the file is missing or holds none."""
    import torch

    from dlkdd.enhance.zerodce import load_zerodce

    try:
        return load_zerodce(path, "cuda" if torch.cuda.is_available() else "cpu")
    except (OSError, ValueError, RuntimeError) as err:
        raise SystemExit(f"error: {str(err).splitlines()[0]}") from None


def frames_identity(params: Params) -> dict:
    """The frames params that shape the clips a training run reads (not workers/timeouts): part of its resume
    identity."""
    f = params.frames
    return {"num_frames": f.num_frames, "size": f.size, "train_sampling": f.train_sampling, "stride": f.stride,
            "clips_per_video": f.clips_per_video, "min_decoded_fraction": f.min_decoded_fraction}


def train_and_save(name: str, params: Params, frames_dir: str, clip_dirs: list[str], model_cfg, out: str, history: str,
                   teacher=None, kd=None, teacher_logits: str | None = None, train_cfg=None, baseline=None,
                   pool_frames: str | None = None, pool_clip_dirs: list[str] | None = None) -> None:
    """Train one classifier on the cached frames and save it with its training curve (shared by the train stages).

    Runs alone or under ``torchrun --nproc_per_node=N``; only rank 0 writes artifacts. A killed run resumes from
    ``<train.resume_dir>/<name>.pt`` (outside DVC's outs, which DVC deletes before running a stage).
    ``train_cfg`` replaces ``params.train`` for this model (the student's ``kd.epochs``). ``pool_frames`` (the
    unlabelled pool's frames folder, its clip folders aligned with ``clip_dirs``) adds the pool to a KD run unless
    kd.use_pool is off.
    """
    from dlkdd.config import kd_record, to_dict
    from dlkdd.data.frame_index import read_index
    from dlkdd.checkpoint import save_model
    from dlkdd.distill.runtime import init_runtime, shutdown
    from dlkdd.distill.timings import write_train_timing
    from dlkdd.distill.training_run import train_classifier

    train_cfg = train_cfg or params.train
    rt = init_runtime()
    resume = Path(params.train.resume_dir) / f"{name}.pt" if params.train.resume_dir else None
    index, classes = read_index(frames_dir)
    pool = None
    if kd is not None and kd.use_pool and pool_frames:
        from dlkdd.distill.training_run import Pool

        pool_index, _ = read_index(pool_frames)
        pool = Pool(pool_index, [Path(d) for d in pool_clip_dirs or []]) if len(pool_index) else None
    try:
        model, result = train_classifier(index, len(classes), [Path(d) for d in clip_dirs], model_cfg, train_cfg,
                                         params.seed, teacher, kd, desc=name, teacher_logits=teacher_logits, rt=rt,
                                         resume_path=resume, context={"frames": frames_identity(params)},
                                         baseline=baseline, pool=pool)
    except ValueError as err:  # bad arch / input size / pretrained file / logit cache: one line
        shutdown(rt)
        sys.exit(f"error: {err}")
    if rt.is_main:
        extra = {"width": model_cfg.width, "train": to_dict(train_cfg), "best_epoch": result.best_epoch,
                 "val_top1": result.best_val_top1}
        if kd is not None:
            extra["kd"] = kd_record(kd)  # the levers only when set: a default checkpoint keeps its bytes
        if pool is not None:
            extra["pool_clips"] = len(pool.index)  # unlabelled clips it learned from (absent: none)
        save_model(out, model, model_cfg.arch, classes, params.frames.num_frames, params.frames.size, **extra)
        # training curves for ``dvc plots``, the same bytes for the same weights: the throughput goes beside the model
        # (dlkdd.distill.timings), read by the evaluate stage into the one timings metric
        write_csv_atomic(pd.DataFrame(result.history).drop(columns=["clips_per_s"], errors="ignore"), history)
        write_train_timing(out, result.history)
        print(f"{name}: best val top-1 {result.best_val_top1:.3f} at epoch {result.best_epoch} "
              f"({rt.world} process{'es' if rt.world > 1 else ''}); saved {out}")
    shutdown(rt)

"""Trainer costs side by side in one run (issue 5): medians over interleaved repeats, and their ratios.

  KD epoch (cached teacher logits) / no-KD epoch            goal <= 1.05
  epoch with the real DataLoader / epoch on in-memory tensors goal <= 1.10
  student inference / two-stream + enhancement inference     goal <= 0.5

Usage: python bench/bench_trainer.py [--clips 64] [--repeats 5] [--frames 8] [--size 64] [--arch tiny3d]
"""
from __future__ import annotations

import os

os.environ.setdefault("TQDM_DISABLE", "1")  # progress bars would drown the table (set before tqdm is imported)

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from dlkdd.atomic import write_array_atomic
from dlkdd.config import EnhanceConfig, KDConfig, TrainConfig
from dlkdd.data.dataset import ClipDataset
from dlkdd.distill.evaluation import latency_ms, two_stream_latency_ms
from dlkdd.distill.logit_cache import CachedLogitsDataset, compute_teacher_logits
from dlkdd.distill.schedule import build_optimizer, build_scheduler
from dlkdd.distill.targets import build_criterion, target_source
from dlkdd.distill.trainer import seed_everything, train_one_epoch
from dlkdd.enhance import enhance_clip
from dlkdd.models.build import build_model


def write_cache(root: Path, n: int, t: int, s: int, k: int) -> pd.DataFrame:
    """A real on-disk frame cache of ``n`` dark clips (T, S, S, 3) uint8 plus its enhanced view."""
    rng = np.random.default_rng(0)
    rows = []
    (root / "dark").mkdir(parents=True)
    (root / "lit").mkdir(parents=True)
    for i in range(n):
        clip = rng.integers(0, 40, (t, s, s, 3), dtype=np.uint8)
        write_array_atomic(root / "dark" / f"c{i}.npy", clip)
        write_array_atomic(root / "lit" / f"c{i}.npy", enhance_clip(clip, EnhanceConfig()))
        rows.append({"clip_id": f"c{i}", "label": i % k, "split": "train", "video_id": f"v{i}"})
    return pd.DataFrame(rows)


def epoch_seconds(model, batches, criterion) -> float:
    cfg = TrainConfig(epochs=1000)
    opt = build_optimizer(model, cfg)
    sched = build_scheduler(opt, cfg, 10_000)
    t0 = time.perf_counter()
    train_one_epoch(model, criterion, batches, opt, sched, torch.Generator().manual_seed(0))
    return time.perf_counter() - t0


class Batches(list):
    """Pre-collated in-memory batches; ``len`` and iteration are all train_one_epoch needs."""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--arch", default="tiny3d")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    seed_everything(0, args.threads)
    k = 11
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        index = write_cache(root, args.clips, args.frames, args.size, k)
        dark = ClipDataset(index, [root / "dark"], "train")
        pair = ClipDataset(index, [root / "dark", root / "lit"], "train")
        teacher, student = build_model(args.arch, k).eval(), build_model(args.arch, k)
        rows = compute_teacher_logits(teacher, pair.views[1])
        cached = CachedLogitsDataset(dark, rows)
        loaders = {
            "no_kd_loader": DataLoader(dark, batch_size=args.batch, shuffle=True, drop_last=True),
            "kd_cached_loader": DataLoader(cached, batch_size=args.batch, shuffle=True, drop_last=True),
            "kd_online_loader": DataLoader(pair, batch_size=args.batch, shuffle=True, drop_last=True),
        }
        n = args.clips // args.batch * args.batch
        loaders["no_kd_memory"] = Batches((dark.views[0][i:i + args.batch], dark.labels[i:i + args.batch])
                                          for i in range(0, n, args.batch))
        times: dict[str, list[float]] = {name: [] for name in loaders}
        cached_kd, online_kd = KDConfig(), KDConfig(teacher_logits="online")
        ce = build_criterion(None, target_source(None), student, 0.0)
        criteria = {
            "kd_cached_loader": build_criterion(cached_kd, target_source(cached_kd, logits=rows), student, 0.0),
            "kd_online_loader": build_criterion(online_kd, target_source(online_kd, teacher=teacher), student, 0.0)}
        epoch_seconds(student, loaders["no_kd_memory"], ce)  # warm-up
        for _ in range(args.repeats):  # interleaved so machine load hits every variant alike
            for name, loader in loaders.items():
                times[name].append(epoch_seconds(student, loader, criteria.get(name, ce)))
        med = {name: statistics.median(v) for name, v in times.items()}
        clip = dark.views[0][0]
        lat_student = [latency_ms(student, clip, 10) for _ in range(args.repeats)]
        lat_two = [two_stream_latency_ms(lambda f: enhance_clip(f, EnhanceConfig()), teacher, student, clip, 10)
                   for _ in range(args.repeats)]
    print(f"{args.arch} {args.frames}x{args.size}², {args.clips} clips, batch {args.batch}, "
          f"{torch.get_num_threads()} threads, {args.repeats} repeats (medians)")
    for name, s in med.items():
        print(f"  epoch {name:18s} {s * 1e3:8.1f} ms  ({n / s:6.1f} clips/s)")
    ls, lt = statistics.median(lat_student), statistics.median(lat_two)
    print(f"  student inference {ls:.2f} ms/clip; two-stream + enhancement {lt:.2f} ms/clip")
    ratios = [("KD epoch (cached logits) / no-KD epoch", med["kd_cached_loader"] / med["no_kd_loader"], 1.05),
              ("KD epoch (online teacher) / no-KD epoch", med["kd_online_loader"] / med["no_kd_loader"], None),
              ("epoch real DataLoader / in-memory tensors", med["no_kd_loader"] / med["no_kd_memory"], 1.10),
              ("student / two-stream+enhancement inference", ls / lt, 0.5)]
    for label, r, goal in ratios:
        verdict = "" if goal is None else f"  goal <= {goal}: {'met' if r <= goal else 'MISSED'}"
        print(f"  {label:44s} {r:.3f}{verdict}")


if __name__ == "__main__":
    main()

"""Synthetic dark-footage generator throughput: clips/s before and after, on the same clips, median of repeats.

    python bench/bench_generate.py [--per-class 4] [--repeats 3] [--workers N]

"before" is the generator as it was (one process, the original ``darken`` and ``write_video``, kept verbatim below);
"serial" is today's code with ``workers=1``; "parallel" is today's default (every core). Clips are the default
params' size (160x120, 32 frames), ``--per-class`` train clips of each of the 11 classes. Every variant's files must
have the same md5s (the bench exits 1 otherwise). A per-clip time breakdown of the serial path shows where time goes.
The variants take turns in each repeat. CPU seconds (this process and its workers) do not depend on the machine's
load; wall seconds do: on a shared machine, quote the ratio measured in one run rather than the absolute clips/s.
"""
from __future__ import annotations

import argparse
import hashlib
import resource
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from dlkdd.config import GenerateConfig
from dlkdd.data import synthetic as syn


def darken_before(clean: np.ndarray, rng: np.random.Generator, cfg: GenerateConfig) -> np.ndarray:
    target = rng.uniform(cfg.luma_min, cfg.luma_max)
    signal = clean * (target / max(float(clean.mean()), 1e-6))
    electrons = rng.poisson(signal / cfg.gain)
    dn = electrons * cfg.gain + rng.normal(0, cfg.read_noise, clean.shape)
    return np.clip(np.rint(dn), 0, 255).astype(np.uint8)


def write_video_before(path: Path, frames: np.ndarray, fps: float) -> None:
    fourcc = cv2.VideoWriter_fourcc(*("MJPG" if path.suffix == ".avi" else "mp4v"))
    h, w = frames.shape[1:3]
    tmp = path.with_name(path.stem + ".part" + path.suffix)
    writer = cv2.VideoWriter(str(tmp), fourcc, fps, (w, h))
    for f in frames:
        writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    writer.release()
    tmp.replace(path)


def generate_before(out: Path, cfg: GenerateConfig, seed: int) -> None:
    for ci, cls, split, n in syn._clip_jobs(cfg):
        rng = np.random.default_rng([seed, ci, syn.SPLITS.index(split), n])
        rel = f"{cls}/{cls}_{split}_{n:03d}.{cfg.container}"
        (out / cls).mkdir(parents=True, exist_ok=True)
        write_video_before(out / rel, darken_before(syn.render_clip(cls, rng, cfg), rng, cfg), cfg.fps)


def md5s(root: Path) -> dict[str, str]:
    files = [p for p in sorted(root.rglob("*")) if p.is_file() and p.name != "manifest.csv"]
    return {p.relative_to(root).as_posix(): hashlib.md5(p.read_bytes()).hexdigest() for p in files}


def cpu_seconds() -> float:
    """User + system CPU of this process and of its finished children (the worker processes)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def run_once(variant: str, cfg: GenerateConfig, workers: int) -> tuple[float, float, dict[str, str]]:
    """(wall s, CPU s, md5 per clip) of one generation of ``cfg`` by ``variant``."""
    with tempfile.TemporaryDirectory() as d:
        t0, c0 = time.perf_counter(), cpu_seconds()
        if variant == "before":
            generate_before(Path(d), cfg, seed=0)
        else:
            syn.generate_dataset(d, cfg, seed=0, workers=1 if variant == "serial" else workers)
        return time.perf_counter() - t0, cpu_seconds() - c0, md5s(Path(d))


def timed(variants: tuple[str, ...], cfg: GenerateConfig, workers: int, repeats: int) -> dict[str, tuple]:
    """Median wall and CPU seconds per variant; the variants take turns in every repeat, so load drift hits all."""
    runs: dict[str, list] = {v: [] for v in variants}
    for _ in range(repeats):
        for v in variants:
            runs[v].append(run_once(v, cfg, workers))
    return {v: (statistics.median(r[0] for r in rs), statistics.median(r[1] for r in rs), rs[-1][2])
            for v, rs in runs.items()}


def breakdown(cfg: GenerateConfig, clips: int = 5) -> dict[str, float]:
    """Seconds per clip in each part of today's serial path (the same draws, timed one by one)."""
    parts = dict.fromkeys(("render (cv2 figure + warp)", "poisson shot noise", "read noise + quantise", "MJPG write"),
                          0.0)
    names = list(parts)
    with tempfile.TemporaryDirectory() as d:
        for n in range(clips):
            rng = np.random.default_rng([0, n, 0, n])
            t = [time.perf_counter()]
            clean = syn.render_clip(cfg.classes[n], rng, cfg)
            t.append(time.perf_counter())
            signal = clean * (rng.uniform(cfg.luma_min, cfg.luma_max) / max(float(clean.mean()), 1e-6))
            electrons = rng.poisson(signal / cfg.gain)
            t.append(time.perf_counter())
            dn = electrons * cfg.gain
            dn += rng.normal(0, cfg.read_noise, clean.shape)
            dark = np.clip(np.rint(dn, out=dn), 0, 255, out=dn).astype(np.uint8)
            t.append(time.perf_counter())
            syn.write_video(Path(d) / f"{n}.avi", dark, cfg.fps)
            t.append(time.perf_counter())
            for i, name in enumerate(names):
                parts[name] += (t[i + 1] - t[i]) / clips
    return parts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--per-class", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, default=syn.default_workers())
    args = ap.parse_args()
    cfg = replace(GenerateConfig(), train_per_class=args.per_class, val_per_class=0, test_per_class=0)
    n = len(syn._clip_jobs(cfg))
    print(f"{n} clips of {cfg.num_frames}x{cfg.height}x{cfg.width}, median of {args.repeats} repeats, "
          f"parallel = {args.workers} processes")
    parts = breakdown(cfg)
    total = sum(parts.values())
    for name, s in parts.items():
        print(f"  {name:28s} {1000 * s:7.1f} ms/clip  {100 * s / total:5.1f} %")
    results = timed(("before", "serial", "parallel"), cfg, args.workers, args.repeats)
    base, base_cpu = results["before"][:2]
    print("variant      wall s  clips/s  speed-up | CPU s  CPU s/clip  CPU saved")
    for v, (sec, cpu, _) in results.items():
        print(f"{v:9s} {sec:9.2f} {n / sec:8.2f} {base / sec:8.2f}x | {cpu:6.2f} {cpu / n:10.3f} "
              f"{1 - cpu / base_cpu:9.1%}")
    same = results["before"][2] == results["serial"][2] == results["parallel"][2]
    print(f"md5s of all {n} clips identical across variants: {same}")
    sys.exit(0 if same else 1)


if __name__ == "__main__":
    main()

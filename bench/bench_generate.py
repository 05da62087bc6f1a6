"""Synthetic dark-footage generator throughput: clips/s before and after, on the same clips, median of repeats.

    python bench/bench_generate.py [--per-class 4] [--repeats 3] [--workers N]

"before" is the generator as it was (one process, the original ``darken`` and ``write_video``, kept verbatim below);
"serial" is today's code with ``workers=1``; "parallel" is today's default (every core). Clips are the default
params' size (160x120, 32 frames), ``--per-class`` train clips of each of the 11 classes. Every variant's files must
have the same md5s (the bench exits 1 otherwise). A per-clip time breakdown of the serial path shows where time goes.
The machine may be shared: quote the ratio, measured in one run, rather than the absolute clips/s.
"""
from __future__ import annotations

import argparse
import hashlib
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


def timed(variant: str, cfg: GenerateConfig, workers: int, repeats: int) -> tuple[float, dict[str, str]]:
    times, sums = [], {}
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as d:
            t0 = time.perf_counter()
            if variant == "before":
                generate_before(Path(d), cfg, seed=0)
            else:
                syn.generate_dataset(d, cfg, seed=0, workers=1 if variant == "serial" else workers)
            times.append(time.perf_counter() - t0)
            sums = md5s(Path(d))
    return statistics.median(times), sums


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
    results = {v: timed(v, cfg, args.workers, args.repeats) for v in ("before", "serial", "parallel")}
    base = results["before"][0]
    for v, (sec, _) in results.items():
        print(f"{v:9s} {sec:7.2f} s  {n / sec:6.2f} clips/s  x{base / sec:.2f}")
    same = results["before"][1] == results["serial"][1] == results["parallel"][1]
    print(f"md5s of all {n} clips identical across variants: {same}")
    sys.exit(0 if same else 1)


if __name__ == "__main__":
    main()

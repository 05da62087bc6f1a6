"""Enhancement throughput per method on this machine: frames/s over the same clips, median of repeats.

Also prints mean luma before/after and the noise estimate per method, on the same clips.

    python bench/bench_enhance.py [--frames data/frames] [--clips 64] [--repeats 5] [--zerodce models/zerodce.pt]

Uses the pipeline's frame cache when present (else synthetic dark clips); Zero-DCE runs with trained weights when
given (speed does not depend on the weights), else a fresh net. torch uses 2 threads (this machine's cores).
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from dlkdd.config import EnhanceConfig
from dlkdd.data.frame_index import read_index
from dlkdd.enhance import METHODS, enhance_clip
from dlkdd.enhance.report import clip_summary
from dlkdd.enhance.zerodce import DCENet, load_zerodce


def load_clips(frames: Path, n: int) -> list[np.ndarray]:
    if (frames / "index.csv").is_file():
        index, _ = read_index(frames)
        return [np.load(frames / "clips" / f"{c}.npy") for c in index["clip_id"].astype(str)[:n]]
    rng = np.random.default_rng(0)
    return [np.clip(rng.normal(15, 4, (8, 64, 64, 3)), 0, 255).astype(np.uint8) for _ in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--frames", default="data/frames")
    ap.add_argument("--clips", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--zerodce", default="models/zerodce.pt")
    args = ap.parse_args()
    torch.set_num_threads(2)
    clips = load_clips(Path(args.frames), args.clips)
    n_frames = sum(len(c) for c in clips)
    try:
        model = load_zerodce(args.zerodce)
        trained = True
    except ValueError:
        model, trained = DCENet().eval(), False
    shape = "x".join(map(str, clips[0].shape))
    print(f"{len(clips)} clips of {shape} ({n_frames} frames), median of {args.repeats} repeats, "
          f"torch threads {torch.get_num_threads()}, Zero-DCE {'trained' if trained else 'untrained'}")
    rows = []
    for method in METHODS:
        cfg = EnhanceConfig(method=method)
        times, outs = [], []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            outs = [enhance_clip(c, cfg, model) for c in clips]
            times.append(time.perf_counter() - t0)
        med = statistics.median(times)
        s = [clip_summary(c, o) for c, o in zip(clips, outs)]
        rows.append((method, n_frames / med, *(float(np.mean([x[k] for x in s])) for k in
                                               ("luma_before", "luma_after", "spatial_noise_before",
                                                                "spatial_noise_after"))))
    base = rows[0][1]
    print(f"{'method':8} {'frames/s':>10} {'vs gamma':>9} {'luma in':>8} {'luma out':>9} {'noise in':>9} "
          f"{'noise out':>10}")
    for m, fps, lb, la, nb, na in rows:
        print(f"{m:8} {fps:10.0f} {fps / base:9.3f} {lb:8.1f} {la:9.1f} {nb:9.2f} {na:10.2f}")


if __name__ == "__main__":
    main()

"""Ingest throughput: the frames stage's library call vs a bare cv2.VideoCapture read loop over the same files.

Run from the repository root:  python bench/bench_ingest.py [--clips 48] [--repeats 3]
Writes tiny synthetic dark clips (MJPG .avi, 160x120, 32 frames, like the embedded default) to a temp folder, then
times, side by side in this one run: the bare read loop (decode only), build_frame_cache with workers=1 and workers=2
(decode + sample + resize + stats + write). Prints medians (clips/s) and the ratios.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from dlkdd.config import GenerateConfig  # noqa: E402
from dlkdd.data.frames import SamplingSpec, build_frame_cache  # noqa: E402
from dlkdd.data.synthetic import generate_dataset  # noqa: E402


def bare_loop(paths: list[Path]) -> None:
    for p in paths:
        cap = cv2.VideoCapture(str(p))
        while cap.read()[0]:
            pass
        cap.release()


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--clips", type=int, default=48)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    per = max(1, args.clips // 3)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = GenerateConfig(classes=["Drink", "Jump", "Sit"], train_per_class=per - 2, val_per_class=1,
                             test_per_class=1)
        manifest_path = generate_dataset(Path(tmp) / "raw", cfg, seed=0)
        m = pd.read_csv(manifest_path)
        paths = [manifest_path.parent / p for p in m.path]
        spec = SamplingSpec(min_decoded_fraction=0.9)
        runs = {
            "bare cv2 read loop": lambda: bare_loop(paths),
            "frames workers=1": lambda: build_frame_cache(m, manifest_path.parent, Path(tmp) / "f1", 8, 64,
                                                          cfg.classes, 1, spec),
            "frames workers=2": lambda: build_frame_cache(m, manifest_path.parent, Path(tmp) / "f2", 8, 64,
                                                          cfg.classes, 2, spec),
        }
        times: dict[str, list[float]] = {k: [] for k in runs}
        bare_loop(paths[:4])  # warm the file cache and codec
        for _ in range(args.repeats):
            for name, fn in runs.items():  # interleaved so drift hits every variant alike
                times[name].append(timed(fn))
    n = len(paths)
    rate = {k: n / statistics.median(v) for k, v in times.items()}
    print(f"{n} clips (160x120, 32 frames, MJPG), median of {args.repeats} runs")
    for k, r in rate.items():
        print(f"  {k:20s} {r:8.1f} clips/s")
    base = rate["bare cv2 read loop"]
    print(f"ratio frames workers=1 / bare loop: {rate['frames workers=1'] / base:.2f}")
    print(f"ratio frames workers=2 / bare loop: {rate['frames workers=2'] / base:.2f}")
    print(f"speed-up workers=2 / workers=1:     {rate['frames workers=2'] / rate['frames workers=1']:.2f}")


if __name__ == "__main__":
    main()

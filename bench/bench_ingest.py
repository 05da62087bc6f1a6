"""Ingest throughput: the frames stage's library call vs a bare cv2.VideoCapture read loop over the same files.

Run from the repository root:  python bench/bench_ingest.py [--clips 48] [--repeats 3] [--width 160 --height 120
--frames 32]   (the defaults are the embedded benchmark's clips; --width 320 --height 240 --frames 96 is ARID-like)
Writes synthetic dark clips (MJPG .avi) to a temp folder, then
times, side by side in this one run: the bare read loop (decode only), build_frame_cache with workers=1 and workers=2
(decode + sample + resize + stats + write). Prints medians (clips/s) and the ratios.

Wall-clock clips/s swing with whatever else runs on a shared machine; the workers=1 / bare-loop ratio is also given
in CPU time of this process (both run in it), which such noise barely moves. The workers=2 speed-up needs wall time
and two idle cores.
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
from dlkdd.config import GenerateConfig
from dlkdd.data.frames import SamplingSpec, build_frame_cache
from dlkdd.data.synthetic import generate_dataset


def bare_loop(paths: list[Path]) -> None:
    for p in paths:
        cap = cv2.VideoCapture(str(p))
        while cap.read()[0]:
            pass
        cap.release()


def timed(fn) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one call."""
    t, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t, time.process_time() - c


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--clips", type=int, default=48)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--width", type=int, default=160)
    ap.add_argument("--height", type=int, default=120)
    ap.add_argument("--frames", type=int, default=32)
    args = ap.parse_args()
    per = max(1, args.clips // 3)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = GenerateConfig(classes=["Drink", "Jump", "Sit"], train_per_class=per - 2, val_per_class=1,
                             test_per_class=1, width=args.width, height=args.height, num_frames=args.frames)
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
        cpu: dict[str, list[float]] = {k: [] for k in runs}
        bare_loop(paths[:4])  # warm the file cache and codec
        for _ in range(args.repeats):
            for name, fn in runs.items():  # interleaved so drift hits every variant alike
                wall, used = timed(fn)
                times[name].append(wall)
                cpu[name].append(used)
    n = len(paths)
    rate = {k: n / statistics.median(v) for k, v in times.items()}
    print(f"{n} clips ({args.width}x{args.height}, {args.frames} frames, MJPG), median of {args.repeats} runs")
    for k, r in rate.items():
        print(f"  {k:20s} {r:8.1f} clips/s")
    base = rate["bare cv2 read loop"]
    print(f"ratio frames workers=1 / bare loop: {rate['frames workers=1'] / base:.2f}")
    print(f"ratio frames workers=2 / bare loop: {rate['frames workers=2'] / base:.2f}")
    print(f"speed-up workers=2 / workers=1:     {rate['frames workers=2'] / rate['frames workers=1']:.2f}")
    # paired per round (bare and frames run back to back), then the median: drift between rounds cancels
    cpu_ratio = statistics.median(b / f for b, f in zip(cpu["bare cv2 read loop"], cpu["frames workers=1"]))
    print(f"ratio frames workers=1 / bare loop in CPU time (median of per-round ratios): {cpu_ratio:.2f}  "
          f"(bare {1e3 * statistics.median(cpu['bare cv2 read loop']) / n:.2f} ms/clip, "
          f"frames {1e3 * statistics.median(cpu['frames workers=1']) / n:.2f} ms/clip)")


if __name__ == "__main__":
    main()

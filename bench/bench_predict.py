"""dlkdd predict on long dark footage, measured side by side in one run (issue: "faster than real time").

Prints, for a 640x480 30 fps dark clip (MPEG-4 part 2, as cameras export):
- seconds of video processed per second of wall time by ``watch`` (window 2 s, stride 1 s, the default student) on
  PyTorch and on ONNX Runtime, and each as a ratio to a bare OpenCV ``cap.read()`` loop over the same file (decoding
  is the floor: goal >= 0.7), medians of interleaved repeats;
- per-window latency of ONNX Runtime vs PyTorch at batch 1 and 16 (goal <= 1.0);
- peak RSS of a ``dlkdd predict --window 2s`` process on a 1-minute and a 30-minute clip (goal: within 10 %).

    python bench/bench_predict.py [--minutes-long 30] [--repeats 3] [--model models/student.pt]

The clips are written once into ``bench/.cache/`` (the 30-minute one takes a few minutes). Without a trained
``--model`` an untrained default student is used: the cost is the same.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from dlkdd.config import GenerateConfig  # noqa: E402
from dlkdd.data.synthetic import darken, render_clip  # noqa: E402
from dlkdd.infer.runner import load_runner  # noqa: E402
from dlkdd.infer.watch import watch  # noqa: E402

W, H, FPS = 640, 480, 30.0


def write_dark_clip(path: Path, minutes: float) -> Path:
    """A dark 640x480 30 fps clip: one rendered minute of actions (2 s takes), repeated to length."""
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    cfg = GenerateConfig(width=W, height=H, num_frames=60, fps=FPS)
    rng = np.random.default_rng(0)
    minute = [darken(render_clip(cfg.classes[k % 11], rng, cfg), rng, cfg) for k in range(30)]  # 30 x 2 s
    tmp = path.with_name(".part-" + path.name)
    out = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (W, H))
    for _ in range(int(round(minutes))):
        for take in minute:
            for f in take:
                out.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    out.release()
    tmp.replace(path)
    return path


def bare_read(path: Path) -> int:
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def model_files(model: Path | None, tmp: Path) -> tuple[Path, Path]:
    """(checkpoint, ONNX export) of ``model`` or of an untrained default student."""
    from dlkdd.distill.checkpoint import save_model
    from dlkdd.distill.export import export_onnx
    from dlkdd.models.build import build_model

    if model is None or not model.is_file():
        model = tmp / "student.pt"
        save_model(model, build_model("tiny3d", 11, width=12), "tiny3d", GenerateConfig().classes, num_frames=8,
                   size=64, width=12)
    onnx = tmp / "student.onnx"
    export_onnx(model, onnx)
    return model, onnx


_MEASURED = """
import runpy, sys
sys.argv = ["dlkdd", *sys.argv[1:]]
try:
    runpy.run_module("dlkdd.cli", run_name="__main__")
except SystemExit:
    pass
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
print(hwm, file=sys.stderr)
"""


def peak_rss_mb(clip: Path, model: Path) -> float:
    """Peak resident memory of a whole ``dlkdd predict --window 2s`` process: its own VmHWM at exit (the rusage of a
    child would also count the pages of this big parent it was forked from)."""
    r = subprocess.run([sys.executable, "-c", _MEASURED, "predict", str(clip), "--model", str(model), "--window", "2s",
                        "--json"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                       env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    return int(r.stderr.strip().splitlines()[-1]) / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes-long", type=float, default=30)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--model", type=Path, default=ROOT / "models/student.pt")
    args = ap.parse_args()
    cache = ROOT / "bench/.cache"
    short = write_dark_clip(cache / "dark_640x480_1min.mp4", 1)
    with tempfile.TemporaryDirectory() as t:
        ckpt, onnx = model_files(args.model, Path(t))
        runners = {"pytorch": load_runner(ckpt), "onnxruntime": load_runner(onnx)}
        video_s = bare_read(short) / FPS
        walls: dict[str, list[float]] = {"bare cv2 read loop": [], **{f"predict ({k})": [] for k in runners}}
        for _ in range(args.repeats):  # interleaved: load changes hit every variant alike
            walls["bare cv2 read loop"].append(timed(lambda: bare_read(short)))
            for k, r in runners.items():
                walls[f"predict ({k})"].append(timed(lambda r=r: watch(r, short, 2.0, 1.0)))
        bare = statistics.median(walls["bare cv2 read loop"])
        print(f"\n{video_s:.0f} s of {W}x{H} {FPS:g} fps dark video, window 2 s / stride 1 s, "
              f"median of {args.repeats} (torch threads {__import__('torch').get_num_threads()})")
        print(f"{'':28s} {'wall s':>7s} {'x real time':>12s} {'vs bare decode':>15s}")
        for name, ws in walls.items():
            m = statistics.median(ws)
            print(f"{name:28s} {m:7.2f} {video_s / m:12.1f} {bare / m:15.2f}")

        print("\nper-window latency (ms, median of 50, interleaved)")
        for b in (1, 16):
            clips = np.random.default_rng(0).integers(0, 40, (b, 8, 64, 64, 3), dtype=np.uint8)
            lat: dict[str, list[float]] = {k: [] for k in runners}
            for _ in range(50):
                for k, r in runners.items():
                    lat[k].append(timed(lambda r=r: r(clips)) * 1000 / b)
            pt, ort = statistics.median(lat["pytorch"]), statistics.median(lat["onnxruntime"])
            print(f"  batch {b:2d}: pytorch {pt:.2f}  onnxruntime {ort:.2f}  ratio ort/pytorch {ort / pt:.2f}")

        long = write_dark_clip(cache / f"dark_640x480_{args.minutes_long:g}min.mp4", args.minutes_long)
        rss_short, rss_long = peak_rss_mb(short, onnx), peak_rss_mb(long, onnx)
        print(f"\npeak RSS of `dlkdd predict --window 2s` (ONNX): 1 min {rss_short:.0f} MB, "
              f"{args.minutes_long:g} min {rss_long:.0f} MB, ratio {rss_long / rss_short:.3f}")


if __name__ == "__main__":
    main()

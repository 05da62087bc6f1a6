"""Per-window latency of the student on PyTorch vs ONNX Runtime, through the same runner predict uses.

    python bench/bench_runner.py [--model models/student.pt] [--repeats 50] [--threads 2]

Without a checkpoint a fresh default student is used (tiny3d width 12, 11 classes, 8x64x64; latency does not depend
on the weights). Exports it to ONNX in a temp folder, then times runner(clips) on random dark uint8 clips at batch 1
and 8, interleaving the two backends; prints the median ms per call and per window.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from dlkdd.distill.checkpoint import save_model
from dlkdd.distill.export import export_onnx
from dlkdd.infer.runner import load_runner
from dlkdd.models.build import build_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", type=Path, default=Path("models/student.pt"))
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--threads", type=int, default=2, help="intra-op threads of both backends")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = args.model
        if not ckpt.is_file():
            ckpt = Path(tmp) / "student.pt"
            save_model(ckpt, build_model("tiny3d", 11, width=12), "tiny3d", [f"c{i}" for i in range(11)], 8, 64,
                       width=12)
        export_onnx(ckpt, Path(tmp) / "student.onnx")
        import onnxruntime as ort

        runners = {"pytorch": load_runner(ckpt), "onnxruntime": load_runner(Path(tmp) / "student.onnx")}
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = args.threads
        runners["onnxruntime"].session = ort.InferenceSession(str(Path(tmp) / "student.onnx"), opts,
                                                              providers=["CPUExecutionProvider"])
        r = runners["pytorch"]
        rng = np.random.default_rng(0)
        for batch in (1, 8):
            clips = rng.integers(0, 40, (batch, r.num_frames, r.size, r.size, 3), dtype=np.uint8)
            times: dict[str, list[float]] = {k: [] for k in runners}
            for _ in range(5):  # warm-up
                for run in runners.values():
                    run(clips)
            for _ in range(args.repeats):
                for name, run in runners.items():
                    t = time.perf_counter()
                    run(clips)
                    times[name].append((time.perf_counter() - t) * 1000)
            for name, ts in times.items():
                med = statistics.median(ts)
                print(f"batch {batch} {name:12s} {med:7.2f} ms/call  {med / batch:6.2f} ms/window")


if __name__ == "__main__":
    main()

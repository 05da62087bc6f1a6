"""The ``dlkdd`` command: ``summary`` after a run, ``predict`` on raw dark clips, ``export`` the student."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

MODELS = ("teacher", "baseline", "student")


def summary(metrics_path: Path) -> int:
    """Print the teacher / baseline / student table and where the artifacts are."""
    if not metrics_path.is_file():
        print(f"error: {metrics_path} not found: run `make run` (or `dvc repro`) first", file=sys.stderr)
        return 1
    m = json.loads(metrics_path.read_text())
    print(f"\n{'model':10s} {'input':9s} {'top-1':>6s} {'top-5':>6s}   (dark test split, {m['student']['clips']} clips)")
    for name, view in zip(MODELS, ("enhanced", "dark", "dark")):
        print(f"{name:10s} {view:9s} {m[name]['top1']:6.3f} {m[name]['top5']:6.3f}")
    print(f"\nmetrics: {metrics_path}, metrics/cost.json  (dvc metrics show)")
    print("plots:   plots/train/*.csv, plots/confusion_student.csv  (dvc plots show → dvc_plots/index.html)")
    print("models:  models/teacher.pt, models/baseline.pt, models/student.pt  (student = the deployable one)")
    return 0


def predict(clips: list[Path], model_path: Path, topk: int, as_json: bool) -> int:
    """Run the student alone on raw dark clips; print top classes with probabilities."""
    import torch

    from dlkdd.data.dataset import to_float
    from dlkdd.data.video import VideoDecodeError, read_video, resize_frames, uniform_indices
    from dlkdd.distill.export import load_any

    try:
        model, ckpt = load_any(model_path)  # a dlkdd checkpoint or the exported TorchScript file
    except (FileNotFoundError, ValueError, KeyError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    results = []
    for clip in clips:
        try:
            video, _ = read_video(clip)
        except VideoDecodeError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        except Exception as err:  # anything else OpenCV may throw on a damaged file: still one line
            print(f"error: {clip}: cannot decode ({type(err).__name__})", file=sys.stderr)
            return 2
        frames = resize_frames(video[uniform_indices(len(video), ckpt["num_frames"])], ckpt["size"])
        x = to_float(torch.from_numpy(frames).permute(3, 0, 1, 2)[None])  # (1, 3, T, H, W)
        with torch.inference_mode():
            probs = model(x).softmax(1)[0]
        top = probs.topk(min(topk, len(probs)))
        results.append({"clip": str(clip), "top": [{"class": ckpt["classes"][i], "prob": float(p)}
                                                   for p, i in zip(top.values, top.indices)],
                        "probs": {c: float(p) for c, p in zip(ckpt["classes"], probs)}})
    if as_json:
        print(json.dumps(results if len(results) > 1 else results[0]))
    else:
        for r in results:
            print(r["clip"] + ": " + ", ".join(f"{t['class']} {t['prob']:.3f}" for t in r["top"]))
    return 0


def export(model_path: Path, out: Path) -> int:
    """Write the student as TorchScript; ``predict --model`` accepts the result."""
    from dlkdd.distill.export import export_torchscript

    try:
        meta = export_torchscript(model_path, out)
    except (FileNotFoundError, ValueError, KeyError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"exported {meta['arch']} → {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="dlkdd", description="Dark-video action recognition by dual-light KD")
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("summary", help="print the metrics table of the last run")
    s.add_argument("--metrics", type=Path, default=Path("metrics/evaluate.json"))
    p = sub.add_parser("predict", help="classify raw dark clips with the student alone")
    p.add_argument("clips", nargs="+", type=Path)
    p.add_argument("--model", type=Path, default=Path("models/student.pt"))
    p.add_argument("--topk", type=int, default=5)
    p.add_argument("--json", action="store_true")
    e = sub.add_parser("export", help="export the student to TorchScript (predict --model accepts the file)")
    e.add_argument("--model", type=Path, default=Path("models/student.pt"))
    e.add_argument("--out", type=Path, default=Path("models/student.torchscript.pt"))
    args = ap.parse_args(argv)
    if args.cmd == "summary":
        return summary(args.metrics)
    if args.cmd == "export":
        return export(args.model, args.out)
    return predict(args.clips, args.model, args.topk, args.json)


if __name__ == "__main__":
    sys.exit(main())

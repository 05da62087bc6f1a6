"""Stage evaluate: teacher, baseline, student and the two-stream alternative on the test split.

Writes the metric people compare (top-1/top-5 of student, teacher and baseline: the DVC metric), the details behind
it (every model with the two-stream one: top-1/top-5, video-level accuracy, clip counts, per-class accuracy), the
reproducible cost (parameters, GFLOPs) and the one file of measured timings (latency, training throughput), which
alone differs between two runs of the same pipeline.
"""
import argparse
import json
from pathlib import Path

import pandas as pd
from _common import load_zerodce_or_exit, params_or_exit

from dlkdd.atomic import atomic_path, write_text_atomic
from dlkdd.data.dataset import ClipDataset
from dlkdd.data.frame_index import read_index
from dlkdd.checkpoint import load_model
from dlkdd.distill.evaluation import (evaluate_split, evaluate_two_stream, inference_cost, per_class_accuracy,
                                     predictions_table, two_stream_cost)
from dlkdd.enhance import enhance_clip
from dlkdd.distill.timings import ratio, read_train_timing
from dlkdd.distill.trainer import seed_everything


def write_json(obj: dict, path: str) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2) + "\n")


TIMED = ("latency_ms",)  # measured, so different on every run: these go to the timings metric, never to cost.json


def split_timings(cost: dict) -> tuple[dict, dict]:
    """{model: {params, gflops, latency_ms}} → (the reproducible cost, the measured timings)."""
    fixed = {m: {k: v for k, v in c.items() if k not in TIMED} for m, c in cost.items()}
    timed = {m: {k: v for k, v in c.items() if k in TIMED} for m, c in cost.items()}
    return fixed, timed


def timings_metric(timed: dict, models_dir: Path) -> dict:
    """Latencies and training throughput (median clips/s of the training run, when it ran here: see
    :mod:`dlkdd.distill.timings`), and the two ratios people compare: inference latency of the student over the
    two-stream model, and KD's training epoch time over the same network without KD (the baseline)."""
    for name in ("teacher", "baseline", "student"):
        speed = read_train_timing(models_dir / f"{name}.pt")
        if speed is not None:
            timed[name]["train_clips_per_s"] = speed
    timed["student_vs_two_stream_latency"] = ratio(timed["student"]["latency_ms"], timed["two_stream"]["latency_ms"])
    # the student's epoch time / the baseline's = the baseline's throughput / the student's (same clips per epoch)
    epoch = ratio(timed["baseline"].get("train_clips_per_s"), timed["student"].get("train_clips_per_s"))
    if epoch is not None:
        timed["student_vs_baseline_epoch_time"] = epoch
    return timed


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--frames", required=True)
    ap.add_argument("--clips", required=True, help="dark clips")
    ap.add_argument("--enhanced-clips", required=True, help="the same clips enhanced (the teacher's input)")
    ap.add_argument("--models", required=True, help="folder with teacher.pt, baseline.pt, student.pt")
    ap.add_argument("--zerodce", default="models/zerodce.pt", help="Zero-DCE weights (read only for method zerodce)")
    ap.add_argument("--metrics", required=True, help="top-1/top-5 of student, teacher, baseline (the DVC metric)")
    ap.add_argument("--details", required=True, help="every model's top-1/top-5 (with the two-stream one), video-level "
                    "accuracy, clip counts and per-class accuracy")
    ap.add_argument("--cost", required=True, help="parameters and GFLOPs per model (reproducible)")
    ap.add_argument("--timings", required=True, help="latency, training throughput and their ratios (measured)")
    ap.add_argument("--confusion", required=True)
    ap.add_argument("--predictions", required=True,
                    help="per-clip predictions CSV (the CI gate's paired test compares it with the committed one)")
    return ap.parse_args()


# the DVC metric: what `dvc metrics show` / `dvc exp show` / `dvc metrics diff` put side by side. Kept to the three
# models DESIGN names so the table fits 120 columns; the deployed model first (`dvc exp show` keeps key order). The
# two-stream model, clip counts, cost and timings are in the other files, shown by `dvc metrics show metrics/*.json`
HEADLINE_MODELS, HEADLINE_KEYS = ("student", "teacher", "baseline"), ("top1", "top5")


def headline(details: dict) -> dict:
    return {m: {k: details[m][k] for k in HEADLINE_KEYS} for m in HEADLINE_MODELS}


def main() -> None:
    args = parse_args()
    params = params_or_exit()
    seed_everything(params.seed, params.train.threads)
    index, classes = read_index(args.frames)
    # view 0 = dark clip, view 1 = its enhanced version; the teacher is scored as deployed: enhancement + teacher
    test = ClipDataset(index, [Path(args.clips), Path(args.enhanced_clips)], "test")
    details, cost, models, logits = {}, {}, {}, {}
    for name, view in (("teacher", 1), ("baseline", 0), ("student", 0)):
        model, _ = load_model(Path(args.models) / f"{name}.pt")
        models[name] = model
        details[name], logits[name] = evaluate_split(model, test, view)
        preds = logits[name].argmax(1)
        details[name]["per_class"] = per_class_accuracy(preds, test.labels, classes)
        cost[name] = inference_cost(model, test.views[view][0], params.evaluate.latency_clips)
        if name == "student":
            pd.DataFrame({"actual": [classes[i] for i in test.labels], "predicted": [classes[i] for i in preds]}
                         ).to_csv(args.confusion, index=False)
    # the alternative DL-KDD avoids: enhancement + a bright-stream and a dark-stream backbone at inference
    details["two_stream"], fused = evaluate_two_stream(logits["teacher"], logits["baseline"], test)
    details["two_stream"]["per_class"] = per_class_accuracy(fused.argmax(1), test.labels, classes)
    zerodce = load_zerodce_or_exit(args.zerodce) if params.enhance.method == "zerodce" else None
    cost["two_stream"] = two_stream_cost(lambda f: enhance_clip(f, params.enhance, zerodce), models["teacher"],
                                         models["baseline"], test.views[0][0], params.evaluate.latency_clips)
    cost, timed = split_timings(cost)
    preds = {name: lg.argmax(1) for name, lg in logits.items()} | {"two_stream": fused.argmax(1)}
    with atomic_path(args.predictions) as tmp:
        predictions_table(test, preds, classes).to_csv(tmp, index=False)
    write_json(headline(details), args.metrics)
    write_json(details, args.details)
    write_json(cost, args.cost)
    write_json(timings_metric(timed, Path(args.models)), args.timings)
    for name, m in details.items():
        print(f"{name:9s} top-1 {m['top1']:.3f}  top-5 {m['top5']:.3f}")


if __name__ == "__main__":
    main()

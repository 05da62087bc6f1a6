"""Stage evaluate: teacher, baseline, student and the two-stream alternative on the test split; metrics, cost."""
import argparse
import json
import sys
from pathlib import Path

import pandas as pd
from _common import load_zerodce_or_exit, params_or_exit

from dlkdd.atomic import atomic_path, write_text_atomic
from dlkdd.data.dataset import ClipDataset
from dlkdd.data.frame_index import read_index
from dlkdd.distill.checkpoint import load_model
from dlkdd.distill.evaluation import (evaluate_split, evaluate_two_stream, inference_cost, per_class_accuracy,
                                     predictions_table, two_stream_cost)
from dlkdd.enhance import enhance_clip
from dlkdd.distill.trainer import seed_everything


def write_json(obj: dict, path: str) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2) + "\n")


def train_speed(history: Path) -> float:
    """Median training throughput (clips/s) over a training run's epochs, from its history CSV (one row per epoch,
    column clips_per_s); the median so that an epoch slowed by another job on the machine does not move it."""
    try:
        return round(float(pd.read_csv(history)["clips_per_s"].median()), 2)
    except (OSError, KeyError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        sys.exit(f"error: {history}: no training history with a clips_per_s column ({type(err).__name__}); "
                 "run the training stages first (dvc repro)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--frames", required=True)
    ap.add_argument("--clips", required=True, help="dark clips")
    ap.add_argument("--enhanced-clips", required=True, help="the same clips enhanced (the teacher's input)")
    ap.add_argument("--models", required=True, help="folder with teacher.pt, baseline.pt, student.pt")
    ap.add_argument("--zerodce", default="models/zerodce.pt", help="Zero-DCE weights (read only for method zerodce)")
    ap.add_argument("--history", required=True,
                    help="folder with teacher.csv, baseline.csv, student.csv (the training stages' per-epoch history)")
    ap.add_argument("--metrics", required=True)
    ap.add_argument("--cost", required=True)
    ap.add_argument("--confusion", required=True)
    ap.add_argument("--predictions", required=True,
                    help="per-clip predictions CSV (the CI gate's paired test compares it with the committed one)")
    args = ap.parse_args()
    params = params_or_exit()
    speed = {name: train_speed(Path(args.history) / f"{name}.csv") for name in ("teacher", "baseline", "student")}
    seed_everything(params.seed, params.train.threads)
    index, classes = read_index(args.frames)
    # view 0 = dark clip, view 1 = its enhanced version; the teacher is scored as deployed: enhancement + teacher
    test = ClipDataset(index, [Path(args.clips), Path(args.enhanced_clips)], "test")
    metrics, cost, models, logits = {}, {}, {}, {}
    for name, view in (("teacher", 1), ("baseline", 0), ("student", 0)):
        model, _ = load_model(Path(args.models) / f"{name}.pt")
        models[name] = model
        metrics[name], logits[name] = evaluate_split(model, test, view)
        preds = logits[name].argmax(1)
        metrics[name]["per_class"] = per_class_accuracy(preds, test.labels, classes)
        cost[name] = inference_cost(model, test.views[view][0], params.evaluate.latency_clips)
        cost[name]["train_clips_per_s"] = speed[name]
        if name == "student":
            pd.DataFrame({"actual": [classes[i] for i in test.labels], "predicted": [classes[i] for i in preds]}
                         ).to_csv(args.confusion, index=False)
    # the alternative DL-KDD avoids: enhancement + a bright-stream and a dark-stream backbone at inference
    metrics["two_stream"], fused = evaluate_two_stream(logits["teacher"], logits["baseline"], test)
    metrics["two_stream"]["per_class"] = per_class_accuracy(fused.argmax(1), test.labels, classes)
    zerodce = load_zerodce_or_exit(args.zerodce) if params.enhance.method == "zerodce" else None
    cost["two_stream"] = two_stream_cost(lambda f: enhance_clip(f, params.enhance, zerodce), models["teacher"],
                                         models["baseline"], test.views[0][0], params.evaluate.latency_clips)
    cost["student_vs_two_stream_latency"] = round(cost["student"]["latency_ms"] / cost["two_stream"]["latency_ms"], 3)
    # what KD costs at training time over the same network trained without it (> 1 with the online teacher): the
    # student's epoch time / the baseline's = the baseline's throughput / the student's (same train clips per epoch)
    cost["student_vs_baseline_epoch_time"] = round(cost["baseline"]["train_clips_per_s"]
                                                   / cost["student"]["train_clips_per_s"], 3)
    preds = {name: lg.argmax(1) for name, lg in logits.items()} | {"two_stream": fused.argmax(1)}
    with atomic_path(args.predictions) as tmp:
        predictions_table(test, preds, classes).to_csv(tmp, index=False)
    write_json(metrics, args.metrics)
    write_json(cost, args.cost)
    for name, m in metrics.items():
        print(f"{name:9s} top-1 {m['top1']:.3f}  top-5 {m['top5']:.3f}")


if __name__ == "__main__":
    main()

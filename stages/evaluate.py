"""Stage evaluate: teacher, baseline, student and the two-stream alternative on the test split; metrics, cost."""
import argparse
import json
from pathlib import Path

import pandas as pd
from _common import load_zerodce_or_exit, params_or_exit

from dlkdd.atomic import atomic_path, write_text_atomic
from dlkdd.data.dataset import ClipDataset
from dlkdd.data.frames import read_index
from dlkdd.distill.checkpoint import load_model
from dlkdd.distill.evaluation import (evaluate_split, evaluate_two_stream, inference_cost, per_class_accuracy,
                                     predictions_table, two_stream_cost)
from dlkdd.enhance import enhance_clip
from dlkdd.distill.trainer import seed_everything


def write_json(obj: dict, path: str) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--frames", required=True)
    ap.add_argument("--clips", required=True, help="dark clips")
    ap.add_argument("--enhanced-clips", required=True, help="the same clips enhanced (the teacher's input)")
    ap.add_argument("--models", required=True, help="folder with teacher.pt, baseline.pt, student.pt")
    ap.add_argument("--zerodce", default="models/zerodce.pt", help="Zero-DCE weights (read only for method zerodce)")
    ap.add_argument("--metrics", required=True)
    ap.add_argument("--cost", required=True)
    ap.add_argument("--confusion", required=True)
    ap.add_argument("--predictions", required=True,
                    help="per-clip predictions CSV (the CI gate's paired test compares it with the committed one)")
    args = ap.parse_args()
    params = params_or_exit()
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
    preds = {name: lg.argmax(1) for name, lg in logits.items()} | {"two_stream": fused.argmax(1)}
    with atomic_path(args.predictions) as tmp:
        predictions_table(test, preds, classes).to_csv(tmp, index=False)
    write_json(metrics, args.metrics)
    write_json(cost, args.cost)
    for name, m in metrics.items():
        print(f"{name:9s} top-1 {m['top1']:.3f}  top-5 {m['top5']:.3f}")


if __name__ == "__main__":
    main()

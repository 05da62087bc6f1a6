"""The evaluate stage writes per-clip test predictions that agree with its metrics (the CI gate's paired input)."""
import json
import subprocess
import sys

import pandas as pd
import pytest
import torch
import yaml

from dlkdd.checkpoint import save_model
from dlkdd.distill.timings import write_train_timing
from dlkdd.models.build import build_model
from dlkdd.regression import PREDICTION_KEYS, PREDICTION_MODELS, compare_prediction_files

from conftest import ROOT

CLASSES = ["Drink", "Jump", "Sit"]


def test_evaluate_writes_predictions_matching_its_metrics(tiny_frames, tmp_path):
    for i, name in enumerate(("teacher", "baseline", "student")):
        torch.manual_seed(i)  # three different untrained nets: their predictions differ
        save_model(tmp_path / "models" / f"{name}.pt", build_model("tiny3d", 3, width=4), "tiny3d", CLASSES, 4, 32,
                   width=4)
    # what the training runs measured (stages/_common.train_and_save); a slow outlier epoch in each
    speeds = {"teacher": [100.0, 120.0, 5.0], "baseline": [300.0, 280.0, 310.0], "student": [150.0, 9.0, 140.0, 160.0]}
    for name, s in speeds.items():
        write_train_timing(tmp_path / "models" / f"{name}.pt", [{"epoch": e, "clips_per_s": v} for e, v in
                                                                 enumerate(s, 1)])
    # the teacher's weights then came from elsewhere (a cache): its leftover measurement is not theirs
    torch.manual_seed(99)
    save_model(tmp_path / "models/teacher.pt", build_model("tiny3d", 3, width=4), "tiny3d", CLASSES, 4, 32, width=4)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["evaluate"]["latency_clips"] = 1
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    r = subprocess.run([sys.executable, str(ROOT / "stages/evaluate.py"), "--frames", str(tiny_frames), "--clips",
                        str(tiny_frames / "clips"), "--enhanced-clips", str(tiny_frames / "enhanced/clips"),
                        "--models", "models", "--metrics", "evaluate.json", "--details", "details.json",
                        "--cost", "cost.json", "--timings", "timings.json", "--confusion", "confusion.csv",
                        "--predictions", "metrics/predictions.csv"], cwd=tmp_path,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    pred = pd.read_csv(tmp_path / "metrics/predictions.csv")
    cost = json.loads((tmp_path / "cost.json").read_text())
    assert all(set(c) == {"params", "gflops"} for c in cost.values())  # reproducible numbers only
    timings = json.loads((tmp_path / "timings.json").read_text())
    # median clips/s over epochs (robust to the slow epoch), and KD's epoch time over no-KD's = 300 / 145
    assert [timings[m].get("train_clips_per_s") for m in speeds] == [None, 300.0, 145.0]
    assert timings["student_vs_baseline_epoch_time"] == pytest.approx(300 / 145, abs=1e-3)
    assert all(timings[m]["latency_ms"] > 0 for m in ("teacher", "baseline", "student", "two_stream"))
    metrics = json.loads((tmp_path / "evaluate.json").read_text())
    details = json.loads((tmp_path / "details.json").read_text())
    # the DVC metric: top-1/5 of the three models DESIGN names (the headline); the details: all four, two-stream too
    assert list(metrics) == ["student", "teacher", "baseline"] and set(details) == {*metrics, "two_stream"}
    assert all(m == {k: details[name][k] for k in ("top1", "top5")} for name, m in metrics.items())
    index = pd.read_csv(tiny_frames / "index.csv")
    test = index[index["split"] == "test"]
    assert all(details[m]["clips"] == len(test) and set(details[m]["per_class"]) == set(CLASSES) for m in details)
    assert list(pred.columns) == PREDICTION_KEYS + PREDICTION_MODELS
    assert sorted(pred["clip_id"].astype(str)) == sorted(test["clip_id"].astype(str)) == list(pred["clip_id"])
    assert set(pred["label"]) <= set(CLASSES)
    for m in PREDICTION_MODELS:  # each column is exactly what the metric counted
        assert (pred[m] == pred["label"]).mean() == pytest.approx(details[m]["top1"], abs=1e-6)  # float32
    # the file pairs with itself: nothing lost, nothing gained
    ok, _, res = compare_prediction_files(tmp_path / "metrics/predictions.csv", tmp_path / "metrics/predictions.csv",
                                          0.05)
    assert ok and res.worse == res.better == 0 and res.n == len(test)

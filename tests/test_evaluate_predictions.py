"""The evaluate stage writes per-clip test predictions that agree with its metrics (the CI gate's paired input)."""
import json
import subprocess
import sys

import pandas as pd
import pytest
import torch
import yaml

from dlkdd.distill.checkpoint import save_model
from dlkdd.models.build import build_model
from dlkdd.regression import PREDICTION_KEYS, PREDICTION_MODELS, compare_prediction_files

from conftest import ROOT

CLASSES = ["Drink", "Jump", "Sit"]


def test_evaluate_writes_predictions_matching_its_metrics(tiny_frames, tmp_path):
    for i, name in enumerate(("teacher", "baseline", "student")):
        torch.manual_seed(i)  # three different untrained nets: their predictions differ
        save_model(tmp_path / "models" / f"{name}.pt", build_model("tiny3d", 3, width=4), "tiny3d", CLASSES, 4, 32,
                   width=4)
    # the training stages' histories (format of stages/_common.write_history); a slow outlier epoch in each
    speeds = {"teacher": [100.0, 120.0, 5.0], "baseline": [300.0, 280.0, 310.0], "student": [150.0, 9.0, 140.0, 160.0]}
    for name, s in speeds.items():
        (tmp_path / "plots/train").mkdir(parents=True, exist_ok=True)
        pd.DataFrame({"epoch": range(1, len(s) + 1), "val_top1": 0.5, "clips_per_s": s}).to_csv(
            tmp_path / f"plots/train/{name}.csv", index=False)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["evaluate"]["latency_clips"] = 1
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    r = subprocess.run([sys.executable, str(ROOT / "stages/evaluate.py"), "--frames", str(tiny_frames), "--clips",
                        str(tiny_frames / "clips"), "--enhanced-clips", str(tiny_frames / "enhanced/clips"),
                        "--models", "models", "--history", "plots/train", "--metrics", "evaluate.json",
                        "--cost", "cost.json", "--confusion", "confusion.csv",
                        "--predictions", "metrics/predictions.csv"], cwd=tmp_path,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    pred = pd.read_csv(tmp_path / "metrics/predictions.csv")
    cost = json.loads((tmp_path / "cost.json").read_text())
    # median clips/s over epochs (robust to the slow epoch), and KD's epoch time over no-KD's = 300 / 145
    assert [cost[m]["train_clips_per_s"] for m in speeds] == [100.0, 300.0, 145.0]
    assert cost["student_vs_baseline_epoch_time"] == pytest.approx(300 / 145, abs=1e-3)
    metrics = json.loads((tmp_path / "evaluate.json").read_text())
    index = pd.read_csv(tiny_frames / "index.csv")
    test = index[index["split"] == "test"]
    assert list(pred.columns) == PREDICTION_KEYS + PREDICTION_MODELS
    assert sorted(pred["clip_id"].astype(str)) == sorted(test["clip_id"].astype(str)) == list(pred["clip_id"])
    assert set(pred["label"]) <= set(CLASSES)
    for m in PREDICTION_MODELS:  # each column is exactly what the metric counted
        assert (pred[m] == pred["label"]).mean() == pytest.approx(metrics[m]["top1"], abs=1e-6)  # float32
    # the file pairs with itself: nothing lost, nothing gained
    ok, _, res = compare_prediction_files(tmp_path / "metrics/predictions.csv", tmp_path / "metrics/predictions.csv",
                                          0.05)
    assert ok and res.worse == res.better == 0 and res.n == len(test)


def test_evaluate_without_training_history_says_so_in_one_line(tiny_frames, tmp_path):
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    r = subprocess.run([sys.executable, str(ROOT / "stages/evaluate.py"), "--frames", str(tiny_frames), "--clips",
                        str(tiny_frames / "clips"), "--enhanced-clips", str(tiny_frames / "enhanced/clips"),
                        "--models", "models", "--history", "plots/train", "--metrics", "evaluate.json", "--cost",
                        "cost.json", "--confusion", "confusion.csv", "--predictions", "predictions.csv"],
                       cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode != 0 and r.stderr.strip().count("\n") == 0, r.stderr
    assert "plots/train/teacher.csv" in r.stderr and "dvc repro" in r.stderr
    assert not (tmp_path / "cost.json").exists()

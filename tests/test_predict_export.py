"""`dlkdd predict` / `dlkdd export` as a user runs them (subprocess), on real generated dark clips; cost metrics."""
import json
import os
import subprocess
import sys

import pandas as pd
import pytest
import torch

from conftest import ROOT
from dlkdd.distill.checkpoint import save_model
from dlkdd.models.build import build_model

CLASSES = ["Drink", "Jump", "Sit"]


def dlkdd(*args, cwd):
    """The real command in a fresh interpreter (what a user types)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run([sys.executable, "-m", "dlkdd.cli", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def dlkdd_inproc(capsys, *args):
    """The same entry point in this process (saves a torch import per call); returns (rc, stdout, stderr)."""
    from dlkdd.cli import main

    rc = main([str(a) for a in args])
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.fixture(scope="module")
def student(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    save_model(d / "student.pt", build_model("tiny3d", 3), "tiny3d", CLASSES, num_frames=4, size=32)
    return d / "student.pt"


@pytest.fixture(scope="module")
def dark_clip(tiny_dataset):
    m = pd.read_csv(tiny_dataset)
    return tiny_dataset.parent / m["path"].iloc[0]


def test_export_then_predict_json_from_checkpoint_and_torchscript_agree(student, dark_clip, tmp_path, capsys):
    exported = tmp_path / "student.torchscript.pt"
    rc, _, err = dlkdd_inproc(capsys, "export", "--model", student, "--out", exported)
    assert rc == 0, err
    runs = {}
    for name, model in (("checkpoint", student), ("torchscript", exported)):
        if name == "torchscript":  # a fresh interpreter that never built the model class loads the export alone
            proc = dlkdd("predict", dark_clip, "--model", model, "--topk", "2", "--json", cwd=tmp_path)
            rc, stdout, err = proc.returncode, proc.stdout, proc.stderr
        else:
            rc, stdout, err = dlkdd_inproc(capsys, "predict", dark_clip, "--model", model, "--topk", "2", "--json")
        assert rc == 0, err
        out = json.loads(stdout)
        assert set(out["probs"]) == set(CLASSES)
        assert sum(out["probs"].values()) == pytest.approx(1.0, abs=1e-5)
        assert len(out["top"]) == 2 and out["top"][0]["prob"] >= out["top"][1]["prob"]
        runs[name] = out["probs"]
    for c in CLASSES:
        assert runs["checkpoint"][c] == pytest.approx(runs["torchscript"][c], abs=1e-5)


@pytest.mark.parametrize("what", ["clip", "model", "missing"])
def test_corrupt_or_missing_clip_or_model_is_one_line_and_nonzero(student, dark_clip, tmp_path, capsys, what):
    bad = tmp_path / {"clip": "bad.avi", "model": "bad.pt", "missing": "absent.pt"}[what]
    if what != "missing":
        bad.write_bytes(b"\x00garbage" * 100)
    args = [bad, "--model", student] if what == "clip" else [dark_clip, "--model", bad]
    rc, stdout, stderr = dlkdd_inproc(capsys, "predict", *args, "--json")
    assert rc != 0
    assert stdout == ""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and bad.name in lines[0], stderr


def test_cost_counts_flops_and_two_stream_costs_more_than_the_student():
    from dlkdd.config import EnhanceConfig
    from dlkdd.distill.evaluation import gflops, inference_cost, per_class_accuracy, two_stream_cost
    from dlkdd.enhance import enhance_clip

    model = build_model("tiny3d", 3)
    clip = torch.randint(0, 40, (3, 4, 32, 32), dtype=torch.uint8)
    conv1 = model.backbone.features[0][0]  # (1, 3, 3) conv, stride 2 → 4 x 16 x 16 outputs per channel
    expected_conv1 = 2 * conv1.weight.numel() * 4 * 16 * 16 / 1e9
    assert gflops(model, clip) > expected_conv1
    one = inference_cost(model, clip, repeats=3)
    two = two_stream_cost(lambda f: enhance_clip(f, EnhanceConfig()), model, build_model("tiny3d", 3), clip, 3)
    assert two["gflops"] == pytest.approx(2 * one["gflops"], rel=1e-3)
    assert two["params"] == 2 * one["params"] and two["latency_ms"] > 0
    acc = per_class_accuracy(torch.tensor([0, 1, 1, 2]), torch.tensor([0, 1, 2, 2]), ["a", "b", "c", "d"])
    assert acc == {"a": 1.0, "b": 1.0, "c": 0.5}

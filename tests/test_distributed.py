"""`torchrun --nproc_per_node=2` (gloo on CPU) runs the real train stage and writes the single-process artifacts."""
import os
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from conftest import ROOT
from dlkdd.checkpoint import load_model

pytestmark = pytest.mark.e2e

PARAMS = {"train": {"epochs": 2, "batch_size": 2, "threads": 1, "resume_dir": ""}}


def _stage(tiny_frames, tmp_path, launcher):
    tmp_path.mkdir()
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    cmd = [*launcher, str(ROOT / "stages" / "train.py"), "--role", "baseline", "--frames", str(tiny_frames),
           "--clips", str(tiny_frames / "clips"), "--out", "models/baseline.pt", "--history", "plots/baseline.csv"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc, pd.read_csv(tmp_path / "plots" / "baseline.csv")


def test_torchrun_two_gloo_ranks_train_and_match_the_metrics_format(tiny_frames, tmp_path):
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    proc, ddp = _stage(tiny_frames, tmp_path / "ddp", torchrun)
    _, single = _stage(tiny_frames, tmp_path / "one", [sys.executable])
    assert list(ddp.columns) == list(single.columns)
    assert list(ddp.columns[:4]) == ["epoch", "train_loss", "train_acc", "val_top1"]
    assert ddp["epoch"].tolist() == [1, 2]
    assert ddp["train_acc"].between(0, 1).all() and ddp["val_top1"].between(0, 1).all()
    assert proc.stdout.count("saved models/baseline.pt") == 1, "only rank 0 may write artifacts"
    assert "(2 processes)" in proc.stdout, "the run did not join a 2-rank process group"
    model, ckpt = load_model(tmp_path / "ddp" / "models" / "baseline.pt")
    assert ckpt["classes"] == ["Drink", "Jump", "Sit"] and ckpt["arch"] == "tiny3d"

"""The real pipeline: `dvc repro` and `dvc exp run -S kd.temperature=2` in a temp git + DVC repo, tiny config."""
import json
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import copy_repo
from conftest import run_ok as run

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def repo(tmp_path_factory, prod_template) -> Path:
    """A git + DVC repo holding this project's pipeline with a tiny params.yaml after `dvc repro`: a copy of the
    session's tiny production repo (one `dvc repro` for every module that needs one)."""
    return copy_repo(prod_template, tmp_path_factory.mktemp("repo") / "repo", tmp_path_factory.mktemp("remote"))


def test_repro_writes_metrics_contract(repo):
    metrics = json.loads((repo / "metrics/evaluate.json").read_text())
    for model in ("teacher", "baseline", "student", "two_stream"):
        for key in ("top1", "top5", "video_top1"):
            assert 0.0 <= metrics[model][key] <= 1.0
        assert metrics[model]["clips"] == 6
    shown = json.loads(run([sys.executable, "-m", "dvc", "metrics", "show", "--json"], repo))
    data = shown[""]["data"]["metrics/evaluate.json"]["data"]
    assert set(data) >= {"teacher", "baseline", "student"} and "top1" in data["student"]
    for name in ("teacher", "baseline", "student"):
        assert (repo / f"models/{name}.pt").is_file()
        assert (repo / f"plots/train/{name}.csv").read_text().startswith("epoch,")
    assert (repo / "plots/confusion_student.csv").read_text().startswith("actual,predicted")
    assert (repo / "data/teacher_logits.pt").is_file() and (repo / "models/student.onnx").is_file()
    cost = json.loads((repo / "metrics/cost.json").read_text())
    assert cost["two_stream"]["gflops"] > cost["student"]["gflops"] > 0
    assert set(metrics["student"]["per_class"]) <= {"Drink", "Jump", "Sit"}


def test_repro_is_reproducible(repo):
    before = (repo / "metrics/evaluate.json").read_text()
    run([sys.executable, "-m", "dvc", "repro", "-f", "train_teacher", "train_baseline", "train_student", "evaluate"],
        repo)
    assert (repo / "metrics/evaluate.json").read_text() == before
    run(["git", "checkout", "--", "."], repo)


def test_exp_run_kd_temperature_retrains_only_student(repo):
    assert yaml.safe_load((repo / "params.yaml").read_text())["kd"]["temperature"] != 2.0  # -S ... is a change
    out = run([sys.executable, "-m", "dvc", "exp", "run", "-S", "kd.temperature=2"], repo)
    ran = {line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage")}
    # the teacher and its cached logits (teacher_logits stage) do not depend on kd.*: never re-run
    assert ran == {"train_student", "export", "evaluate"}, out
    ckpt = torch.load(repo / "models/student.pt", weights_only=True)
    assert ckpt["kd"]["temperature"] == 2.0 and isinstance(ckpt["kd"]["temperature"], float)
    shown = json.loads(run([sys.executable, "-m", "dvc", "exp", "show", "--json"], repo))
    temps = []
    for rev in shown:
        for exp in (rev.get("experiments") or []):
            for r in exp.get("revs", []):
                temps.append(r["data"]["params"]["params.yaml"]["data"]["kd"]["temperature"])
    assert 2 in temps, json.dumps(shown)[:2000]


def test_stages_import_their_own_workspace_library(repo):
    # `dvc exp run --queue/--temp` runs stages in a copy of the repo; they must use that copy's src/, not the
    # editable install's, or queued experiments would run whatever the main checkout holds at the time
    out = run([sys.executable, "-c", "import sys; sys.path.insert(0, 'stages'); import _common, dlkdd; "
               "print(dlkdd.__file__)"], repo)
    assert Path(out.strip()).resolve().is_relative_to((repo / "src").resolve()), out


def test_queued_experiment_with_zerodce_and_other_sizes(repo):
    run(["git", "checkout", "--", "."], repo)
    sets = ["enhance.method=zerodce", "enhance.zerodce.epochs=1", "enhance.zerodce.batch_size=8",
            "enhance.zerodce.crop=16", "teacher.width=12", "student.width=8"]
    run([sys.executable, "-m", "dvc", "exp", "run", "--queue", "-n", "zd", *[a for s in sets for a in ("-S", s)]],
        repo)
    run([sys.executable, "-m", "dvc", "exp", "run", "--run-all", "--jobs", "1"], repo)
    shown = json.loads(run([sys.executable, "-m", "dvc", "exp", "show", "--json"], repo))
    exps = [r for rev in shown for e in (rev.get("experiments") or []) for r in e.get("revs", [])
            if r.get("name") == "zd"]
    assert exps, json.dumps(shown)[:2000]
    data = exps[0]["data"]
    assert data["params"]["params.yaml"]["data"]["enhance"]["method"] == "zerodce"
    metrics = data["metrics"]["metrics/evaluate.json"]["data"]
    assert 0.0 <= metrics["two_stream"]["top1"] <= 1.0 and metrics["student"]["clips"] == 6

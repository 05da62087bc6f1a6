"""The real pipeline: `dvc repro` and `dvc exp run -S kd.temperature=4` in a temp git + DVC repo, tiny config."""
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import TINY_PIPELINE, copy_pipeline, merge_dicts, run_ok, tool_env

ROOT = Path(__file__).resolve().parents[1]
TINY = merge_dicts(TINY_PIPELINE, {"kd": {"temperature": 2.0}})  # so that -S kd.temperature=4 is a change


_merge = merge_dicts  # other test modules import it from here


run = run_ok  # other test modules import it from here


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """A fresh git + DVC repo holding this project's pipeline with a tiny params.yaml, after `dvc repro`."""
    d = copy_pipeline(tmp_path_factory.mktemp("repo"), TINY)
    run(["git", "init", "-q"], d)
    run([sys.executable, "-m", "dvc", "init", "-q"], d)
    run([sys.executable, "-m", "dvc", "config", "core.analytics", "false"], d)
    run([sys.executable, "-m", "dvc", "repro"], d)
    run(["git", "add", "-A"], d)
    run(["git", "commit", "-qm", "tiny pipeline"], d)
    return d


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


def _ran(out: str) -> set[str]:
    return {line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage")}


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("bad, line", [({"kd": {"temprature": 4.0}}, "unknown key 'kd.temprature'"),
                                       ({"kd": {"alpha": float("nan")}}, "kd.alpha=nan is not a finite number")],
                         ids=["typo", "nan"])
def test_bad_params_stop_repro_before_any_artifact_is_deleted(repo, bad, line):
    """DVC deletes a stage's outs before running it: a kd typo or NaN that only train_student noticed cost
    models/student.pt and its curve. The check_params stage runs first (every stage depends on its stamp) and stops
    `dvc repro` there; with params.yaml fixed, nothing retrains."""
    kept = ["models/student.pt", "plots/train/student.csv", "models/teacher.pt", "models/baseline.pt",
            "data/teacher_logits.pt", "models/student.onnx", "metrics/evaluate.json"]
    before = {p: _md5(repo / p) for p in kept}
    good = (repo / "params.yaml").read_text()
    (repo / "params.yaml").write_text(yaml.safe_dump(_merge(yaml.safe_load(good), bad), sort_keys=False))
    try:
        r = subprocess.run([sys.executable, "-m", "dvc", "repro"], cwd=repo, env=tool_env(), capture_output=True,
                           text=True)
    finally:
        (repo / "params.yaml").write_text(good)
    out = r.stdout + r.stderr
    assert r.returncode != 0 and _ran(out) == {"check_params"}, out
    errors = [ln for ln in out.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith(f"error: params.yaml: {line}"), out
    assert {p: _md5(repo / p) for p in kept if (repo / p).exists()} == before
    assert _ran(run([sys.executable, "-m", "dvc", "repro"], repo)) <= {"check_params"}
    assert {p: _md5(repo / p) for p in kept} == before and (repo / "data/params.ok").is_file()


def test_exp_run_kd_temperature_retrains_only_student(repo):
    out = run([sys.executable, "-m", "dvc", "exp", "run", "-S", "kd.temperature=4"], repo)
    # the teacher and its cached logits (teacher_logits stage) do not depend on kd.*: never re-run; check_params
    # re-checks the edited params.yaml (its stamp's bytes do not change, so it re-runs nothing downstream)
    assert _ran(out) - {"check_params"} == {"train_student", "export", "evaluate"}, out
    ckpt = torch.load(repo / "models/student.pt", weights_only=True)
    assert ckpt["kd"]["temperature"] == 4.0 and isinstance(ckpt["kd"]["temperature"], float)
    shown = json.loads(run([sys.executable, "-m", "dvc", "exp", "show", "--json"], repo))
    temps = []
    for rev in shown:
        for exp in (rev.get("experiments") or []):
            for r in exp.get("revs", []):
                temps.append(r["data"]["params"]["params.yaml"]["data"]["kd"]["temperature"])
    assert 4 in temps, json.dumps(shown)[:2000]


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

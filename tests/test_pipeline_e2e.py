"""The real pipeline: `dvc repro` and `dvc exp run -S kd.temperature=2` in a temp git + DVC repo, tiny config."""
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from conftest import TINY_PROD, copy_pipeline, copy_repo, merge_dicts, tool_env
from conftest import run_ok as run

pytestmark = pytest.mark.e2e


def fresh_repro(d: Path) -> Path:
    """``d`` made a fresh git + DVC repo holding this project's pipeline with the tiny production params, after
    `dvc repro`, committed: built as the session's ``prod_template`` is, so their locks compare."""
    copy_pipeline(d, TINY_PROD)
    run(["git", "init", "-q", "-b", "main"], d)
    run([sys.executable, "-m", "dvc", "init", "-q"], d)
    run([sys.executable, "-m", "dvc", "config", "core.analytics", "false"], d)
    run([sys.executable, "-m", "dvc", "repro"], d)
    run(["git", "add", "-A"], d)
    run(["git", "commit", "-qm", "tiny pipeline"], d)
    return d


@pytest.fixture(scope="module")
def repo(tmp_path_factory, prod_template) -> Path:
    """A git + DVC repo holding this project's pipeline with a tiny params.yaml after `dvc repro`: a copy of the
    session's tiny production repo (one `dvc repro` for every module and xdist worker that needs one)."""
    return copy_repo(prod_template, tmp_path_factory.mktemp("repo") / "repo", tmp_path_factory.mktemp("remote"))


def test_repro_writes_metrics_contract(repo):
    metrics = json.loads((repo / "metrics/evaluate.json").read_text())
    details = json.loads((repo / "reports/evaluate/details.json").read_text())
    # the DVC metric is the headline: top-1/5 of the three models DESIGN names, nothing else
    assert set(metrics) == {"student", "teacher", "baseline"} and list(metrics)[0] == "student"
    for model in ("teacher", "baseline", "student", "two_stream"):
        for key in ("top1", "top5"):
            assert 0.0 <= details[model][key] <= 1.0
            assert model == "two_stream" or metrics[model] == {k: details[model][k] for k in ("top1", "top5")}
        assert 0.0 <= details[model]["video_top1"] <= 1.0 and details[model]["clips"] == 6
    shown = json.loads(run([sys.executable, "-m", "dvc", "metrics", "show", "--json"], repo))
    assert list(shown[""]["data"]) == ["metrics/evaluate.json"]
    leaves = _flat(shown[""]["data"]["metrics/evaluate.json"]["data"])
    assert sorted(leaves) == [f"{m}.{k}" for m in ("baseline", "student", "teacher") for k in ("top1", "top5")]
    assert all(isinstance(v, float) for v in leaves.values()), leaves
    # the table a person reads fits a 120-column terminal (was 144 columns, then 35), accuracy only
    table = run([sys.executable, "-m", "dvc", "metrics", "show"], repo).splitlines()
    assert table[0].split() == ["Path", *sorted(leaves)] and max(map(len, table)) <= 120, "\n".join(table)
    # every other number is one command away (README): the gate's counts, cost and timings from git
    every = json.loads(run([sys.executable, "-m", "dvc", "metrics", "show", "--json", "metrics/cost.json",
                            "metrics/timings.json", "metrics/validate.json", "reports/enhance/summary.json"], repo))
    assert every[""]["data"]["metrics/validate.json"]["data"]["passed"] is True
    assert every[""]["data"]["reports/enhance/summary.json"]["data"]["luma_after"] > 0
    # `make run` ends with `dlkdd summary`, which reads the metric
    shown = run([sys.executable, "-c", "import sys; from dlkdd.cli import main; sys.argv = ['dlkdd', 'summary']; "
                 "sys.exit(main())"], repo)
    assert "(dark test split, 6 clips)" in shown and all(f"\n{m} " in shown for m in details), shown
    for name in ("teacher", "baseline", "student"):
        assert (repo / f"models/{name}.pt").is_file()
        assert (repo / f"plots/train/{name}.csv").read_text().startswith("epoch,")
    assert (repo / "plots/confusion_student.csv").read_text().startswith("actual,predicted")
    assert (repo / "data/teacher_logits.pt").is_file() and (repo / "models/student.onnx").is_file()
    cost = json.loads((repo / "metrics/cost.json").read_text())
    assert cost["two_stream"]["gflops"] > cost["student"]["gflops"] > 0
    assert set(details["student"]["per_class"]) <= {"Drink", "Jump", "Sit"}


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out |= _flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v}
    return out


def _lock_md5s(repo: Path) -> dict[str, str]:
    """{path: md5} of every dep and out in the committed dvc.lock."""
    import yaml

    lock = yaml.safe_load(run(["git", "show", "HEAD:dvc.lock"], repo))
    return {f"{stage}:{kind}:{e['path']}": e.get("md5") for stage, s in lock["stages"].items()
            for kind in ("deps", "outs") for e in s.get(kind, [])}


def test_fresh_repro_differs_only_in_the_timings_file(repo, tmp_path_factory):
    # two fresh clones' `dvc repro` on the same CPU: every tracked output byte-identical (models, curves, reports,
    # metrics) but the one timings metric, so the committed lock checks out from either run's cache. This is also
    # the reproducibility test: the second run retrains every model, from nothing, to the same bytes.
    again = _lock_md5s(fresh_repro(tmp_path_factory.mktemp("again")))
    first = _lock_md5s(repo)
    assert set(again) == set(first)
    differ = sorted(k for k in first if first[k] != again[k])
    assert differ == ["evaluate:outs:metrics/timings.json"], differ
    timings = json.loads((repo / "metrics/timings.json").read_text())
    assert timings["student"]["latency_ms"] > 0 and timings["student"]["train_clips_per_s"] > 0
    assert timings["student_vs_baseline_epoch_time"] > 0 and "clips_per_s" not in (repo / "plots/train/student.csv"
                                                                                     ).read_text()
    cost = json.loads((repo / "metrics/cost.json").read_text())
    assert all(set(c) == {"params", "gflops"} for c in cost.values()), cost


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
    (repo / "params.yaml").write_text(yaml.safe_dump(merge_dicts(yaml.safe_load(good), bad), sort_keys=False))
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
    assert yaml.safe_load((repo / "params.yaml").read_text())["kd"]["temperature"] != 2.0  # -S ... is a change
    out = run([sys.executable, "-m", "dvc", "exp", "run", "-S", "kd.temperature=2"], repo)
    # the teacher and its cached logits (teacher_logits stage) do not depend on kd.*: never re-run; check_params
    # re-checks the edited params.yaml (its stamp's bytes do not change, so it re-runs nothing downstream)
    assert _ran(out) - {"check_params"} == {"train_student", "export", "evaluate"}, out
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
    assert 0.0 <= data["metrics"]["metrics/evaluate.json"]["data"]["student"]["top1"] <= 1.0
    details = json.loads(run(["git", "show", f"{exps[0]['rev']}:reports/evaluate/details.json"], repo))
    assert 0.0 <= details["two_stream"]["top1"] <= 1.0 and details["student"]["clips"] == 6  # in the run's commit


def test_exp_run_pool_size_reruns_only_what_reads_the_pool(repo):
    """`dvc exp run -S generate.unlabeled_per_class=2`: the pool is rendered, cached, gated, enhanced, given teacher
    targets and learned from; the labelled cache stays byte for byte, so the teacher and the baseline never re-run."""
    run(["git", "checkout", "--", "."], repo)
    run([sys.executable, "-m", "dvc", "checkout", "-f"], repo)
    def outs() -> dict[str, str]:
        lock = yaml.safe_load((repo / "dvc.lock").read_text())
        return {e["path"]: e.get("md5") for st in lock["stages"].values() for e in st.get("outs", [])}

    before = outs()
    out = run([sys.executable, "-m", "dvc", "exp", "run", "-S", "generate.unlabeled_per_class=2"], repo)
    assert _ran(out) - {"check_params"} == {"generate", "frames", "validate", "enhance", "teacher_logits",
                                            "train_student", "export", "evaluate"}, out
    after = outs()
    for path in ("data/frames", "data/enhanced", "models/teacher.pt", "models/baseline.pt"):
        assert after[path] == before[path], path
    assert after["data/pool"] != before["data/pool"]
    index = pd.read_csv(repo / "data/pool/index.csv", dtype={"clip_id": str})
    assert len(index) == 6 and set(index["label"]) == {-1}
    cache = torch.load(repo / "data/teacher_logits.pt", weights_only=True)
    assert set(index["clip_id"]) <= set(cache["clip_ids"])  # every pool clip has its teacher rows
    assert torch.load(repo / "models/student.pt", weights_only=True)["pool_clips"] == 6
    report = json.loads((repo / "reports/pool.json").read_text())
    assert report["clips"] == 6 and 0.0 <= report["pseudo_label_top1"] <= 1.0
    assert "pool" in json.loads((repo / "metrics/validate.json").read_text())
    run(["git", "checkout", "--", "."], repo)

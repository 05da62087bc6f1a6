"""The KD study report reads `dvc.api.exp_show` rows: finished study experiments only, the sweeps (one knob off its
default), the levers classified by their params with paired tests against the two-stream model and the baseline, cost
ratios and the issue-15 goal; study/queue.sh skips what already ran (a real tmp DVC repo)."""
import contextlib
import importlib.util
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import tool_env

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("study_report", ROOT / "study/report.py")
report = importlib.util.module_from_spec(spec)
spec.loader.exec_module(report)
LEVERS = report.load_levers()
KEYS = report.study_keys(LEVERS)
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
BASE = report.defaults(PARAMS, KEYS)


def _row(name, seed, student, two_stream=0.9, baseline=0.7, teacher=0.92, state=None, typ="branch_commit",
         latency=(1.5, 6.0), gflops=(0.06, 0.28), speed=(300.0, 150.0), drop=(), **over):
    """One row as dvc.api.exp_show returns it: params.yaml flattened (numbers as floats), then the metrics files."""
    params = {k: report.norm(v) for k, v in report.flatten(PARAMS).items() if not isinstance(v, list)}
    params |= {k.replace("__", "."): report.norm(v) for k, v in over.items()} | {"seed": float(seed)}
    for k in drop:  # a params.yaml of an older commit, before the key existed
        params.pop(k, None)
    metrics = {"teacher.top1": teacher, "baseline.top1": baseline, "student.top1": student,
               "two_stream.top1": two_stream, "student.latency_ms": latency[0], "two_stream.latency_ms": latency[1],
               "student.gflops": gflops[0], "two_stream.gflops": gflops[1],
               "baseline.train_clips_per_s": speed[0], "student.train_clips_per_s": speed[1]}
    if state == "Queued":  # a queued experiment shows its params, no metrics
        metrics = dict.fromkeys(metrics)
    return {"Experiment": name, "rev": "0123abc", "typ": typ, "Created": "11:48 AM", "parent": None, "State": state,
            "Executor": "Dvc-task" if state else None, **metrics, **params}


def test_only_finished_study_experiments_count():
    rows = [
        _row(None, 0, 0.99, typ="baseline"),  # a commit row: its own metrics, no experiment
        _row("s0-base", 0, 0.80),
        _row("s1-base", 1, 0.85, state="Success"),
        _row("s2-base", 2, None, state="Queued"),
        _row("s3-base", 3, 0.10, state="Failed"),  # a failed one may show its base commit's metrics
        _row("s4-base", 4, 0.10, state="Running"),
        _row("s5-base", 5, "!"),  # its metrics file could not be read
        _row("tune-T3", 0, 0.5),  # someone's own experiment, not the study's
        _row("s0-again", 0, 0.10),  # seed 0's base again, older (exp_show lists newest first): counted once
    ]
    df = report.load(rows, KEYS)
    assert sorted(df["name"]) == ["s0-base", "s1-base"]
    assert report.taken(rows) == ["s0-again", "s0-base", "s1-base", "s2-base", "tune-T3"]  # finished or queued


def test_levers_paired_stats_against_two_stream_and_baseline():
    # student − two-stream: +0.01 mean over 3 seeds, sd 0.03 → t = 1/√3; with 2 df, p = 1 − |t|/√(2 + t²) = 1 − 1/√7
    # student − baseline: +0.10, sd 0.05 → t = 2√3, p = 1 − 2√3/√14
    rows = [_row(f"s{s}-dual", s, st, two_stream=ts, baseline=bl, kd__teacher="dual_light")
            for s, st, ts, bl in ((0, 0.80, 0.82, 0.70), (1, 0.85, 0.84, 0.80), (2, 0.90, 0.86, 0.75))]
    table = report.lever_table(report.load(rows, KEYS), LEVERS, BASE)
    r = table.set_index("variant").loc["dual"]
    assert r.n == 3 and r.student_mean == pytest.approx(0.85) and r.student_std == pytest.approx(0.05)
    assert r.vs_two_stream_gap == pytest.approx(0.01)
    assert r.vs_two_stream_t == pytest.approx(1 / math.sqrt(3))
    assert r.vs_two_stream_p == pytest.approx(1 - 1 / math.sqrt(7))
    assert r.vs_baseline_gap == pytest.approx(0.10)
    assert r.vs_baseline_t == pytest.approx(2 * math.sqrt(3))
    assert r.vs_baseline_p == pytest.approx(1 - 2 * math.sqrt(3) / math.sqrt(14))
    md = report.report(report.load(rows, KEYS), BASE, LEVERS)
    assert "| dual | kd.teacher=dual_light | 3 |" in md and "| +0.010 | 0.622 | +0.100 | 0.074 |" in md


def test_a_run_is_classified_by_its_params_not_its_name():
    rows = [
        _row("s0-dual", 0, 0.8),  # named dual, but params.yaml as it is: the base
        _row("s1-x", 1, 0.8, kd__teacher="dual_light", kd__epochs=100),
        _row("s2-x", 2, 0.8, kd__temperature=2, kd__epochs=100),
        _row("s3-x", 3, 0.8, kd__temperature=3.0),  # no variant: in the T sweep only
        _row("s4-x", 4, 0.8, kd__epochs=100, drop=["kd.teacher"]),  # an older params.yaml: kd.teacher = its default
        _row("s5-x", 5, 0.8, enhance__method="gamma"),  # a sweep run, no lever
    ]
    df = report.load(rows, KEYS)
    got = dict(zip(df.name, report.variant_of(df, LEVERS, BASE)))
    assert got == {"s0-dual": "base", "s1-x": "dual-ep100", "s2-x": "T2-ep100", "s3-x": None, "s4-x": "ep100",
                   "s5-x": None}
    assert sorted(report.sweep(df, "T", BASE)["name"]) == ["s0-dual", "s3-x"]  # lever runs are in no sweep
    assert sorted(report.sweep(df, "method", BASE)["name"]) == ["s0-dual", "s5-x"]


def test_goal_needs_the_two_stream_top1_over_5_seeds_at_under_0_3_of_its_cost():
    rows = [_row(f"s{s}-{v}", s, st, two_stream=0.90, **over)
            for s in range(5)
            for v, st, over in (("base", 0.91, {}),  # matches, cost 0.25 / 0.21: goal
                                ("ep100", 0.89, {"kd__epochs": 100}),  # below the two-stream model
                                ("ls", 0.95, {"train__label_smoothing": 0.1, "latency": (2.0, 6.0)}))]  # 0.33×
    # better than all, on 4 seeds only: reported, but neither the goal nor the closest
    rows += [_row(f"s{s}-T8-ep100", s, 0.99, two_stream=0.90, kd__temperature=8.0, kd__epochs=100) for s in range(4)]
    table = report.lever_table(report.load(rows, KEYS), LEVERS, BASE).set_index("variant")
    assert table.goal.to_dict() == {"base": True, "ep100": False, "ls": False, "T8-ep100": False}
    assert table.loc["ls", "latency_ratio"] == pytest.approx(2 / 6)
    assert table.loc["base", "gflops_ratio"] == pytest.approx(0.06 / 0.28)
    # KD's epoch time over no-KD's = 300 / 150 clips/s; 100 student epochs over the baseline's 30
    assert table.loc["ep100", "epoch_time_ratio"] == pytest.approx(2.0)
    assert table.loc["ep100", "train_time_ratio"] == pytest.approx(2.0 * 100 / PARAMS["train"]["epochs"])
    md = report.report(report.load(rows, KEYS), BASE, LEVERS)
    assert "| ✓ |" in md and "variants meeting the goal (≥ 5 seeds): base." in md
    assert "Closest to the two-stream model over 5 seeds: ls (" in md and "Fewer seeds so far: T8-ep100 (4)." in md


def test_sweeps_hold_the_other_knobs_at_their_defaults(tmp_path):
    rows = [_row("s0-clahe", 0, 0.75), _row("s1-clahe", 1, 0.80, baseline=0.72),
            _row("s0-gamma", 0, 0.60, enhance__method="gamma"),
            _row("s0-gamma-T1", 0, 0.20, enhance__method="gamma", kd__temperature=1),  # two knobs off: no sweep
            _row("s0-d1", 0, 0.66, baseline=0.6, generate__seed=1)]
    df = report.load(rows, KEYS)
    md = report.report(df, BASE, LEVERS)
    assert "| gamma | 1 | 0.920 ± 0.000 | 0.700 ± 0.000 | 0.600 ± 0.000 |" in md
    assert f"| {BASE['enhance.method']} (base) | 2 |" in md
    assert "| 1 | 1 | 0.920 ± 0.000 | 0.600 ± 0.000 | 0.660 ± 0.000 |" in md  # data seed 1 is not merged into 0
    # base pooled over datasets: gaps +0.05, +0.08 (data 0) and +0.06 (data 1)
    assert "paired over 3 (dataset, seed) runs: KD − no-KD = +0.063" in md
    report.plot(df, BASE, tmp_path / "p.png", LEVERS)
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"


def test_base_overrides_name_a_knob_or_a_params_key():
    """--base takes the knob names the report's tables use (one map of knob → params keys) or the keys themselves."""
    before = dict(BASE)
    base = report.with_base_overrides(BASE, ["method=gamma", "T=2", "sizes=48/12", "kd.alpha=0.25"])
    assert (base["enhance.method"], base["kd.temperature"], base["kd.alpha"]) == ("gamma", 2.0, 0.25)
    assert (base["teacher.width"], base["student.width"]) == (48.0, 12.0)
    assert report.knob_value("sizes", base) == "48/12" and BASE == before  # the base itself is left as it was
    for bad in ("nope=1", "sizes=48", "T"):
        with pytest.raises(ValueError, match=f"--base {bad}: not KEY=VALUE"):
            report.with_base_overrides(BASE, [bad])


def test_plan_gives_each_variant_its_overrides():
    assert report.plan(["base", "mixup-ep100"], LEVERS) == [
        "base", "mixup-ep100 -S kd.teacher_logits=online -S kd.mixup=0.2 -S kd.epochs=100"]
    with pytest.raises(ValueError, match="unknown variant.*nope"):
        report.plan(["base", "nope"], LEVERS)
    assert list(LEVERS)[:2] == ["base", "dual"] and list(LEVERS)[-1] == "ep300"  # cheapest first, longest last


def _sh(cmd, cwd, env=None):
    # the venv's dvc and python first (tool_env), as `make test` has them, also when pytest is run by its full path
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=tool_env(**(env or {})), shell=True)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


@pytest.mark.e2e  # real `dvc exp run`s (about 80 s)
def test_queue_skips_finished_and_queued_runs_in_a_real_dvc_repo(tmp_path):
    """A one-stage DVC repo whose stage writes the study's metrics from its params: one finished and one queued
    experiment. DRY_RUN prints what the resumed study would run; a real run runs only the missing seed (in a temp
    copy, one at a time) and a second run finds nothing left to do."""
    _sh("git init -q && git config user.email t@t && git config user.name t && dvc init -q && "
        "dvc config core.analytics false", tmp_path)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"seed": 0, "kd": {"temperature": 4.0}}))
    # the pipeline's layout: top-1 of three models is the DVC metric; the two-stream model and the cost are plain outs
    (tmp_path / "stage.py").write_text(
        "import json, pathlib, yaml\np = yaml.safe_load(open('params.yaml'))\n"
        "pathlib.Path('metrics').mkdir(); pathlib.Path('reports/evaluate').mkdir(parents=True)\n"
        "json.dump({m: {'top1': 0.5 + p['seed'] / 10} for m in ('teacher', 'baseline', 'student')},"
        " open('metrics/evaluate.json', 'w'))\n"
        "json.dump({'two_stream': {'top1': 0.25 + p['seed'] / 10}}, open('reports/evaluate/details.json', 'w'))\n"
        "json.dump({'student': {'gflops': 0.06}, 'two_stream': {'gflops': 0.3}}, open('metrics/cost.json', 'w'))\n")
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"evaluate": {
        "cmd": f"{sys.executable} stage.py", "deps": ["stage.py"], "params": ["seed", "kd"],
        "outs": [{"reports/evaluate/details.json": {"cache": False}}, {"metrics/cost.json": {"cache": False}}],
        "metrics": [{"metrics/evaluate.json": {"cache": False}}]}}}))
    env = {"DVC_NO_ANALYTICS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    _sh("git add -A && git commit -qm init && dvc exp run -q -S seed=0 -n s0-base && "
        "dvc exp run --queue -S seed=1 -n s1-base", tmp_path, env)
    with contextlib.chdir(tmp_path):  # what the report reads: exp_show rows with the plain outs at each run's commit
        (row,) = [r for r in report.exp_rows(None) if r.get("Experiment") == "s0-base"]
    rec = report.record(row, KEYS)
    assert (rec["student"], rec["two_stream"]) == (0.5, 0.25) and rec["gflops_ratio"] == pytest.approx(0.2)
    out = _sh(f"bash {ROOT}/study/queue.sh", tmp_path,
              env | {"DRY_RUN": "1", "SWEEPS": "levers temps", "VARIANTS": "base dual", "SEEDS": "0 1 2", "TEMPS": "8"})
    lines = out.splitlines()
    assert "skip s0-base (finished or queued)" in lines and "skip s1-base (finished or queued)" in lines
    assert [ln for ln in lines if ln.startswith("dvc exp run")] == [
        "dvc exp run --temp -S seed=2 -n s2-base",
        *(f"dvc exp run --temp -S seed={s} -S kd.teacher=dual_light -n s{s}-dual" for s in (0, 1, 2)),
        *(f"dvc exp run --temp -S seed={s} -S kd.temperature=8 -n s{s}-T8" for s in (0, 1, 2))]
    real = env | {"SWEEPS": "levers", "VARIANTS": "base", "SEEDS": "0 1 2"}
    _sh(f"bash {ROOT}/study/queue.sh", tmp_path, real)
    assert "s2-base" in _sh("dvc exp ls --name-only", tmp_path, env).split()
    assert "params.yaml" not in _sh("git status --porcelain", tmp_path)  # the workspace is never an experiment's
    again = _sh(f"bash {ROOT}/study/queue.sh", tmp_path, real).splitlines()
    assert "skip s2-base (finished or queued)" in again and not any(ln.startswith("Ran") for ln in again)
    r = subprocess.run(f"bash {ROOT}/study/queue.sh", cwd=tmp_path, shell=True, capture_output=True, text=True,
                       env=tool_env(**env, DRY_RUN="1", SWEEPS="levers", VARIANTS="base nope"))
    assert r.returncode != 0 and "unknown variant(s) nope" in r.stderr


def test_run_files_fill_a_row_but_never_override_its_metrics():
    """The two-stream top-1, cost and timings are no DVC metric now: read from the run's commit. A row of an older
    commit, which still had them as metrics, keeps its own values."""
    files = {("abc1234", report.DETAILS): '{"two_stream": {"top1": 0.7, "per_class": {"Jump": 1.0}}}',
             ("abc1234", report.COST): '{"student": {"gflops": 0.06}}'}
    show = lambda rev, path: files.get((rev, path))  # noqa: E731
    row = report.with_run_files({"rev": "abc1234", "student.top1": 0.8}, show)
    assert row["two_stream.top1"] == 0.7 and row["student.gflops"] == 0.06 and row["student.top1"] == 0.8
    assert report.with_run_files({"rev": "abc1234", "two_stream.top1": 0.9}, show)["two_stream.top1"] == 0.9
    assert report.with_run_files({"rev": None, "Experiment": "queued"}, show) == {"rev": None, "Experiment": "queued"}

"""The CI metric gate: a paired (McNemar exact) test of per-clip test predictions, against real `git show` and
`dvc metrics diff` in a temp git + DVC repo.

tests/data/predictions_*.csv are real `metrics/predictions.csv` files of the embedded pipeline (110 test clips):
``default`` from `dvc repro` (AVX-512 kernels), ``avx2`` the same code and seed with the student retrained under
``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2`` (other weights: 9 clips lost, 8 gained; must pass), ``kd_alpha0``
from the same run with the student retrained with `kd.alpha=0` (no distillation; per clip the same as the baseline):
a real regression that must fail.
"""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from scipy.stats import binomtest
from conftest import tool_env
from helpers import sh

from dlkdd.regression import (MissingPredictions, PredictionsError, compare_prediction_files, compare_predictions,
                              compare_with_rev, mcnemar_worse_p, metric_values, paired_verdict, parse_metrics_diff,
                              to_markdown)

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).parent / "data"
DEFAULT, AVX2, KD_ALPHA0 = (DATA / f"predictions_{n}.csv" for n in ("default", "avx2", "kd_alpha0"))


def top1(path: Path) -> float:
    """student.top1 of a predictions file, as metrics/evaluate.json would say it."""
    rows = [line.split(",") for line in path.read_text().splitlines()[1:]]
    header = path.read_text().splitlines()[0].split(",")
    s, lab = header.index("student"), header.index("label")
    return sum(r[s] == r[lab] for r in rows) / len(rows)




def write_run(repo: Path, predictions: Path) -> None:
    """What `dvc repro` leaves in the workspace: the predictions and the metrics they imply."""
    shutil.copy(predictions, repo / "metrics/predictions.csv")
    metrics = {"student": {"top1": top1(predictions)}, "gate": {"passed": True, "failed": []}}  # non-numbers too
    (repo / "metrics/evaluate.json").write_text(json.dumps(metrics))


@pytest.fixture()
def repo(tmp_path: Path) -> Path:
    """A git + DVC repo whose HEAD holds the default run's predictions and metrics."""
    (tmp_path / "metrics").mkdir()
    write_run(tmp_path, DEFAULT)
    (tmp_path / "dvc.yaml").write_text("metrics:\n  - metrics/evaluate.json\n")
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    sh(["git", "init", "-q"], tmp_path)
    sh([sys.executable, "-m", "dvc", "init", "-q"], tmp_path)
    sh(["git", "add", "-A"], tmp_path)
    sh(["git", "commit", "-qm", "baseline run"], tmp_path)
    return tmp_path


def run_gate(repo: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / ".ci/metrics_gate.py")], cwd=repo, env=tool_env(),
                          capture_output=True, text=True)


def test_gate_passes_on_unchanged_run(repo):
    r = run_gate(repo)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "**PASS**" in r.stdout and "0 clips lost, 0 gained" in r.stdout


def test_gate_passes_when_other_cpu_kernels_train_other_weights(repo):
    """Same code and seed, AVX2 kernels: other weights, other clips right and wrong; the gate passes."""
    assert top1(AVX2) != top1(DEFAULT)
    write_run(repo, AVX2)
    r = run_gate(repo)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "**PASS**" in r.stdout and "not significantly worse" in r.stdout
    assert "| metrics/evaluate.json | student.top1 |" in r.stdout  # the diff table is still printed


def test_gate_fails_on_a_real_regression(repo):
    """kd.alpha=0 on the quarter-size student (no distillation): significantly worse on the same clips."""
    write_run(repo, KD_ALPHA0)
    r = run_gate(repo)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "**FAIL**" in r.stdout and "significantly worse" in r.stdout


def test_gate_cannot_judge_without_committed_predictions_or_on_other_clips(repo):
    head = (repo / "metrics/predictions.csv").read_text().splitlines()
    (repo / "metrics/predictions.csv").write_text("\n".join(head[:-5]) + "\n")  # 5 test clips gone
    r = run_gate(repo)
    assert r.returncode == 2 and "the test clips differ (5 only in the old predictions" in r.stderr, r.stderr
    sh(["git", "rm", "-q", "--cached", "metrics/predictions.csv"], repo)
    sh(["git", "commit", "-qm", "no predictions"], repo)
    r = run_gate(repo)
    assert r.returncode == 2 and "no metrics/predictions.csv committed at HEAD" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def test_paired_figures_on_real_predictions():
    ok, reason, small = compare_prediction_files(DEFAULT, AVX2, alpha=0.05)
    assert ok and small.n == 110 and small.p_value >= 0.05, reason
    ok, reason, big = compare_prediction_files(DEFAULT, KD_ALPHA0, alpha=0.05)
    assert not ok and big.worse > big.better and big.p_value < 0.05, reason
    # the floor alone fails a model far below it, whatever the test says
    assert not compare_prediction_files(DEFAULT, DEFAULT, alpha=0.05, floor=0.99)[0]


def test_mcnemar_is_the_exact_one_sided_binomial_test():
    for worse, better in ((0, 0), (3, 0), (10, 6), (6, 10), (30, 4), (0, 7)):
        expect = 1.0 if worse + better == 0 else binomtest(worse, worse + better, 0.5, alternative="greater").pvalue
        assert mcnemar_worse_p(worse, better) == pytest.approx(expect, rel=1e-12)
    # only discordant clips count: 50 clips both right or both wrong change nothing
    a = [True] * 10 + [False] * 2 + [True] * 30 + [False] * 20
    b = [False] * 10 + [True] * 2 + [True] * 30 + [False] * 20
    assert paired_verdict(a, b, 0.05)[0] is False and paired_verdict(b, a, 0.05)[0] is True
    with pytest.raises(PredictionsError):
        paired_verdict([True], [True, False], 0.05)


NAN, INF = float("nan"), float("inf")


def test_a_nan_or_infinite_alpha_or_floor_never_passes():
    """NaN compares False with everything: with alpha NaN, 30 clips lost and 2 gained (p ~ 1e-7) was 'not
    significantly worse'. A caller that bypasses the params schema gets a fail with the reason, never a pass."""
    old, new = [True] * 30 + [False] * 2 + [True] * 10, [False] * 30 + [True] * 2 + [True] * 10
    assert paired_verdict(old, new, 0.05)[0] is False  # the regression itself
    assert paired_verdict(new, old, 0.05)[0] is True  # and its reverse passes at a sane alpha
    for alpha, floor in ((NAN, 0.0), (INF, 0.0), (-INF, 0.0), (1.5, 0.0), (0.05, NAN), (0.05, -INF)):
        for a, b in ((old, new), (new, old)):
            ok, why = paired_verdict(a, b, alpha, floor)
            assert ok is False and "no verdict" in why and "is not a finite number in [0, 1]" in why, why
    text = DEFAULT.read_text()
    ok, why, _ = compare_predictions(text, text, NAN)
    assert ok is False and "alpha=nan" in why, why


def test_promotion_never_on_a_nan_or_infinite_value():
    """alpha NaN + tolerance inf promoted a 0.10 student over a 0.84 one."""
    from dlkdd.regression import promotion_verdict as decide

    passed = paired_verdict([True] * 10, [True] * 10, NAN)  # the flow's paired evidence at alpha NaN
    assert passed[0] is False
    assert decide(0.84, 0.10, INF, "student.top1", passed) == (
        False, "not promoted: tolerance=inf is not a finite number")
    for production, candidate, tolerance in ((0.84, 0.10, INF), (0.84, 0.90, NAN), (NAN, 0.9, 0.05), (0.8, NAN, 0.05),
                                             (None, INF, 0.05), (-INF, 0.9, 0.05)):
        ok, why = decide(production, candidate, tolerance, "student.top1", (True, "not significantly worse"))
        assert ok is False and why.startswith("not promoted: ") and "is not a finite number" in why, why
    assert decide(0.84, 0.85, 0.05, "student.top1", (True, "not significantly worse"))[0]  # finite: as before


def test_predictions_that_cannot_be_paired_are_one_clear_error():
    text = DEFAULT.read_text()
    with pytest.raises(PredictionsError, match="missing column"):
        compare_predictions("clip,label\nx,Run\n", text, 0.05)
    lines = text.splitlines()
    first = lines[1].split(",")
    first[2] = "Walk" if first[2] != "Walk" else "Run"  # column 2 is the label
    relabelled = "\n".join([lines[0], ",".join(first), *lines[2:]]) + "\n"
    with pytest.raises(PredictionsError, match="changed label"):
        compare_predictions(text, relabelled, 0.05)
    with pytest.raises(PredictionsError, match="no column 'nope'"):
        compare_predictions(text, text, 0.05, model="nope")


def test_compare_with_rev_names_the_missing_side(tmp_path):
    """The helper the CI gate and the retrain flow share: the committed text at a rev against the workspace file;
    a side that is absent is said (old side first), not taken for a pass."""
    new = tmp_path / "predictions.csv"
    with pytest.raises(MissingPredictions, match=f"no {new} committed at abc1") as err:
        compare_with_rev(None, new, "abc1", 0.05)
    assert err.value.side == "old"
    with pytest.raises(MissingPredictions, match="not found") as err:
        compare_with_rev(DEFAULT.read_text(), new, "abc1", 0.05)
    assert err.value.side == "new"
    shutil.copy(KD_ALPHA0, new)
    ok, reason, _ = compare_with_rev(DEFAULT.read_text(), new, "abc1", 0.05)
    assert not ok and "significantly worse" in reason
    assert compare_with_rev(DEFAULT.read_text(), new, "abc1", 0.05, floor=0.0)[:2] == \
        compare_predictions(DEFAULT.read_text(), KD_ALPHA0.read_text(), 0.05)[:2]


def test_metrics_diff_table_keeps_numbers_only():
    rows = parse_metrics_diff({"m.json": {"student.top1": {"old": 0.8, "new": 0.7}, "gate.passed": {"old": True}}})
    assert [r.metric for r in rows] == ["student.top1"]
    assert "| m.json | student.top1 | 0.8000 | 0.7000 | -0.1000 |" in to_markdown(rows)
    assert to_markdown([]) == "_No metric changed._"


def test_retrain_flow_reads_the_metrics_diff_with_the_ci_parser(tmp_path):
    """The retrain flow's production/candidate figures come from real `dvc metrics diff --json` output through the
    same parser as the CI table: numbers only, None for a side that lacks the metric."""
    sys.path.insert(0, str(ROOT))  # the flows/ package lives at the repository root
    from flows import ops

    sh(["git", "init", "-q"], tmp_path)
    sh([sys.executable, "-m", "dvc", "init", "-q"], tmp_path)
    (tmp_path / "dvc.yaml").write_text("metrics:\n  - metrics/evaluate.json\n")
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics/evaluate.json").write_text(json.dumps({"student": {"top1": 0.75}, "gate": "passed"}))
    sh(["git", "add", "-A"], tmp_path)
    sh(["git", "commit", "-qm", "production"], tmp_path)
    base = sh(["git", "rev-parse", "HEAD"], tmp_path)
    (tmp_path / "metrics/evaluate.json").write_text(json.dumps({"student": {"top1": 0.5, "top5": 1.0}}))
    sh(["git", "commit", "-qam", "candidate"], tmp_path)
    diff = ops.metrics_diff(tmp_path, base)
    assert metric_values(diff, "metrics/evaluate.json", "student.top1") == (0.75, 0.5)
    assert metric_values(diff, "metrics/evaluate.json", "student.top5") == (None, 1.0)
    assert metric_values(diff, "metrics/evaluate.json", "gate") == (None, None)  # a status, not a number
    assert metric_values(diff, "metrics/other.json", "student.top1") == (None, None)
    assert [r.metric for r in parse_metrics_diff(diff)] == ["student.top1", "student.top5"]

"""The CI metric gate, against real `dvc metrics diff` in a temp git + DVC repo."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import tool_env

from dlkdd.regression import MetricRow, check_regression, parse_metrics_diff, to_markdown

ROOT = Path(__file__).resolve().parents[1]
METRICS = {"teacher": {"top1": 0.7, "top5": 1.0}, "baseline": {"top1": 0.76, "top5": 0.98},
           "student": {"top1": 0.76, "top5": 1.0},
           "gate": {"status": "pass", "passed": True, "failed": []}}  # non-numbers, as metrics/validate.json has


def sh(cmd: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, cwd=cwd, env=tool_env(), capture_output=True, text=True)
    assert not check or r.returncode == 0, r.stderr
    return r


@pytest.fixture()
def repo(tmp_path: Path) -> Path:
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics/evaluate.json").write_text(json.dumps(METRICS))
    (tmp_path / "dvc.yaml").write_text("metrics:\n  - metrics/evaluate.json\n")
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    sh(["git", "init", "-q"], tmp_path)
    sh([sys.executable, "-m", "dvc", "init", "-q"], tmp_path)
    sh(["git", "add", "-A"], tmp_path)
    sh(["git", "commit", "-qm", "baseline metrics"], tmp_path)
    return tmp_path


def run_gate(repo: Path) -> subprocess.CompletedProcess:
    return sh([sys.executable, str(ROOT / ".ci/metrics_gate.py")], repo, check=False)


def test_gate_passes_on_unchanged_run(repo):
    r = run_gate(repo)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "PASS" in r.stdout


def test_gate_fails_on_injected_regression_with_a_table(repo):
    m = json.loads((repo / "metrics/evaluate.json").read_text())
    m["student"]["top1"] = 0.60
    (repo / "metrics/evaluate.json").write_text(json.dumps(m))
    r = run_gate(repo)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "| metrics/evaluate.json | student.top1 | 0.7600 | 0.6000 | -0.1600 |" in r.stdout
    assert "FAIL" in r.stdout and "student.top1 dropped" in r.stdout


def test_gate_tolerates_small_drop_and_improvement(repo):
    m = json.loads((repo / "metrics/evaluate.json").read_text())
    m["student"]["top1"] = 0.75  # -0.01, tolerance 0.02
    m["baseline"]["top1"] = 0.5  # not the watched metric
    (repo / "metrics/evaluate.json").write_text(json.dumps(m))
    r = run_gate(repo)
    assert r.returncode == 0, r.stdout
    assert "baseline.top1" in r.stdout


def test_regression_logic_edges():
    rows = parse_metrics_diff({"m.json": {"student.top1": {"old": 0.8, "new": None}}})
    assert check_regression(rows, "student.top1", 0.02)[0] is False
    assert check_regression([MetricRow("m.json", "student.top1", None, 0.5)], "student.top1", 0.02)[0] is True
    assert to_markdown([]) == "_No metric changed._"

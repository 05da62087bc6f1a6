"""The KD study report reads `dvc exp show --json`: finished experiments only, mean ± std and the paired test."""
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("study_report", ROOT / "study/report.py")
report = importlib.util.module_from_spec(spec)
spec.loader.exec_module(report)


def _exp(name: str, state: str, seed: int, t: float, alpha: float, base: float, student: float) -> dict:
    data = {"params": {"params.yaml": {"data": {"seed": seed, "kd": {"temperature": t, "alpha": alpha}}}},
            "metrics": {"metrics/evaluate.json": {"data": {"teacher": {"top1": 0.7}, "baseline": {"top1": base},
                                                           "student": {"top1": student}}}}}
    return {"executor": {"state": state}, "name": name, "revs": [{"name": name, "rev": name, "data": data}]}


def test_only_finished_experiments_count_and_stats_are_paired():
    shown = [{"rev": "HEAD", "name": "main", "data": {}, "experiments": [
        _exp("s0-T4-a0.5", "success", 0, 4.0, 0.5, 0.70, 0.75),
        _exp("s1-T4-a0.5", "success", 1, 4.0, 0.5, 0.72, 0.80),
        _exp("s2-T4-a0.5", "success", 2, 4.0, 0.5, 0.74, 0.78),
        _exp("s3-T4-a0.5", "running", 3, 4.0, 0.5, 0.10, 0.10),  # shows its base commit's metrics: must not count
        _exp("s0-T1-a0.5", "queued", 0, 1.0, 0.5, 0.10, 0.10),
    ]}]
    df = report.load(shown)
    assert sorted(df["name"]) == ["s0-T4-a0.5", "s1-T4-a0.5", "s2-T4-a0.5"]
    md = report.report(df)
    assert "| 4 | 0.5 |" in md and "(n=3)" in md and "| 1 | 0.5 |" not in md
    gap = (0.05 + 0.08 + 0.04) / 3
    assert f"KD − no-KD = {gap:+.3f}" in md and "paired t =" in md


def test_plot_is_written(tmp_path):
    df = report.load([{"rev": "HEAD", "experiments": [_exp("s0-T4-a0.5", "success", 0, 4.0, 0.5, 0.7, 0.8),
                                                      _exp("s0-T1-a0.5", "success", 0, 1.0, 0.5, 0.7, 0.9)]}])
    report.plot(df, tmp_path / "p.png")
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
    assert df.loc[df["T"] == 1.0, "student"].item() == pytest.approx(0.9)

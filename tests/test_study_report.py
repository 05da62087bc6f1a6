"""The KD study report reads `dvc exp show --json`: finished experiments only, one sweep per knob with the others at
their defaults, mean ± std and the paired test."""
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("study_report", ROOT / "study/report.py")
report = importlib.util.module_from_spec(spec)
spec.loader.exec_module(report)
DEFAULTS = report.knobs({})  # gamma, T=4, α=0.5, sizes 24/24


def _exp(name: str, state: str, seed: int, base: float, student: float, t: float = 4.0, alpha: float = 0.5,
         method: str = "gamma", teacher_width: int = 24, data_seed: int = 0) -> dict:
    params = {"seed": seed, "kd": {"temperature": t, "alpha": alpha}, "enhance": {"method": method},
              "teacher": {"width": teacher_width}, "student": {"width": 24}, "generate": {"seed": data_seed}}
    metrics = {"teacher": {"top1": 0.7}, "baseline": {"top1": base}, "student": {"top1": student},
               "two_stream": {"top1": 0.9}}
    data = {"params": {"params.yaml": {"data": params}}, "metrics": {"metrics/evaluate.json": {"data": metrics}}}
    return {"executor": {"state": state}, "name": name, "revs": [{"name": name, "rev": name, "data": data}]}


def test_only_finished_experiments_count_and_stats_are_paired():
    shown = [{"rev": "HEAD", "name": "main", "data": {}, "experiments": [
        _exp("s0-gamma-T4", "success", 0, 0.70, 0.75),
        _exp("s1-gamma-T4", "success", 1, 0.72, 0.80),
        _exp("s2-gamma-T4", "success", 2, 0.74, 0.78),
        _exp("s3-gamma-T4", "running", 3, 0.10, 0.10),  # shows its base commit's metrics: must not count
        _exp("s0-gamma-T1", "queued", 0, 0.10, 0.10, t=1.0),
    ]}, {"rev": "older-commit", "experiments": [
        _exp("s0-T4-a0.5", "success", 0, 0.10, 0.10),  # seed 0's default setting again, older: counted once
    ]}]
    df = report.load(shown)
    assert sorted(df["name"]) == ["s0-gamma-T4", "s1-gamma-T4", "s2-gamma-T4"]
    md = report.report(df, DEFAULTS)
    assert "| 4 (base) | 3 |" in md and "| 1 |" not in md
    gap = (0.05 + 0.08 + 0.04) / 3
    assert f"KD − no-KD = {gap:+.3f}" in md and "paired t =" in md
    assert "| 0.900 ± 0.000 |" in md  # the two-stream column


def test_each_sweep_holds_the_other_knobs_at_their_defaults():
    df = report.load([{"rev": "HEAD", "experiments": [
        _exp("s0-gamma", "success", 0, 0.70, 0.75),
        _exp("s0-clahe", "success", 0, 0.70, 0.90, method="clahe"),
        _exp("s0-clahe-T1", "success", 0, 0.70, 0.20, method="clahe", t=1.0),  # two knobs off default: in no sweep
        _exp("s0-wide", "success", 0, 0.70, 0.85, teacher_width=48),
        _exp("s0-d1", "success", 0, 0.60, 0.66, data_seed=1),  # another synthetic dataset, the same knobs
    ]}])
    assert sorted(report.sweep(df, "method", DEFAULTS)["name"]) == ["s0-clahe", "s0-gamma"]
    assert sorted(report.sweep(df, "T", DEFAULTS)["name"]) == ["s0-gamma"]
    assert sorted(report.sweep(df, "sizes", DEFAULTS)["name"]) == ["s0-gamma", "s0-wide"]
    assert sorted(report.sweep(df, "data", DEFAULTS)["name"]) == ["s0-d1", "s0-gamma"]
    md = report.report(df, DEFAULTS)
    assert "| clahe | 1 | 0.700 ± 0.000 | 0.700 ± 0.000 | 0.900 ± 0.000 |" in md and "| 48/24 | 1 |" in md
    assert "| 1 | 1 | 0.700 ± 0.000 | 0.600 ± 0.000 | 0.660 ± 0.000 |" in md  # data seed 1 is not merged into 0
    # pooled over datasets: gaps +0.05 (data 0) and +0.06 (data 1)
    assert "paired over 2 (dataset, seed) runs: KD − no-KD = +0.055, paired t = 11.00" in md
    assert "beats the baseline in 2, ties it in 0" in md


def test_plot_is_written(tmp_path):
    df = report.load([{"rev": "HEAD", "experiments": [_exp("s0-a", "success", 0, 0.7, 0.8),
                                                      _exp("s0-b", "success", 0, 0.7, 0.9, t=1.0)]}])
    report.plot(df, DEFAULTS, tmp_path / "p.png")
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
    assert df.loc[df["T"] == 1.0, "student"].item() == pytest.approx(0.9)

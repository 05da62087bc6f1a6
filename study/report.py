"""Tables and plots of the KD study from `dvc exp show --json` (run study/queue.sh first).

Each sweep varies one knob and holds the others at their params.yaml defaults: the teacher's enhancement method,
the temperature T, α, the teacher/student sizes (tiny3d width) and the synthetic dataset (generate.seed, the data
seed; training seeds are what the mean ± std is over). For each setting: teacher, no-KD baseline, KD
student and the two-stream alternative (teacher on enhanced + baseline on dark, softmax averaged), mean ± std over
seeds, and a paired t-test of KD student vs baseline over the same seeds.

Writes reports/kd_study.{md,csv,png}. Usage: python study/report.py [--json exp_show.json] [--params params.yaml]
[--base method=gamma]
"""
from __future__ import annotations

import argparse
import json
import math
import subprocess
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import yaml  # noqa: E402
from scipy import stats  # noqa: E402

MODELS = ("teacher", "baseline", "student", "two_stream")
# (column, title): one sweep per knob, the other knobs at their defaults
SWEEPS = (("method", "Teacher's enhancement method"), ("T", "Temperature T"), ("alpha", "α (weight of the KD term)"),
          ("sizes", "Teacher / student size (tiny3d width)"), ("data", "Synthetic dataset (generate.seed)"))
KNOBS = ("method", "T", "alpha", "sizes", "data")


def knobs(params: dict) -> dict:
    """The study's knobs from a params.yaml dict (missing keys take the schema defaults)."""
    kd, enh = params.get("kd", {}), params.get("enhance", {})
    tw = (params.get("teacher") or {}).get("width", 24)
    sw = (params.get("student") or {}).get("width", 24)
    return {"seed": params.get("seed", 0), "method": enh.get("method", "gamma"), "T": float(kd.get("temperature", 4)),
            "alpha": float(kd.get("alpha", 0.5)), "sizes": f"{tw}/{sw}",
            "data": int((params.get("generate") or {}).get("seed", 0))}


def _records(node: dict) -> list[dict]:
    """Flatten one `dvc exp show --json` entry (a commit or an experiment) into rows with params and metrics."""
    data = node.get("data") or {}
    params = ((data.get("params") or {}).get("params.yaml") or {}).get("data") or {}
    metrics = ((data.get("metrics") or {}).get("metrics/evaluate.json") or {}).get("data") or {}
    rows = []
    if metrics and params:
        row = {"name": node.get("name") or data.get("name") or node.get("rev"), **knobs(params)}
        for m in MODELS:
            row[m] = (metrics.get(m) or {}).get("top1", math.nan)
        rows.append(row)
    for exp in node.get("experiments") or []:
        state = (exp.get("executor") or {}).get("state", "success")
        if state != "success":  # queued/running/failed experiments show their base commit's metrics: skip them
            continue
        for rev in exp.get("revs") or []:
            rows += _records(rev)
    return rows


def load(exp_show: list[dict]) -> pd.DataFrame:
    """Study experiments only (named s<seed>-...), one row per setting (seed and knobs): the same setting run again,
    e.g. on a later commit under another name, counts once (the first seen: `dvc exp show` lists newest first)."""
    rows = [r for node in exp_show for r in _records(node)]
    df = pd.DataFrame(rows)
    df = df[df["name"].astype(str).str.match(r"^s\d+-")]
    return df.drop_duplicates(["seed", *KNOBS]).reset_index(drop=True)


def sweep(df: pd.DataFrame, knob: str, defaults: dict) -> pd.DataFrame:
    """Rows where every knob but ``knob`` is at its default."""
    mask = pd.Series(True, index=df.index)
    for k in KNOBS:
        if k != knob:
            mask &= df[k] == defaults[k]
    return df[mask]


def mean_std(x: pd.Series) -> str:
    x = x.dropna()
    if x.empty:
        return "–"
    return f"{x.mean():.3f} ± {x.std(ddof=1) if len(x) > 1 else 0:.3f}"


def paired_t(g: pd.DataFrame) -> tuple[float, float] | None:
    """Paired t-test of KD student vs baseline over the same runs: (t, two-sided p); None when it has nothing to
    divide by (under 2 runs, or the same gap on every run)."""
    if len(g) < 2 or (g.student - g.baseline).std() < 1e-9:
        return None
    res = stats.ttest_rel(g.student, g.baseline)
    return float(res.statistic), float(res.pvalue)


def paired(g: pd.DataFrame) -> str:
    """The p column of a table row."""
    test = paired_t(g)
    return "–" if test is None else f"{test[1]:.3f}"


def report(df: pd.DataFrame, defaults: dict) -> str:
    fixed = ", ".join(f"{k}={defaults[k]}" for k in KNOBS)
    out = ["## KD study on the embedded synthetic dark footage", "",
           f"Top-1 on the dark test split (110 clips), mean ± std over seeds (n). Each sweep varies one knob from the "
           f"base {fixed} (sizes = teacher/student width). p: paired t-test, KD student vs no-KD baseline over the "
           "same seeds.", ""]
    for knob, title in SWEEPS:
        s = sweep(df, knob, defaults)
        if s.empty:
            continue
        out += [f"### {title}", "", f"| {knob} | n | teacher | baseline (no KD) | KD student | two-stream | "
                "student − baseline | p |", "|---|---|---|---|---|---|---|---|"]
        for value, g in s.groupby(knob):
            mark = " (base)" if value == defaults[knob] else ""
            v = f"{value:g}" if isinstance(value, float) else str(value)
            out.append(f"| {v}{mark} | {len(g)} | {mean_std(g.teacher)} | {mean_std(g.baseline)} | "
                       f"{mean_std(g.student)} | {mean_std(g.two_stream)} | {mean_std(g.student - g.baseline)} | "
                       f"{paired(g)} |")
        out.append("")
    d = df[(df[list(KNOBS)] == pd.Series({k: defaults[k] for k in KNOBS})).all(axis=1)].sort_values("seed")
    if len(d) > 1:
        out += [f"Base setup, paired over {len(d)} seeds: {paired_summary(d)}."]
    d = sweep(df, "data", defaults)
    if d["data"].nunique() > 1:
        out += ["", f"Base knobs on all {d['data'].nunique()} synthetic datasets, paired over {len(d)} (dataset, seed) "
                f"runs: {paired_summary(d)}; the student beats the baseline in {(d.student > d.baseline).sum()}, "
                f"ties it in {(d.student == d.baseline).sum()}."]
    return "\n".join(out) + "\n"


def paired_summary(d: pd.DataFrame) -> str:
    gap, test = (d.student - d.baseline).mean(), paired_t(d)
    if test is None:
        return f"KD − no-KD = {gap:+.3f} on every run"
    return f"KD − no-KD = {gap:+.3f}, paired t = {test[0]:.2f}, p = {test[1]:.3f}"


def plot(df: pd.DataFrame, defaults: dict, path: Path) -> None:
    fig, axes = plt.subplots(1, len(SWEEPS), figsize=(4.5 * len(SWEEPS), 4))
    for ax, (knob, title) in zip(axes, SWEEPS):
        g = sweep(df, knob, defaults).groupby(knob)
        for i, col in enumerate(MODELS):
            m, s = g[col].mean(), g[col].std(ddof=1).fillna(0)
            x = [j + (i - 1.5) * 0.08 for j in range(len(m))]  # categorical axis, models side by side
            ax.errorbar(x, m.values, yerr=s.values, marker="o", capsize=3, linestyle="", label=col)
        ax.set_xticks(range(len(m)), [f"{v:g}" if isinstance(v, float) else str(v) for v in m.index])
        ax.set_title(title, fontsize=9)
        ax.set_ylabel("top-1 (dark test split)")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--json", type=Path, help="saved `dvc exp show --json` output (default: run it)")
    ap.add_argument("--params", type=Path, default=Path("params.yaml"), help="the base each sweep varies one knob of")
    ap.add_argument("--base", nargs="*", default=[], metavar="KNOB=VALUE",
                    help="override the base, e.g. method=gamma when the sweeps ran before a default changed")
    ap.add_argument("--out", type=Path, default=Path("reports"))
    args = ap.parse_args()
    # --all-commits: a study outlives commits (runs queued on one commit, more run after the next); commits come
    # newest first, so when a setting was run twice the newest run is kept
    raw = args.json.read_text() if args.json else subprocess.run(
        ["dvc", "exp", "show", "--json", "--all-commits"], capture_output=True, text=True, check=True).stdout
    df = load(json.loads(raw))
    defaults = knobs(yaml.safe_load(args.params.read_text()))
    for item in args.base:
        key, value = item.split("=", 1)
        defaults[key] = float(value) if key in ("T", "alpha") else int(value) if key == "data" else value
    args.out.mkdir(parents=True, exist_ok=True)
    df.sort_values([*KNOBS, "seed"]).to_csv(args.out / "kd_study.csv", index=False)
    md = report(df, defaults)
    (args.out / "kd_study.md").write_text(md)
    plot(df, defaults, args.out / "kd_study.png")
    print(md)


if __name__ == "__main__":
    main()

"""Tables and plots of the KD study from `dvc exp show --json` (run study/queue.sh first).

Writes reports/kd_study.md (mean ± std over seeds, paired t-test of KD student vs no-KD baseline) and
reports/kd_study.png. Usage: python study/report.py [--json exp_show.json]
"""
from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from scipy import stats  # noqa: E402


def _records(node: dict) -> list[dict]:
    """Flatten one `dvc exp show --json` entry (a commit or an experiment) into rows with params and metrics."""
    data = node.get("data") or {}
    params = ((data.get("params") or {}).get("params.yaml") or {}).get("data") or {}
    metrics = ((data.get("metrics") or {}).get("metrics/evaluate.json") or {}).get("data") or {}
    rows = []
    if metrics and params:
        row = {"name": node.get("name") or data.get("name") or node.get("rev"), "seed": params.get("seed"),
               "T": params["kd"]["temperature"], "alpha": params["kd"]["alpha"]}
        for m in ("teacher", "baseline", "student"):
            row[m] = metrics[m]["top1"]
        rows.append(row)
    for exp in node.get("experiments") or []:
        state = (exp.get("executor") or {}).get("state", "success")
        if state != "success":  # queued/running/failed experiments show their base commit's metrics: skip them
            continue
        for rev in exp.get("revs") or []:
            rows += _records(rev)
    return rows


def load(exp_show: list[dict]) -> pd.DataFrame:
    rows = [r for node in exp_show for r in _records(node)]
    df = pd.DataFrame(rows)
    return df[df["name"].astype(str).str.match(r"^s\d+-T")].drop_duplicates("name")


def mean_std(x: pd.Series) -> str:
    return f"{x.mean():.3f} ± {x.std(ddof=1) if len(x) > 1 else 0:.3f} (n={len(x)})"


def report(df: pd.DataFrame) -> str:
    out = ["## KD study on the embedded synthetic dark footage", ""]
    out += ["| T | α | teacher | baseline (no KD) | KD student | student − baseline |", "|---|---|---|---|---|---|"]
    for (t, a), g in df.groupby(["T", "alpha"]):
        out.append(f"| {t:g} | {a:g} | {mean_std(g.teacher)} | {mean_std(g.baseline)} | {mean_std(g.student)} | "
                   f"{mean_std(g.student - g.baseline)} |")
    d = df[(df["T"] == 4) & (df["alpha"] == 0.5)].sort_values("seed")
    if len(d) > 1:
        t, p = stats.ttest_rel(d.student, d.baseline)
        out += ["", f"Default (T=4, α=0.5), paired over {len(d)} seeds: KD − no-KD = "
                    f"{(d.student - d.baseline).mean():+.3f}, paired t = {t:.2f}, p = {p:.3f}."]
    return "\n".join(out) + "\n"


def plot(df: pd.DataFrame, path: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, (key, fixed, label) in zip(axes, (("T", ("alpha", 0.5), "temperature T (α=0.5)"),
                                             ("alpha", ("T", 4.0), "α (T=4)"))):
        g = df[df[fixed[0]] == fixed[1]].groupby(key)
        for col in ("student", "baseline", "teacher"):
            m, s = g[col].mean(), g[col].std(ddof=1).fillna(0)
            ax.errorbar(m.index, m.values, yerr=s.values, marker="o", capsize=3, label=col)
        ax.set_xlabel(label)
        ax.set_ylabel("top-1 (dark test split)")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--json", type=Path, help="saved `dvc exp show --json` output (default: run it)")
    ap.add_argument("--out", type=Path, default=Path("reports"))
    args = ap.parse_args()
    raw = args.json.read_text() if args.json else subprocess.run(
        ["dvc", "exp", "show", "--json"], capture_output=True, text=True, check=True).stdout
    df = load(json.loads(raw))
    args.out.mkdir(parents=True, exist_ok=True)
    df.sort_values(["T", "alpha", "seed"]).to_csv(args.out / "kd_study.csv", index=False)
    (args.out / "kd_study.md").write_text(report(df))
    plot(df, args.out / "kd_study.png")
    print(report(df))


if __name__ == "__main__":
    main()

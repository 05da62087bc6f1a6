"""The unlabelled-pool study (issue 23): student top-1 against pool size, 5 training seeds, each with its own teacher.

Runs the pipeline's own stage scripts (the code `dvc repro` runs) in a work folder, outside DVC: one 10x pool is
rendered once and the smaller pools are its prefixes (the generator's clip n of a class does not depend on how many
it renders, so `generate.unlabeled_per_class=k` writes exactly these k clips per class). Per seed: teacher, no-KD
baseline and the teacher's targets for every pool clip, then one student per variant, each evaluated by the evaluate
stage (teacher, baseline, two-stream and student on the same dark test split). Variant-major, so a study cut short
has whole variants; resumable (a variant/seed with its metrics file is not run again).

    python study/pool.py --work /tmp/pool-study [--seeds 0 1 2 3 4] [--variants p10-ep100 p1-ep100 ...]
    python study/pool.py --work /tmp/pool-study --collect reports/kd_study_pool

Needs ~1.2 GB of disk in the work folder and ~70 min of a 2-core machine for the default plan.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from dlkdd.config import GenerateConfig  # noqa: E402
from dlkdd.data.synthetic import generate_dataset, pool_name  # noqa: E402

POOL_MAX = 300  # per class: 10x the 30 labelled train clips per class
# name -> (pool clips per class, kd overrides); p0 is the study's `ep100` variant (no pool), re-run as a check
VARIANTS = {
    "p10-ep100": (300, {"epochs": 100}),
    "p1-ep100": (30, {"epochs": 100}),
    "p3-ep100": (90, {"epochs": 100}),
    "p10-ep200": (300, {"epochs": 200}),
    "p0-ep100": (0, {"epochs": 100}),
    "p3-ep30": (90, {"epochs": 30}),  # the default run's budget (train.epochs = 30): a pool at no extra training
    "p1-ep30": (30, {"epochs": 30}),
    "p0-ep30": (0, {"epochs": 30}),  # the default student (the levers study's `base`), re-run as a check
    # pure KD (α = 1: no CE on the labelled clips either), as the hand-run seed of issue 23
    "p3-a1-ep100": (90, {"epochs": 100, "alpha": 1.0}),
    "p10-a1-ep100": (300, {"epochs": 100, "alpha": 1.0}),
    "p1-a1-ep100": (30, {"epochs": 100, "alpha": 1.0}),
    "p0-a1-ep100": (0, {"epochs": 100, "alpha": 1.0}),
    "p3-ep200": (90, {"epochs": 200}),
    "p3-a1-ep200": (90, {"epochs": 200, "alpha": 1.0}),
    "p1-ep200": (30, {"epochs": 200}),
    # the two-stream model's soft targets (teacher on enhanced + baseline on dark, fused at T) on the pool
    "p3-dual-ep100": (90, {"epochs": 100, "teacher": "dual_light"}),
    "p1-dual-ep100": (30, {"epochs": 100, "teacher": "dual_light"}),
}


def stage(work: Path, run: Path, script: str, *args: str) -> None:
    """One stage script, in ``run`` (its params.yaml), the library of this checkout."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    subprocess.run([sys.executable, str(REPO / "stages" / script), *args], cwd=run, env=env, check=True,
                   stdout=subprocess.DEVNULL)


def write_params(run: Path, seed: int, kd: dict | None = None, use_pool: bool = True) -> None:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["seed"] = seed
    params["kd"] |= (kd or {}) | {"use_pool": use_pool}
    run.mkdir(parents=True, exist_ok=True)
    (run / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def prepare(work: Path) -> None:
    """Render the data once (labelled set = the default's, plus the 10x pool), cache, gate and enhance it."""
    common = work / "common"
    if (common / "pool_enhanced").is_dir():
        return
    if not (work / "raw" / "manifest.csv").is_file():
        generate_dataset(work / "raw", GenerateConfig(unlabeled_per_class=POOL_MAX), 0)
    write_params(common, 0)
    stage(work, common, "frames.py", "--manifest", str(work / "raw/manifest.csv"), "--root", str(work / "raw"),
          "--out", "frames", "--pool-out", "pool")
    stage(work, common, "validate.py", "--frames", "frames", "--reports", "reports/validate", "--metrics",
          "validate.json", "--ok", "validated.ok", "--pool", "pool", "--pool-ok", "pool.ok")
    stage(work, common, "enhance.py", "--frames", "frames", "--out", "enhanced", "--pool", "pool", "--pool-out",
          "pool_enhanced")


def pool_subset(work: Path, per_class: int) -> Path:
    """A pool folder listing the first ``per_class`` clips of each class (what unlabeled_per_class would render);
    its clips stay in common/pool."""
    out = work / f"pool_{per_class}"
    if (out / "index.csv").is_file():
        return out
    cfg = GenerateConfig()
    names = {pool_name(0, ci, n) for ci in range(len(cfg.classes)) for n in range(per_class)}
    index = pd.read_csv(work / "common/pool/index.csv", dtype={"clip_id": str})
    out.mkdir(parents=True, exist_ok=True)
    index[index["clip_id"].isin(names)].to_csv(out / "index.csv", index=False)
    shutil.copy(work / "common/pool/classes.txt", out / "classes.txt")
    return out


def seed_models(work: Path, seed: int) -> Path:
    """Teacher, baseline and the teacher's targets (train + the whole pool) of one training seed."""
    run, c = work / f"s{seed}", work / "common"
    if (run / "teacher_logits.pt").is_file():
        return run
    write_params(run, seed)
    stage(work, run, "train.py", "--role", "teacher", "--frames", str(c / "frames"), "--clips",
          str(c / "enhanced/clips"), "--out", "teacher.pt", "--history", "teacher.csv")
    stage(work, run, "train.py", "--role", "baseline", "--frames", str(c / "frames"), "--clips",
          str(c / "frames/clips"), "--out", "baseline.pt", "--history", "baseline.csv")
    stage(work, run, "teacher_logits.py", "--frames", str(c / "frames"), "--clips", str(c / "enhanced/clips"),
          "--teacher", "teacher.pt", "--dark-clips", str(c / "frames/clips"), "--baseline", "baseline.pt",
          "--pool", str(c / "pool"), "--pool-clips", str(c / "pool_enhanced/clips"), "--pool-dark-clips",
          str(c / "pool/clips"), "--pool-report", "pool.json", "--out", "teacher_logits.pt")
    return run


def dual_logits(work: Path, seed: int) -> Path:
    """The teacher_logits stage with kd.teacher=dual_light: the baseline's rows beside the teacher's (train + pool)."""
    run, c = work / f"s{seed}" / "dual", work / "common"
    if not (run / "teacher_logits.pt").is_file():
        write_params(run, seed, {"teacher": "dual_light"})
        stage(work, run, "teacher_logits.py", "--frames", str(c / "frames"), "--clips", str(c / "enhanced/clips"),
              "--teacher", str(run.parent / "teacher.pt"), "--dark-clips", str(c / "frames/clips"), "--baseline",
              str(run.parent / "baseline.pt"), "--pool", str(c / "pool"), "--pool-clips",
              str(c / "pool_enhanced/clips"), "--pool-dark-clips", str(c / "pool/clips"), "--out",
              "teacher_logits.pt")
    return run / "teacher_logits.pt"


def student(work: Path, seed: int, name: str) -> None:
    per_class, kd = VARIANTS[name]
    run, c, models = work / f"s{seed}" / name, work / "common", work / f"s{seed}"
    if (run / "evaluate.json").is_file():
        return
    logits = dual_logits(work, seed) if kd.get("teacher") == "dual_light" else models / "teacher_logits.pt"
    write_params(run, seed, kd, use_pool=per_class > 0)
    pool = pool_subset(work, per_class) if per_class else c / "pool"
    stage(work, run, "train_student.py", "--frames", str(c / "frames"), "--clips", str(c / "frames/clips"),
          "--teacher-clips", str(c / "enhanced/clips"), "--teacher", str(models / "teacher.pt"), "--baseline",
          str(models / "baseline.pt"), "--teacher-logits", str(logits), "--pool", str(pool),
          "--pool-clips", str(c / "pool/clips"), "--pool-teacher-clips", str(c / "pool_enhanced/clips"),
          "--out", "models/student.pt", "--history", "student.csv")
    for m in ("teacher", "baseline"):
        link = run / "models" / f"{m}.pt"
        link.unlink(missing_ok=True)
        link.symlink_to(models / f"{m}.pt")
    stage(work, run, "evaluate.py", "--frames", str(c / "frames"), "--clips", str(c / "frames/clips"),
          "--enhanced-clips", str(c / "enhanced/clips"), "--models", "models", "--metrics", "evaluate.json",
          "--details", "details.json", "--cost", "cost.json", "--timings", "timings.json", "--confusion",
          "confusion.csv", "--predictions", "predictions.csv")


def train_seconds(run: Path, epochs: int, train_clips: int = 330) -> float | None:
    """The student's training time: epochs x len(train) clips at its median training clips/s (the .timings
    sidecar beside the model); a pool adds no clips per epoch, so only the rate can differ."""
    side = run / "models" / ".timings" / "student.pt.json"
    if not side.is_file():
        return None
    return round(epochs * train_clips / json.loads(side.read_text())["train_clips_per_s"], 1)


def collect(work: Path) -> pd.DataFrame:
    """One row per finished (seed, variant): the four models' test top-1, the pool, the cost and time ratios."""
    rows = []
    for ev in sorted(work.glob("s*/*/evaluate.json")):
        run, seed = ev.parent, int(ev.parent.parent.name[1:])
        top1 = {m: v["top1"] for m, v in json.loads(ev.read_text()).items() if isinstance(v, dict) and "top1" in v}
        timings = json.loads((run / "timings.json").read_text())
        cost = json.loads((run / "cost.json").read_text())
        pool = json.loads((run.parent / "pool.json").read_text())
        per_class, kd = VARIANTS[run.name]
        hist = pd.read_csv(run / "student.csv")
        rows.append({"variant": run.name, "seed": seed, "pool_per_class": per_class,
                     "pool_x": per_class / 30, "kd_epochs": kd["epochs"], "kd_alpha": kd.get("alpha", 0.5),
                     **{m: top1.get(m) for m in ("teacher", "baseline", "student", "two_stream")},
                     "latency_ratio": timings.get("student_vs_two_stream_latency"),
                     "gflops_ratio": cost.get("student", {}).get("gflops", 0)
                     / max(cost.get("two_stream", {}).get("gflops", 1e-9), 1e-9),
                     "train_s": train_seconds(run, kd["epochs"]),
                     "best_epoch": int(hist.loc[hist["val_top1"].idxmax(), "epoch"]),
                     "pseudo_label_top1": pool.get("pseudo_label_top1"),
                     "teacher_confidence": pool.get("teacher_confidence")})
    return pd.DataFrame(rows)


def report(table: pd.DataFrame, out: Path) -> str:
    """Mean ± std over seeds per variant, gap closed, paired t-test against the no-pool student; a plot of student
    top-1 against pool size with teacher, baseline and two-stream as lines. Writes <out>.{csv,md,png}."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy import stats

    table = table.sort_values(["kd_epochs", "kd_alpha", "pool_x", "seed"])
    table.to_csv(out.with_suffix(".csv"), index=False)
    refs = {key: g.set_index("seed")["student"]
            for key, g in table[table["pool_x"] == 0].groupby(["kd_epochs", "kd_alpha"])}
    ts = table.groupby("seed")["two_stream"].first()
    lines = ["| variant | pool | budget | α | seeds | student top-1 | vs no pool (paired p) | gap closed | "
             "pseudo-label top-1 | latency vs two-stream | GFLOPs vs two-stream | student train s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for (ep, a, px, name), g in table.groupby(["kd_epochs", "kd_alpha", "pool_x", "variant"], sort=True):
        g = g.set_index("seed")
        # no pool at the same budget, else at 100 epochs (the best without one)
        ref = refs.get((ep, a), refs.get((ep, 0.5), refs.get((100, 0.5), pd.Series(dtype=float))))
        common = g.index.intersection(ref.index)
        diff = g.loc[common, "student"] - ref.loc[common]
        p = stats.ttest_rel(g.loc[common, "student"], ref.loc[common]).pvalue if len(common) > 1 and px > 0 \
            else float("nan")
        gap = (g.loc[common, "student"].mean() - ref.loc[common].mean()) / (ts.loc[common].mean()
                                                                          - ref.loc[common].mean())
        lines.append(f"| {name} | {px:g}x | {ep} epochs | {a:g} | {len(g)} | {g['student'].mean():.3f} ± "
                     f"{g['student'].std():.3f} | {diff.mean():+.3f} (p={p:.3f}) | {gap:+.0%} | "
                     f"{g['pseudo_label_top1'].mean():.3f} | {g['latency_ratio'].median():.2f}x | "
                     f"{g['gflops_ratio'].median():.2f}x | {g['train_s'].median():.0f} |")
    for m in ("teacher", "baseline", "two_stream"):
        col = table.groupby("seed")[m].first()
        lines.append(f"| {m} | - | - | - | {len(col)} | {col.mean():.3f} ± {col.std():.3f} | | | | | | |")
    md = "\n".join(lines) + "\n"
    out.with_suffix(".md").write_text(md)
    fig, ax = plt.subplots(figsize=(7, 4.2))
    family = table["variant"].str.split("-", n=1).str[1]  # p3-a1-ep100 → a1-ep100: one line per recipe
    for fam, g in table.groupby(family):
        if not (g["pool_x"] == 0).any():  # the no-pool point of the same budget, else the 100-epoch one
            g = pd.concat([table[table["variant"] == ("p0-" + fam.split("-")[-1])] if (
                table["variant"] == "p0-" + fam.split("-")[-1]).any() else table[table["variant"] == "p0-ep100"], g])
        agg = g.groupby("pool_x")["student"].agg(["mean", "std"])
        what = {"a1": "α = 1 (pure KD)", "dual": "two-stream targets"}.get(fam.split("-")[0], "α = 0.5")
        ax.errorbar(agg.index, agg["mean"], yerr=agg["std"], marker="o", capsize=3,
                    label=f"student, {what}, {fam.split('-')[-1][2:]} epochs")
    for m, style in (("teacher", "--"), ("two_stream", "-."), ("baseline", ":")):
        ax.axhline(table.groupby("seed")[m].first().mean(), linestyle=style, color="grey", label=m)
    ax.set_xlabel("unlabelled pool size (x the labelled train set)")
    ax.set_ylabel("dark test top-1 (mean ± std over seeds)")
    ax.set_title("Student top-1 against unlabelled pool size")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=110)
    return md


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--collect", type=Path, help="write the finished runs' table and report to <this>.{csv,md,png} "
                    "and stop")
    args = ap.parse_args()
    if args.collect:
        print(report(collect(args.work), args.collect))
        return
    prepare(args.work)
    for seed in args.seeds:
        seed_models(args.work, seed)
    for name in args.variants:
        for seed in args.seeds:
            print(f"student {name} seed {seed}", flush=True)
            student(args.work, seed, name)


if __name__ == "__main__":
    main()

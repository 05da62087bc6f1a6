"""Stage validate: the data-quality gate between frames and training; fails closed.

GX expectations on every clip's statistics, class balance of the train split, and Evidently drift of the val+test
footage against the train footage (one row per video on both sides). The unlabelled pool (--pool) gets the same
per-clip checks, drift against the train split as a recorded warning, and its own stamp (--pool-ok). Passing writes
the stamp the training stages depend on; failing removes it, prints one summary and exits non-zero, so `dvc repro`
stops before training. Reports and the metrics JSON are written either way.
"""
import argparse
import dataclasses
import hashlib
import json
import sys
from pathlib import Path

import pandas as pd
from _common import params_or_exit

from dlkdd.atomic import write_text_atomic
from dlkdd.data.frame_index import read_index
from dlkdd.quality import GateInputError, check_footage


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--frames", required=True, help="frames directory holding stats.csv and classes.txt")
    ap.add_argument("--reports", required=True, help="folder for the HTML/JSON reports")
    ap.add_argument("--metrics", required=True, help="gate result JSON (a DVC metric)")
    ap.add_argument("--ok", required=True, help="stamp written only when the gate passes")
    ap.add_argument("--pool", help="frames directory of the unlabelled pool: the same per-clip checks, drift against "
                    "the train split; class balance is not asked of clips with no label")
    ap.add_argument("--pool-ok", help="stamp written only when the pool passes (the student's stages read it)")
    args = ap.parse_args()
    params = params_or_exit()
    ok = Path(args.ok)
    ok.unlink(missing_ok=True)  # never leave a stale pass behind
    if args.pool_ok:
        Path(args.pool_ok).unlink(missing_ok=True)
    stats_path = Path(args.frames) / "stats.csv"
    if not stats_path.is_file():
        sys.exit(f"error: {stats_path} not found: run the frames stage first (dvc repro frames)")
    stats = pd.read_csv(stats_path)
    _, classes = read_index(args.frames)
    try:
        result = check_footage(stats, params.validate, params.frames.num_frames,
                               reference=stats[stats["split"] == "train"], report_dir=args.reports,
                               classes=classes, balance_split="train", current=stats[stats["split"] != "train"])
    except GateInputError as err:
        sys.exit(f"error: {err}")
    metrics = result.to_json()
    pool_result, pool_stats = None, _pool_stats(args.pool)
    if pool_stats is not None and len(pool_stats):  # with no pool, the metrics keep the bytes they had before pools
        # drift of the pool is recorded, not a refusal: an unlabelled pool is whatever the cameras saw since (new
        # nights, new sites: what its KD term adapts the student to), it never reaches the CE term, and the student
        # it trains is judged on the labelled test clips; each landing was already drift-gated as a batch by the
        # retrain flow. Its per-clip checks (dark but not black, noise, fps, size) fail closed like the labelled ones.
        cfg = dataclasses.replace(params.validate,
                                  warn_only=[*params.validate.warn_only, "class_balance", "drift"])
        try:
            pool_result = check_footage(pool_stats, cfg, params.frames.num_frames,
                                        reference=stats[stats["split"] == "train"],
                                        report_dir=Path(args.reports) / "pool", classes=classes, balance_split="train")
        except GateInputError as err:
            sys.exit(f"error: unlabelled pool: {err}")
        metrics["pool"] = pool_result.to_json()
    write_text_atomic(Path(args.metrics), json.dumps(metrics, indent=1) + "\n")
    if not result.passed:
        sys.exit(result.summary())
    print(result.summary())
    if pool_result is not None:
        if not pool_result.passed:
            sys.exit(f"unlabelled pool ({args.pool}): {pool_result.summary()}")
        print(f"unlabelled pool: {pool_result.summary()}")
    # the stamp's content only changes with the data, so re-tuning gate params does not retrain anything
    write_text_atomic(ok, f"passed {hashlib.sha256(stats_path.read_bytes()).hexdigest()}  {stats_path.name}\n")
    if args.pool_ok:  # its own stamp: a pool change must not retrain the teacher or the baseline
        digest = hashlib.sha256((Path(args.pool) / "stats.csv").read_bytes()).hexdigest()
        write_text_atomic(Path(args.pool_ok), f"passed {digest}  pool stats.csv\n")


def _pool_stats(pool: str | None) -> pd.DataFrame | None:
    """The pool's clip statistics, or None without a pool folder."""
    if not pool:
        return None
    path = Path(pool) / "stats.csv"
    if not path.is_file():
        sys.exit(f"error: {path} not found: run the frames stage first (dvc repro frames)")
    return pd.read_csv(path)


if __name__ == "__main__":
    main()

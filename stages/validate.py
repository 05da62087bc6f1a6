"""Stage validate: the data-quality gate between frames and training; fails closed.

GX expectations on every clip's statistics, class balance of the train split, and Evidently drift of the val+test
footage against the train footage (one row per video on both sides). Passing writes the stamp the training stages
depend on; failing removes it, prints one summary and exits non-zero, so `dvc repro` stops before training. Reports
and the metrics JSON are written either way.
"""
import argparse
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
    args = ap.parse_args()
    params = params_or_exit()
    ok = Path(args.ok)
    ok.unlink(missing_ok=True)  # never leave a stale pass behind
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
    write_text_atomic(Path(args.metrics), json.dumps(result.to_json(), indent=1) + "\n")
    if not result.passed:
        sys.exit(result.summary())
    print(result.summary())
    # the stamp's content only changes with the data, so re-tuning gate params does not retrain anything
    write_text_atomic(ok, f"passed {hashlib.sha256(stats_path.read_bytes()).hexdigest()}  {stats_path.name}\n")


if __name__ == "__main__":
    main()

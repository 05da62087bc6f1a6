"""CI gate: is the freshly trained student significantly worse than the committed one on the same test clips?

Prints `dvc metrics diff --json --all <ci.baseline_rev>` as a markdown table (for people), then decides with a paired
test (dlkdd.regression): McNemar's exact one-sided test of the committed vs the new per-clip correctness in
metrics/predictions.csv, failing when p < ci.alpha or the new top-1 is below ci.floor. A fixed top-1 tolerance is
not used: the same code on other CPU kernels trains other weights and moves top-1 by a few clips (README).
Exit 0 pass, 1 significantly worse, 2 cannot judge (no committed predictions, other test clips, bad params).
"""
import json
import subprocess
import sys

from dlkdd.config import ConfigError, load_params
from dlkdd.paths import PREDICTIONS
from dlkdd.regression import MissingPredictions, PredictionsError, compare_with_rev, parse_metrics_diff, to_markdown


def main() -> int:
    try:
        ci = load_params("params.yaml").ci
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = subprocess.run([sys.executable, "-m", "dvc", "metrics", "diff", "--json", "--all", ci.baseline_rev],
                         capture_output=True, text=True)
    if out.returncode != 0:
        print(f"error: dvc metrics diff failed: {out.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
        return 2
    print(f"### Metrics vs {ci.baseline_rev}\n\n{to_markdown(parse_metrics_diff(json.loads(out.stdout or '{}')))}\n")
    old = subprocess.run(["git", "show", f"{ci.baseline_rev}:{PREDICTIONS}"], capture_output=True, text=True)
    try:
        ok, reason, _ = compare_with_rev(old.stdout if old.returncode == 0 else None, PREDICTIONS, ci.baseline_rev,
                                         ci.alpha, ci.floor, ci.model)
    except MissingPredictions as err:
        hint = "run `dvc repro` and commit it with dvc.lock" if err.side == "old" else "run `dvc repro` first"
        print(f"error: {err}: {hint}", file=sys.stderr)
        return 2
    except PredictionsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"**{'PASS' if ok else 'FAIL'}** (paired test vs {ci.baseline_rev}): {reason}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""CI gate: compare the workspace metrics with the committed ones (`dvc metrics diff --json`), print a markdown
table, exit 1 when the watched metric (params: ci.metric) drops by more than ci.tolerance."""
import json
import subprocess
import sys

from dlkdd.config import ConfigError, load_params
from dlkdd.regression import check_regression, parse_metrics_diff, to_markdown


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
    rows = parse_metrics_diff(json.loads(out.stdout or "{}"))
    ok, reason = check_regression(rows, ci.metric, ci.tolerance)
    print(f"### Metrics vs {ci.baseline_rev}\n\n{to_markdown(rows)}\n\n**{'PASS' if ok else 'FAIL'}**: {reason}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

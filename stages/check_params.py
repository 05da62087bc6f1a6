"""Stage check_params: params.yaml against the schema (src/dlkdd/config.py), before any other stage runs.

DVC deletes a stage's outs before it runs the stage's command, so a typo or a NaN in params.yaml that only the
stage itself notices would cost the artifacts it was about to replace (models/student.pt and its curve, say). Every
other stage depends on this one's stamp, so `dvc repro` runs it first and stops here, with one error line, before
touching anything. The stamp's bytes never depend on the values: a valid params edit re-runs this stage in a
moment and re-runs downstream only the stages whose own params changed.
"""
import argparse
from pathlib import Path

from _common import params_or_exit

from dlkdd.atomic import write_text_atomic

STAMP = "params.yaml matches the schema of src/dlkdd/config.py\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml", help="the params file to check")
    ap.add_argument("--ok", required=True, help="stamp written only when the file is valid (data/params.ok)")
    args = ap.parse_args()
    ok = Path(args.ok)
    ok.unlink(missing_ok=True)  # never leave a stale pass behind
    params_or_exit(args.params)  # exits 1 with the one line of ConfigError
    write_text_atomic(ok, STAMP)
    print(f"{args.params}: valid → {ok}")


if __name__ == "__main__":
    main()

"""Stage generate: write the embedded synthetic dark-footage dataset (videos + manifest.csv).

Clips render in one process per core; the bytes do not depend on how many, so the core count is not a DVC param.
"""
import argparse
import shutil
from pathlib import Path

from _common import params_or_exit

from dlkdd.data.synthetic import generate_dataset


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    params = params_or_exit()
    shutil.rmtree(args.out, ignore_errors=True)
    manifest = generate_dataset(Path(args.out), params.generate, params.generate.seed)
    print(f"wrote {manifest}")


if __name__ == "__main__":
    main()

"""Stage export: the student as TorchScript, runnable without dlkdd's model code (`dlkdd predict --model` takes it)."""
import argparse
import sys

import _common  # noqa: F401  (this workspace's src/ first on sys.path)

from dlkdd.distill.export import export_torchscript


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", required=True, help="dlkdd checkpoint (models/student.pt)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    try:
        meta = export_torchscript(args.model, args.out)
    except (FileNotFoundError, ValueError) as err:
        sys.exit(f"error: {err}")
    print(f"exported {meta['arch']} ({len(meta['classes'])} classes, {meta['num_frames']}x{meta['size']}²) → {args.out}")


if __name__ == "__main__":
    main()

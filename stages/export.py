"""Stage export: the student as ONNX, runnable by ONNX Runtime without dlkdd's model code (`dlkdd predict --model`
takes it)."""
import argparse
import sys

import _common  # noqa: F401  (this workspace's src/ first on sys.path)

from dlkdd.distill.export import export_onnx


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", required=True, help="dlkdd checkpoint (models/student.pt)")
    ap.add_argument("--out", required=True, help="the ONNX file to write (models/student.onnx)")
    args = ap.parse_args()
    try:
        info = export_onnx(args.model, args.out)
    except (FileNotFoundError, ValueError) as err:
        sys.exit(f"error: {err}")
    print(f"exported {info.arch} ({len(info.classes)} classes, {info.num_frames}x{info.size}²) → {args.out}")


if __name__ == "__main__":
    main()

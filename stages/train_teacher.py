"""Stage train_teacher: the teacher learns from the enhanced (brightened) clips."""
import argparse

from _common import params_or_exit, train_and_save


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--frames", required=True, help="frame cache with index.csv")
    ap.add_argument("--clips", required=True, help="folder of the clips this model sees")
    ap.add_argument("--out", required=True)
    ap.add_argument("--history", required=True)
    args = ap.parse_args()
    params = params_or_exit()
    train_and_save("teacher", params, args.frames, [args.clips], params.teacher, args.out, args.history)


if __name__ == "__main__":
    main()

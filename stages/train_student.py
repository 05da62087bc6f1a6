"""Stage train_student: dark clips, cross-entropy + KD against the frozen teacher fed the enhanced same frames."""
import argparse

from _common import params_or_exit, train_and_save

from dlkdd.distill.checkpoint import load_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--frames", required=True, help="frame cache with index.csv")
    ap.add_argument("--clips", required=True, help="dark clips (the student's view)")
    ap.add_argument("--teacher-clips", required=True, help="enhanced clips (the teacher's view)")
    ap.add_argument("--teacher", required=True, help="teacher checkpoint")
    ap.add_argument("--out", required=True)
    ap.add_argument("--history", required=True)
    args = ap.parse_args()
    params = params_or_exit()
    teacher, _ = load_model(args.teacher)
    train_and_save("student", params, args.frames, [args.clips, args.teacher_clips], params.student, args.out, args.history,
                   teacher=teacher, kd=params.kd)


if __name__ == "__main__":
    main()

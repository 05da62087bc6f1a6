"""Stage train_student: dark clips, cross-entropy + KD against the frozen teacher's view of the enhanced same frames.

kd.teacher_logits=cached (default) reads the teacher_logits stage's file, so the teacher never runs here;
kd.teacher_logits=online runs the frozen teacher on every batch.
"""
import argparse

from _common import params_or_exit, train_and_save

from dlkdd.distill.checkpoint import load_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--frames", required=True, help="frame cache with index.csv")
    ap.add_argument("--clips", required=True, help="dark clips (the student's view)")
    ap.add_argument("--teacher-clips", required=True, help="enhanced clips (the teacher's view)")
    ap.add_argument("--teacher", required=True, help="teacher checkpoint")
    ap.add_argument("--teacher-logits", required=True, help="the teacher_logits stage's cache")
    ap.add_argument("--out", required=True)
    ap.add_argument("--history", required=True)
    args = ap.parse_args()
    params = params_or_exit()
    mode = params.kd.teacher_logits
    teacher, cache = (None, args.teacher_logits) if mode == "cached" else (load_model(args.teacher)[0], None)
    train_and_save("student", params, args.frames, [args.clips, args.teacher_clips], params.student, args.out,
                   args.history, teacher=teacher, kd=params.kd, teacher_logits=cache)


if __name__ == "__main__":
    main()

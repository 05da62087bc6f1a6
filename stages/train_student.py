"""Stage train_student: dark clips, cross-entropy + KD against the frozen teacher's view of the enhanced same frames.

kd.teacher_logits=cached (default) reads the teacher_logits stage's file, so the teacher never runs here;
kd.teacher_logits=online runs the frozen teacher on every batch (needed by kd.mixup and kd.hint).
kd.teacher=dual_light distils from the two-stream model: the teacher on the enhanced view and the no-KD baseline on
the dark view, fused at kd.T.
kd.epochs > 0 sets the student's schedule length alone; kd.hint > 0 adds a FitNets hint on the pooled last-block
features (online only). The unlabelled pool (--pool) joins the training set with the KD term only, at the same
budget (an epoch stays len(train split) clips). Which of the files below are read is decided by kd, in one place
(dlkdd.distill.targets.target_source).
"""
import argparse

from _common import params_or_exit, train_and_save

from dlkdd.config import student_train


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--frames", required=True, help="frame cache with index.csv")
    ap.add_argument("--clips", required=True, help="dark clips (the student's view)")
    ap.add_argument("--teacher-clips", required=True, help="enhanced clips (the teacher's view)")
    ap.add_argument("--teacher", required=True, help="teacher checkpoint (online only)")
    ap.add_argument("--baseline", required=True, help="no-KD dark baseline (online kd.teacher=dual_light only)")
    ap.add_argument("--teacher-logits", required=True, help="the teacher_logits stage's cache (cached only)")
    ap.add_argument("--pool", help="the unlabelled pool's frames folder (KD term only; kd.use_pool=false ignores it)")
    ap.add_argument("--pool-clips", help="the pool's dark clips")
    ap.add_argument("--pool-teacher-clips", help="the pool's enhanced clips (online teacher only)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--history", required=True)
    args = ap.parse_args()
    params = params_or_exit()
    kd = params.kd
    train_and_save("student", params, args.frames, [args.clips, args.teacher_clips], params.student, args.out,
                   args.history, teacher=args.teacher, baseline=args.baseline, kd=kd,
                   teacher_logits=args.teacher_logits, train_cfg=student_train(params.train, kd),
                   pool_frames=args.pool, pool_clip_dirs=[args.pool_clips, args.pool_teacher_clips])


if __name__ == "__main__":
    main()

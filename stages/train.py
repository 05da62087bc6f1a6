"""Stages train_teacher and train_baseline: one classifier trained with cross-entropy on one view of the clips.

``--role teacher``: the teacher's architecture (params.teacher) on the enhanced (brightened) clips.
``--role baseline``: the student's architecture (params.student) on the dark clips, no KD (the ablation).
"""
import argparse

from _common import params_or_exit, train_and_save


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--role", required=True, choices=["teacher", "baseline"], help="which model this run trains")
    ap.add_argument("--frames", required=True, help="frame cache with index.csv")
    ap.add_argument("--clips", required=True, help="folder of the clips this model sees")
    ap.add_argument("--out", required=True)
    ap.add_argument("--history", required=True)
    args = ap.parse_args()
    params = params_or_exit()
    # one branch per role, so dvc.yaml's params list (checked by tests/test_dvc_yaml_deps.py) stays per stage
    model_cfg = params.teacher if args.role == "teacher" else params.student
    train_and_save(args.role, params, args.frames, [args.clips], model_cfg, args.out, args.history)


if __name__ == "__main__":
    main()

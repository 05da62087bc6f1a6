"""Stage teacher_logits: the frozen teacher's logits on every training clip, plain and flipped, computed once.

The student stage reads them (kd.teacher_logits=cached), so a KD epoch costs what a no-KD epoch costs. Depends on the
teacher and its input only: kd.* changes never re-run it.
"""
import argparse
import sys
from pathlib import Path

from _common import params_or_exit

from dlkdd.data.dataset import ClipDataset
from dlkdd.data.frames import read_index
from dlkdd.distill.checkpoint import load_model
from dlkdd.distill.logit_cache import compute_teacher_logits, save_teacher_logits
from dlkdd.distill.runtime import seed_everything


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--frames", required=True, help="frame cache with index.csv")
    ap.add_argument("--clips", required=True, help="enhanced clips (the teacher's view)")
    ap.add_argument("--teacher", required=True, help="teacher checkpoint")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    params = params_or_exit()
    seed_everything(params.seed, params.train.threads)
    try:
        teacher, ckpt = load_model(args.teacher)
    except (FileNotFoundError, ValueError) as err:
        sys.exit(f"error: {err}")
    index, _ = read_index(args.frames)
    train = ClipDataset(index, [Path(args.clips)], "train")
    logits = compute_teacher_logits(teacher, train.views[0])
    save_teacher_logits(args.out, logits, train.index["clip_id"].astype(str).tolist(), arch=ckpt["arch"])
    print(f"teacher logits: {tuple(logits.shape)} (clips, plain/flipped, classes) → {args.out}")


if __name__ == "__main__":
    main()

"""Stage teacher_logits: the frozen teacher's logits on every training clip, plain and flipped, computed once.

The student stage reads them (kd.teacher_logits=cached), so a KD epoch costs what a no-KD epoch costs. Depends on the
teacher and its input, and on kd.teacher only: with kd.teacher=dual_light the no-KD dark baseline's logits on the dark
clips are stored beside them (``baseline_logits``, same layout), the student stage fuses the two at its temperature.
Other kd.* changes never re-run it; with the default the file holds exactly what it held before kd.teacher existed.
"""
import argparse
import sys
from pathlib import Path

from _common import params_or_exit

from dlkdd.data.dataset import ClipDataset
from dlkdd.data.frame_index import read_index
from dlkdd.distill.checkpoint import load_model
from dlkdd.distill.logit_cache import compute_teacher_logits, save_teacher_logits
from dlkdd.distill.runtime import seed_everything


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--frames", required=True, help="frame cache with index.csv")
    ap.add_argument("--clips", required=True, help="enhanced clips (the teacher's view)")
    ap.add_argument("--teacher", required=True, help="teacher checkpoint")
    ap.add_argument("--dark-clips", required=True, help="dark clips (the baseline's view; dual_light)")
    ap.add_argument("--baseline", required=True, help="no-KD dark baseline checkpoint (read for kd.teacher=dual_light)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    params = params_or_exit()
    seed_everything(params.seed, params.train.threads)
    dual = params.kd.teacher == "dual_light"
    try:
        teacher, ckpt = load_model(args.teacher)
        baseline = load_model(args.baseline)[0] if dual else None
    except (FileNotFoundError, ValueError) as err:
        sys.exit(f"error: {err}")
    index, _ = read_index(args.frames)
    train = ClipDataset(index, [Path(args.clips)], "train")
    logits = compute_teacher_logits(teacher, train.views[0])
    extra = {}
    if baseline is not None:  # the other half of the two-stream model, on the same clips in the same order
        dark = ClipDataset(index, [Path(args.dark_clips)], "train")
        extra["baseline_logits"] = compute_teacher_logits(baseline, dark.views[0]).contiguous()
    save_teacher_logits(args.out, logits, train.index["clip_id"].astype(str).tolist(), arch=ckpt["arch"], **extra)
    print(f"teacher logits: {tuple(logits.shape)} (clips, plain/flipped, classes){' + baseline' if dual else ''} "
          f"→ {args.out}")


if __name__ == "__main__":
    main()

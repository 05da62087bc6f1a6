"""Stage teacher_logits: the frozen teacher's logits on every training clip, plain and flipped, computed once.

The student stage reads them (kd.teacher_logits=cached), so a KD epoch costs what a no-KD epoch costs. Depends on the
teacher and its input, and on kd.teacher only: with kd.teacher=dual_light the no-KD dark baseline's logits on the dark
clips are stored beside them (``baseline_logits``, same layout), the student stage fuses the two at its temperature.
Other kd.* changes never re-run it; with the default the file holds exactly what it held before kd.teacher existed.
The unlabelled pool's clips (--pool) get rows too, after the train clips' (none without a pool: the same bytes).
"""
import argparse
import json
import sys
from pathlib import Path

import pandas as pd
import torch

from _common import params_or_exit

from dlkdd.atomic import write_text_atomic
from dlkdd.data.dataset import ClipDataset
from dlkdd.data.frame_index import read_index
from dlkdd.checkpoint import load_model
from dlkdd.distill.logit_cache import compute_teacher_logits, save_teacher_logits
from dlkdd.distill.runtime import seed_everything


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--frames", required=True, help="frame cache with index.csv")
    ap.add_argument("--clips", required=True, help="enhanced clips (the teacher's view)")
    ap.add_argument("--teacher", required=True, help="teacher checkpoint")
    ap.add_argument("--dark-clips", required=True, help="dark clips (the baseline's view; dual_light)")
    ap.add_argument("--baseline", required=True, help="no-KD dark baseline checkpoint (read for kd.teacher=dual_light)")
    ap.add_argument("--pool", help="the unlabelled pool's frames folder: its clips get rows too")
    ap.add_argument("--pool-clips", help="the pool's enhanced clips (the teacher's view)")
    ap.add_argument("--pool-dark-clips", help="the pool's dark clips (dual_light)")
    ap.add_argument("--pool-report", help="JSON: pool size, the teacher's confidence and pseudo-label accuracy")
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
    ids = train.index["clip_id"].astype(str).tolist()
    pool_index = read_index(args.pool)[0] if args.pool else None
    report = {"clips": 0}
    if pool_index is not None and len(pool_index):  # pool rows follow the train rows (no pool: the bytes of before)
        pool = ClipDataset(pool_index, [Path(args.pool_clips)], "unlabeled")
        pool_logits = compute_teacher_logits(teacher, pool.views[0])
        report = pool_report(pool_logits, pool.index, Path(args.pool))
        logits, ids = torch.cat([logits, pool_logits]), ids + pool.index["clip_id"].astype(str).tolist()
        if baseline is not None:
            dark = ClipDataset(pool_index, [Path(args.pool_dark_clips)], "unlabeled")
            extra["baseline_logits"] = torch.cat([extra["baseline_logits"],
                                                  compute_teacher_logits(baseline, dark.views[0])]).contiguous()
        print(f"pool: {report['clips']} unlabelled clips, teacher confidence {report['teacher_confidence']:.3f}"
              + (f", pseudo-label top-1 {report['pseudo_label_top1']:.3f} (true classes from the generator)"
                 if "pseudo_label_top1" in report else ""))
    if args.pool_report:
        write_text_atomic(args.pool_report, json.dumps(report, indent=1) + "\n")
    save_teacher_logits(args.out, logits, ids, arch=ckpt["arch"], **extra)
    print(f"teacher logits: {tuple(logits.shape)} (clips, plain/flipped, classes){' + baseline' if dual else ''} "
          f"→ {args.out}")


def pool_report(logits: torch.Tensor, index: pd.DataFrame, pool_dir: Path) -> dict:
    """The pool as the teacher sees it: size, mean top softmax probability and, where the true classes are known
    (the generator's truth.csv), the share of pseudo-labels (teacher argmax) that are right."""
    probs = logits[:, 0].softmax(1)  # the plain clip's row
    report = {"clips": len(index), "teacher_confidence": round(float(probs.max(1).values.mean()), 4)}
    truth_path = pool_dir / "truth.csv"
    if truth_path.is_file():
        truth = pd.read_csv(truth_path, dtype={"clip_id": str}).set_index("clip_id")["label"]
        ids = index["clip_id"].astype(str)
        known = ids.isin(truth.index).to_numpy()
        if known.any():
            pred = probs.argmax(1).numpy()[known]
            report["pseudo_label_top1"] = round(float((pred == truth.loc[ids[known]].to_numpy()).mean()), 4)
            report["pseudo_label_clips"] = int(known.sum())
    return report


if __name__ == "__main__":
    main()

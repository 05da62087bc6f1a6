"""Stage enhance: brighten every cached clip for the teacher's view (the student never sees these).

Also writes what the enhancement did: mean luma and a spatial noise estimate before/after (a JSON summary) and a
dark | enhanced strip of a few test clips (PNG, shown by `dvc plots show`).
"""
import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
from _common import load_zerodce_or_exit, params_or_exit
from tqdm import tqdm

from dlkdd.atomic import write_array_atomic, write_text_atomic
from dlkdd.data.frame_index import read_index
from dlkdd.enhance import enhance_clip
from dlkdd.enhance.report import clip_summary, comparison_strip, write_png

STRIP_CLIPS = 4


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--frames", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--model", default="models/zerodce.pt", help="Zero-DCE weights (read only for method zerodce)")
    ap.add_argument("--summary", default=None, help="JSON: mean luma / spatial noise before and after")
    ap.add_argument("--strip", default=None, help="PNG: dark | enhanced frames of a few test clips")
    ap.add_argument("--pool", default=None, help="frames directory of the unlabelled pool (enhanced for its teacher "
                    "targets; not in the metrics or the strip)")
    ap.add_argument("--pool-out", default=None, help="where the pool's enhanced clips go (<pool-out>/clips)")
    args = ap.parse_args()
    params = params_or_exit()
    cfg = params.enhance
    model = load_zerodce_or_exit(args.model) if cfg.method == "zerodce" else None
    index, _ = read_index(args.frames)
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    (out / "clips").mkdir(parents=True)
    # strip: the first test clip of the first few classes (fixed choice, so strips of two methods compare)
    test = index[index["split"] == "test"].drop_duplicates("label").sort_values("label")
    strip_ids = set(test["clip_id"].astype(str).head(STRIP_CLIPS))
    rows, pairs = [], []
    for cid in tqdm(index["clip_id"].astype(str), desc=f"enhance ({cfg.method})", unit="clip"):
        clip = np.load(Path(args.frames) / "clips" / f"{cid}.npy")
        enhanced = enhance_clip(clip, cfg, model)
        write_array_atomic(out / "clips" / f"{cid}.npy", enhanced)
        rows.append(clip_summary(clip, enhanced))
        if cid in strip_ids:
            pairs.append((f"{cid}: dark | {cfg.method}", clip, enhanced))
    summary = {k: round(float(v), 4) for k, v in pd.DataFrame(rows).mean().items()}
    summary["clips"] = len(rows)
    print(f"enhance ({cfg.method}): mean luma {summary.get('luma_before', 0):.1f} -> {summary.get('luma_after', 0):.1f}"
          f", spatial noise {summary.get('spatial_noise_before', 0):.2f} -> {summary.get('spatial_noise_after', 0):.2f}"
          " (luma units)")
    if args.summary:
        write_text_atomic(args.summary, json.dumps(summary, indent=2) + "\n")
    if args.strip and pairs:
        Path(args.strip).parent.mkdir(parents=True, exist_ok=True)
        write_png(args.strip, comparison_strip(pairs))
    if args.pool and args.pool_out:
        enhance_pool(Path(args.pool), Path(args.pool_out), cfg, model)


def enhance_pool(frames: Path, out: Path, cfg, model) -> None:
    """The pool's clips through the same enhancement, into ``out/clips`` (an empty folder for an empty pool)."""
    shutil.rmtree(out, ignore_errors=True)
    (out / "clips").mkdir(parents=True)
    index, _ = read_index(frames)
    for cid in tqdm(index["clip_id"].astype(str), desc=f"enhance pool ({cfg.method})", unit="clip"):
        write_array_atomic(out / "clips" / f"{cid}.npy", enhance_clip(np.load(frames / "clips" / f"{cid}.npy"),
                                                                      cfg, model))


if __name__ == "__main__":
    main()

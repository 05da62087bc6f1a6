"""Stage train_zerodce: train Zero-DCE on the dark TRAIN frames (zero-reference losses; nothing downloaded).

Only ``enhance.method=zerodce`` needs it. For any other method it writes a fixed 'unused' marker instantly, so the
stage costs nothing and its out keeps the same hash whatever the Zero-DCE training params are.
"""
import argparse
from pathlib import Path

import numpy as np
import torch
from _common import params_or_exit

from dlkdd.data.frame_index import read_index
from dlkdd.enhance.zerodce import save_zerodce, train_zerodce


def train_frames(frames_dir: Path, per_clip: int) -> np.ndarray:
    """(N, H, W, 3) uint8: ``per_clip`` evenly spaced frames of every train clip (never val/test)."""
    index, _ = read_index(frames_dir)
    ids = index.loc[index["split"] == "train", "clip_id"].astype(str)
    out = []
    for cid in ids:
        clip = np.load(frames_dir / "clips" / f"{cid}.npy")
        out.append(clip[np.linspace(0, len(clip) - 1, max(1, per_clip)).round().astype(int)])
    if not out:
        raise SystemExit(f"error: {frames_dir / 'index.csv'} has no train clips to train Zero-DCE on")
    return np.concatenate(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--frames", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    params = params_or_exit()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    if params.enhance.method != "zerodce":
        save_zerodce(args.out, None, note="unused: trained only when enhance.method=zerodce")
        print(f"train_zerodce: enhance.method is {params.enhance.method}; wrote the 'unused' marker {args.out}")
        return
    z = params.enhance.zerodce
    torch.set_num_threads(params.train.threads)
    frames = train_frames(Path(args.frames), z.frames_per_clip)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    net, history = train_zerodce(frames, z.epochs, z.lr, z.batch_size, z.crop, weights=z, seed=params.seed,
                                 weight_decay=z.weight_decay, device=device)
    save_zerodce(args.out, net, history=history, train_frames=int(len(frames)))
    last = history[-1] if history else {}
    print(f"train_zerodce: {len(frames)} dark train frames, {z.epochs} epochs; last epoch "
          + ", ".join(f"{k} {v:.4f}" for k, v in last.items() if k != "epoch") + f"; saved {args.out}")


if __name__ == "__main__":
    main()

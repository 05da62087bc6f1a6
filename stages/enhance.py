"""Stage enhance: brighten every cached clip for the teacher's view (the student never sees these)."""
import argparse
import shutil
from pathlib import Path

import numpy as np
from _common import params_or_exit
from tqdm import tqdm

from dlkdd.data.frames import read_index, save_array
from dlkdd.enhance import enhance_clip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--frames", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    params = params_or_exit()
    index, _ = read_index(args.frames)
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    (out / "clips").mkdir(parents=True)
    for cid in tqdm(index["clip_id"].astype(str), desc=f"enhance ({params.enhance.method})", unit="clip"):
        clip = np.load(Path(args.frames) / "clips" / f"{cid}.npy")
        save_array(out / "clips" / f"{cid}.npy", enhance_clip(clip, params.enhance))


if __name__ == "__main__":
    main()

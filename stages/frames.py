"""Stage frames: decode every clip of a manifest once into the packed uint8 frame cache."""
import argparse
import shutil
import sys
from pathlib import Path

import pandas as pd
from _common import params_or_exit

from dlkdd.data.footage import FootageError, footage_manifest
from dlkdd.data.frames import build_frame_cache


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--manifest", required=True, help="CSV: path,label,class_name,split,video_id")
    ap.add_argument("--out", required=True)
    ap.add_argument("--footage", help="landed footage sidecar (data/footage.csv): extra training clips, see footage.py")
    args = ap.parse_args()
    params = params_or_exit()
    manifest_path = Path(args.manifest)
    manifest = pd.read_csv(manifest_path)
    classes = manifest.drop_duplicates("label").sort_values("label")["class_name"].tolist()
    if args.footage:
        try:
            extra = footage_manifest(args.footage, manifest_path.parent, classes)
        except FootageError as err:
            sys.exit(f"error: {err}")
        if len(extra):  # an empty footage folder leaves the embedded manifest (and so every result) unchanged
            print(f"frames: + {len(extra)} landed footage clips from {args.footage}")
            manifest = pd.concat([manifest, extra], ignore_index=True)
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    result = build_frame_cache(manifest, manifest_path.parent, out, params.frames.num_frames, params.frames.size,
                               classes)
    print(result.summary())
    if result.ready == 0:
        sys.exit(f"error: no usable clips in {manifest_path}: see {out / 'quarantine.csv'}")


if __name__ == "__main__":
    main()

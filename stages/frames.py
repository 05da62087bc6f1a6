"""Stage frames: decode every clip of a manifest once into the packed uint8 frame cache.

Labelled clips go to --out; the unlabelled pool (split `unlabeled`, landed footage without a class) to --pool-out,
so a pool change leaves the labelled cache, and so the teacher and the baseline, untouched."""
import argparse
import shutil
import sys
from pathlib import Path

import pandas as pd
from _common import params_or_exit

from dlkdd.data.footage import FootageError, footage_manifest
from dlkdd.data.frame_index import MANIFEST_COLUMNS, REQUIRED_SPLITS, read_classes
from dlkdd.data.frames import SamplingSpec, build_frame_cache
from dlkdd.data.pool import build_pool_cache, split_pool
from dlkdd.isolated import WorkerStartError


def read_manifest(path: Path) -> tuple[pd.DataFrame, list[str]]:
    """The manifest and its class list (``classes.txt`` beside it, else derived from the labels); exits on errors."""
    if not path.is_file():
        sys.exit(f"error: manifest {path} not found: run `dvc repro generate` or a `dlkdd import-*` command")
    try:
        # paths and ids stay text ("001" is not 1); a user's ``root`` column is checked by the frame cache, which
        # trusts only the landed-footage folder as a root outside the dataset
        manifest = pd.read_csv(path, dtype={"path": str, "video_id": str, "root": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        sys.exit(f"error: {path} is not a readable CSV: {str(err).splitlines()[0]}")
    missing = [c for c in MANIFEST_COLUMNS if c not in manifest.columns]
    if missing:
        sys.exit(f"error: {path} lacks columns {missing}; a manifest has {','.join(MANIFEST_COLUMNS)}")
    if manifest.empty:
        sys.exit(f"error: {path} lists no clips")
    if (path.parent / "classes.txt").is_file():
        return manifest, read_classes(path.parent)
    labelled = manifest.dropna(subset=["label"]).drop_duplicates("label").sort_values("label")
    return manifest, labelled["class_name"].astype(str).tolist()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--manifest", required=True, help="CSV: path,label,class_name,split,video_id")
    ap.add_argument("--root", help="folder the manifest's paths are relative to (default: the manifest's folder)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--footage", help="landed footage sidecar (data/footage.csv): extra training clips, see footage.py")
    ap.add_argument("--pool-out", help="frame cache of the unlabelled pool (split `unlabeled` rows and landed "
                    "footage without a class); without it those rows are left out")
    args = ap.parse_args()
    params = params_or_exit()
    f = params.frames
    manifest_path = Path(args.manifest)
    root = Path(args.root) if args.root else manifest_path.parent
    if not root.is_dir():
        sys.exit(f"error: dataset root {root} is not a folder (set data.root in params.yaml)")
    manifest, classes = read_manifest(manifest_path)
    trusted: tuple[str, ...] = ()  # row roots outside the dataset root that rows may have: landed footage's folder
    if args.footage:
        try:
            extra = footage_manifest(args.footage, classes)
        except FootageError as err:
            sys.exit(f"error: {err}")
        if len(extra):  # an empty footage folder leaves the manifest (and so every result) unchanged
            print(f"frames: + {len(extra)} landed footage clips from {args.footage}")
            manifest = pd.concat([manifest, extra], ignore_index=True)
            trusted = tuple(sorted(set(extra["root"])))
    manifest, pool = split_pool(manifest)
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    spec = SamplingSpec(num_frames=f.num_frames, size=f.size, clips_per_video=f.clips_per_video,
                        train_sampling=f.train_sampling, stride=f.stride,
                        min_decoded_fraction=f.min_decoded_fraction, seed=params.seed,
                        decode_timeout_s=f.decode_timeout_s)
    try:
        result = build_frame_cache(manifest, root, out, f.num_frames, f.size, classes, workers=f.workers, spec=spec,
                                   trusted_roots=trusted)
    except ValueError as err:  # two rows would write one clip file
        sys.exit(f"error: {manifest_path}: {err}")
    except WorkerStartError as err:  # the machine's problem, not a file's: a bad file only quarantines itself
        sys.exit(f"error: {err}")
    print(result.summary())
    if result.ready == 0:
        sys.exit(f"error: no usable clips in {manifest_path}: every one is quarantined, see {out / 'quarantine.csv'}")
    ready = pd.read_csv(out / "index.csv")["split"].value_counts()
    empty = [s for s in REQUIRED_SPLITS if ready.get(s, 0) == 0]
    if empty:
        sys.exit(f"error: split(s) {empty} have no usable clips after quarantine (see {out / 'quarantine.csv'}); "
                 "the pipeline needs train, val and test: fix the files or re-import with other split options")
    if args.pool_out:
        try:
            print(build_pool_cache(manifest, pool, root, Path(args.pool_out), spec, classes, f.workers, trusted))
        except (ValueError, WorkerStartError) as err:  # two pool rows would write one clip file; no worker starts
            sys.exit(f"error: unlabelled pool: {err}")


if __name__ == "__main__":
    main()

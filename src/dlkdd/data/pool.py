"""The unlabelled pool: clips with no label that the student learns from through the teacher's soft targets alone.

Pool clips are manifest rows in split ``unlabeled`` with no label (``dlkdd import-folder --unlabeled``, the
generator's ``unlabeled_per_class``) and landed footage without a class (data/footage.csv). They are cached apart
from the labelled clips (``data/pool``, the frame-cache layout with label ``-1``), so a pool change never touches
what the teacher, the baseline and the evaluation read.

A pool clip may never be a labelled clip in disguise: a row whose file is a labelled row's file (same path after
resolving symlinks, or same bytes) or whose ``video_id`` is a labelled row's is refused as a ``duplicate`` naming the
labelled row, which always wins. A test clip copied into the unlabelled folder would otherwise be trained on.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pandas as pd

from dlkdd.atomic import write_csv_atomic, write_text_atomic
from dlkdd.data.frame_index import INDEX_COLUMNS, POOL_SPLIT, QUARANTINE_COLUMNS, TRUTH_FILE
from dlkdd.data.frames import SamplingSpec, build_frame_cache, row_root
from dlkdd.data.safe_files import UnsafeFile, fingerprint
from dlkdd.data.video import printable

__all__ = ["NO_LABEL", "POOL_SPLIT", "TRUTH_FILE", "build_pool_cache", "drop_labelled_copies", "pool_truth",
           "split_pool"]
NO_LABEL = -1  # the label a pool clip has in the frame cache's index (never a class)


def split_pool(manifest: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(labelled rows, pool rows) of a manifest; pool rows get label ``NO_LABEL`` and an empty class name.

    A row in split ``unlabeled`` that carries a label is still a pool row: its label is dropped, never trained on.
    """
    is_pool = manifest["split"].astype(str) == POOL_SPLIT
    if not is_pool.any():
        return manifest, manifest.iloc[:0].copy()
    pool = manifest[is_pool].copy()
    pool["label"], pool["class_name"] = NO_LABEL, ""
    labelled = manifest[~is_pool].copy()
    # the pool's blank labels made the column float: labels go back to ints (a blank labelled one stays, refused later)
    labelled["label"] = [int(v) if isinstance(v, float) and v.is_integer() else v for v in labelled["label"]]
    return labelled, pool.reset_index(drop=True)


def _md5(path: Path) -> str | None:
    try:
        return fingerprint(path, follow_symlinks=True).md5
    except (UnsafeFile, OSError):  # the frame cache quarantines unreadable files with their own reason
        return None


def _size(path: Path) -> int | None:
    return os.path.getsize(path) if path.is_file() else None


def drop_labelled_copies(labelled: pd.DataFrame, pool: pd.DataFrame, root: str | Path) -> tuple[pd.DataFrame,
                                                                                                   list[dict]]:
    """The pool rows that are no labelled row's clip, and a quarantine row (path, reason, kind ``duplicate``) for
    each that is: same resolved file, same md5 or same ``video_id`` as a labelled row (named in the reason).

    Only files whose size a file on the other side shares are hashed: a copy has its original's size, and a pool of
    thousands of night clips is not read whole on every run."""
    root = Path(root)
    if pool.empty:
        return pool, []
    pool_recs, lab_recs = pool.to_dict("records"), labelled.to_dict("records")
    pool_files = [row_root(r, root) / str(r["path"]) for r in pool_recs]
    lab_files = [row_root(r, root) / str(r["path"]) for r in lab_recs]
    pool_sizes, lab_sizes = [_size(f) for f in pool_files], [_size(f) for f in lab_files]
    shared = (set(pool_sizes) & set(lab_sizes)) - {None}
    by_real, by_md5, by_id = {}, {}, {}
    for rec, f, size in zip(lab_recs, lab_files, lab_sizes):
        shown = f"{printable(str(rec['path']))} ({rec['split']}, video_id {rec['video_id']})"
        by_real.setdefault(os.path.realpath(f), shown)
        by_id.setdefault(str(rec["video_id"]), shown)
        if size in shared and (md5 := _md5(f)):
            by_md5.setdefault(md5, shown)
    keep, dups = [], []
    for i, (rec, f, size) in enumerate(zip(pool_recs, pool_files, pool_sizes)):
        rel, md5 = printable(str(rec["path"])), _md5(f) if size in shared else None
        why = None
        if os.path.realpath(f) in by_real:
            why = f"{rel}: the same file as the labelled clip {by_real[os.path.realpath(f)]}"
        elif md5 and md5 in by_md5:
            why = f"{rel}: the same bytes as the labelled clip {by_md5[md5]}"
        elif str(rec["video_id"]) in by_id:
            why = f"{rel}: video_id {rec['video_id']} is the labelled clip {by_id[str(rec['video_id'])]}"
        if why:
            dups.append({"path": rel, "reason": why + "; the labelled clip is kept, this pool row is not used",
                         "kind": "duplicate"})
        else:
            keep.append(i)
    return pool.iloc[keep].reset_index(drop=True), dups


def pool_truth(root: str | Path, pool_index: pd.DataFrame) -> pd.DataFrame | None:
    """``clip_id,label`` of the pool clips whose true class the dataset ships (``<root>/unlabeled_truth.csv``, the
    generator's), or None without that file. Only for scoring the teacher's pseudo-labels."""
    path = Path(root) / TRUTH_FILE
    if not path.is_file() or pool_index.empty:
        return None
    truth = pd.read_csv(path, dtype={"path": str})
    merged = pool_index[["clip_id", "path"]].merge(truth[["path", "label"]], on="path", how="inner")
    return merged[["clip_id", "label"]]


def build_pool_cache(labelled: pd.DataFrame, pool: pd.DataFrame, root: str | Path, out: Path, spec: SamplingSpec,
                     classes: list[str], workers: int = 1, trusted_roots: tuple[str | Path, ...] = ()) -> str:
    """The pool's frame cache at ``out`` (the frame-cache layout; empty files when there is no pool); returns a
    one-line summary. A copy of a labelled clip is quarantined first (:func:`drop_labelled_copies`), the rest is
    decoded like training clips; the generator's true classes (if any) go to ``truth.csv`` beside it, for scoring
    pseudo-labels only. Raises ValueError (one line) when two pool rows would write one clip file."""
    shutil.rmtree(out, ignore_errors=True)
    pool, dups = drop_labelled_copies(labelled, pool, root)
    if pool.empty:
        (out / "clips").mkdir(parents=True)
        write_csv_atomic(pd.DataFrame(columns=INDEX_COLUMNS), out / "index.csv")
        write_csv_atomic(pd.DataFrame(columns=["clip_id", "split", "label"]), out / "stats.csv")
        write_csv_atomic(pd.DataFrame(dups, columns=QUARANTINE_COLUMNS), out / "quarantine.csv")
        write_text_atomic(out / "classes.txt", "\n".join(classes) + "\n")
        return f"pool: no unlabelled clips{f', {len(dups)} duplicates quarantined' if dups else ''}"
    result = build_frame_cache(pool, Path(root), out, spec.num_frames, spec.size, classes, workers=workers,
                               spec=spec, trusted_roots=trusted_roots)
    if dups:  # the labelled copies first, then what the decoder refused
        bad = pd.read_csv(out / "quarantine.csv", dtype=str, keep_default_na=False)
        write_csv_atomic(pd.concat([pd.DataFrame(dups, columns=QUARANTINE_COLUMNS), bad]), out / "quarantine.csv")
    truth = pool_truth(root, pd.read_csv(out / "index.csv", dtype={"path": str, "clip_id": str}))
    if truth is not None:
        write_csv_atomic(truth, out / "truth.csv")
    bad = result.quarantined + len(dups)
    return f"pool: {result.ready:,} unlabelled clips ready" + (
        f", {bad} quarantined: see {out / 'quarantine.csv'}" if bad else "")

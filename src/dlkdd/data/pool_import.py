"""Unlabelled footage → pool rows of an existing manifest (issue 23): ``dlkdd import-folder DIR --unlabeled``.

Every video file under ``DIR`` (any depth, any layout: no class folders needed) becomes a row with split
``unlabeled``, an empty label and an empty class_name, appended to the ``manifest.csv`` an earlier ``import-*`` wrote
into the same ``--out`` with the same ``--root``. A pool is added to a labelled dataset, never imported alone: the
pipeline needs train/val/test, so without that manifest the import is refused (one line). The labelled rows and
``classes.txt`` are left exactly as they were.

Rules (the labelled importers' checks, :mod:`dlkdd.data.importers`, and the same quarantine kinds):

- Paths are relative to the dataset root, so ``DIR`` must lie inside it (else refused: move it, or pick a root
  above both). A name that is not UTF-8 is ``bad_name``; a file (or a symlink) resolving outside the root is
  ``escapes_root``; a FIFO, socket or device with a video name is ``not_regular`` (never opened); a broken symlink is
  ``missing``; a file that cannot be hashed is ``unreadable``. Folders whose name starts with ``.`` are skipped, and
  symlinked folders are not entered (their clips are imported from where they really are, if under ``DIR``).
- A pool clip that is a clip already in the manifest (labelled or pooled) by resolved path, hard link or md5, or whose
  file stem or path-id is a labelled row's ``video_id`` (the same video, e.g. a re-encoded test clip), is
  ``duplicate`` naming the row kept: the labelled row always wins, so a test clip copied into the pool folder never
  becomes a pool row. Two pool clips that are one file: the first (path order) is kept.
- A pool row's video_id is its file stem when no other row (in the manifest or in this import) has that stem, else
  the path-id (:func:`dlkdd.data.importers.path_video_id`); an id still taken is ``duplicate``.
- Re-running is idempotent: a file already a pool row (same path) is counted as already there, not re-added nor
  quarantined; quarantine rows are appended to ``import_quarantine.csv`` only when not already in it.
- Videos are not decoded here: a corrupt, truncated or empty file becomes a pool row and the frame cache's isolated
  decoder quarantines it (``data/pool/quarantine.csv``), as it does for labelled clips.
"""
from __future__ import annotations

import os
import stat
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from dlkdd.atomic import write_csv_atomic
from dlkdd.data.frame_index import MANIFEST_COLUMNS, POOL_SPLIT, QUARANTINE_COLUMNS
from dlkdd.data.importers import (DatasetImportError, Imported, _duplicate, check_out_dir, drop_duplicates,
                                  folder_in_root, is_utf8_name, path_video_id, row_problem)
from dlkdd.data.safe_files import describe
from dlkdd.data.video import VIDEO_SUFFIXES, escape_problem, printable

POOL_HINT = "a pool clip is never a labelled clip nor another pool clip; drop it from the pool folder"


@dataclass
class PoolImportResult:
    manifest: Path
    quarantine: Path
    added: int
    already: int
    pool: int  # pool rows in the manifest after the import
    quarantined: int  # rejected by this import

    def summary(self) -> str:
        q = f", {self.quarantined:,} quarantined: see {self.quarantine}" if self.quarantined else ""
        return (f"{self.added:,} unlabelled clips added to the pool ({self.already:,} already in it, "
                f"{self.pool:,} in all){q} → {self.manifest}")


def read_pool(folder: str | Path, root: str | Path) -> Imported:
    """Every file with a video suffix under ``folder``, at any depth, as an unlabelled row (``class_id`` None,
    split ``unlabeled``) with its path relative to ``root``; names that are not UTF-8 go to ``bad`` (module doc)."""
    folder = Path(folder)
    prefix = folder_in_root(folder, root)
    out = Imported(source=f"pool {folder}")
    for dirpath, dirnames, filenames in os.walk(folder):  # followlinks=False: symlinked folders are not entered
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if Path(name).suffix.lower() not in VIDEO_SUFFIXES:
                continue
            rel = Path(prefix, Path(dirpath, name).relative_to(folder)).as_posix()
            if is_utf8_name(rel):
                out.rows.append({"path": rel, "class_id": None, "split": POOL_SPLIT})
            else:
                shown = printable(rel)
                out.bad.append({"path": shown, "kind": "bad_name", "reason": f"{shown}: file name is not valid "
                                "UTF-8 (bytes shown escaped); rename it to import it"})
    if not out.rows and not out.bad:
        raise DatasetImportError(f"{folder}: no video files ({', '.join(VIDEO_SUFFIXES)}) in it or its subfolders")
    return out


def pool_row_problem(path: str, root: Path) -> tuple[str, str] | None:
    """Why a pool file cannot be a pool row, as (reason, kind), or None: :func:`row_problem`'s checks (escape
    first, so a symlink out of the root is never looked at further) plus ``not_regular`` before any open."""
    escape = escape_problem(path, root)
    if escape is not None:
        return escape
    try:
        mode = os.stat(Path(root) / path).st_mode
    except OSError:
        mode = None  # a broken symlink: row_problem says missing
    if mode is not None and not stat.S_ISREG(mode):
        return (f"{path} is {describe(mode)}, not a regular file (never opened); copy the video itself into the "
                "pool folder", "not_regular")
    return row_problem(path, None, {}, root)


def add_pool(imp: Imported, root: str | Path, out_dir: str | Path) -> PoolImportResult:
    """Append ``imp``'s usable rows to ``out_dir/manifest.csv`` as pool rows and their rejects to
    ``import_quarantine.csv`` (module doc); the labelled rows and classes.txt are not touched."""
    root, out_dir = Path(root), Path(out_dir)
    check_out_dir(out_dir, root)
    manifest_path, quarantine_path = out_dir / "manifest.csv", out_dir / "import_quarantine.csv"
    old = _read_manifest(manifest_path, root)
    known = old.to_dict("records")
    in_pool = {os.path.normpath(r["path"]) for r in known if r["split"] == POOL_SPLIT}
    bad, fresh, already = list(imp.bad), [], 0
    for r in imp.rows:
        if os.path.normpath(r["path"]) in in_pool:
            already += 1
            continue
        problem = pool_row_problem(r["path"], root)
        if problem:
            bad.append({"path": r["path"], "reason": problem[0], "kind": problem[1]})
        else:
            fresh.append(r)
    fresh, dups = drop_duplicates(fresh, root, known=known, hint=POOL_HINT)
    fresh, same_id = _pool_video_ids(fresh, known)
    bad += dups + same_id
    if fresh:
        new = pd.DataFrame([{"path": r["path"], "label": "", "class_name": "", "split": POOL_SPLIT,
                             "video_id": r["video_id"]} for r in fresh], columns=old.columns).fillna("")
        write_csv_atomic(pd.concat([old, new], ignore_index=True), manifest_path)
    _append_quarantine(quarantine_path, bad)
    return PoolImportResult(manifest_path, quarantine_path, len(fresh), already, len(in_pool) + len(fresh), len(bad))


def _read_manifest(path: Path, root: Path) -> pd.DataFrame:
    """The labelled import's manifest, every cell as text (so labelled rows are written back byte for byte);
    refused when there is none, or when ``root`` holds none of its labelled files (not the import's root)."""
    if not path.is_file():
        raise DatasetImportError(f"{path} not found: a pool is added to a labelled dataset (the pipeline needs "
                                 "train/val/test); import that first into this --out with the same --root, then add "
                                 "the pool")
    old = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in MANIFEST_COLUMNS if c not in old.columns]
    if missing:
        raise DatasetImportError(f"{path}: not a dlkdd manifest (no column {', '.join(missing)}); re-import the "
                                 "labelled dataset into this --out")
    labelled = old.loc[old.split != POOL_SPLIT, "path"]
    if len(labelled) and not any((root / p).exists() for p in labelled):
        raise DatasetImportError(f"none of the {len(labelled):,} labelled clips of {path} is under --root {root}: "
                                 "pass the --root the labelled dataset was imported with")
    return old


def _pool_video_ids(rows: list[dict], known: list[dict]) -> tuple[list[dict], list[dict]]:
    """Set ``video_id`` on each new pool row (module doc); a row whose stem or path-id is a labelled row's id is that
    labelled video (``duplicate`` naming it), a row whose id is still taken is a ``duplicate`` too."""
    labelled = {r["video_id"]: r for r in known if r["split"] != POOL_SPLIT}
    taken = {r["video_id"]: r for r in known}
    stems = Counter(Path(r["path"]).stem for r in rows)
    kept, dups = [], []
    for r in rows:
        stem, full = Path(r["path"]).stem, path_video_id(r["path"])
        same = next(((vid, labelled[vid]) for vid in (stem, full) if vid in labelled), None)
        vid = stem if stems[stem] == 1 and stem not in taken else full
        if same is None and vid in taken:
            same = (vid, taken[vid])
        if same is not None:
            dups.append(_duplicate(r, same[1], f"video_id {same[0]!r} is already that of", POOL_HINT))
            continue
        taken[vid] = r
        kept.append({**r, "video_id": vid})
    return kept, dups


def _append_quarantine(path: Path, bad: list[dict]) -> None:
    """Add this import's rejects to the quarantine file, each row once (a re-run adds nothing)."""
    old = pd.read_csv(path, dtype=str, keep_default_na=False) if path.is_file() else pd.DataFrame(
        columns=QUARANTINE_COLUMNS)
    have = set(old[QUARANTINE_COLUMNS].itertuples(index=False, name=None))
    new = [b for b in (dict.fromkeys((b["path"], b["reason"], b["kind"]) for b in bad)) if b not in have]
    if new or not path.is_file():
        write_csv_atomic(pd.concat([old, pd.DataFrame(new, columns=QUARANTINE_COLUMNS)], ignore_index=True), path)

"""Landed footage: clips added after the embedded dataset, merged into the frame cache as extra training clips.

Layout (the folder is tracked by DVC, the sidecar CSV by git)::

    data/footage/<Class>/<name>.avi|mp4|mkv     the videos
    data/footage.csv                            path,class_name,md5   (path relative to data/footage)

The CSV is the label sidecar and the content fingerprint in one: it lists every clip with its md5, so the ``frames``
stage depends on the footage through it (and it exists, header only, before any footage has landed, so the pipeline
runs on a fresh clone). An empty ``class_name`` marks unlabelled footage, which is kept but not used for training.

Adding clips is atomic: all files are copied into a temp folder on the destination filesystem first, then renamed
into place and the CSV rewritten with a temp file + rename; on any failure the renamed files are removed again.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from dlkdd.atomic import atomic_path

FOOTAGE_COLUMNS = ["path", "class_name", "md5"]
VIDEO_SUFFIXES = (".avi", ".mp4", ".mkv", ".mov")


class FootageError(ValueError):
    """Footage that cannot be used as asked; the message says what is wrong in one line."""


@dataclass(frozen=True)
class NewClip:
    """A clip to add: where it is now, its class (None = unlabelled) and its md5."""

    src: Path
    class_name: str | None
    md5: str


def file_md5(path: str | Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_footage_csv(path: str | Path) -> pd.DataFrame:
    """The footage sidecar; a missing file is the same as an empty one."""
    path = Path(path)
    if not path.exists():
        return pd.DataFrame(columns=FOOTAGE_COLUMNS)
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = set(FOOTAGE_COLUMNS) - set(df.columns)
    if missing:
        raise FootageError(f"{path}: missing column(s) {sorted(missing)}; expected header {','.join(FOOTAGE_COLUMNS)}")
    return df[FOOTAGE_COLUMNS]


def _write_csv_atomic(df: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)


def footage_manifest(footage_csv: str | Path, classes: list[str]) -> pd.DataFrame:
    """Labelled footage as manifest rows (path,label,class_name,split,video_id,root), all in the ``train`` split.

    ``path`` is relative to ``root`` (the footage folder, data/footage.csv → data/footage): the frame cache takes a
    per-row root, so landed clips never need a path that climbs out of the dataset's root (which it quarantines).
    The test split is untouched, so metrics before and after a landing stay comparable.
    """
    footage_csv = Path(footage_csv)
    df = read_footage_csv(footage_csv)
    df = df[df["class_name"] != ""]
    unknown = sorted(set(df["class_name"]) - set(classes))
    if unknown:
        raise FootageError(f"{footage_csv}: unknown class(es) {unknown}; known: {classes}")
    footage_dir = footage_csv.with_suffix("")  # data/footage.csv -> data/footage
    rows = []
    for rec in df.sort_values("path").to_dict("records"):
        clip = footage_dir / rec["path"]
        if not clip.is_file():
            raise FootageError(f"{clip}: listed in {footage_csv} but missing (run `dvc pull` or `dvc checkout`)")
        rows.append({"path": Path(rec["path"]).as_posix(), "label": classes.index(rec["class_name"]),
                     "class_name": rec["class_name"], "split": "train",
                     "video_id": "footage_" + Path(rec["path"]).with_suffix("").as_posix().replace("/", "_"),
                     "root": str(footage_dir)})
    return pd.DataFrame(rows, columns=["path", "label", "class_name", "split", "video_id", "root"])


def _dest_name(clip: NewClip) -> str:
    """``<Class>/<stem>_<md5[:8]><ext>``: the md5 suffix keeps same-named clips from different nights apart."""
    folder = clip.class_name or "_unlabelled"
    return f"{folder}/{clip.src.stem}_{clip.md5[:8]}{clip.src.suffix.lower()}"


def add_clips(footage_csv: str | Path, clips: list[NewClip]) -> list[str]:
    """Copy ``clips`` into the footage folder next to ``footage_csv`` and list them in it, all or nothing.

    Clips whose md5 is already listed are skipped. Returns the paths (relative to the footage folder) added.
    """
    footage_csv = Path(footage_csv)
    footage_dir = footage_csv.with_suffix("")
    table = read_footage_csv(footage_csv)
    known = set(table["md5"])
    todo = []
    for c in clips:
        if c.md5 not in known:
            known.add(c.md5)
            todo.append(c)
    if not todo:
        return []
    footage_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".incoming-", dir=footage_dir.parent))  # same filesystem → rename works
    placed: list[Path] = []
    try:
        names = [_dest_name(c) for c in todo]
        for c, name in zip(todo, names):
            tmp = staging / name
            tmp.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(c.src, tmp)
            if file_md5(tmp) != c.md5:
                raise FootageError(f"{c.src}: changed while being copied; try again")
        for name in names:
            dest = footage_dir / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / name, dest)
            placed.append(dest)
        new = pd.DataFrame([{"path": n, "class_name": c.class_name or "", "md5": c.md5} for c, n in zip(todo, names)])
        _write_csv_atomic(pd.concat([table, new], ignore_index=True), footage_csv)
    except BaseException:
        for p in placed:
            p.unlink(missing_ok=True)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return names


@dataclass(frozen=True)
class Landed:
    """A clip found in the inbox: its path and the class its folder (or labels.csv) gives it (None = unlabelled)."""

    path: Path
    class_name: str | None


def scan_inbox(inbox: str | Path, settle_s: float = 0.0, now: float | None = None) -> list[Landed]:
    """Settled video files in ``inbox``: ``<inbox>/<Class>/*.mp4|avi|...`` are labelled by folder, loose files by an
    optional ``<inbox>/labels.csv`` (``path,class_name``), else unlabelled. Hidden files (``.name``, partial uploads)
    and files modified in the last ``settle_s`` seconds (still being copied) are left for the next look.
    """
    import time

    inbox = Path(inbox)
    if not inbox.is_dir():
        return []
    now = time.time() if now is None else now
    labels: dict[str, str] = {}
    if (inbox / "labels.csv").is_file():
        side = pd.read_csv(inbox / "labels.csv", dtype=str, keep_default_na=False)
        labels = dict(zip(side.get("path", []), side.get("class_name", [])))
    found = []
    for p in sorted(inbox.rglob("*")):
        rel = p.relative_to(inbox)
        if (not p.is_file() or p.suffix.lower() not in VIDEO_SUFFIXES or any(s.startswith(".") for s in rel.parts)
                or len(rel.parts) > 2 or now - p.stat().st_mtime < settle_s):
            continue
        cls = rel.parts[0] if len(rel.parts) == 2 else (labels.get(rel.as_posix()) or None)
        found.append(Landed(p, cls))
    return found

"""Landed footage: clips added after the embedded dataset, merged into the frame cache as extra training clips.

Layout (the folder is tracked by DVC, the sidecar CSV by git)::

    data/footage/<Class>/<name>.avi|mp4|mkv     the videos
    data/footage.csv                            path,class_name,md5,source   (path relative to data/footage)

The CSV is the label sidecar and the content fingerprint in one: it lists every clip with its md5, so the ``frames``
stage depends on the footage through it (and it exists, header only, before any footage has landed, so the pipeline
runs on a fresh clone). An empty ``class_name`` marks unlabelled footage: it joins the unlabelled pool
(:mod:`dlkdd.data.pool`), which the student learns from through the teacher's soft targets only.
``source`` (optional: a sidecar written before it existed lacks it) is the clip's name in the inbox: a landed name is
``<stem>_<md5[:8]><ext>`` with a long stem shortened (:func:`dlkdd.data.safe_files.safe_name`), so the original
name is only kept here.

Adding clips is atomic: all files are copied into a temp folder on the destination filesystem first (each copy
hashed as it is made and compared with the md5 the clip was accepted under), then renamed into place and the CSV
rewritten with a temp file + rename; on any failure the renamed files are removed again.

Clips reach it from the inbox (:mod:`dlkdd.data.inbox`: survey, claim, release, quarantine). Only regular files are
ever opened (:mod:`dlkdd.data.safe_files`).
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from dlkdd.atomic import write_csv_atomic
from dlkdd.data.safe_files import UnsafeFile, fingerprint, open_regular, safe_name
from dlkdd.data.video import printable

FOOTAGE_COLUMNS = ["path", "class_name", "md5"]  # required; SIDECAR_COLUMNS is what add_clips writes
SIDECAR_COLUMNS = [*FOOTAGE_COLUMNS, "source"]
MAX_LANDED_STEM = 100  # bytes of a landed stem: <Class>_<stem>_<md5[:8]> is also a frame-cache file name


class FootageError(ValueError):
    """Footage that cannot be used as asked; the message says what is wrong in one line."""


class ClipChanged(FootageError):
    """A clip whose bytes are no longer the ones it was accepted under (grown, rewritten, replaced, vanished)."""

    def __init__(self, src: Path, why: str) -> None:
        super().__init__(f"{printable(src)}: {why}")
        self.src, self.why = src, why


@dataclass(frozen=True)
class NewClip:
    """A clip to add: where it is now, its class (None = unlabelled), its md5 and its name in the inbox."""

    src: Path
    class_name: str | None
    md5: str
    source: str = ""  # recorded in the sidecar; "" = the file's name


def file_md5(path: str | bytes | Path) -> str:
    """The md5 of a regular file (symlinks followed); a FIFO, socket or device raises UnsafeFile, never blocks."""
    return fingerprint(path, follow_symlinks=True).md5


def read_footage_csv(path: str | Path) -> pd.DataFrame:
    """The footage sidecar; a missing file is the same as an empty one."""
    path = Path(path)
    if not path.exists():
        return pd.DataFrame(columns=SIDECAR_COLUMNS)
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = set(FOOTAGE_COLUMNS) - set(df.columns)
    if missing:
        raise FootageError(f"{path}: missing column(s) {sorted(missing)}; expected header {','.join(FOOTAGE_COLUMNS)}")
    if "source" not in df.columns:
        df["source"] = ""
    return df[SIDECAR_COLUMNS]


def footage_manifest(footage_csv: str | Path, classes: list[str]) -> pd.DataFrame:
    """Landed footage as manifest rows (path,label,class_name,split,video_id,root): labelled clips in the ``train``
    split, unlabelled ones (empty class_name) in the ``unlabeled`` split (the pool, :mod:`dlkdd.data.pool`).

    ``path`` is relative to ``root`` (the footage folder, data/footage.csv → data/footage): the frame cache takes a
    per-row root, so landed clips never need a path that climbs out of the dataset's root (which it quarantines).
    The test split is untouched, so metrics before and after a landing stay comparable.
    """
    footage_csv = Path(footage_csv)
    df = read_footage_csv(footage_csv)
    unknown = sorted(set(df["class_name"]) - set(classes) - {""})
    if unknown:
        raise FootageError(f"{footage_csv}: unknown class(es) {unknown}; known: {classes}")
    footage_dir = footage_csv.with_suffix("")  # data/footage.csv -> data/footage
    rows = []
    for rec in df.sort_values("path").to_dict("records"):
        clip = footage_dir / rec["path"]
        if not clip.is_file():
            raise FootageError(f"{clip}: listed in {footage_csv} but missing (run `dvc pull` or `dvc checkout`)")
        labelled = rec["class_name"] != ""
        rows.append({"path": Path(rec["path"]).as_posix(),
                     "label": classes.index(rec["class_name"]) if labelled else -1,
                     "class_name": rec["class_name"], "split": "train" if labelled else "unlabeled",
                     "video_id": "footage_" + Path(rec["path"]).with_suffix("").as_posix().replace("/", "_"),
                     "root": str(footage_dir)})
    return pd.DataFrame(rows, columns=["path", "label", "class_name", "split", "video_id", "root"])


def _dest_name(clip: NewClip) -> str:
    """``<Class>/<stem>_<md5[:8]><ext>``: the md5 suffix keeps same-named clips from different nights apart; a stem
    longer than MAX_LANDED_STEM bytes is shortened (its full name is the sidecar's ``source``)."""
    folder = clip.class_name or "_unlabelled"
    stem = safe_name(clip.src.stem, MAX_LANDED_STEM)
    return f"{folder}/{stem}_{clip.md5[:8]}{clip.src.suffix.lower()}"


def _copy_verified(src: Path, dest: Path, md5: str) -> None:
    """Copy the regular file ``src`` to ``dest``, hashing the bytes copied; raises :class:`ClipChanged` when they
    are not the ones accepted (``md5``) or ``src`` is gone or no longer a regular file."""
    try:
        fd = open_regular(src)
    except UnsafeFile as err:
        raise ClipChanged(src, f"{err.kind} when it was landed") from None
    digest = hashlib.md5()
    with os.fdopen(fd, "rb") as fin, open(dest, "wb") as fout:
        while chunk := fin.read(1 << 20):
            digest.update(chunk)
            fout.write(chunk)
    if digest.hexdigest() != md5:
        raise ClipChanged(src, "its bytes changed after it was accepted (still being written?)")


def add_clips(footage_csv: str | Path, clips: list[NewClip]) -> list[str]:
    """Copy ``clips`` into the footage folder next to ``footage_csv`` and list them in it, all or nothing.

    Clips whose md5 is already listed are skipped. Returns the paths (relative to the footage folder) added. A clip
    whose bytes are not its md5 any more (or that vanished) raises :class:`ClipChanged` naming it; nothing is added.
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
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            _copy_verified(c.src, staging / name, c.md5)
        for name in names:
            dest = footage_dir / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / name, dest)
            placed.append(dest)
        new = pd.DataFrame([{"path": n, "class_name": c.class_name or "", "md5": c.md5,
                             "source": c.source or c.src.name} for c, n in zip(todo, names)], columns=SIDECAR_COLUMNS)
        write_csv_atomic(pd.concat([table, new], ignore_index=True), footage_csv)
    except BaseException:
        for p in placed:
            p.unlink(missing_ok=True)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return names

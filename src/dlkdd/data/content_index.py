"""Which clip of a dataset holds which bytes: a landing that copies a clip the pipeline already trains or tests on
(in any split) is refused by its content, not its name, so a copy of a test clip never becomes a training clip.

The dataset is every file a manifest lists (``path`` relative to its root, or to the row's own ``root``; ``split``)
and every file of the landed-footage sidecar (no ``split`` column: labelled rows are ``train``, the rest
``unlabelled``; its ``md5`` column is used as is, so landed footage counts even where it is not checked out).

Hashing a whole dataset each night is slow (ARID: 3.8k clips), so md5s are kept in a small JSON sidecar (the caller
picks where; the retrain flow uses ``.dvc/tmp/dataset-md5.json``) keyed by path and ``(size, mtime_ns, ctime_ns,
inode)``: a file is hashed again only when one of those changed (a ``dvc checkout`` that rewrites it changes them).
The DVC ``.dir`` listings would give the same md5s, but the library knows nothing of DVC and a sidecar also covers a
dataset that is not DVC-tracked.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from dlkdd.atomic import write_text_atomic
from dlkdd.data.safe_files import UnsafeFile, fingerprint
from dlkdd.data.video import printable

CACHE_VERSION = 1


@dataclass(frozen=True)
class KeptClip:
    """A clip of the dataset: its path as shown (relative to the shown-from folder when inside it) and its split."""

    path: str
    split: str


@dataclass
class ContentIndex:
    """md5 → the first dataset clip with those bytes; ``unchecked``: listed files that could not be hashed."""

    by_md5: dict[str, KeptClip] = field(default_factory=dict)
    unchecked: list[str] = field(default_factory=list)
    hashed: int = 0  # files hashed now (the others came from the cache)


Listed = tuple[Path, str, str]  # (file, split, md5 or "" when the table does not say)


def listed_files(table_csv: str | Path, root: str | Path, base: str | Path = ".") -> list[Listed]:
    """``(file, split, md5)`` of every row of a manifest or of the footage sidecar (see the module doc); a missing
    table lists nothing. A row's own ``root`` that is relative is taken from ``base`` (the repo: where stages run)."""
    table_csv, root, base = Path(table_csv), Path(root), Path(base)
    if not table_csv.is_file():
        return []
    df = pd.read_csv(table_csv, dtype=str, keep_default_na=False)
    out = []
    for rec in df.to_dict("records"):
        rel = rec.get("path", "")
        if not rel or "\0" in rel:
            continue
        row_root = rec.get("root", "")
        folder = (base / row_root) if row_root else root
        split = rec.get("split") or ("train" if rec.get("class_name") else "unlabelled")
        out.append((folder / rel, split, rec.get("md5", "")))
    return out


def _load_cache(cache: Path | None) -> dict[str, list]:
    if cache is None or not cache.is_file():
        return {}
    try:
        data = json.loads(cache.read_text(encoding="utf-8"))
        return dict(data["files"]) if data.get("version") == CACHE_VERSION else {}
    except (ValueError, KeyError, TypeError, AttributeError, OSError):  # a corrupt cache is only slower
        return {}


def build_index(files: list[Listed], cache: str | Path | None = None,
                shown_from: str | Path | None = None) -> ContentIndex:
    """The content index of ``files`` (see :func:`listed_files`); a file's md5 is the listed one, else the cached
    one when its size, mtime, ctime and inode are the ones ``cache`` recorded, else hashed now (and the cache
    rewritten). Symlinks are followed (a DVC symlink cache); FIFOs, devices, missing files go to ``unchecked``."""
    cache = Path(cache) if cache is not None else None
    old, new = _load_cache(cache), {}
    index = ContentIndex()
    for path, split, listed in files:
        if listed:
            index.by_md5.setdefault(listed, KeptClip(_shown(path, shown_from), split))
            continue
        key = os.fsdecode(os.path.abspath(path))
        try:
            st = os.stat(path)
            ident = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]
            hit = old.get(key)
            if hit and hit[:4] == ident:
                md5 = hit[4]
            else:
                fp = fingerprint(path, follow_symlinks=True)
                md5, ident = fp.md5, [fp.size, fp.mtime_ns, fp.ctime_ns, fp.ino]
                index.hashed += 1
        except (OSError, UnsafeFile):
            index.unchecked.append(_shown(path, shown_from))
            continue
        new[key] = [*ident, md5]
        index.by_md5.setdefault(md5, KeptClip(_shown(path, shown_from), split))
    if cache is not None and new != old:
        write_text_atomic(cache, json.dumps({"version": CACHE_VERSION, "files": new}))
    return index


def _shown(path: Path, shown_from: str | Path | None) -> str:
    if shown_from is not None:
        try:
            return printable(Path(os.path.abspath(path)).relative_to(os.path.abspath(shown_from)))
        except ValueError:
            pass
    return printable(path)


def find_duplicates(batch: dict[str, str], index: ContentIndex,
                    shown: dict[str, str] | None = None) -> dict[str, str]:
    """``{key: reason}`` for each entry of ``batch`` (``{key: md5}``, in landing order) whose bytes are a dataset
    clip's (``duplicate: same bytes as <clip> (<split>)``) or an earlier entry's of the same batch (named by
    ``shown[key]``, else its key)."""
    shown = shown or {}
    seen: dict[str, str] = {}
    out = {}
    for key, md5 in batch.items():
        kept = index.by_md5.get(md5)
        if kept is not None:
            out[key] = f"duplicate: same bytes as {kept.path} ({kept.split})"
        elif md5 in seen:
            out[key] = f"duplicate: same bytes as {seen[md5]} (this batch)"
        else:
            seen[md5] = shown.get(key, key)
    return out

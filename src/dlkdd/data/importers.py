"""Dataset importers: real dark-video datasets → the one manifest the pipeline reads.

Every reader returns :class:`Imported` (rows + class list + rows already known bad); :func:`write_import` checks each
row (label in the class list, path inside the root, file present), writes into an output folder (never into the
dataset)::

    manifest.csv            path, label, class_name, split, video_id[, group]   (paths relative to the dataset root;
                            group only when the rows carry one: ARID's recording groups, a CSV's group column)
    classes.txt             class names in label order (labels are 0..K-1; dataset class ids are remapped in order)
    import_quarantine.csv   path, reason, kind   (rows left out, and why)

Formats (exactly as the datasets ship them):

- ARID v1.0: ``list_cvt/ARID_split{1,2,3}_{train,test,other}.txt``, lines ``<idx>\\t<class_id>\\t<Class>/<file>.avi``,
  ``mapping_table.txt`` lines ``<class_id>\\t<Class>``. train → train, test → test, ``other`` is left out; ARID has
  no val split, so a seeded, class-stratified fraction of train becomes val, whole recording groups at a time
  (``<Class>_<g>_<n>.avi``: clips of one group share scene and actors; the official lists keep groups disjoint).
- ARID V1.5: ``list_cvt/split_{0,1}/`` holding train/test(/val) lists in the v1.0 line format or the ARID1.1 CSV
  format, with a ``mapping_table*.txt`` in the split folder, ``list_cvt/`` or its parent.
- UG2+ 2021 (ARID1.1): CSV ``VideoID,Video,ClassID`` (train and validation files) + ``mapping_table_t1.txt``.
- Folder per class (Dark-48 and any other): ``<root>/<Class>/*.{avi,mp4,mkv,...}`` or
  ``<root>/{train,val,test}/<Class>/*``; class list = the class folders.
- Plain CSV manifest: ``path,label[,split][,group][,root]`` with class names as labels (class list from
  ``--classes`` or sorted); rows sharing a ``group`` are kept in one split when splits are carved; a ``root`` cell is
  a folder the row's path is relative to, which must itself lie inside the dataset root.

Roots are roots: a row whose file resolves outside the dataset root (``..``, an absolute path, a symlink to a file
elsewhere, a ``root`` cell elsewhere) is quarantined ``escapes_root``, so no byte from outside the dataset is ever
imported. Duplicates are refused across every split: a second row naming the same file (after resolving ``.``, ``//``
and symlinks), a hard link to it, a byte copy of it under another name (same md5), or a row giving the same
``video_id`` is quarantined ``duplicate`` naming the row kept (the first one). Lists and CSVs must be UTF-8 text,
file names valid UTF-8 (else ``bad_name``, the name shown with its bytes escaped).

``import-folder DIR --root ROOT`` reads ``DIR`` with paths relative to ``ROOT`` (:func:`rebased`), so one root can
hold the labelled dataset and an unlabelled pool folder beside it; the pool is added to this manifest by
:mod:`dlkdd.data.pool_import` (``--unlabeled``).
"""
from __future__ import annotations

import csv
import io
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from dlkdd.atomic import write_csv_atomic, write_text_atomic
from dlkdd.data.frame_index import MANIFEST_COLUMNS, QUARANTINE_COLUMNS, REQUIRED_SPLITS
from dlkdd.data.safe_files import UnsafeFile, fingerprint
from dlkdd.data.video import VIDEO_SUFFIXES, escape_problem, is_inside, printable


class DatasetImportError(ValueError):
    """A dataset that cannot be imported at all; the message is one line saying what to do."""


@dataclass
class Imported:
    """What a reader found: rows (path, class_id, split), the class names by dataset class id, rows known bad."""

    rows: list[dict] = field(default_factory=list)  # {"path", "class_id", "split"[, "group"]}
    class_names: dict[int, str] = field(default_factory=dict)  # dataset class id -> name
    bad: list[dict] = field(default_factory=list)  # {"path", "reason", "kind"}
    source: str = ""


@dataclass
class ImportResult:
    manifest: Path
    quarantine: Path
    ready: int
    quarantined: int
    classes: list[str]
    per_split: dict[str, int]

    def summary(self) -> str:
        splits = ", ".join(f"{s} {n:,}" for s, n in self.per_split.items())
        q = f", {self.quarantined:,} quarantined: see {self.quarantine}" if self.quarantined else ""
        return f"{self.ready:,} clips imported ({splits}; {len(self.classes)} classes){q} → {self.manifest}"


# ---------------------------------------------------------------- format readers

INT = re.compile(r"^-?\d+$")  # a class id: "--1", "1-" or "1.0" are not (int() would raise on the first)


def read_text(path: Path) -> str:
    """A list, table or CSV as text: UTF-8 (a leading BOM is dropped); anything else is one line saying where."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise DatasetImportError(f"{path}: not UTF-8 text at line {line} (byte 0x{data[err.start]:02x}); "
                                 "save it as UTF-8") from None


def is_utf8_name(name: str) -> bool:
    """False for a name holding bytes that are not UTF-8 (Python keeps them as lone surrogates)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def read_mapping_table(path: Path) -> dict[int, str]:
    """``<class_id>\\t<ClassName>`` lines (ARID's mapping_table.txt) → {id: name}."""
    out: dict[int, str] = {}
    for n, line in enumerate(read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("\t") if "\t" in line else line.split(None, 1)
        if len(parts) != 2 or not INT.match(parts[0].strip()):
            raise DatasetImportError(f"{path}:{n}: expected '<class_id><TAB><ClassName>', got {line!r}")
        out[int(parts[0])] = parts[1].strip()
    if not out:
        raise DatasetImportError(f"{path}: no classes in the mapping table")
    return out


ARID_NAME = re.compile(r"^(?P<group>.+_\d+)_\d+$")  # <Class>_<g>_<n>: g numbers a recording (scene, actors)


def arid_group(path: str) -> str | None:
    """ARID's recording group of a clip: ``Drink/Drink_10_1.avi`` → ``Drink_10``; None when the name is not ARID's."""
    m = ARID_NAME.match(Path(path).stem)
    return m["group"] if m else None


def with_arid_groups(rows: list[dict]) -> list[dict]:
    """Set ``group`` on the rows whose file names follow ARID's ``<Class>_<g>_<n>`` (in place; returns ``rows``)."""
    for r in rows:
        group = arid_group(r["path"])
        if group:
            r["group"] = group
    return rows


def _find(dirs: list[Path], patterns: tuple[str, ...], what: str) -> Path:
    for d in dirs:
        for pat in patterns:
            hits = sorted(d.glob(pat))
            if hits:
                return hits[0]
    raise DatasetImportError(f"{what} not found in {', '.join(str(d) for d in dirs)}")


def parse_split_list(path: Path, split: str) -> tuple[list[dict], list[dict]]:
    """One split list: ARID's ``<idx>\\t<class_id>\\t<relpath>`` lines, or an ARID1.1 ``VideoID,Video,ClassID`` CSV."""
    text = read_text(path)
    first = text.lstrip().split("\n", 1)[0].strip()
    rows, bad = [], []
    if first.replace(" ", "").lower().startswith("videoid,video,classid"):
        for n, rec in enumerate(csv.DictReader(text.splitlines()), 2):
            rec = {k.strip(): (v or "").strip() for k, v in rec.items() if k}
            cid = rec.get("ClassID", "")
            if not rec.get("Video") or not INT.match(cid):
                bad.append({"path": f"{path.name}:{n}", "reason": f"{path}:{n}: malformed row {rec}",
                            "kind": "malformed"})
                continue
            rows.append({"path": rec["Video"], "class_id": int(cid), "split": split})
        return rows, bad
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.rstrip("\r\n").split("\t") if "\t" in line else line.split()
        if len(parts) == 3 and INT.match(parts[1].strip()):
            rows.append({"path": parts[2].strip(), "class_id": int(parts[1]), "split": split})
        elif len(parts) == 2 and INT.match(parts[1].strip()):  # "<relpath> <class_id>" lists
            rows.append({"path": parts[0].strip(), "class_id": int(parts[1]), "split": split})
        else:
            bad.append({"path": f"{path.name}:{n}", "kind": "malformed",
                        "reason": f"{path}:{n}: expected '<idx><TAB><class_id><TAB><path>', got {line.strip()!r}"})
    return rows, bad


def read_arid_v1(lists_dir: Path, split: int = 1) -> Imported:
    """ARID v1.0 split ``split`` (1, 2 or 3): train and test lists + the mapping table (module doc)."""
    lists_dir = Path(lists_dir)
    if split not in (1, 2, 3):
        raise DatasetImportError(f"ARID v1.0 has splits 1, 2 and 3, not {split}")
    mapping = read_mapping_table(_find([lists_dir, lists_dir.parent], ("mapping_table.txt",), "mapping_table.txt"))
    out = Imported(class_names=mapping, source=f"ARID v1.0 split {split}")
    for name in ("train", "test"):
        f = lists_dir / f"ARID_split{split}_{name}.txt"
        if not f.is_file():
            raise DatasetImportError(f"{f} not found: --lists must be ARID's list_cvt folder")
        rows, bad = parse_split_list(f, name)
        out.rows += with_arid_groups(rows)
        out.bad += bad
    return out


def read_arid_v15(lists_dir: Path, split: int = 0) -> Imported:
    """ARID V1.5 ``list_cvt/split_<split>/``: every list whose name says train / val / test (module doc)."""
    lists_dir = Path(lists_dir)
    d = lists_dir / f"split_{split}"
    if not d.is_dir():
        raise DatasetImportError(f"{d} not found: --lists must be ARID V1.5's list_cvt folder (split_0, split_1)")
    mapping = read_mapping_table(_find([d, lists_dir, lists_dir.parent], ("mapping_table*.txt",), "mapping_table"))
    out = Imported(class_names=mapping, source=f"ARID V1.5 split {split}")
    for f in sorted(d.iterdir()):
        name = f.name.lower()
        if f.suffix.lower() not in (".txt", ".csv") or name.startswith("mapping"):
            continue
        kind = next((s for s, keys in (("train", ("train",)), ("val", ("val",)), ("test", ("test",)))
                     if any(k in name for k in keys)), None)
        if kind is None:
            continue
        rows, bad = parse_split_list(f, kind)
        out.rows += with_arid_groups(rows)
        out.bad += bad
    if not any(r["split"] == "train" for r in out.rows) or not any(r["split"] == "test" for r in out.rows):
        raise DatasetImportError(f"{d}: needs a train list and a test list (file names containing train / test)")
    return out


def read_ug2(train_csv: Path, test_csv: Path, mapping: Path, val_csv: Path | None = None) -> Imported:
    """UG2+ 2021 track 2 (ARID1.1): ``VideoID,Video,ClassID`` CSVs + ``mapping_table_t1.txt``."""
    out = Imported(class_names=read_mapping_table(Path(mapping)), source="UG2+ ARID1.1")
    for f, split in ((train_csv, "train"), (test_csv, "test"), (val_csv, "val")):
        if f is None:
            continue
        if not Path(f).is_file():
            raise DatasetImportError(f"{f} not found")
        rows, bad = parse_split_list(Path(f), split)
        out.rows += rows
        out.bad += bad
    return out


def _is_video(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES


def read_folder(root: Path) -> Imported:
    """``<root>/<Class>/*`` (no splits) or ``<root>/{train,val,test}/<Class>/*``; classes = the class folders.

    A file or class folder whose name is not valid UTF-8 cannot go into a manifest: it is quarantined ``bad_name``.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetImportError(f"{root} is not a folder")
    split_dirs = [s for s in REQUIRED_SPLITS if (root / s).is_dir()]
    tops = [(root / s, s) for s in split_dirs] if split_dirs else [(root, "")]
    folders = [c for top, _ in tops for c in sorted(top.iterdir()) if c.is_dir() and not c.name.startswith(".")]
    names = sorted({c.name for c in folders if is_utf8_name(c.name)})
    out = Imported(class_names=dict(enumerate(names)), source=f"folder {root}")
    out.bad += [_bad_name(c, root, "class folder") for c in folders if not is_utf8_name(c.name)]
    ids = {n: i for i, n in enumerate(names)}
    for top, split in tops:
        for cdir in sorted(c for c in top.iterdir() if c.is_dir() and c.name in ids):
            for f in sorted(p for p in cdir.rglob("*") if _is_video(p)):
                rel = f.relative_to(root).as_posix()
                if is_utf8_name(rel):
                    out.rows.append({"path": rel, "class_id": ids[cdir.name], "split": split})
                else:
                    out.bad.append(_bad_name(f, root, "file"))
    if not out.rows:
        raise DatasetImportError(f"{root}: no video files ({', '.join(VIDEO_SUFFIXES)}) in class folders "
                                 "(<root>/<Class>/* or <root>/train/<Class>/*)")
    return out


def rebased(imp: Imported, folder: Path, root: Path) -> Imported:
    """``imp`` read from ``folder`` with its paths made relative to the dataset ``root`` (``folder`` or a folder
    above it: ``import-folder DIR --root ROOT``), so one root can hold a labelled dataset and a pool folder beside
    it. :class:`DatasetImportError` when ``folder`` is not inside ``root``."""
    prefix = folder_in_root(folder, root)
    if prefix:
        for r in imp.rows:
            r["path"] = f"{prefix}/{r['path']}"
        for r in imp.bad:
            r["path"] = f"{printable(prefix)}/{r['path']}"
    return imp


def folder_in_root(folder: str | Path, root: str | Path) -> str:
    """Where ``folder`` lies under the dataset root, as a relative POSIX prefix (``""`` for the root itself), so
    manifest paths stay relative to the root; :class:`DatasetImportError` (one line) when it is not inside."""
    folder, root = Path(folder), Path(root)
    if not root.is_dir():
        raise DatasetImportError(f"dataset root {root} is not a folder")
    if not folder.is_dir():
        raise DatasetImportError(f"{folder} is not a folder")
    if not is_inside(folder, root):
        raise DatasetImportError(f"{folder} is not inside the dataset root {root}: manifest paths are relative to "
                                 "the root; move the folder under it, or pick a --root above both")
    rel = os.path.relpath(os.path.realpath(folder), os.path.realpath(root))
    return "" if rel == "." else Path(rel).as_posix()


def _bad_name(path: Path, root: Path, what: str) -> dict:
    rel = printable(path.relative_to(root).as_posix())
    return {"path": rel, "kind": "bad_name",
            "reason": f"{rel}: {what} name is not valid UTF-8 (bytes shown escaped); rename it to import it"}


def read_csv_manifest(path: Path, classes_file: Path | None = None) -> Imported:
    """A plain ``path,label[,split][,group][,root]`` CSV; labels are class names (class ids if ``classes_file`` is
    given and the labels are integers). Classes come from ``classes_file`` (one name per line) or the sorted labels.
    A non-empty ``group`` (e.g. a recording session) keeps its rows together when splits are carved; a non-empty
    ``root`` is a folder (relative to the dataset root, or absolute) that the row's path is relative to:
    :func:`write_import` quarantines the row unless that folder lies inside the dataset root."""
    path = Path(path)
    try:
        df = pd.read_csv(io.StringIO(read_text(path)), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise DatasetImportError(f"{path}: cannot read it as CSV ({str(err).splitlines()[0]})") from None
    df.columns = [c.strip().lower() for c in df.columns]
    if not {"path", "label"} <= set(df.columns):
        raise DatasetImportError(f"{path}: needs columns path,label[,split][,group]; has {','.join(df.columns)}")
    if classes_file:
        names = [c.strip() for c in read_text(Path(classes_file)).splitlines() if c.strip()]
    else:
        names = sorted({lab.strip() for lab in df["label"] if lab.strip()})
    ids = {n: i for i, n in enumerate(names)}
    out = Imported(class_names=dict(enumerate(names)), source=f"CSV {path}")
    for n, rec in enumerate(df.to_dict("records"), 2):
        lab = rec["label"].strip()
        cid = ids.get(lab, int(lab) if classes_file and INT.match(lab) else -1)
        split = rec.get("split", "").strip().lower()
        if split and split not in REQUIRED_SPLITS:
            out.bad.append({"path": rec["path"], "kind": "bad_split",
                            "reason": f"{path}:{n}: split {split!r} is not one of {REQUIRED_SPLITS}"})
            continue
        row = {"path": rec["path"].strip(), "class_id": cid, "split": split, "label_text": lab}
        if rec.get("group", "").strip():
            row["group"] = rec["group"].strip()
        if rec.get("root", "").strip():
            row["row_root"] = rec["root"].strip()
        out.rows.append(row)
    return out


# ---------------------------------------------------------------- checking, splitting, writing


def row_problem(path: str, class_id: int | None, class_names: dict[int, str], root: Path,
                label_text: str | None = None) -> tuple[str, str] | None:
    """Why an imported row is unusable, as (reason, kind), or None. ``class_id`` None: an unlabelled pool row,
    with no label to check.

    The file must stay inside ``root`` (:func:`dlkdd.data.video.escape_problem`): a symlink to a file elsewhere would
    copy that file's bytes into the dataset (and onto its remote)."""
    if not path:
        return "empty path", "malformed"
    if "\0" in path:  # no file has such a name (and the OS refuses to resolve one)
        return f"{path!r}: a NUL character in the path", "malformed"
    escape = escape_problem(path, root)
    if escape is not None:
        return escape
    if class_id is not None and class_id not in class_names:
        shown = repr(label_text) if label_text is not None else class_id
        return f"{path}: label {shown} is not in the class list ({len(class_names)} classes)", "bad_label"
    if not (root / path).is_file():
        return f"{path}: no such file under {root}", "missing"
    return None


def _with_row_root(row: dict, root: Path) -> dict:
    """A CSV row's ``root`` cell folded into its path, relative to the dataset root (an absolute cell is taken as
    resolved, so a root reached through a symlinked dataset folder still matches); the result is checked like any
    path by :func:`row_problem`, so a cell outside the dataset root quarantines the row."""
    cell = row.pop("row_root")
    if os.path.isabs(cell):
        full = os.path.join(os.path.realpath(cell), row["path"])
        row["path"] = Path(os.path.relpath(full, os.path.realpath(root))).as_posix()
    else:
        row["path"] = Path(os.path.normpath(os.path.join(cell, row["path"]))).as_posix()
    return row


HASH_THREADS = 8  # md5 in threads (hashlib releases the GIL): reading many small clips is latency, not CPU


@dataclass(frozen=True)
class _FileId:
    """What makes two rows one clip: the resolved path, the inode (a hard link is the same file under another
    name) and, filled in only when another file has the same size, the bytes' md5 (a copy under another name)."""

    real: str
    inode: tuple[int, int]
    size: int


def drop_duplicates(rows: list[dict], root: Path, known: list[dict] | None = None,
                    hint: str = "list each clip once") -> tuple[list[dict], list[dict]]:
    """Keep the first row for each clip and quarantine the others as ``duplicate``, naming the row kept, across
    every split: the same file (its resolved path: ``a/./b``, ``a//b`` and symlinks to one file are one file), a
    hard link to it (same device and inode) or a byte copy of it under another name (same size and md5). A clip
    listed twice, e.g. in train and in test, would otherwise be trained on and tested on. A file that cannot be
    read is quarantined ``unreadable``. Only files sharing their size with another are hashed, in threads.

    ``known``: rows already in the manifest (an unlabelled import adds to a labelled one). They come before
    ``rows``, are always kept and never quarantined (a known file gone missing is the frame cache's to report),
    so a new row that is one of them is the duplicate, naming it. ``hint`` ends each duplicate's reason."""
    known = known or []
    ids, bad = _file_ids(rows, root)
    known_ids, _ = _file_ids(known, root)
    digests = _digests({**known_ids, **ids})
    seen: dict[tuple, dict] = {}  # identity key -> the row kept
    for r in known:
        fid = known_ids.get(id(r))
        if fid is not None:
            digest = digests.get(fid.inode)
            for k in _identity_keys(fid, digest if isinstance(digest, str) else None):
                seen.setdefault(k, r)
    ids = {**known_ids, **ids}
    kept, dups = [], []
    for r in rows:
        fid = ids.get(id(r))
        if fid is None:
            continue  # quarantined unreadable by _file_ids
        digest = digests.get(fid.inode)
        if isinstance(digest, Exception):
            bad.append(_unreadable(r, digest))
            continue
        keys = _identity_keys(fid, digest)
        first = next((seen[k] for k in keys if k in seen), None)
        if first is None:
            kept.append(r)
            seen.update((k, r) for k in keys)
            continue
        same = ids[id(first)]
        what = ("the same file as" if same.real == fid.real else "a hard link to" if same.inode == fid.inode
                else f"a byte copy (md5 {digest}) of")
        dups.append(_duplicate(r, first, what, hint))
    return kept, dups + bad


def _identity_keys(fid: _FileId, digest: str | None) -> list[tuple]:
    return [("path", fid.real), ("inode", fid.inode)] + ([("md5", fid.size, digest)] if digest else [])


def _file_ids(rows: list[dict], root: Path) -> tuple[dict[int, _FileId], list[dict]]:
    """Each row's :class:`_FileId` by ``id(row)``; rows whose file cannot be looked at go to the quarantine list."""
    ids: dict[int, _FileId] = {}
    bad: list[dict] = []
    for r in rows:
        real = os.path.realpath(Path(root) / r["path"])
        try:
            st = os.stat(real)
        except OSError as err:
            bad.append(_unreadable(r, err))
            continue
        ids[id(r)] = _FileId(real, (st.st_dev, st.st_ino), st.st_size)
    return ids, bad


def _digests(ids: dict[int, _FileId]) -> dict[tuple[int, int], str | OSError | UnsafeFile]:
    """The md5 of each file (by inode, read once) whose size another file has; an empty file is left to the frame
    cache (kind ``empty``), not called a copy of every other empty file."""
    inodes_by_size: dict[int, dict[tuple[int, int], str]] = {}
    for fid in ids.values():
        inodes_by_size.setdefault(fid.size, {})[fid.inode] = fid.real
    todo = {inode: real for size, group in inodes_by_size.items() if size and len(group) > 1
            for inode, real in group.items()}
    with ThreadPoolExecutor(max_workers=HASH_THREADS) as ex:
        return dict(zip(todo, ex.map(_md5_or_error, todo.values())))


def _md5_or_error(path: str) -> str | OSError | UnsafeFile:
    """The file's md5 through :func:`dlkdd.data.safe_files.fingerprint`: a FIFO or device swapped in after the
    stat is never opened (a FIFO would block the import forever), a file rewritten while hashed is noticed."""
    try:
        return fingerprint(path, follow_symlinks=True).md5
    except (UnsafeFile, OSError) as err:
        return err


def _unreadable(row: dict, err: OSError | UnsafeFile) -> dict:
    why = err.why if isinstance(err, UnsafeFile) else f"cannot read it ({type(err).__name__}: {err.strerror or err})"
    return {"path": row["path"], "kind": "unreadable",
            "reason": f"{row['path']}: {why}; fix its permissions or drop it"}


def _duplicate(row: dict, kept: dict, what: str, hint: str = "list each clip once") -> dict:
    def where(r: dict) -> str:
        return f"{r['path']} ({r['split'] or 'no split'})"
    return {"path": row["path"], "kind": "duplicate",
            "reason": f"{where(row)}: {what} {where(kept)}, which is kept; {hint}"}


def assign_splits(rows: list[dict], val_fraction: float, test_fraction: float, seed: int) -> None:
    """Give rows with no split one, in place: per class, a seeded shuffle puts ``test_fraction`` in test and
    ``val_fraction`` in val (at least one each when the class has enough rows); also carves val out of train when
    the dataset has no val split at all. Deterministic in (rows' paths and groups, seed).

    Rows sharing a ``group`` (a recording: same scene and actors) move together, so a group never straddles train
    and val/test; a class with a single group keeps it in train. A row without a group is a group of its own.
    """
    has_val = any(r["split"] == "val" for r in rows)
    by_class: dict[int, list[dict]] = {}
    for r in rows:
        if not r["split"] or (r["split"] == "train" and not has_val):
            by_class.setdefault(r["class_id"], []).append(r)
    for cid in sorted(by_class):
        groups = _recording_groups(by_class[cid])
        order = np.random.default_rng([seed, cid]).permutation(len(groups))
        unsplit = [groups[i] for i in order if not groups[i][0]["split"]]
        train = [groups[i] for i in order if groups[i][0]["split"] == "train"]
        n_test = _groups_to_take(unsplit, test_fraction)
        for g in unsplit[:n_test]:
            _set_split(g, "test")
        for g in unsplit[n_test:]:
            _set_split(g, "train")
            train.append(g)
        for g in train[:_groups_to_take(train, val_fraction)]:
            _set_split(g, "val")


def _recording_groups(rows: list[dict]) -> list[list[dict]]:
    """One class's rows in path order, gathered by (given split, group) in order of first appearance; a row
    without a group is alone. Ungrouped rows thus give one row per group, the order the split carving always had."""
    groups: dict[tuple, list[dict]] = {}
    for i, r in enumerate(sorted(rows, key=lambda r: r["path"])):
        key = (r["split"], "group", r["group"]) if r.get("group") else (r["split"], "row", i)
        groups.setdefault(key, []).append(r)
    return list(groups.values())


def _groups_to_take(groups: list[list[dict]], fraction: float) -> int:
    """How many leading groups hold round(rows * fraction) rows: at least one when fraction > 0 and there are
    two groups or more, never the last group (train keeps at least one)."""
    target = _share(sum(len(g) for g in groups), fraction, keep=1)
    taken = n = 0
    while taken < target and n < len(groups) - 1:
        taken += len(groups[n])
        n += 1
    return n


def _set_split(group: list[dict], split: str) -> None:
    for r in group:
        r["split"] = split


def _share(n: int, fraction: float, keep: int) -> int:
    """round(n * fraction), at least 1 when fraction > 0, leaving at least ``keep`` rows."""
    if fraction <= 0 or n <= keep:
        return 0
    return min(max(1, round(n * fraction)), n - keep)


def _video_ids(paths: list[str]) -> list[str]:
    """The file stem when stems are unique (ARID: ``Drink_1_1``), else the path without its extension (characters
    other than letters, digits, ``.``, ``-`` and ``_`` replaced by ``_``: ids name files). May still repeat
    (``a b/c.avi`` and ``a_b/c.avi``, or ``v.avi`` beside ``v.mp4``): :func:`write_import` quarantines those."""
    stems = [Path(p).stem for p in paths]
    if len(set(stems)) == len(stems):
        return stems
    return [path_video_id(p) for p in paths]


def path_video_id(path: str) -> str:
    """A video id naming the whole path: the path without its extension, characters other than letters, digits,
    ``.``, ``-`` and ``_`` replaced by ``_`` (ids name files)."""
    return re.sub(r"[^\w.-]", "_", str(Path(path).with_suffix("")))


def check_out_dir(out_dir: Path, root: Path) -> None:
    """Refuse (one line) an --out inside the dataset root: an import never writes into the source folder."""
    if is_inside(out_dir, root):
        raise DatasetImportError(f"--out {out_dir} is inside the dataset root {root}: the source folder is never "
                                 "written to; choose a folder outside it (e.g. data/manifests/<name>)")


def write_import(imp: Imported, root: Path, out_dir: Path, val_fraction: float = 0.1, test_fraction: float = 0.2,
                 seed: int = 0) -> ImportResult:
    """Check rows, fill in missing splits, write ``manifest.csv`` / ``classes.txt`` / ``import_quarantine.csv``.

    Raises :class:`DatasetImportError` (one line) when nothing is usable or a split ends up empty.
    """
    root, out_dir = Path(root), Path(out_dir)
    if not root.is_dir():
        raise DatasetImportError(f"dataset root {root} is not a folder")
    check_out_dir(out_dir, root)
    bad = list(imp.bad)
    good: list[dict] = []
    for r in imp.rows:
        r = _with_row_root(dict(r), root) if r.get("row_root") else dict(r)
        problem = row_problem(r["path"], r["class_id"], imp.class_names, root, r.get("label_text"))
        if problem:
            bad.append({"path": r["path"], "reason": problem[0], "kind": problem[1]})
        else:
            good.append(r)
    if not good:
        raise DatasetImportError(f"{imp.source}: none of the {len(imp.rows)} listed clips is usable under {root} "
                                 f"(first problem: {bad[0]['reason'] if bad else 'no rows'}); check --root")
    good, dups = drop_duplicates(good, root)
    good, same_id = _unique_video_ids(good)
    bad += dups + same_id
    assign_splits(good, val_fraction, test_fraction, seed)
    counts = {s: sum(r["split"] == s for r in good) for s in REQUIRED_SPLITS}
    empty = [s for s, n in counts.items() if n == 0]
    if empty:
        grouped = " (rows of one recording group stay together, so a class needs 2+ groups to give any)" if any(
            r.get("group") for r in good) else ""
        raise DatasetImportError(f"{imp.source}: split(s) {empty} would have no clips{grouped}; use a larger "
                                 "--val-fraction/--test-fraction or add files")
    ids = sorted(imp.class_names)  # dataset class ids in order → labels 0..K-1
    label = {cid: i for i, cid in enumerate(ids)}
    classes = [imp.class_names[c] for c in ids]
    # ``group`` rides along only when there are groups: frames reads the manifest's required columns and ignores
    # extras, and ungrouped datasets keep exactly the columns they always had
    columns = MANIFEST_COLUMNS + (["group"] if any(r.get("group") for r in good) else [])
    manifest = pd.DataFrame([{"path": r["path"], "label": label[r["class_id"]], "class_name": imp.class_names[
        r["class_id"]], "split": r["split"], "video_id": r["video_id"], "group": r.get("group", "")}
        for r in good], columns=columns)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_csv_atomic(manifest, out_dir / "manifest.csv")
    write_csv_atomic(pd.DataFrame(bad, columns=QUARANTINE_COLUMNS), out_dir / "import_quarantine.csv")
    write_text_atomic(out_dir / "classes.txt", "\n".join(classes) + "\n")
    return ImportResult(out_dir / "manifest.csv", out_dir / "import_quarantine.csv", len(manifest), len(bad),
                        classes, counts)


def _unique_video_ids(rows: list[dict]) -> tuple[list[dict], list[dict]]:
    """Set ``video_id`` on each row (:func:`_video_ids`); a row repeating an earlier row's id is quarantined as a
    ``duplicate``: the frame cache stores one file per id, so one of the two clips would silently be the other."""
    first: dict[str, dict] = {}
    kept, dups = [], []
    for r, vid in zip(rows, _video_ids([r["path"] for r in rows])):
        if vid in first:
            dups.append(_duplicate(r, first[vid], f"video_id {vid!r} is already that of"))
            continue
        first[vid] = r
        kept.append({**r, "video_id": vid})
    return kept, dups

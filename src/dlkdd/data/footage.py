"""Landed footage: clips added after the embedded dataset, merged into the frame cache as extra training clips.

Layout (the folder is tracked by DVC, the sidecar CSV by git)::

    data/footage/<Class>/<name>.avi|mp4|mkv     the videos
    data/footage.csv                            path,class_name,md5,source   (path relative to data/footage)

The CSV is the label sidecar and the content fingerprint in one: it lists every clip with its md5, so the ``frames``
stage depends on the footage through it (and it exists, header only, before any footage has landed, so the pipeline
runs on a fresh clone). An empty ``class_name`` marks unlabelled footage, which is kept but not used for training.
``source`` (optional: a sidecar written before it existed lacks it) is the clip's name in the inbox: a landed name is
``<stem>_<md5[:8]><ext>`` with a long stem shortened (:func:`dlkdd.data.safe_files.safe_name`), so the original
name is only kept here.

Adding clips is atomic: all files are copied into a temp folder on the destination filesystem first (each copy
hashed as it is made and compared with the md5 the clip was accepted under), then renamed into place and the CSV
rewritten with a temp file + rename; on any failure the renamed files are removed again.

Only regular files are ever opened (:mod:`dlkdd.data.safe_files`): a FIFO, socket or device in the inbox is refused
(``not_regular``) by ``lstat`` alone.
"""
from __future__ import annotations

import errno
import hashlib
import os
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from dlkdd.atomic import write_csv_atomic, write_text_atomic
from dlkdd.data.safe_files import MAX_NAME_BYTES, UnsafeFile, describe, fingerprint, open_regular, safe_name
from dlkdd.data.video import VIDEO_SUFFIXES, VideoDecodeError, check_name, is_inside, printable

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


CLAIMS = ".claimed"  # <inbox>/.claimed/<run_id>/<rel>: clips a running retrain has taken (hidden: scans skip it)
LABELS = "labels.csv"


@dataclass(frozen=True)
class Landed:
    """A clip found in the inbox: its path and the class its folder (or labels.csv) gives it (None = unlabelled)."""

    path: Path
    class_name: str | None


@dataclass(frozen=True)
class InboxScan:
    """One look at the inbox: settled clips to take, and entries to refuse (path → ``"<kind>: <why>"``).

    Refusal kinds: ``escapes_root`` (a symlink, or anything resolving outside the inbox: never followed, so a link to
    a private video cannot copy its bytes into the dataset), ``not_regular`` (a FIFO, socket or device with a video
    name: never opened, a FIFO would block its reader forever), ``bad_name`` (a name that is not valid UTF-8: codecs
    crash on such names, so it is moved with os-level bytes paths before any decoder sees it), ``bad_labels``
    (a malformed ``labels.csv``, and the loose clips it was meant to label).
    """

    landed: list[Landed]
    refused: dict[Path, str]


def _read_labels(path: Path) -> dict[str, str]:
    """``labels.csv`` (``path,class_name``) as a dict; raises FootageError with one line if it is malformed (or is
    not a regular file: it is never opened then)."""
    try:
        with os.fdopen(open_regular(path), "rb") as fh:
            side = pd.read_csv(fh, dtype=str, keep_default_na=False)
    except (ValueError, OSError, pd.errors.ParserError) as err:  # UnsafeFile, UnicodeDecodeError are ValueErrors
        raise FootageError(f"{path.name} cannot be parsed ({str(err).splitlines()[0]}); expected header "
                           "path,class_name") from None
    missing = {"path", "class_name"} - set(side.columns)
    if missing:
        raise FootageError(f"{path.name} lacks column(s) {sorted(missing)}; expected header path,class_name")
    return dict(zip(side["path"], side["class_name"]))


def _survey_labels(lab: Path, settle_s: float, now: float) -> tuple[dict[str, str], str | None, str | None]:
    """(labels, the error that refuses the loose clips, the refusal of labels.csv itself) of ``<inbox>/labels.csv``."""
    try:
        st = os.lstat(lab)
    except OSError:
        return {}, None, None
    if stat.S_ISLNK(st.st_mode):
        return {}, None, f"escapes_root: {LABELS} is a symlink (not followed); put the file itself in the inbox"
    if stat.S_ISDIR(st.st_mode) or now - st.st_mtime < settle_s:
        return {}, None, None
    try:
        return _read_labels(lab), None, None
    except FootageError as err:
        return {}, str(err), f"bad_labels: {err}"


def _refusal(p: Path, rel: Path, st: os.stat_result, inbox: Path) -> str | None:
    """Why the inbox entry ``p`` (a link, a folder or a file with a video name) is refused, or None."""
    if stat.S_ISLNK(st.st_mode) or not is_inside(p, inbox):
        return f"escapes_root: {printable(rel)} is a symlink or resolves outside the inbox (not followed); copy the " \
               "file itself into the inbox"
    if stat.S_ISDIR(st.st_mode):
        return None
    try:
        check_name(rel)
    except VideoDecodeError as err:
        return f"bad_name: {err}; land it again under a UTF-8 name"
    if not stat.S_ISREG(st.st_mode):
        return f"not_regular: {printable(rel)} is {describe(st.st_mode)}, not a regular file (never opened); " \
               "copy the video itself into the inbox"
    return None


def survey_inbox(inbox: str | Path, settle_s: float = 0.0, now: float | None = None) -> InboxScan:
    """Settled video files in ``inbox``: ``<inbox>/<Class>/*.mp4|avi|...`` are labelled by folder, loose files by an
    optional ``<inbox>/labels.csv`` (``path,class_name``), else unlabelled. Hidden files (``.name``, partial uploads,
    ``.claimed/``) and files modified in the last ``settle_s`` seconds (still being copied) are left for the next
    look. Symlinks, FIFOs/sockets/devices, non-UTF-8 names and a malformed labels.csv are refused (see
    :class:`InboxScan`); no entry is opened here but a regular ``labels.csv``, and no entry can make it raise.
    """
    import time

    inbox = Path(inbox)
    if not inbox.is_dir():
        return InboxScan([], {})
    now = time.time() if now is None else now
    refused: dict[Path, str] = {}
    lab = inbox / LABELS
    labels, labels_error, lab_refusal = _survey_labels(lab, settle_s, now)
    if lab_refusal:
        refused[lab] = lab_refusal
    found = []
    for top, dirs, files in os.walk(inbox):  # never follows symlinked folders; unreadable folders are skipped
        rel_top = Path(top).relative_to(inbox)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted([*dirs, *files]):
            p, rel = Path(top) / name, rel_top / name
            is_clip = name not in dirs and p.suffix.lower() in VIDEO_SUFFIXES and len(rel.parts) <= 2
            if name.startswith(".") or p == lab or not (is_clip or name in dirs or os.path.islink(p)):
                continue
            try:
                st = os.lstat(p)
            except OSError:  # vanished since the listing
                continue
            why = _refusal(p, rel, st, inbox)
            if why:
                refused[p] = why
                if name in dirs:
                    dirs.remove(name)
                continue
            if not is_clip or now - st.st_mtime < settle_s:
                continue
            if len(rel.parts) == 1 and labels_error is not None:
                refused[p] = f"bad_labels: no label for {rel}: {labels_error}; fix {LABELS} and land both again"
                continue
            cls = rel.parts[0] if len(rel.parts) == 2 else (labels.get(rel.as_posix()) or None)
            found.append(Landed(p, cls))
    return InboxScan(sorted(found, key=lambda c: c.path), refused)


def move_bytes(src: str | Path, dest: str | Path) -> None:
    """Move a file (or symlink: the link, not its target) by os-level bytes paths, creating ``dest``'s folder.

    Bytes paths keep names that are not valid UTF-8 intact; a rename never reads the file, so no codec sees it.
    """
    bsrc, bdest = os.fsencode(src), os.fsencode(dest)
    os.makedirs(os.path.dirname(bdest), exist_ok=True)
    try:
        os.rename(bsrc, bdest)
    except OSError as err:
        if err.errno != errno.EXDEV:  # gone, or a name the file system refuses: say so, do not copy
            raise
        shutil.move(bsrc, bdest)  # another file system (refuses a FIFO, socket or device: SpecialFileError)


def quarantine_file(src: str | Path, dest: str | Path, reason: str) -> Path:
    """Move ``src`` to ``dest`` and write ``<dest>.reason.txt`` (the reason, one line); returns where it went.

    A name too long to carry ``.reason.txt`` (and its temp suffix) is shortened (:func:`safe_name`) and the original
    name is recorded on the reason file's second line. Never opens ``src`` (a FIFO or device is just renamed).
    """
    dest = os.fsdecode(dest)  # fsdecode/fsencode round-trip a name that is not UTF-8 (surrogate escapes)
    name = os.path.basename(dest)
    short = safe_name(name, MAX_NAME_BYTES)
    if short != name:
        dest = os.path.join(os.path.dirname(dest), short)
        reason += f"\noriginal name: {printable(name)}"
    move_bytes(src, dest)
    write_text_atomic(dest + ".reason.txt", reason + "\n")  # the reason sits beside the file
    return Path(dest)


def claim_dir(inbox: str | Path, run_id: str) -> Path:
    return Path(inbox) / CLAIMS / run_id


def claim(inbox: str | Path, run_id: str, paths: list[Path]) -> dict[Path, Path]:
    """Rename ``paths`` (inside ``inbox``) into the run's hidden claim folder; returns ``{inbox path: claimed path}``
    for those moved (one that vanished or cannot be moved is left out: a later scan sees it again).

    A claimed clip is no longer a landing (scans skip hidden parts), so a poll during the run does not queue a second
    retrain for it; a rename keeps the inode, so an md5 taken after the claim is of the bytes the run will land.
    """
    inbox, dest = Path(inbox), claim_dir(inbox, run_id)
    root = inbox / CLAIMS
    try:
        if not stat.S_ISDIR(os.lstat(root).st_mode):  # a file, FIFO or symlink put there: never claim into it
            os.rename(root, inbox / f"{CLAIMS}.displaced-{run_id}")
    except FileNotFoundError:
        pass
    out = {}
    for p in paths:
        q = dest / p.relative_to(inbox)
        try:
            move_bytes(p, q)
        except OSError:
            continue
        out[p] = q
    return out


def release_claims(inbox: str | Path, run_id: str | None = None) -> list[str]:
    """Return claimed files to the inbox (one run's, or every run's: claims of dead runs); returns what moved back.

    A file already back at the same inbox path is kept beside it as ``<stem>.reclaimed-<run><ext>``, never overwritten.
    A file that cannot be moved stays claimed (the next run's release tries again).
    """
    root = Path(inbox) / CLAIMS
    runs = [root / run_id] if run_id else (sorted(root.iterdir()) if _real_dir(root) else [])
    moved = []
    for run in filter(_real_dir, runs):  # a symlink put there is never followed: its target's files stay out
        for top, dirs, files in os.walk(run, topdown=False):
            for name in [*files, *(d for d in dirs if os.path.islink(os.path.join(top, d)))]:
                src = Path(top) / name
                rel = src.relative_to(run)
                dest = Path(inbox) / rel
                if os.path.lexists(dest):
                    dest = dest.with_name(safe_name(f"{dest.stem}.reclaimed-{run.name}{dest.suffix}"))
                try:
                    move_bytes(src, dest)
                except OSError:
                    continue
                moved.append(printable(rel))
            try:
                os.rmdir(top)
            except OSError:
                pass
    if _real_dir(root) and not any(root.iterdir()):
        root.rmdir()
    return moved


def _real_dir(path: Path) -> bool:
    """A folder itself, not a symlink to one."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False

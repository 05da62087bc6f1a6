"""The inbox: where new dark clips land before a retrain takes them into the dataset (:mod:`dlkdd.data.footage`).

:func:`survey_inbox` looks (``lstat`` only: symlinks, FIFOs, sockets, devices and non-UTF-8 names are refused
unopened), :func:`claim` renames a run's clips into ``<inbox>/.claimed/<run_id>/``, :func:`release_claims` puts
them back, :func:`quarantine_file` moves a refused one aside with its reason. Only regular files are ever opened
(:mod:`dlkdd.data.safe_files`): a FIFO, socket or device in the inbox is refused (``not_regular``) by ``lstat`` alone.
"""
from __future__ import annotations

import errno
import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from dlkdd.atomic import write_text_atomic
from dlkdd.data.footage import FootageError
from dlkdd.data.safe_files import MAX_NAME_BYTES, describe, open_regular, safe_name
from dlkdd.data.video import VIDEO_SUFFIXES, VideoDecodeError, check_name, is_inside, printable

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

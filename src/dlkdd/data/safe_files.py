"""Reading files nobody vouches for (the landing inbox) without letting one of them stop the reader.

- Only regular files are ever opened: a FIFO named ``clip.mp4`` would block ``open()`` forever, a device can have
  side effects on open. :func:`open_regular` refuses anything else after an ``lstat`` (so it is never opened), then
  opens with ``O_NONBLOCK`` (a FIFO swapped in between cannot block) and checks the opened file with ``fstat``.
- :func:`fingerprint` hashes a file and records its identity (device, inode, size, mtime, ctime), so a file that
  grows, is rewritten, replaced or removed later is noticed (:func:`changed_since`).
- :func:`safe_name` shortens a name that, with the suffixes a pipeline adds (``_<md5>``, ``.reason.txt``, temp
  files), would pass the file system's 255-byte limit on one name.
"""
from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

MAX_NAME_BYTES = 200  # a stored name leaves 55 bytes of NAME_MAX (255) for suffixes: .reason.txt + a temp suffix
_KINDS = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISDIR, "a folder"), (stat.S_ISLNK, "a symlink"))


class UnsafeFile(ValueError):
    """A file that cannot be read safely; ``kind``: ``not_regular``, ``vanished``, ``changed`` or ``unreadable``;
    ``why``: the message without the path."""

    def __init__(self, path: str | bytes | Path, why: str, kind: str) -> None:
        super().__init__(f"{_shown(path)}: {why}")
        self.why, self.kind = why, kind


def describe(mode: int) -> str:
    """What a non-regular ``st_mode`` is, in words ("a FIFO (named pipe)", "a socket", ...)."""
    return next((what for test, what in _KINDS if test(mode)), "not a regular file")


def _shown(path: str | bytes | Path) -> str:
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def open_regular(path: str | bytes | Path, follow_symlinks: bool = False) -> int:
    """An fd open for reading on ``path`` if it is a regular file; raises :class:`UnsafeFile` otherwise, without
    opening a FIFO, socket or device. ``follow_symlinks=False`` refuses a symlink itself (``O_NOFOLLOW``)."""
    try:
        st = os.stat(path) if follow_symlinks else os.lstat(path)
    except FileNotFoundError:
        raise UnsafeFile(path, "no such file (it vanished)", "vanished") from None
    except OSError as err:
        raise UnsafeFile(path, f"cannot stat it ({err.strerror})", "unreadable") from None
    if not stat.S_ISREG(st.st_mode):
        raise UnsafeFile(path, f"{describe(st.st_mode)}, not a regular file (never opened)", "not_regular")
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | (0 if follow_symlinks else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise UnsafeFile(path, "no such file (it vanished)", "vanished") from None
    except OSError as err:  # ELOOP: swapped for a symlink; EACCES: no read permission
        raise UnsafeFile(path, f"cannot open it ({err.strerror})", "unreadable") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):  # swapped for something else between the lstat and the open
        os.close(fd)
        raise UnsafeFile(path, f"{describe(mode)}, not a regular file (replaced while opened)",
                         "not_regular")
    return fd


@dataclass(frozen=True)
class Fingerprint:
    """A file's md5 and identity when it was hashed."""

    md5: str
    size: int
    mtime_ns: int
    ctime_ns: int  # cannot be set by a writer (mtime can): a rewrite with the old mtime still shows
    ino: int
    dev: int


def _identity(st: os.stat_result) -> tuple[int, int, int, int, int]:
    return st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev


def fingerprint(path: str | bytes | Path, follow_symlinks: bool = False) -> Fingerprint:
    """Hash a regular file (see :func:`open_regular`); raises :class:`UnsafeFile` (kind ``changed``) when it was
    written to while being hashed."""
    fd = open_regular(path, follow_symlinks)
    with os.fdopen(fd, "rb") as fh:
        before = _identity(os.fstat(fd))
        try:
            digest = hashlib.file_digest(fh, "md5").hexdigest()
        except OSError as err:
            raise UnsafeFile(path, f"read failed ({err.strerror})", "unreadable") from None
        after = _identity(os.fstat(fd))
    if before != after:
        raise UnsafeFile(path, f"changed while it was being read ({before[0]} -> {after[0]} bytes)",
                         "changed")
    return Fingerprint(digest, *after)


def changed_since(path: str | bytes | Path, fp: Fingerprint) -> str | None:
    """Why ``path`` is no longer the file ``fp`` describes (vanished, replaced, grown, rewritten), or None."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return "vanished after it was hashed"
    if not stat.S_ISREG(st.st_mode):
        return f"replaced by {describe(st.st_mode)} after it was hashed"
    if (st.st_ino, st.st_dev) != (fp.ino, fp.dev):
        return "replaced by another file after it was hashed"
    if st.st_size != fp.size:
        return f"changed after it was hashed ({fp.size} -> {st.st_size} bytes)"
    if (st.st_mtime_ns, st.st_ctime_ns) != (fp.mtime_ns, fp.ctime_ns):
        return "rewritten after it was hashed"
    return None


def safe_name(name: str, limit: int = MAX_NAME_BYTES) -> str:
    """``name`` if it has at most ``limit`` bytes, else its start cut at a character boundary + ``~`` + 8 hex of
    the whole name's md5 + its suffix: distinct long names stay distinct. A name that is not UTF-8 (surrogate
    escapes) keeps its bytes."""
    raw = os.fsencode(name)
    if len(raw) <= limit:
        return name
    stem, suffix = os.path.splitext(raw)
    if len(suffix) > 16:  # not a real extension: part of the stem
        stem, suffix = raw, b""
    tag = b"~" + hashlib.md5(raw).hexdigest()[:8].encode()
    cut = stem[:max(1, limit - len(tag) - len(suffix))]
    try:
        raw.decode("utf-8")
        cut = cut.decode("utf-8", "ignore").encode()  # no half character at the cut
    except UnicodeDecodeError:
        pass
    return os.fsdecode(cut + tag + suffix)

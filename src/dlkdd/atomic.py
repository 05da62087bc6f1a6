"""Atomic writes: every artifact is written to a temp file beside its target, then renamed over it, so a crash
never leaves a half-written file behind (rename is atomic within one filesystem).

The temp file is fsynced before the rename and the folder after it: without the first, a power cut can leave the
*renamed* file empty (the rename reached the disk before the data did); without the second, the rename itself may be
lost."""
from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _fsync(path: Path, directory: bool = False) -> None:
    """Flush ``path``'s data (or a folder's entries) to the disk."""
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        if directory:  # some platforms/filesystems cannot open a folder: the rename is still atomic there
            return
        raise
    try:
        os.fsync(fd)
    except OSError:
        if not directory:
            raise
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path beside ``path``; when the block succeeds, fsync it, rename it over ``path`` and fsync the
    folder; delete it when the block fails."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        _fsync(tmp)
        tmp.replace(path)
        _fsync(path.parent, directory=True)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_csv_atomic(df, path: str | Path) -> None:
    """A pandas DataFrame as CSV (no index), atomically (pandas is not imported here: any object with ``to_csv``)."""
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)


def write_array_atomic(path: str | Path, arr) -> None:
    """A numpy array as ``.npy``, atomically (a frame cache's clip file)."""
    import numpy as np

    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, arr)

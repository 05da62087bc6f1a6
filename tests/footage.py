"""Helpers for the ingest tests: real tiny video files written with OpenCV (MJPG .avi/.mkv, mp4v .mp4)."""
from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np

FOURCC = {".avi": "MJPG", ".mkv": "MJPG", ".mp4": "mp4v"}


def write_clip(path: Path, frames: int = 12, width: int = 40, height: int = 32, gray: bool = False,
               seed: int = 0) -> Path:
    """A dark moving-noise clip, really encoded (MJPG for .avi/.mkv, mp4v for .mp4)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*FOURCC[path.suffix]), 15.0, (width, height),
                        isColor=not gray)
    assert w.isOpened(), f"OpenCV cannot write {path}"
    rng = np.random.default_rng(seed)
    for t in range(frames):
        img = rng.integers(0, 30, (height, width) if gray else (height, width, 3), dtype=np.uint8)
        img[:, t % width] = 200  # a bright moving line, so frames differ
        w.write(img)
    w.release()
    return path


def truncate(path: Path, fraction: float) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])


def corrupt(path: Path, seed: int = 0) -> None:
    """Keep the 12-byte RIFF/AVI signature, overwrite everything after it with random bytes."""
    data = path.read_bytes()
    noise = np.random.default_rng(seed).integers(0, 256, len(data) - 12, dtype=np.uint8).tobytes()
    path.write_bytes(data[:12] + noise)


def set_avi_frame_count(path: Path, count: int) -> None:
    """Make an AVI's header lie about its frame count (avih dwTotalFrames and strh dwLength)."""
    d = bytearray(path.read_bytes())
    i, j = d.find(b"avih"), d.find(b"strh")
    d[i + 24:i + 28] = struct.pack("<I", count)
    d[j + 40:j + 44] = struct.pack("<I", count)
    path.write_bytes(bytes(d))

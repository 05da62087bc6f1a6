"""Video decoding with OpenCV and frame sampling.

torchvision 0.29 has no ``read_video``; ``cv2.VideoCapture`` reads H.264, MPEG-4 and MJPG here. Frame counts reported
by containers are often wrong, so clips are always decoded to the end and the real count is used.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


class VideoDecodeError(ValueError):
    """A file that is not a readable video; the message says why in one line."""


def read_video(path: str | Path) -> tuple[np.ndarray, float]:
    """Decode every frame of ``path``. Returns RGB uint8 frames (T, H, W, 3) and the fps (0.0 when unknown)."""
    path = Path(path)
    if not path.is_file():
        raise VideoDecodeError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise VideoDecodeError(f"{path}: empty file (0 bytes)")
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise VideoDecodeError(f"{path}: OpenCV cannot open it as a video (corrupt or not a video file)")
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        frames = []
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            if frame.ndim == 2:  # grayscale streams
                frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
            frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    finally:
        cap.release()
    if not frames:
        raise VideoDecodeError(f"{path}: no decodable frames (truncated or corrupt)")
    return np.stack(frames), (fps if np.isfinite(fps) and fps > 0 else 0.0)


def uniform_indices(total: int, num: int) -> np.ndarray:
    """TSN-style sampling: the centre frame of ``num`` equal segments of ``total`` frames.

    A clip shorter than ``num`` frames repeats frames (each index appears in order), so short clips still give ``num``.
    """
    if total <= 0:
        raise ValueError("a clip needs at least one frame")
    seg = total / num
    return np.minimum((np.arange(num) * seg + seg / 2).astype(np.int64), total - 1)


def resize_frames(frames: np.ndarray, size: int) -> np.ndarray:
    """Resize (T, H, W, 3) uint8 to (T, size, size, 3) with area interpolation (averages away some sensor noise)."""
    return np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in frames])

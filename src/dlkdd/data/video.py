"""Video decoding with OpenCV and frame sampling.

torchvision 0.29 has no ``read_video``; ``cv2.VideoCapture`` reads H.264, MPEG-4 and MJPG here. Frame counts reported
by containers are often wrong, so clips are always decoded to the end and the real count is used; the reported count
is only used to notice a file that stops far short of it (truncated or corrupt mid-stream).

Sampling policies (``sample_clips``), all returning frame indices into the decoded clip:

- ``uniform`` (TSN-style, eval): ``num`` equal segments over the whole clip, one frame per segment; with ``k`` clips
  per video, clip ``j`` takes the point at ``(j + 0.5) / k`` of every segment (so ``k = 1`` is the segment centre).
- ``random`` (train): a seeded random frame inside every segment (TSN training sampling).
- ``stride > 0``: a window of ``num`` frames ``stride`` apart instead of segments; ``uniform`` spreads the ``k``
  windows evenly over the clip, ``random`` draws the window start.

Short clips (fewer frames than needed): segment sampling repeats frames in order (each segment still maps to a
frame, so a 3-frame clip gives 0,0,0,1,1,2,2,2 for 8); a stride window that does not fit **loops** back to the start
(index modulo the clip length), so motion continues rather than freezing on the last frame.
"""
from __future__ import annotations

from collections.abc import Container, Iterator
from pathlib import Path

import cv2
import numpy as np

# Leading bytes of the containers OpenCV/FFmpeg read; used only to tell "not a video" from "a broken video".
_SIGNATURES: tuple[tuple[int, bytes], ...] = (
    (0, b"RIFF"), (4, b"ftyp"), (4, b"moov"), (4, b"mdat"), (4, b"free"), (4, b"wide"), (0, b"\x1a\x45\xdf\xa3"),
    (0, b"FLV"), (0, b"\x00\x00\x01\xba"), (0, b"\x00\x00\x01\xb3"), (0, b"\x30\x26\xb2\x75"), (0, b"OggS"),
    (0, b"\x47"),
)
MAX_PLAUSIBLE_FRAMES = 10_000_000  # a container count above this (or <= 0, NaN) is garbage, not a frame count


class VideoDecodeError(ValueError):
    """A file that is not a usable video; the message says why in one line, ``kind`` names the failure.

    kinds: ``missing``, ``empty``, ``not_video``, ``unreadable``, ``incomplete``.
    """

    def __init__(self, message: str, kind: str = "unreadable") -> None:
        super().__init__(message)
        self.kind = kind


def looks_like_video(path: Path) -> bool:
    """Whether the file starts like a known video container (AVI, MP4/MOV, MKV/WebM, FLV, MPEG-PS/TS, ASF, Ogg)."""
    with open(path, "rb") as fh:
        head = fh.read(16)
    return any(head[off:off + len(sig)] == sig for off, sig in _SIGNATURES)


def reported_frame_count(value: float) -> int:
    """The container's frame count if plausible, else 0 (unknown)."""
    return int(value) if np.isfinite(value) and 0 < value < MAX_PLAUSIBLE_FRAMES else 0


def read_video(path: str | Path, min_decoded_fraction: float = 0.0) -> tuple[np.ndarray, float]:
    """Decode every frame of ``path``. Returns RGB uint8 frames (T, H, W, 3) and the fps (0.0 when unknown).

    Any resolution/aspect; grayscale streams become 3-channel. ``min_decoded_fraction`` > 0 rejects a file that
    decodes fewer than that fraction of the frames its container reports (kind ``incomplete``); a missing or
    implausible count is ignored. Raises :class:`VideoDecodeError`.
    """
    path = Path(path)
    frames, fps, reported = _decode(path)
    if reported and len(frames) < min_decoded_fraction * reported:
        raise VideoDecodeError(f"{path}: truncated or corrupt: decoded {len(frames)} of the {reported} frames the "
                               "container reports", "incomplete")
    return np.stack(frames), fps


def probe_video(path: str | Path) -> tuple[np.ndarray, float, int]:
    """Like :func:`read_video` without the completeness check, also returning the container's frame count (0 = n/a)."""
    frames, fps, reported = _decode(Path(path))
    return np.stack(frames), fps, reported


def open_video(path: str | Path) -> tuple[cv2.VideoCapture, float, int]:
    """Open ``path`` for :func:`bgr_frames`: the capture, the fps (0.0 when unknown) and the container's frame count
    (0 when implausible). Raises :class:`VideoDecodeError` for a missing, empty or unopenable file."""
    path = Path(path)
    if not path.is_file():
        raise VideoDecodeError(f"{path}: no such file", "missing")
    if path.stat().st_size == 0:
        raise VideoDecodeError(f"{path}: empty file (0 bytes)", "empty")
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        cap.release()
        raise _unopenable(path)
    fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    reported = reported_frame_count(float(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0.0))
    return cap, (fps if np.isfinite(fps) and 0 < fps < 1000 else 0.0), reported


def to_bgr(frame: np.ndarray) -> np.ndarray:
    """A decoded frame as BGR uint8 (H, W, 3): grayscale and BGRA streams converted (when OpenCV does not)."""
    if frame.ndim == 2:
        return cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    if frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
    return frame


def bgr_frames(cap: cv2.VideoCapture) -> Iterator[np.ndarray]:
    """Every frame of an opened capture as BGR uint8 (H, W, 3); releases it at the end."""
    try:
        while True:
            ok, frame = cap.read()
            if not ok or frame is None:
                return
            yield to_bgr(frame)
    finally:
        cap.release()


def grab_frames(cap: cv2.VideoCapture, wanted: Container[int], path: Path) -> tuple[dict[int, np.ndarray], int]:
    """Run an opened capture to its end; return the BGR frames at the ``wanted`` indices and the number of frames.

    ``grab`` decodes; only ``retrieve`` converts a frame out of the codec's pixel format, which is about half of what
    reading a frame costs (measured: a grab-only pass takes 0.49-0.61 of a read pass), so frames nobody uses are
    never converted. Releases the capture.
    """
    got: dict[int, np.ndarray] = {}
    n = 0
    try:
        while cap.grab():
            if n in wanted:
                ok, frame = cap.retrieve()
                if not ok or frame is None:
                    raise VideoDecodeError(f"{path}: frame {n} decodes but cannot be converted (corrupt)", "unreadable")
                got[n] = to_bgr(frame)
            n += 1
    finally:
        cap.release()
    return got, n


def no_frames_error(path: Path) -> VideoDecodeError:
    """The error for a file that opened but gave no frame."""
    if not looks_like_video(path):
        return VideoDecodeError(f"{path}: not a video file (no known container header)", "not_video")
    return VideoDecodeError(f"{path}: no decodable frames (truncated or corrupt)", "unreadable")


def _decode(path: Path) -> tuple[list[np.ndarray], float, int]:
    cap, fps, reported = open_video(path)
    frames = [cv2.cvtColor(f, cv2.COLOR_BGR2RGB) for f in bgr_frames(cap)]
    if not frames:
        raise no_frames_error(path)
    return frames, fps, reported


def _unopenable(path: Path) -> VideoDecodeError:
    if not looks_like_video(path):
        return VideoDecodeError(f"{path}: not a video file (no known container header)", "not_video")
    return VideoDecodeError(f"{path}: OpenCV cannot open it as a video (corrupt or truncated header)", "unreadable")


def uniform_indices(total: int, num: int) -> np.ndarray:
    """TSN-style sampling: the centre frame of ``num`` equal segments of ``total`` frames.

    A clip shorter than ``num`` frames repeats frames (each index appears in order), so short clips still give ``num``.
    """
    return sample_clips(total, num)[0]


def sample_clips(total: int, num: int, clips: int = 1, policy: str = "uniform", stride: int = 0,
                 rng: np.random.Generator | None = None) -> list[np.ndarray]:
    """``clips`` index arrays of ``num`` frames each into a clip of ``total`` frames (policies in the module doc)."""
    if total <= 0:
        raise ValueError("a clip needs at least one frame")
    if policy not in ("uniform", "random"):
        raise ValueError(f"unknown sampling policy '{policy}' (uniform | random)")
    if policy == "random" and rng is None:
        raise ValueError("random sampling needs a seeded numpy Generator")
    out = []
    for j in range(clips):
        if stride <= 0:
            seg = total / num
            frac = rng.random(num) if policy == "random" else np.full(num, (j + 0.5) / clips)  # type: ignore[union-attr]
            idx = (np.arange(num) * seg + frac * seg).astype(np.int64)
            out.append(np.minimum(idx, total - 1))
        else:
            span = (num - 1) * stride + 1
            room = max(total - span, 0)
            if policy == "random":
                start = int(rng.integers(0, room + 1))  # type: ignore[union-attr]
            else:
                start = int(round(room * (j + 0.5) / clips)) if clips > 1 else room // 2
            out.append((start + np.arange(num) * stride) % total)  # loops when the window does not fit
    return out


def resize_frame(frame: np.ndarray, size: int) -> np.ndarray:
    """(H, W, C) uint8 → (size, size, C), area interpolation (averages away some sensor noise); as is at that size.

    The one resize of the project: the frame cache (training) and ``dlkdd predict`` (inference) both use it.
    """
    if frame.shape[:2] == (size, size):
        return frame
    return cv2.resize(frame, (size, size), interpolation=cv2.INTER_AREA)


def resize_frames(frames: np.ndarray, size: int) -> np.ndarray:
    """Resize (T, H, W, 3) uint8 to (T, size, size, 3) with :func:`resize_frame`."""
    return np.stack([resize_frame(f, size) for f in frames])

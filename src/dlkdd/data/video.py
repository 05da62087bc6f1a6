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

import os
from collections.abc import Callable, Container, Iterator
from pathlib import Path

import cv2
import numpy as np

# FFmpeg (inside OpenCV) writes decoder complaints ("overread", "bad vlc", "error count") straight to fd 2, through
# any progress bar, for every damaged frame. OpenCV reads this knob when it first opens a capture: -8 is FFmpeg's
# AV_LOG_QUIET. A damaged file is still judged by what decodes (``check_complete``) and named in one error line;
# set OPENCV_FFMPEG_LOGLEVEL=16 (AV_LOG_ERROR) in the environment to see the codec's own lines again.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

# Leading bytes of the containers OpenCV/FFmpeg read; used only to tell "not a video" from "a broken video".
_SIGNATURES: tuple[tuple[int, bytes], ...] = (
    (0, b"RIFF"), (4, b"ftyp"), (4, b"moov"), (4, b"mdat"), (4, b"free"), (4, b"wide"), (0, b"\x1a\x45\xdf\xa3"),
    (0, b"FLV"), (0, b"\x00\x00\x01\xba"), (0, b"\x00\x00\x01\xb3"), (0, b"\x30\x26\xb2\x75"), (0, b"OggS"),
    (0, b"\x47"),
)
VIDEO_SUFFIXES = (".avi", ".mp4", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv")  # files looked for
MAX_PLAUSIBLE_FRAMES = 10_000_000  # a container count above this (or <= 0, NaN) is garbage, not a frame count


class VideoDecodeError(ValueError):
    """A file that is not a usable video; the message says why in one line, ``kind`` names the failure.

    kinds: ``missing``, ``empty``, ``not_video``, ``unreadable``, ``incomplete``, ``bad_name`` (not UTF-8), and from
    an isolated worker (:mod:`dlkdd.data.untrusted`) ``crashed``, ``timeout`` and ``error`` (any other exception
    raised while the file was handled).
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
    """Decode every frame of ``path`` into memory. Returns RGB uint8 frames (T, H, W, 3) and the fps (0.0 = unknown).

    For short clips only (tests, tools): memory grows with the video. Pipelines read footage with
    :func:`decode_planned` (the frame cache, the landing gate, single-clip predict) or :mod:`dlkdd.data.stream`
    (windows of long footage), which keep a few frames whatever the length. ``min_decoded_fraction`` > 0 rejects a
    file that decodes fewer than that fraction of the frames its container reports (kind ``incomplete``).
    Raises :class:`VideoDecodeError`.
    """
    path = Path(path)
    cap, fps, reported = open_video(path)
    frames = [cv2.cvtColor(f, cv2.COLOR_BGR2RGB) for _, f in read_stream(cap, lambda n: True, path)]
    if not frames:
        raise no_frames_error(path)
    check_complete(path, len(frames), reported, min_decoded_fraction)
    return np.stack(frames), fps


def check_complete(path: Path, decoded: int, reported: int, min_decoded_fraction: float) -> None:
    """Raise ``incomplete`` when a file decodes fewer than ``min_decoded_fraction`` of the frames its container
    reports (truncated upload, corrupt mid-stream); a missing or implausible count (0) is not judged."""
    if reported and decoded < min_decoded_fraction * reported:
        raise VideoDecodeError(f"{path}: truncated or corrupt: decoded {decoded} of the {reported} frames the "
                               "container reports", "incomplete")


def printable(path: str | Path) -> str:
    """A path as text that can always be printed and written to a CSV: bytes that are not UTF-8 become ``\\xNN``."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def is_inside(path: str | Path, root: str | Path) -> bool:
    """Whether ``path`` resolves (symlinks followed) to ``root`` itself or something under it."""
    real, real_root = os.path.realpath(path), os.path.realpath(root)
    return os.path.commonpath([real, real_root]) == real_root


def escape_problem(path: str, root: str | Path) -> tuple[str, str] | None:
    """``(reason, "escapes_root")`` when ``path`` (relative to ``root``) leaves ``root``, else None: the one check
    the frame cache and the importers apply to every row.

    The file must stay inside ``root`` both as written (no absolute path, no ``..``) and as resolved: a symlink to a
    file elsewhere would read, cache and push that file's bytes. ``path`` must hold no NUL (realpath raises on one).
    """
    shown = printable(path)  # a name that is not UTF-8 shown with its bytes escaped
    norm = os.path.normpath(path)
    if os.path.isabs(path) or norm == ".." or norm.startswith(".." + os.sep):
        return f"{shown}: path escapes the dataset root {root}", "escapes_root"
    real = os.path.realpath(Path(root) / path)
    if not is_inside(real, root):
        return f"{shown}: resolves to {printable(real)}, outside the root {root} (a symlink out of it)", "escapes_root"
    return None


def check_name(path: str | Path) -> None:
    """Refuse a path whose bytes are not valid UTF-8 (kind ``bad_name``) before any codec sees it: OpenCV's FFmpeg
    backend segfaults on such names, which no ``except`` can catch."""
    raw = os.fsencode(path)
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        raise VideoDecodeError(f"{printable(path)}: file name is not valid UTF-8; rename the file",
                               "bad_name") from None


def open_video(path: str | Path) -> tuple[cv2.VideoCapture, float, int]:
    """Open ``path`` for :func:`read_stream`: the capture, the fps (0.0 when unknown) and the container's frame count
    (0 when implausible). Raises :class:`VideoDecodeError` for a bad name, a missing, empty or unopenable file."""
    check_name(path)
    path = Path(path)
    if not path.is_file():
        raise VideoDecodeError(f"{path}: no such file", "missing")
    if path.stat().st_size == 0:
        raise VideoDecodeError(f"{path}: empty file (0 bytes)", "empty")
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        cap.release()
        raise broken_video_error(path, "OpenCV cannot open it as a video (corrupt or truncated header)")
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


# Set in an isolated decoding worker (dlkdd.data.untrusted): called for every decoded frame, so the supervisor can
# tell a long video that is still decoding from a codec that hangs.
heartbeat: Callable[[], None] | None = None


def read_stream(cap: cv2.VideoCapture, keep: Callable[[int], bool], path: Path | str = "video"
                ) -> Iterator[tuple[int, np.ndarray]]:
    """The one decoding loop: run an opened capture to its end, yielding ``(index, BGR frame (H, W, 3))`` for the
    frames ``keep(index)`` wants. Releases the capture.

    ``grab`` decodes; only ``retrieve`` converts a frame out of the codec's pixel format, which is about half of what
    reading a frame costs (measured: a grab-only pass takes 0.49-0.61 of a read pass), so frames nobody keeps are
    never converted. ``keep`` is asked in index order, once per frame, after that frame is decoded. The number of
    frames decoded is the last index + 1 of a full pass: use :func:`grab_frames` when that count matters.
    """
    n = 0
    try:
        while cap.grab():
            if heartbeat is not None:
                heartbeat()
            if keep(n):
                ok, frame = cap.retrieve()
                if not ok or frame is None:
                    raise VideoDecodeError(f"{path}: frame {n} decodes but cannot be converted (corrupt)", "unreadable")
                yield n, to_bgr(frame)
            n += 1
    finally:
        cap.release()


def grab_frames(cap: cv2.VideoCapture, wanted: Container[int], path: Path) -> tuple[dict[int, np.ndarray], int]:
    """Run an opened capture to its end (:func:`read_stream`); return the BGR frames at the ``wanted`` indices and the
    number of frames decoded. Releases the capture."""
    count = [0]

    def keep(n: int) -> bool:
        count[0] = n + 1
        return n in wanted

    got = dict(read_stream(cap, keep, path))
    return got, count[0]


def decode_planned(path: Path, plan: Callable[[int], list[np.ndarray]], extra: Callable[[list[np.ndarray], int],
                   list[int]] | None = None) -> tuple[list[list[np.ndarray]], dict[int, np.ndarray], int, float, int]:
    """Decode ``path`` once, keeping only the frames ``plan(frame_count)`` asks for (index arrays, one per clip) and
    the indices ``extra(clips, frame_count)`` adds. Returns the clips' BGR frames, every kept frame by index, the
    number of frames decoded, the fps and the container's count (0 when implausible).

    The plan needs the real frame count, which containers misreport: the reported count is trusted for one pass, and
    when the decoded count differs the video is decoded once more on the real count (a missing count costs a cheap
    counting pass first). Memory holds the kept frames only, whatever the video's length. A frame whose size differs
    from the first kept one's (a mid-stream resolution change) is resized to it. Raises :class:`VideoDecodeError`.
    """
    cap, fps, reported = open_video(path)
    expected = reported
    if not expected:
        expected = grab_frames(cap, (), path)[1]
        if not expected:  # a valid container holding no frame (a writer opened and closed): nothing to plan on
            raise no_frames_error(Path(path))
        cap = open_video(path)[0]
    for _ in range(3):
        clips = plan(expected) if expected else []
        wanted = sorted({int(i) for idx in clips for i in idx} | set(extra(clips, expected) if extra else ()))
        got, n = grab_frames(cap, set(wanted), path)
        if n == 0:
            raise no_frames_error(Path(path))
        if n == expected:
            break
        expected = n  # the container's count was wrong: plan again on the real one
        cap = open_video(path)[0]
    else:
        raise VideoDecodeError(f"{path}: decodes to a different number of frames each time (corrupt)", "unreadable")
    h, w = got[wanted[0]].shape[:2]
    for i in wanted:
        if got[i].shape != (h, w, 3):
            got[i] = cv2.resize(got[i], (w, h), interpolation=cv2.INTER_AREA)
    return [[got[int(i)] for i in idx] for idx in clips], got, n, fps, reported


def broken_video_error(path: Path, why: str) -> VideoDecodeError:
    """The error for a file OpenCV could not read: ``not_video`` when it does not even start like a video container,
    else ``unreadable`` saying ``why`` (a broken video)."""
    if not looks_like_video(path):
        return VideoDecodeError(f"{path}: not a video file (no known container header)", "not_video")
    return VideoDecodeError(f"{path}: {why}", "unreadable")


def no_frames_error(path: Path) -> VideoDecodeError:
    """The error for a file that opened but gave no frame."""
    return broken_video_error(path, "no decodable frames (truncated or corrupt)")


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

"""Windows of long footage and live streams, read with the one decoding loop (:func:`dlkdd.data.video.read_stream`).

A window is ``window_s`` seconds of video, one every ``stride_s`` seconds; from each, ``num_frames`` frames are taken
at the centres of equal segments (the frame cache's ``uniform`` sampling, so the student sees at inference what it
saw in training) and resized to ``size``. Only those frames are converted out of the codec's format, each is shrunk
the moment it is decoded, and a frame is dropped as soon as no open window needs it: memory holds
``ceil(window / stride) * num_frames`` small frames whatever the video's length, and a live stream is read until it
ends, ``max_seconds``, or the caller stops iterating.
"""
from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from dlkdd.data.video import (VideoDecodeError, check_complete, check_name, decode_planned, open_video, read_stream,
                              resize_frame, uniform_indices)

DEFAULT_FPS = 25.0  # for streams that do not say (fps 0): timestamps are then approximate, and said to be


@dataclass(frozen=True)
class Window:
    """One window of video: its span in seconds and its frames, uint8 RGB (T, size, size, 3)."""

    start_s: float
    end_s: float
    frames: np.ndarray


def is_stream(source: str | Path) -> bool:
    """A URL (``rtsp://``, ``http://``, ``file://`` ...) or a capture device number rather than a file path."""
    s = str(source)
    return "://" in s or s.isdigit()


def open_source(source: str | Path) -> tuple[cv2.VideoCapture, float, int]:
    """Open a file (with the file checks of :func:`open_video`) or a stream/device; returns (capture, fps, reported
    frame count). Raises :class:`VideoDecodeError` with one line when it cannot be opened."""
    if not is_stream(source):
        return open_video(source)
    check_name(str(source))
    cap = cv2.VideoCapture(int(source) if str(source).isdigit() else str(source))
    if not cap.isOpened():
        cap.release()
        raise VideoDecodeError(f"{source}: cannot open the stream (wrong address, server down or unsupported "
                               "protocol)", "unreadable")
    fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    return cap, (fps if np.isfinite(fps) and 0 < fps < 1000 else 0.0), 0


def read_clip(path: str | Path, num_frames: int, size: int) -> np.ndarray:
    """A short file as one clip: ``num_frames`` segment centres over its whole length (the frame cache's eval
    sampling), resized, uint8 RGB (T, size, size, 3). Raises :class:`VideoDecodeError`."""
    clips, *_ = decode_planned(Path(path), lambda total: [uniform_indices(total, num_frames)])
    return np.stack([cv2.cvtColor(resize_frame(f, size), cv2.COLOR_BGR2RGB) for f in clips[0]])


def stream_windows(source: str | Path, num_frames: int, size: int, window_s: float, stride_s: float,
                   max_seconds: float | None = None, min_decoded_fraction: float = 0.9) -> Iterator[Window]:
    """Windows of ``source`` (file, URL or device) in time order (module doc). A video shorter than one window
    gives one window over all of it. Raises :class:`VideoDecodeError` when nothing can be read, and, after its
    last window, when a file read to its end decoded fewer than ``min_decoded_fraction`` of the frames its container
    reports (truncated: the caller must not take the timeline for the whole video). A stream that drops cannot be
    told from one that ends: it ends."""
    if window_s <= 0 or stride_s <= 0:
        raise ValueError("window and stride must be > 0 seconds")
    cap, fps, reported = open_source(source)
    fps = fps or DEFAULT_FPS
    win = max(1, round(window_s * fps))
    step = max(1, round(stride_s * fps))
    stop = math.inf if max_seconds is None else max_seconds * fps  # frames to read at most
    offsets = uniform_indices(win, num_frames)  # frame offsets inside a window
    needed: Counter[int] = Counter()  # frame index -> open windows that still need it
    open_starts: list[int] = []  # starts of windows not yet complete, in order
    kept: dict[int, np.ndarray] = {}  # needed frames, already shrunk to (size, size, 3) RGB
    state = {"next": 0, "last": -1, "emitted": 0}

    def keep(n: int) -> bool:
        while state["next"] <= n:  # open every window that starts by frame n
            open_starts.append(state["next"])
            needed.update(int(state["next"] + o) for o in offsets)
            state["next"] += step
        state["last"] = n
        return n in needed

    def emit(start: int, end: int, idx: list[int]) -> Window:
        frames = np.stack([kept[i] for i in idx])
        for i in idx:
            needed[i] -= 1
            if needed[i] <= 0:
                del needed[i]
                kept.pop(i, None)
        state["emitted"] += 1
        return Window(start / fps, end / fps, frames)

    for n, frame in read_stream(cap, keep, source):
        if n >= stop:
            break
        kept[n] = cv2.cvtColor(resize_frame(frame, size), cv2.COLOR_BGR2RGB)
        while open_starts and n >= open_starts[0] + int(offsets[-1]):  # the window's last frame is here
            start = open_starts.pop(0)
            yield emit(start, start + win, [start + int(o) for o in offsets])
    cap.release()
    if max_seconds is None or state["last"] + 1 < stop:  # read to its end: was it all there?
        check_complete(Path(str(source)), state["last"] + 1, reported, min_decoded_fraction)
    if state["emitted"] == 0:  # shorter than one window (or stopped early): one window over all that was read
        if not is_stream(source) and max_seconds is None:  # a short file: sampled over its whole length, as a clip
            yield Window(0.0, (state["last"] + 1) / fps, read_clip(source, num_frames, size))
            return
        seen = sorted(kept)
        if not seen:
            raise VideoDecodeError(f"{source}: no frames could be read", "unreadable")
        idx = [seen[min(int(i * len(seen) / num_frames), len(seen) - 1)] for i in range(num_frames)]
        yield Window(0.0, (state["last"] + 1) / fps, np.stack([kept[i] for i in idx]))

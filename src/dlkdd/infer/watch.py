"""The student on footage of any length: one label for a short clip, or a timeline of windows for long videos,
folders and live streams. Decoding is the one streaming decoder (:mod:`dlkdd.data.video`, :mod:`dlkdd.data.stream`),
the model any :class:`dlkdd.infer.runner.Runner` (PyTorch checkpoint or ONNX Runtime), the outputs the writers of
:mod:`dlkdd.infer.timeline`. Memory is flat in the video's length: windows are predicted as they are read.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path

import cv2
import numpy as np

from dlkdd.data.stream import Window, is_stream, open_source, read_clip, stream_windows
from dlkdd.data.video import VIDEO_SUFFIXES, read_stream
from dlkdd.infer.runner import Runner
from dlkdd.infer.timeline import Thumbnails, WindowResult, label_at, merge_segments, smooth, write_timeline


def predict_clip(runner: Runner, path: str | Path) -> np.ndarray:
    """Class probabilities (K,) for one short clip: ``num_frames`` segment centres over the whole clip, exactly the
    frame cache's eval sampling. Raises :class:`dlkdd.data.video.VideoDecodeError`."""
    return runner(read_clip(path, runner.num_frames, runner.size)[None])[0]


def predict_windows(runner: Runner, source: str | Path, window_s: float, stride_s: float, batch: int = 16,
                    max_seconds: float | None = None, thumbnails: Thumbnails | None = None) -> Iterator[WindowResult]:
    """Per-window probabilities of ``source`` (file, URL or device), ``batch`` windows per forward pass.

    Ctrl-C stops the reading, the windows already read are still predicted and yielded, then KeyboardInterrupt is
    raised again so the caller can write what was seen."""
    pending: list[Window] = []

    def run() -> Iterator[WindowResult]:
        probs = runner(np.stack([w.frames for w in pending]))  # (B, K)
        for w, p in zip(pending, probs):
            yield WindowResult(w.start_s, w.end_s, p)
        pending.clear()

    interrupted = False
    try:
        for w in stream_windows(source, runner.num_frames, runner.size, window_s, stride_s, max_seconds):
            if thumbnails is not None:
                thumbnails.offer((w.start_s + w.end_s) / 2, w.frames[len(w.frames) // 2])
            pending.append(w)
            if len(pending) >= batch:
                yield from run()
    except KeyboardInterrupt:
        interrupted = True
    if pending:
        yield from run()
    if interrupted:
        raise KeyboardInterrupt


@dataclass
class Timeline:
    """What :func:`watch` found in one video."""

    source: str
    windows: list[WindowResult] = field(default_factory=list)
    interrupted: bool = False
    files: dict[str, Path] = field(default_factory=dict)


def watch(runner: Runner, source: str | Path, window_s: float, stride_s: float, out_dir: Path | None = None,
          topk: int = 3, min_prob: float = 0.5, max_seconds: float | None = None, batch: int | None = None,
          annotate: Path | None = None, name: str | None = None, smoothing: int = 3) -> Timeline:
    """Predict ``source`` window by window and, with ``out_dir``, write its timeline there (CSV, JSON, HTML, PNG) as
    ``<name>.*``; with ``annotate``, a copy of the video with the current action drawn on it (files only: a second
    decoding pass, once the segments are known). A stream is predicted one window at a time (no batching delay).
    The timeline's probabilities are averaged over ``smoothing`` consecutive windows (:func:`timeline.smooth`)."""
    stream = is_stream(source)
    batch = batch or (1 if stream else 16)
    thumbs = Thumbnails()
    result = Timeline(str(source))
    try:
        for w in predict_windows(runner, source, window_s, stride_s, batch, max_seconds, thumbs):
            result.windows.append(w)
    except KeyboardInterrupt:
        result.interrupted = True
    result.windows = smooth(result.windows, smoothing)
    if out_dir is not None and result.windows:
        result.files = write_timeline(out_dir, str(source), runner.classes, result.windows, topk, min_prob,
                                      thumbnails=thumbs.items(), name=name or _stem(source), window_s=window_s,
                                      stride_s=stride_s, smoothing=smoothing, interrupted=result.interrupted)
    if annotate is not None and result.windows and not stream:
        annotate_video(source, annotate, merge_segments(result.windows, runner.classes, min_prob))
    return result


def annotate_video(source: str | Path, out: Path, segments) -> None:
    """Write ``source`` again with the current segment's label and confidence drawn on every frame (mp4v)."""
    from dlkdd.infer.timeline import annotated_writer

    cap, fps, _ = open_source(source)
    fps = fps or 25.0
    frames = read_stream(cap, lambda n: True, source)
    first = next(frames, None)
    if first is None:
        return
    h, w = first[1].shape[:2]
    with annotated_writer(out, fps, (w, h)) as write:
        for n, bgr in chain([first], frames):
            seg = label_at(segments, n / fps)
            write(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), f"{seg.label} {seg.mean_prob:.2f}" if seg else "-")


def _stem(source: str | Path) -> str:
    s = str(source)
    if is_stream(s):  # rtsp://host:port/cam -> host_port_cam
        return "".join(c if c.isalnum() or c in "-." else "_" for c in s.split("://", 1)[-1]).strip("_") or "stream"
    return Path(s).stem


def expand_inputs(inputs: list[str]) -> list[tuple[str, str]]:
    """Files, folders (every video inside, recursively, sorted; hidden files skipped) and stream URLs, as
    ``(source, name)`` pairs; a folder's videos are named by their path inside it (``a/b.mp4`` → ``a__b``) so two
    videos with one stem never share timeline files."""
    out: list[tuple[str, str]] = []
    for item in inputs:
        p = Path(item)
        if not is_stream(item) and p.is_dir():
            for f in sorted(p.rglob("*")):
                rel = f.relative_to(p)
                if f.is_file() and f.suffix.lower() in VIDEO_SUFFIXES and not any(s.startswith(".") for s in rel.parts):
                    out.append((str(f), "__".join(rel.with_suffix("").parts)))
        else:
            out.append((item, _stem(item)))
    return out

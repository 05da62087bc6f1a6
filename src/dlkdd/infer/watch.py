"""The student on footage of any length: one label for a short clip, or a timeline of windows for long videos,
folders and live streams. Decoding is the one streaming decoder (:mod:`dlkdd.data.video`, :mod:`dlkdd.data.stream`),
the model any :class:`dlkdd.infer.runner.Runner` (PyTorch checkpoint or ONNX Runtime), the outputs the writers of
:mod:`dlkdd.infer.timeline`. Memory is flat in the video's length: windows are predicted as they are read.
"""
from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path

import cv2
import numpy as np

from dlkdd.data.stream import Window, is_stream, open_source, stream_windows
from dlkdd.data.video import VIDEO_SUFFIXES, check_complete, decode_planned, read_stream, resize_frame, uniform_indices
from dlkdd.infer.runner import Runner
from dlkdd.infer.timeline import (Segment, Thumbnails, WindowResult, iter_segments, iter_smooth, label_at,
                                  write_timeline)


# A file that decodes fewer than this share of the frames its container reports is refused (kind ``incomplete``),
# in single-clip and window mode alike: a label for the first fifth of a truncated upload is a wrong answer.
MIN_DECODED_FRACTION = 0.9


def predict_clip(runner: Runner, path: str | Path, min_decoded_fraction: float = MIN_DECODED_FRACTION
                 ) -> np.ndarray:
    """Class probabilities (K,) for one short clip: ``num_frames`` segment centres over the whole clip, exactly the
    frame cache's eval sampling. Raises :class:`dlkdd.data.video.VideoDecodeError`, also when the file decodes fewer
    than ``min_decoded_fraction`` of the frames its container reports (truncated or corrupt mid-stream)."""
    path = Path(path)
    clips, _, decoded, _, reported = decode_planned(path, lambda total: [uniform_indices(total, runner.num_frames)])
    check_complete(path, decoded, reported, min_decoded_fraction)
    frames = np.stack([cv2.cvtColor(resize_frame(f, runner.size), cv2.COLOR_BGR2RGB) for f in clips[0]])
    return runner(frames[None])[0]


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
        for w in stream_windows(source, runner.num_frames, runner.size, window_s, stride_s, max_seconds,
                                MIN_DECODED_FRACTION):
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
    """What :func:`watch` found in one video: the smoothed windows and the merged segments."""

    source: str
    windows: list[WindowResult] = field(default_factory=list)
    interrupted: bool = False
    files: dict[str, Path] = field(default_factory=dict)
    segments: list[Segment] = field(default_factory=list)
    annotated: Path | None = None


def watch_live(runner: Runner, source: str | Path, window_s: float, stride_s: float, into: Timeline,
               min_prob: float = 0.5, smoothing: int = 3, max_seconds: float | None = None, batch: int | None = None,
               thumbnails: Thumbnails | None = None) -> Iterator[Segment]:
    """The merged segments of ``source`` as they happen: each is yielded as soon as a later window ends it, the open
    one when the video ends (or Ctrl-C, which sets ``into.interrupted``). The smoothed windows are appended to
    ``into.windows`` as they come. A stream is predicted one window at a time; a file 16 windows per forward pass,
    so its first segment comes after at most 16 windows plus ``smoothing // 2``. Raises what the decoder raises,
    e.g. a truncated file after its last window (the segments already yielded then cover only what was read)."""
    batch = batch or (1 if is_stream(source) else 16)

    def windows() -> Iterator[WindowResult]:
        try:
            yield from predict_windows(runner, source, window_s, stride_s, batch, max_seconds, thumbnails)
        except KeyboardInterrupt:
            into.interrupted = True

    def recorded(ws: Iterator[WindowResult]) -> Iterator[WindowResult]:
        for w in ws:
            into.windows.append(w)
            yield w

    for seg in iter_segments(recorded(iter_smooth(windows(), smoothing)), runner.classes, min_prob):
        into.segments.append(seg)
        yield seg


def watch(runner: Runner, source: str | Path, window_s: float, stride_s: float, out_dir: Path | None = None,
          topk: int = 3, min_prob: float = 0.5, max_seconds: float | None = None, batch: int | None = None,
          annotate: Path | None = None, name: str | None = None, smoothing: int = 3,
          on_segment: Callable[[Segment], None] | None = None) -> Timeline:
    """Predict ``source`` window by window (:func:`watch_live`, ``on_segment`` called with each segment as it
    closes) and, with ``out_dir``, write its timeline there (CSV, JSON, HTML, PNG) as ``<name>.*``; with
    ``annotate``, a copy of the video brightened for display with the current action drawn on it (files only: a
    second decoding pass, once the segments are known). The timeline's probabilities are averaged over
    ``smoothing`` consecutive windows (:func:`timeline.smooth`)."""
    thumbs = Thumbnails()
    result = Timeline(str(source))
    for seg in watch_live(runner, source, window_s, stride_s, result, min_prob, smoothing, max_seconds, batch,
                          thumbs):
        if on_segment is not None:
            on_segment(seg)
    if out_dir is not None and result.windows:
        result.files = write_timeline(out_dir, str(source), runner.classes, result.windows, topk, min_prob,
                                      thumbnails=thumbs.items(), name=name or _stem(source), window_s=window_s,
                                      stride_s=stride_s, smoothing=smoothing, interrupted=result.interrupted)
    if annotate is not None and result.windows and not is_stream(source):
        if annotate_video(source, annotate, result.segments):
            result.annotated = annotate
    return result


def annotate_video(source: str | Path, out: Path, segments: Sequence[Segment]) -> bool:
    """Write ``source`` again, brightened for a person (:class:`DisplayGain`; the model saw the dark frames), with
    the current segment's label and confidence drawn on every frame (mp4v). False when no frame could be read."""
    from dlkdd.infer.timeline import annotated_writer

    cap, fps, _ = open_source(source)
    fps = fps or 25.0
    frames = read_stream(cap, lambda n: True, source)
    first = next(frames, None)
    if first is None:
        return False
    h, w = first[1].shape[:2]
    gain = DisplayGain(every=max(1, round(fps)))
    with annotated_writer(out, fps, (w, h)) as write:
        for n, bgr in chain([first], frames):
            seg = label_at(segments, n / fps)
            rgb = gain(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            write(rgb, f"{seg.label} {seg.mean_prob:.2f}" if seg else "-")
    return True


class DisplayGain:
    """:func:`timeline.brighten_for_display` for a whole video, fast: the curve (99.5th percentile to white, gamma
    0.7) is measured on a subsampled frame once every ``every`` frames and applied as a lookup table, so the
    picture brightens with the scene without flickering frame to frame."""

    def __init__(self, every: int = 25) -> None:
        self.every, self.seen, self.lut = every, 0, None

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        if self.lut is None or self.seen % self.every == 0:
            hi = max(float(np.percentile(rgb[::4, ::4], 99.5)), 1.0)
            self.lut = np.clip(255.0 * (np.arange(256) / hi) ** 0.7, 0, 255).astype(np.uint8)
        self.seen += 1
        return cv2.LUT(rgb, self.lut)


def _stem(source: str | Path) -> str:
    s = str(source)
    if is_stream(s):  # rtsp://host:port/cam -> host_port_cam
        return "".join(c if c.isalnum() or c in "-." else "_" for c in s.split("://", 1)[-1]).strip("_") or "stream"
    return Path(s).stem


def expand_inputs(inputs: list[str]) -> list[tuple[str, str]]:
    """Files, folders (every video inside, recursively, sorted; hidden files skipped) and stream URLs, as
    ``(source, name)`` pairs, each source once. A folder's videos are named by their path inside it without the
    suffix (``a/b.mp4`` → ``a__b``), other inputs by their stem; names are unique (:func:`unique_names`), so no two
    inputs ever share timeline files."""
    found: dict[str, tuple[str, str]] = {}  # source -> (name, key: the path inside its folder, or the input as given)
    for item in inputs:
        p = Path(item)
        if not is_stream(item) and p.is_dir():
            for f in sorted(p.rglob("*")):
                rel = f.relative_to(p)
                if f.is_file() and f.suffix.lower() in VIDEO_SUFFIXES and not any(s.startswith(".") for s in rel.parts):
                    found.setdefault(str(f), ("__".join(rel.with_suffix("").parts), rel.as_posix()))
        else:
            found.setdefault(item, (_stem(item), item))
    names = unique_names([(name, key, source) for source, (name, key) in found.items()])
    return list(zip(found, names))


def unique_names(wanted: list[tuple[str, str, str]]) -> list[str]:
    """One distinct output name per ``(name, key, source)``, deterministic. A name no other input wants (compared
    case-insensitively, as macOS and Windows folders compare) is kept, so a lone ``a.mp4`` stays ``a``. Names that
    collide (``a.mp4`` and ``a.avi``; ``cam2/a.mp4`` and ``cam2__a.avi``) all get ``-`` and the first 8 hex digits of
    the SHA-256 of ``key`` (the path inside the folder, or the input as given): the same folder names each file the
    same way on every run. Names that still collide (one path inside two folders given together) hash ``source``."""
    names = [name for name, _, _ in wanted]
    for field_ in (1, 2):
        clash = _clashes(names)
        if not clash:
            return names
        names = [f"{w[0]}-{_short_hash(w[field_])}" if n.casefold() in clash else n for w, n in zip(wanted, names)]
    if _clashes(names):
        raise ValueError(f"two inputs would write the same timeline files: {sorted(_clashes(names))[0]}")
    return names


def _clashes(names: list[str]) -> set[str]:
    counts = Counter(n.casefold() for n in names)
    return {n for n, c in counts.items() if c > 1}


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:8]

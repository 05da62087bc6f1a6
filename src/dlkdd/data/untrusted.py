"""Decoding untrusted footage in isolation: a codec crash, hang or out-of-memory costs one file, never the run.

FFmpeg inside OpenCV can segfault (no ``except`` catches that), loop forever or allocate without bound on a crafted or
damaged file. Every file of an imported dataset or a landing is therefore decoded in a supervised worker process
(:mod:`dlkdd.isolated`, the mechanism: supervision, heartbeats, time limits). This module holds what such a worker
runs on a video file, and the :data:`DECODER` kind of worker that runs it:

- :func:`decode_for_cache`, the one decode of a file the frame cache keeps (its clip job, ``_process`` in
  :mod:`dlkdd.data.frames`, calls it) and the landing gate's statistics job (:func:`clip_stats_isolated`);
- a decoder worker imports OpenCV once, before it is ready, and beats (:func:`dlkdd.isolated.beat`) for every decoded
  frame (:data:`dlkdd.data.video.heartbeat`): a long video that keeps decoding is never cut off, a stuck codec is
  (``timeout``); a codec that kills its worker is reported ``crashed`` with its signal; anything else raised while
  one file is handled is ``error``.
"""
from __future__ import annotations

import os

import threading
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from dlkdd import faults
from dlkdd.data import video
from dlkdd.data.clipstats import LumaStats
from dlkdd.data.video import VideoDecodeError, check_complete, check_name, decode_planned, sample_clips
from dlkdd.isolated import Failure, IsolatedWorker, WorkerKind, beat, call_for_file

NOISE_PAIRS = 4  # consecutive-frame pairs per video for the noise estimate

DECODER = WorkerKind(
    name="decoder", setup="dlkdd.data.untrusted:setup_decoder_worker",
    crashed="the decoder crashed on this file ({how}); it is damaged or uses a codec this OpenCV build cannot read",
    timeout="decoder made no progress for {timeout_s:g} s (hung on a damaged stream?); raise frames.decode_timeout_s "
            "if the file is fine")


def setup_decoder_worker() -> None:
    """Run in each :data:`DECODER` worker before it is ready: one OpenCV thread, a beat per decoded frame."""
    cv2.setNumThreads(1)  # parallelism comes from the workers (bench_ingest: OpenCV's pool only added overhead)
    video.heartbeat = beat
    # The codecs print what a damaged file makes them print, raw bytes included: OpenCV's AVI reader echoes a chunk id
    # it did not expect ("Expected: LIST. Got: <4 bytes of the file>"), so a hostile file could write terminal
    # escapes to the operator's screen. A file's fate is reported per file (quarantine.csv, one line), and a Python
    # error here goes back over the pipe: the worker's own stderr is not needed.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)


def decode_for_cache(path: Path, plan: Callable[[int], list[np.ndarray]]
                     ) -> tuple[list[list[np.ndarray]], dict[str, float], int]:
    """Decode ``path`` with :func:`dlkdd.data.video.decode_planned`, keeping only the frames ``plan(frame_count)``
    asks for (index arrays, one per clip) and the frame after a few of them (:func:`frames_to_keep`), from which the
    stats row is computed. Returns the clips' BGR frames, the stats row and the container's frame count (0 when
    implausible). Raises :class:`VideoDecodeError`.
    """
    clips, got, n, fps, reported = decode_planned(path, plan, frames_to_keep)
    h, w = next(iter(got.values())).shape[:2]
    stats = LumaStats()
    for i in sorted(got):
        stats.add(got[i], i)
    return clips, stats.result(fps, h, w, frames=n), reported


def frames_to_keep(clips: list[np.ndarray], total: int) -> list[int]:
    """The sampled frames of every clip plus the frame after ``NOISE_PAIRS`` of them, spread out (the noise estimate
    needs consecutive frames; a few pairs at the stats grid's size give thousands of differences)."""
    sampled = sorted({int(i) for idx in clips for i in idx})
    every = -(-len(sampled) // NOISE_PAIRS)  # ceil: at most NOISE_PAIRS successors
    return sorted(set(sampled) | {i + 1 for i in sampled[::every] if i + 1 < total})


_local = threading.local()


def _stats_job(arg: tuple[str, int]) -> tuple[dict[str, float], int] | tuple[str, str]:
    path, num_frames = arg
    faults.inject("decode", path)
    try:
        _, stats, reported = decode_for_cache(Path(path), lambda total: sample_clips(total, num_frames))
    except VideoDecodeError as err:
        return str(err), err.kind
    return stats, reported


def clip_stats_isolated(path: str | Path, *, timeout_s: float, min_decoded_fraction: float,
                        num_frames: int = 8) -> dict[str, float]:
    """Per-clip statistics of an untrusted file, exactly as the frame cache computes them for ``num_frames`` sampled
    frames (so a landing is compared with the training set like with like), decoded in an isolated worker.

    Raises :class:`VideoDecodeError` with any decoder kind, ``crashed``, ``timeout`` or ``error`` (anything else the
    file made fail), and :class:`dlkdd.isolated.WorkerStartError`. The worker is kept per thread for the next call.
    """
    check_name(path)  # before the file goes anywhere near a codec
    worker = getattr(_local, "worker", None)
    if worker is None:
        worker = _local.worker = IsolatedWorker(timeout_s, DECODER)
    worker.timeout_s = timeout_s  # the limit is per call; the process is kept
    out = call_for_file(worker, _stats_job, (str(path), num_frames), str(path))
    if isinstance(out, Failure):
        raise VideoDecodeError(out.message, out.kind)
    if isinstance(out[0], str):
        raise VideoDecodeError(out[0], out[1])  # type: ignore[arg-type]
    stats, reported = out
    check_complete(Path(path), int(stats["frames"]), int(reported), min_decoded_fraction)
    return stats


def close_workers() -> None:
    """Stop this thread's kept worker (tests; a worker also dies with the thread that started it)."""
    worker = getattr(_local, "worker", None)
    if worker is not None:
        worker.close()
        _local.worker = None

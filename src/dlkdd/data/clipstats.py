"""Per-clip brightness statistics, the input of the data-quality gate, accumulated one frame at a time.

Luma is OpenCV's BT.601 grey (uint8, within 0.5 of the exact value), so the mean, percentiles, dark fraction and noise
are read off 256-bin histograms: no float image, no sort, and nothing kept but two histograms and the previous frame.
The frames stage feeds the frames it samples and the frame after a few of them (:mod:`dlkdd.data.frames`): a fixed
cost per clip, far below decoding it (bench/bench_ingest.py), with pairs of consecutive frames for the noise estimate.

Frames are read on a regular grid, every k-th pixel of every k-th row, with the largest k that still leaves at least
``GRID_PIXELS`` pixels a frame (k = 2 at 160x120, 4 at 320x240, 22 at 1080p; frames under 2 x GRID_PIXELS are read
whole). Over a clip that is tens of thousands of pixels or more, which moves these clip-level estimates by far less
than any quality bound (tested against the full-resolution numbers); full-resolution histograms cost about as much
as decoding the video, and their cost would grow with resolution while the grid's does not.
"""
from __future__ import annotations

import cv2
import numpy as np

DARK_LEVEL = 16  # luma below this (of 255) counts as a dark pixel
GRID_PIXELS = 4096  # least pixels a frame's grid keeps


def grid_step(height: int, width: int) -> int:
    """The largest k such that every k-th pixel of every k-th row still gives ``GRID_PIXELS`` pixels (at least 1)."""
    k = 1
    while (height // (k + 1)) * (width // (k + 1)) >= GRID_PIXELS:
        k += 1
    return k


def luma(frames: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luma of RGB uint8 (..., 3) as float32 in 0..255."""
    return frames[..., 0] * np.float32(0.299) + frames[..., 1] * np.float32(0.587) + frames[..., 2] * np.float32(0.114)


class LumaStats:
    """Histograms of luma and of |frame t+1 − frame t| luma, fed frame by frame with :meth:`add`.

    Frames may be a subset of a clip (the frames stage feeds the sampled frames and the one after a few of them): a
    difference is counted only between frames whose indices follow each other.
    """

    def __init__(self) -> None:
        self.hist = np.zeros(256, np.int64)
        self.diff_hist = np.zeros(256, np.int64)
        self.added = 0
        self._prev: tuple[int, np.ndarray] | None = None  # (index, grey grid) of the last frame added
        self._step = 0  # grid step k, set by the first frame

    def add(self, frame: np.ndarray, index: int | None = None, code: int = cv2.COLOR_BGR2GRAY) -> None:
        """Frame number ``index`` (default: the one after the last), uint8 (H, W, 3), BGR unless ``code`` says
        otherwise (e.g. ``cv2.COLOR_RGB2GRAY``)."""
        if index is None:
            index = self._prev[0] + 1 if self._prev else 0
        if not self._step:
            self._step = grid_step(*frame.shape[:2])
        k = self._step
        if k > 1:  # nearest-neighbour shrink of the crop to a multiple of k is exactly frame[::k, ::k], contiguous
            h, w = frame.shape[0] // k, frame.shape[1] // k
            frame = cv2.resize(frame[:k * h, :k * w], (w, h), interpolation=cv2.INTER_NEAREST)
        y = cv2.cvtColor(frame, code)
        self.hist += _hist(y)
        if self._prev is not None and self._prev[0] == index - 1 and self._prev[1].shape == y.shape:
            self.diff_hist += _hist(cv2.absdiff(y, self._prev[1]))
        self._prev = (index, y)
        self.added += 1

    def result(self, fps: float, height: int, width: int, frames: int | None = None) -> dict[str, float]:
        """The stats row: frames (``frames``, default the number added), fps, size, duration, luma mean/p05/p50/p95,
        dark fraction, noise (temporal: the luma std of frame-to-frame differences, :func:`temporal_noise`; the
        ``enhance`` metrics' ``spatial_noise_*`` is another measure, within single frames)."""
        frames = self.added if frames is None else frames
        n = max(int(self.hist.sum()), 1)
        return {
            "frames": frames, "fps": fps, "height": height, "width": width,
            "duration_s": frames / fps if fps else 0.0,
            "luma_mean": float(self.hist @ np.arange(256)) / n, "luma_p05": _percentile(self.hist, 5),
            "luma_p50": _percentile(self.hist, 50), "luma_p95": _percentile(self.hist, 95),
            "dark_fraction": float(self.hist[:DARK_LEVEL].sum() / n), "noise": temporal_noise(self.diff_hist),
        }


def clip_stats(frames: np.ndarray, fps: float) -> dict[str, float]:
    """:class:`LumaStats` of a whole decoded clip (T, H, W, 3) RGB uint8."""
    acc = LumaStats()
    for f in frames:
        acc.add(f, code=cv2.COLOR_RGB2GRAY)
    return acc.result(fps, int(frames.shape[1]), int(frames.shape[2]))


def _hist(y: np.ndarray) -> np.ndarray:
    """256-bin histogram of a 2-D uint8 array as int64 (calcHist counts in float32: exact for < 2**24 pixels)."""
    return cv2.calcHist([y], [0], None, [256], [0, 256]).ravel().astype(np.int64)


def temporal_noise(abs_diff_hist: np.ndarray, keep: float = 0.9) -> float:
    """Sensor noise (std, luma units) from the histogram of |frame t+1 − frame t| over all pixels.

    Gaussian noise of std σ gives differences of std σ√2 and E|d| = σ√2·√(2/π), so σ = mean|d|·√π/2. The mean is
    trimmed to the smallest ``keep`` share of differences, so moving pixels (actors, camera) barely count; unlike a
    median, it stays above zero for faint noise on integer luma, and is exactly 0 for a frozen or blank feed.
    """
    n = abs_diff_hist.sum()
    if n == 0:
        return 0.0
    cum = np.cumsum(abs_diff_hist)
    cut = int(np.searchsorted(cum, keep * n))  # the bin holding the keep-quantile
    kept = abs_diff_hist[: cut + 1].astype(np.float64)
    kept[cut] -= cum[cut] - keep * n  # take only part of the boundary bin
    return float((kept @ np.arange(cut + 1)) / (keep * n) * np.sqrt(np.pi) / 2)


def _percentile(hist: np.ndarray, q: float) -> float:
    """``np.percentile(values, q)`` (linear interpolation) of the integers counted in ``hist``."""
    cum = np.cumsum(hist)
    h = (cum[-1] - 1) * q / 100.0
    lo = int(np.floor(h))
    a, b = np.searchsorted(cum, [lo + 1, min(lo + 2, cum[-1])])  # values of order statistics lo and lo + 1
    return float(a + (h - lo) * (b - a))

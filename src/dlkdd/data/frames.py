"""The frame cache: each clip decoded once, sampled, resized and stored as one packed uint8 ``.npy`` file.

Layout of a frames directory::

    index.csv        clip_id, path, label, class_name, split, video_id  (clips that are ready)
    classes.txt      one class name per line, in label order
    stats.csv        one row of per-clip statistics per ready clip
    quarantine.csv   path, reason, kind  (inputs that could not be used; the run goes on without them)
    clips/<clip_id>.npy   uint8 (T, H, W, 3) RGB

A video gives one clip (``clip_id`` = its ``video_id``) unless ``clips_per_video`` > 1, in which case its val/test
rows give that many clips ``<video_id>__<k>``, sharing the ``video_id`` that video-level evaluation groups on.
Videos are decoded in parallel worker processes (``workers``); results keep the manifest's order.
"""
from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from tqdm import tqdm

from dlkdd.atomic import atomic_path
from dlkdd.data.video import VideoDecodeError, probe_video, resize_frames, sample_clips

INDEX_COLUMNS = ["clip_id", "path", "label", "class_name", "split", "video_id"]
MANIFEST_COLUMNS = INDEX_COLUMNS[1:]  # what generate and the importers write
REQUIRED_SPLITS = ("train", "val", "test")  # the training and evaluation stages need all three
QUARANTINE_COLUMNS = ["path", "reason", "kind"]
EVAL_SPLITS = ("val", "test")


@dataclass
class FramesResult:
    ready: int
    quarantined: int
    out_dir: Path
    videos: int = 0  # videos that gave clips (== ready when clips_per_video is 1)

    def summary(self) -> str:
        q = f", {self.quarantined} quarantined: see {self.out_dir / 'quarantine.csv'}" if self.quarantined else ""
        v = f" from {self.videos:,} videos" if self.videos and self.videos != self.ready else ""
        return f"{self.ready:,} clips ready{v}{q}"


@dataclass(frozen=True)
class SamplingSpec:
    """How clips are cut from a decoded video (policies documented in :mod:`dlkdd.data.video`)."""

    num_frames: int = 8
    size: int = 64
    clips_per_video: int = 1  # for val/test videos; train videos always give one clip
    train_sampling: str = "uniform"  # uniform | random (seeded per video)
    stride: int = 0  # 0 = segments over the whole clip; > 0 = a window of frames this far apart
    min_decoded_fraction: float = 0.0  # quarantine a file decoding fewer than this share of its reported frames
    seed: int = 0


@dataclass
class _Outcome:
    rows: list[dict] = field(default_factory=list)
    stats: list[dict] = field(default_factory=list)
    bad: dict | None = None


def luma(frames: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luma of RGB uint8 (..., 3) as float32 in 0..255."""
    return frames[..., 0] * np.float32(0.299) + frames[..., 1] * np.float32(0.587) + frames[..., 2] * np.float32(0.114)


def clip_stats(frames: np.ndarray, fps: float) -> dict[str, float]:
    """Brightness statistics of a decoded clip (T, H, W, 3) uint8: the input of the data-quality gate.

    Luma is OpenCV's BT.601 grey (uint8, within 0.5 of the exact value), so the mean, percentiles, dark fraction and
    noise median are read off 256-bin histograms: no float image, no sort. This keeps the stats pass cheaper than
    decoding (bench/bench_ingest.py), which a full-precision float pass was not.
    """
    y = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames])  # (T, H, W) uint8
    hist = np.bincount(y.ravel(), minlength=256)
    p05, p50, p95 = (_percentile(hist, q) for q in (5, 50, 95))
    noise = 0.0
    if len(y) > 1:
        d = cv2.absdiff(y[1:].reshape(-1, y.shape[2]), y[:-1].reshape(-1, y.shape[2]))
        noise = temporal_noise(np.bincount(d.ravel(), minlength=256))
    return {
        "frames": int(frames.shape[0]), "fps": fps, "height": int(frames.shape[1]), "width": int(frames.shape[2]),
        "duration_s": frames.shape[0] / fps if fps else 0.0,
        "luma_mean": float(hist @ np.arange(256)) / y.size, "luma_p05": p05, "luma_p50": p50, "luma_p95": p95,
        "dark_fraction": float(hist[:16].sum() / y.size), "noise": float(noise),
    }


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


def save_array(path: Path, arr: np.ndarray) -> None:
    """Write a ``.npy`` atomically: a temp file in the same folder, then rename."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, arr)


def check_row(rec: dict, root: Path, num_classes: int) -> tuple[str, str] | None:
    """Problems visible without decoding: (reason, kind), or None when the row is fine."""
    rel = str(rec["path"])
    norm = os.path.normpath(rel)
    if os.path.isabs(rel) or norm == ".." or norm.startswith(".." + os.sep):
        return f"{rel}: path escapes the dataset root {root}", "escapes_root"
    label = rec["label"]
    if isinstance(label, (float, np.floating)) and float(label).is_integer():
        label = int(label)  # a column with a blank cell is read as float
    if not isinstance(label, (int, np.integer)) or not 0 <= int(label) < num_classes:
        return f"{rel}: label {label!r} is not in the class list (0..{num_classes - 1})", "bad_label"
    return None


def _process(job: tuple[dict, Path, Path, SamplingSpec, int, int]) -> _Outcome:
    """Decode one video once, cut its clips, write them; runs in a worker process. Never raises on bad input."""
    rec, root, clips_dir, spec, num_classes, position = job
    problem = check_row(rec, root, num_classes)
    if problem:
        return _Outcome(bad={"path": rec["path"], "reason": problem[0], "kind": problem[1]})
    try:
        video, fps, reported = probe_video(root / rec["path"])
    except VideoDecodeError as err:
        return _Outcome(bad={"path": rec["path"], "reason": str(err), "kind": err.kind})
    if reported and len(video) < spec.min_decoded_fraction * reported:
        return _Outcome(bad={"path": rec["path"], "kind": "incomplete", "reason": (
            f"{root / rec['path']}: truncated or corrupt: decoded {len(video)} of the {reported} frames the "
            "container reports")})
    vid = str(rec["video_id"])
    is_eval = rec["split"] in EVAL_SPLITS
    k = spec.clips_per_video if is_eval else 1
    policy = "uniform" if is_eval else spec.train_sampling
    rng = np.random.default_rng([spec.seed, position]) if policy == "random" else None
    stats = clip_stats(video, fps)
    out = _Outcome()
    for j, idx in enumerate(sample_clips(len(video), spec.num_frames, k, policy, spec.stride, rng)):
        clip_id = vid.replace("/", "_") + (f"__{j}" if k > 1 else "")
        save_array(clips_dir / f"{clip_id}.npy", resize_frames(video[idx], spec.size))
        out.rows.append({"clip_id": clip_id, **{c: rec[c] for c in INDEX_COLUMNS[1:]}})
        out.stats.append({"clip_id": clip_id, "split": rec["split"], "label": rec["label"], **stats,
                          "video_id": vid, "reported_frames": reported})
    return out


def build_frame_cache(manifest: pd.DataFrame, root: Path, out_dir: Path, num_frames: int, size: int,
                      classes: list[str], workers: int = 1, spec: SamplingSpec | None = None) -> FramesResult:
    """Decode every clip in ``manifest`` (paths relative to ``root``, or to a row's own ``root`` column) into
    ``out_dir`` (layout in the module doc).

    ``spec`` adds sampling options (``num_frames`` and ``size`` given here win); ``workers`` > 1 decodes in that many
    processes. Bad rows and files go to ``quarantine.csv`` and the rest goes on.
    """
    spec = SamplingSpec(**{**(spec.__dict__ if spec else {}), "num_frames": num_frames, "size": size})
    clips = out_dir / "clips"
    clips.mkdir(parents=True, exist_ok=True)
    records = manifest.to_dict("records")
    # an optional ``root`` column gives a row its own root (landed footage lives beside the dataset, not inside it)
    jobs = [(rec, Path(rec["root"]) if isinstance(rec.get("root"), str) else Path(root), clips, spec, len(classes), i)
            for i, rec in enumerate(records)]
    rows, stats, bad = [], [], []
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            # map keeps the manifest's order, so the index does not depend on scheduling
            results = list(tqdm(pool.map(_process, jobs, chunksize=max(1, len(jobs) // (workers * 8))),
                                total=len(jobs), desc="frames", unit="video"))
    else:
        results = [_process(job) for job in tqdm(jobs, desc="frames", unit="video")]
    videos = 0
    for res in results:
        if res.bad:
            bad.append(res.bad)
            continue
        videos += 1
        rows += res.rows
        stats += res.stats
    pd.DataFrame(rows, columns=INDEX_COLUMNS).to_csv(out_dir / "index.csv", index=False)
    pd.DataFrame(stats).to_csv(out_dir / "stats.csv", index=False)
    pd.DataFrame(bad, columns=QUARANTINE_COLUMNS).to_csv(out_dir / "quarantine.csv", index=False)
    (out_dir / "classes.txt").write_text("\n".join(classes) + "\n")
    return FramesResult(len(rows), len(bad), out_dir, videos)


def read_index(frames_dir: str | Path) -> tuple[pd.DataFrame, list[str]]:
    """The ready clips and the class names of a frames directory."""
    frames_dir = Path(frames_dir)
    classes = (frames_dir / "classes.txt").read_text().split("\n")
    return pd.read_csv(frames_dir / "index.csv"), [c for c in classes if c]

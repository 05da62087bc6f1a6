"""The frame cache: each clip decoded once, sampled, resized and stored as one packed uint8 ``.npy`` file.

Layout of a frames directory::

    index.csv        clip_id, path, label, class_name, split, video_id  (clips that are ready)
    classes.txt      one class name per line, in label order
    stats.csv        one row of per-clip statistics per ready clip
    quarantine.csv   path, reason  (clips that could not be used; the run goes on without them)
    clips/<clip_id>.npy   uint8 (T, H, W, 3) RGB
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from dlkdd.data.video import VideoDecodeError, read_video, resize_frames, uniform_indices

INDEX_COLUMNS = ["clip_id", "path", "label", "class_name", "split", "video_id"]


@dataclass
class FramesResult:
    ready: int
    quarantined: int
    out_dir: Path

    def summary(self) -> str:
        q = f", {self.quarantined} quarantined: see {self.out_dir / 'quarantine.csv'}" if self.quarantined else ""
        return f"{self.ready} clips ready{q}"


def luma(frames: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luma of RGB uint8 (..., 3) as float32 in 0..255."""
    return frames[..., 0] * np.float32(0.299) + frames[..., 1] * np.float32(0.587) + frames[..., 2] * np.float32(0.114)


def clip_stats(frames: np.ndarray, fps: float) -> dict[str, float]:
    """Brightness statistics of a decoded clip (T, H, W, 3) uint8: the input of the data-quality gate."""
    y = luma(frames)
    # noise: robust std of the difference of consecutive frames (static background dominates), per frame-pair
    noise = float(np.median(np.abs(np.diff(y, axis=0)))) * 1.4826 / np.sqrt(2) if len(y) > 1 else 0.0
    return {
        "frames": int(frames.shape[0]), "fps": fps, "height": int(frames.shape[1]), "width": int(frames.shape[2]),
        "duration_s": frames.shape[0] / fps if fps else 0.0,
        "luma_mean": float(y.mean()), "luma_p05": float(np.percentile(y, 5)), "luma_p50": float(np.median(y)),
        "luma_p95": float(np.percentile(y, 95)), "dark_fraction": float((y < 16).mean()), "noise": noise,
    }


def save_array(path: Path, arr: np.ndarray) -> None:
    """Write a ``.npy`` atomically: a temp file in the same folder, then rename."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        np.save(fh, arr)
    tmp.replace(path)


def build_frame_cache(manifest: pd.DataFrame, root: Path, out_dir: Path, num_frames: int, size: int,
                      classes: list[str]) -> FramesResult:
    """Decode every clip in ``manifest`` (paths relative to ``root``) into ``out_dir`` (layout in the module doc)."""
    clips = out_dir / "clips"
    clips.mkdir(parents=True, exist_ok=True)
    rows, stats, bad = [], [], []
    for rec in tqdm(manifest.to_dict("records"), desc="frames", unit="clip"):
        clip_id = str(rec["video_id"]).replace("/", "_")
        try:
            video, fps = read_video(root / rec["path"])
        except VideoDecodeError as err:
            bad.append({"path": rec["path"], "reason": str(err)})
            continue
        sampled = resize_frames(video[uniform_indices(len(video), num_frames)], size)
        save_array(clips / f"{clip_id}.npy", sampled)
        rows.append({"clip_id": clip_id, **{k: rec[k] for k in INDEX_COLUMNS[1:]}})
        stats.append({"clip_id": clip_id, "split": rec["split"], "label": rec["label"], **clip_stats(video, fps)})
    pd.DataFrame(rows, columns=INDEX_COLUMNS).to_csv(out_dir / "index.csv", index=False)
    pd.DataFrame(stats).to_csv(out_dir / "stats.csv", index=False)
    pd.DataFrame(bad, columns=["path", "reason"]).to_csv(out_dir / "quarantine.csv", index=False)
    (out_dir / "classes.txt").write_text("\n".join(classes) + "\n")
    return FramesResult(len(rows), len(bad), out_dir)


def read_index(frames_dir: str | Path) -> tuple[pd.DataFrame, list[str]]:
    """The ready clips and the class names of a frames directory."""
    frames_dir = Path(frames_dir)
    classes = (frames_dir / "classes.txt").read_text().split("\n")
    return pd.read_csv(frames_dir / "index.csv"), [c for c in classes if c]

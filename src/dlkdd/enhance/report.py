"""What an enhancement did to the footage: mean luma before/after, a spatial noise estimate, a dark | enhanced
strip."""
from __future__ import annotations

import cv2
import numpy as np

from dlkdd.atomic import write_bytes_atomic
from dlkdd.data.clipstats import luma

# Immerkaer (1996): this 3x3 kernel cancels locally linear image structure, leaving mostly noise
_NOISE_KERNEL = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float32)


def noise_sigma(frames: np.ndarray) -> float:
    """Single-image noise std estimate (Immerkaer's fast method) on the luma of (T, H, W, 3) uint8, averaged over
    frames; in luma units 0..255. Spatial only, so it works on the resampled frame cache (no static-camera need)."""
    y = luma(frames)  # (T, H, W) float32
    t, h, w = y.shape
    if h < 3 or w < 3:
        return 0.0
    r = cv2.filter2D(np.ascontiguousarray(y.transpose(1, 2, 0)).reshape(h, w, t), -1, _NOISE_KERNEL,
                     borderType=cv2.BORDER_REPLICATE).reshape(h, w, t)[1:-1, 1:-1]
    return float(np.sqrt(np.pi / 2) * np.abs(r).sum() / (6.0 * t * (h - 2) * (w - 2)))


def clip_summary(dark: np.ndarray, enhanced: np.ndarray) -> dict[str, float]:
    """Luma mean and spatial noise (:func:`noise_sigma`, within a frame) of one clip before and after enhancement
    (both (T, H, W, 3) uint8). ``spatial_`` sets it apart from ``stats.csv``'s ``noise``, the temporal one."""
    return {"luma_before": float(luma(dark).mean()), "luma_after": float(luma(enhanced).mean()),
            "spatial_noise_before": noise_sigma(dark), "spatial_noise_after": noise_sigma(enhanced)}


def comparison_strip(pairs: list[tuple[str, np.ndarray, np.ndarray]], frames_per_clip: int = 4,
                     scale: int = 2) -> np.ndarray:
    """An RGB image (rows of clips): per row, ``frames_per_clip`` dark frames | the same frames enhanced.

    ``pairs`` holds (label, dark (T, H, W, 3), enhanced (T, H, W, 3)); frames are enlarged ``scale`` times with
    nearest-neighbour so single pixels (noise) stay visible. A white bar separates dark from enhanced.
    """
    rows = []
    for label, dark, enh in pairs:
        idx = np.linspace(0, len(dark) - 1, frames_per_clip).round().astype(int)
        left, right = np.concatenate(list(dark[idx]), axis=1), np.concatenate(list(enh[idx]), axis=1)
        bar = np.full((left.shape[0], 2, 3), 255, np.uint8)
        row = np.concatenate([left, bar, right], axis=1)
        row = cv2.resize(row, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
        head = np.zeros((14, row.shape[1], 3), np.uint8)
        cv2.putText(head, label, (2, 11), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
        rows.append(np.concatenate([head, row], axis=0))
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0))) for r in rows]
    return np.concatenate(rows, axis=0)


def write_png(path, rgb: np.ndarray) -> None:
    """Write an RGB uint8 image as PNG atomically (temp file + rename)."""
    from pathlib import Path

    path = Path(path)
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError(f"could not encode {path} as PNG")
    write_bytes_atomic(path, buf.tobytes())

"""Histogram equalisation and CLAHE on the luma channel (YCrCb), so colours keep their hue while brightness spreads."""
from __future__ import annotations

import cv2
import numpy as np


def _as_rows(frames: np.ndarray) -> np.ndarray:
    """(T, H, W, 3) → (T*H, W, 3): colour conversion is per pixel, so one OpenCV call covers the whole clip."""
    t, h, w, c = frames.shape
    return np.ascontiguousarray(frames).reshape(t * h, w, c)


def _with_luma(frames: np.ndarray, new_y: np.ndarray, ycrcb: np.ndarray) -> np.ndarray:
    ycrcb[..., 0] = new_y
    return cv2.cvtColor(ycrcb, cv2.COLOR_YCrCb2RGB).reshape(frames.shape)


def hist_eq(frames: np.ndarray) -> np.ndarray:
    """Equalise the luma histogram of a whole clip (T, H, W, 3) uint8 RGB → same shape/dtype.

    One mapping for the clip (not per frame) so brightness does not flicker between frames.
    """
    ycrcb = cv2.cvtColor(_as_rows(frames), cv2.COLOR_RGB2YCrCb)
    return _with_luma(frames, cv2.equalizeHist(np.ascontiguousarray(ycrcb[..., 0])), ycrcb)


def clahe(frames: np.ndarray, clip_limit: float = 2.0, tile: int = 8) -> np.ndarray:
    """Contrast-limited adaptive histogram equalisation of luma, (T, H, W, 3) uint8 RGB → same shape/dtype.

    Tiles are spatial, so CLAHE runs per frame (the colour conversions are still one call per clip).
    """
    if clip_limit <= 0 or tile < 1:
        raise ValueError(f"clahe needs clip_limit > 0 and tile >= 1, got {clip_limit}, {tile}")
    t, h = frames.shape[:2]
    ycrcb = cv2.cvtColor(_as_rows(frames), cv2.COLOR_RGB2YCrCb)
    y = np.ascontiguousarray(ycrcb[..., 0]).reshape(t, h, -1)
    op = cv2.createCLAHE(clipLimit=float(clip_limit), tileGridSize=(tile, tile))
    out_y = np.stack([op.apply(f) for f in y]).reshape(t * h, -1)
    return _with_luma(frames, out_y, ycrcb)

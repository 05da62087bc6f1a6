"""LIME-style enhancement (Guo et al. 2017, simplified): reflectance = image / illumination ** gamma.

The illumination map is the max over R, G, B (a pixel is at least as lit as its brightest channel), smoothed with a
Gaussian instead of LIME's structure-aware optimisation (cheap, and fine at the pipeline's 64x64 resolution).
"""
from __future__ import annotations

import cv2
import numpy as np

_CV_MAX_CHANNELS = 512  # OpenCV's channel limit: the clip's frames are blurred as channels of one image


def illumination_map(frames: np.ndarray, sigma: float) -> np.ndarray:
    """(T, H, W, 3) uint8 → (T, H, W) float32 in [0, 1]: max-RGB, Gaussian-smoothed over space only."""
    t_max = frames.max(axis=-1).astype(np.float32) / 255.0  # (T, H, W)
    if sigma <= 0:
        return t_max
    hwt = np.ascontiguousarray(t_max.transpose(1, 2, 0))  # (H, W, T): frames become channels
    parts = [cv2.GaussianBlur(np.ascontiguousarray(hwt[..., i:i + _CV_MAX_CHANNELS]), (0, 0), sigma)
             for i in range(0, hwt.shape[-1], _CV_MAX_CHANNELS)]
    out = np.concatenate([p.reshape(*hwt.shape[:2], -1) for p in parts], axis=-1)
    return out.transpose(2, 0, 1)


def lime_enhance(frames: np.ndarray, gamma: float = 0.8, sigma: float = 2.0, eps: float = 0.02) -> np.ndarray:
    """Brighten (T, H, W, 3) uint8 RGB by dividing by the smoothed illumination map ** gamma; same shape/dtype."""
    if gamma <= 0 or eps <= 0:
        raise ValueError(f"lime needs gamma > 0 and eps > 0, got {gamma}, {eps}")
    illum = np.maximum(illumination_map(frames, sigma), np.float32(eps)) ** np.float32(gamma)  # (T, H, W)
    out = frames.astype(np.float32) / illum[..., None]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)

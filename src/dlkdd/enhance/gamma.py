"""Gamma intensity correction (GIC): ``out = 255 * (in / 255) ** gamma``, as a 256-entry lookup table."""
from __future__ import annotations

import numpy as np


def gamma_lut(gamma: float) -> np.ndarray:
    """The (256,) uint8 table of GIC; ``gamma < 1`` brightens. Monotone non-decreasing for any ``gamma > 0``."""
    if gamma <= 0:
        raise ValueError(f"gamma must be > 0, got {gamma}")
    x = np.arange(256, dtype=np.float64) / 255.0
    return np.clip(np.rint(255.0 * x**gamma), 0, 255).astype(np.uint8)


def gamma_correct(frames: np.ndarray, gamma: float) -> np.ndarray:
    """Apply GIC to uint8 frames of any shape, e.g. (T, H, W, 3); same shape and dtype out."""
    return gamma_lut(gamma)[frames]

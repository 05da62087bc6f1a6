"""Low-light enhancement for the teacher's view. Every method maps uint8 frames (T, H, W, 3) to the same shape/dtype."""
from __future__ import annotations

import numpy as np

from dlkdd.config import EnhanceConfig
from dlkdd.enhance.gamma import gamma_correct

METHODS = ("gamma",)


def enhance_clip(frames: np.ndarray, cfg: EnhanceConfig) -> np.ndarray:
    """Enhance one clip (T, H, W, 3) uint8 with the method named in ``cfg``."""
    if cfg.method == "gamma":
        return gamma_correct(frames, cfg.gamma)
    raise ValueError(f"enhance.method '{cfg.method}' is not one of {', '.join(METHODS)}")

"""Low-light enhancement for the teacher's view. Every method maps uint8 frames (T, H, W, 3) to the same shape/dtype.

The student and inference never use these: only the teacher is trained on enhanced clips.
"""
from __future__ import annotations

import numpy as np

from dlkdd.config import ENHANCE_METHODS, EnhanceConfig
from dlkdd.enhance.gamma import gamma_correct
from dlkdd.enhance.histeq import clahe, hist_eq
from dlkdd.enhance.lime import lime_enhance

METHODS = ENHANCE_METHODS  # the schema lists them (enhance.method is checked on load)


def enhance_clip(frames: np.ndarray, cfg: EnhanceConfig, model=None) -> np.ndarray:
    """Enhance one clip (T, H, W, 3) uint8 with the method named in ``cfg``.

    ``model`` is the trained Zero-DCE net (:func:`dlkdd.enhance.zerodce.load_zerodce`), needed only for ``zerodce``.
    """
    if cfg.method == "gamma":
        return gamma_correct(frames, cfg.gamma)
    if cfg.method == "hist_eq":
        return hist_eq(frames)
    if cfg.method == "clahe":
        return clahe(frames, cfg.clahe.clip_limit, cfg.clahe.tile)
    if cfg.method == "lime":
        return lime_enhance(frames, cfg.lime.gamma, cfg.lime.sigma, cfg.lime.eps)
    if cfg.method == "zerodce":
        if model is None:
            raise ValueError("enhance.method 'zerodce' needs the trained model (models/zerodce.pt from train_zerodce)")
        from dlkdd.enhance.zerodce import zerodce_enhance  # torch import only when needed

        return zerodce_enhance(frames, model)
    raise ValueError(f"enhance.method '{cfg.method}' is not one of {', '.join(METHODS)}")

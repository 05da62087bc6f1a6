"""Every enhancement keeps (T, H, W, 3) uint8, brightens a dark clip, and does what its definition says."""
import numpy as np
import pytest

from dlkdd.config import ClaheConfig, EnhanceConfig, LimeConfig
from dlkdd.data.clipstats import luma
from dlkdd.enhance import METHODS, enhance_clip
from dlkdd.enhance.histeq import clahe, hist_eq
from dlkdd.enhance.lime import illumination_map, lime_enhance
from dlkdd.enhance.report import clip_summary, comparison_strip, noise_sigma
from dlkdd.enhance.zerodce import DCENet


def dark_clip(seed: int = 0, t: int = 6, h: int = 48, w: int = 64) -> np.ndarray:
    """A dark clip with structure (a lit square on a gradient) plus sensor-like noise; mean luma ~ 10 of 255."""
    rng = np.random.default_rng(seed)
    base = np.linspace(2, 14, w)[None, None, :, None] * np.ones((t, h, 1, 3))
    base[:, 10:30, 20:40] += np.array([20.0, 12.0, 6.0])
    return np.clip(base + rng.normal(0, 1.5, base.shape), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("method", METHODS)
def test_each_method_keeps_shape_dtype_and_brightens(method):
    dark = dark_clip()
    model = DCENet().eval() if method == "zerodce" else None
    if model is not None:  # an untrained net's curves are ~0: bias the last layer so the curves brighten
        model.c7.bias.data.fill_(1.0)
    out = enhance_clip(dark, EnhanceConfig(method=method), model)
    assert out.shape == dark.shape and out.dtype == np.uint8
    assert luma(out).mean() > 1.5 * luma(dark).mean(), method


def test_zerodce_without_model_is_a_clear_error():
    with pytest.raises(ValueError, match="models/zerodce.pt"):
        enhance_clip(dark_clip(), EnhanceConfig(method="zerodce"))


def test_hist_eq_one_mapping_per_clip_is_monotone_in_luma():
    dark = dark_clip()
    out = hist_eq(dark)
    y_in, y_out = luma(dark).ravel(), luma(out).ravel()
    order = np.argsort(y_in, kind="stable")
    # same-luma pixels map to the same luma (up to YCrCb rounding), and brighter stays brighter
    assert (np.diff(y_out[order]) > -3).all()
    assert y_out.max() > 200  # the histogram is spread over the range


def test_clahe_is_local_and_limited():
    dark = dark_clip()
    strong, weak = clahe(dark, clip_limit=4.0, tile=4), clahe(dark, clip_limit=0.5, tile=4)
    assert luma(strong).std() > luma(weak).std()  # a higher clip limit gives more contrast
    with pytest.raises(ValueError, match="clip_limit"):
        clahe(dark, clip_limit=0.0)
    assert enhance_clip(dark, EnhanceConfig(method="clahe", clahe=ClaheConfig(4.0, 4))).tolist() == strong.tolist()


def test_lime_divides_by_smoothed_max_rgb_illumination():
    dark = dark_clip()
    illum = illumination_map(dark, sigma=0.0)
    assert np.allclose(illum, dark.max(-1) / 255.0)
    smooth = illumination_map(dark, sigma=2.0)
    assert smooth.shape == illum.shape
    assert np.abs(np.diff(smooth, axis=2)).mean() < np.abs(np.diff(illum, axis=2)).mean()
    out = lime_enhance(dark, gamma=1.0, sigma=0.0, eps=1e-3)
    # gamma 1, no smoothing: the brightest channel of every non-black pixel is lifted to (about) full scale
    lit = dark.max(-1) > 0
    assert (out.max(-1)[lit] >= 250).all()
    more = enhance_clip(dark, EnhanceConfig(method="lime", lime=LimeConfig(gamma=1.0)))
    less = enhance_clip(dark, EnhanceConfig(method="lime", lime=LimeConfig(gamma=0.5)))
    assert luma(more).mean() > luma(less).mean()  # a larger exponent brightens more


def test_noise_estimate_tracks_added_noise_and_report_pieces():
    rng = np.random.default_rng(1)
    flat = np.full((4, 32, 32, 3), 100, np.uint8)
    assert noise_sigma(flat) < 0.1
    noisy = np.clip(flat + rng.normal(0, 5, flat.shape), 0, 255).astype(np.uint8)
    assert 3.0 < noise_sigma(noisy) < 7.0  # luma averages the 3 channels' noise: ~ 5 * 0.67
    dark = dark_clip()
    s = clip_summary(dark, enhance_clip(dark, EnhanceConfig()))
    # gamma amplifies noise too
    assert s["luma_after"] > s["luma_before"] and s["spatial_noise_after"] > s["spatial_noise_before"]
    strip = comparison_strip([("a", dark, dark), ("b", dark, dark)], frames_per_clip=3, scale=2)
    assert strip.dtype == np.uint8 and strip.shape[1] == 2 * (2 * 3 * 64 + 2) and strip.shape[0] == 2 * (14 + 96)

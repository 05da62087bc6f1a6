"""Zero-DCE: the curve keeps [0, 1], the zero-reference losses point the right way, and training brightens."""
import numpy as np
import torch

from dlkdd.config import ZeroDCEConfig
from dlkdd.enhance.zerodce import (DCENet, apply_curves, colour_constancy_loss, exposure_loss,
                                   illumination_smoothness_loss, load_zerodce, save_zerodce,
                                   spatial_consistency_loss, to_tensor, train_zerodce, zerodce_enhance)


def test_dcenet_is_the_paper_size_and_shape():
    net = DCENet()
    assert 78_000 < sum(p.numel() for p in net.parameters()) < 80_000  # paper: 79k
    x = torch.rand(2, 3, 32, 48)
    y, maps = net(x)
    assert y.shape == x.shape and maps.shape == (2, 24, 32, 48) and maps.abs().max() <= 1


def test_curve_stays_in_unit_range_and_is_monotone():
    torch.manual_seed(0)
    x = torch.linspace(0, 1, 101).view(1, 1, 1, 101).expand(1, 3, 4, 101)
    for fill in (-1.0, -0.3, 0.0, 0.5, 1.0):
        y = apply_curves(x, torch.full((1, 24, 4, 101), fill))
        assert y.min() >= 0 and y.max() <= 1
        assert (y[..., 1:] - y[..., :-1] >= -1e-6).all()  # brighter in, brighter out
    y = apply_curves(x, torch.rand(1, 24, 4, 101) * 2 - 1)  # any maps in [-1, 1]
    assert y.min() >= 0 and y.max() <= 1
    assert torch.equal(apply_curves(x, torch.zeros(1, 24, 4, 101)), x)
    assert (apply_curves(x, torch.ones(1, 24, 4, 101)) >= x).all()  # positive curves brighten


def test_losses_have_the_expected_sign():
    g = torch.Generator().manual_seed(0)
    scene = torch.rand(2, 3, 32, 32, generator=g)
    dark, good = scene * 0.08, 0.3 + scene * 0.6  # mean ~0.04 vs ~0.6
    assert exposure_loss(dark, 0.6) > exposure_loss(good, 0.6) + 0.3
    grey = scene.mean(1, keepdim=True).expand(-1, 3, -1, -1)
    tinted = scene * torch.tensor([1.0, 0.5, 0.2]).view(1, 3, 1, 1)
    assert colour_constancy_loss(tinted) > colour_constancy_loss(grey) + 1e-3 and colour_constancy_loss(grey) < 1e-8
    smooth_maps, rough_maps = torch.full((1, 24, 16, 16), 0.5), torch.rand(1, 24, 16, 16, generator=g) * 2 - 1
    assert illumination_smoothness_loss(smooth_maps) == 0 and illumination_smoothness_loss(rough_maps) > 0.1
    # spatial consistency: lifting every pixel by the same amount keeps neighbour differences; flattening loses them
    assert spatial_consistency_loss(dark + 0.4, dark) < 1e-10
    assert spatial_consistency_loss(torch.full_like(dark, 0.5), dark) > 1e-6
    assert spatial_consistency_loss(good, dark) > spatial_consistency_loss(dark + 0.4, dark)


def test_a_few_training_steps_raise_exposure_toward_target(tmp_path):
    rng = np.random.default_rng(0)
    frames = np.clip(rng.normal(12, 4, (16, 32, 32, 3)), 0, 255).astype(np.uint8)  # mean ~12/255 ≈ 0.05
    frames[:, 8:20, 8:20] += 20  # some structure
    net = DCENet()
    before = zerodce_enhance(frames, net).mean() / 255
    net, history = train_zerodce(frames, epochs=6, lr=1e-3, batch_size=8, crop=32,
                                 weights=ZeroDCEConfig(exposure=0.6), seed=0, model=net)
    after = zerodce_enhance(frames, net).mean() / 255
    assert after > before + 0.05 and abs(after - 0.6) < abs(before - 0.6)
    assert history[-1]["exp"] < history[0]["exp"]
    # round trip through the checkpoint (weights_only load) gives the same output
    save_zerodce(tmp_path / "z.pt", net)
    assert np.array_equal(zerodce_enhance(frames, load_zerodce(tmp_path / "z.pt")), zerodce_enhance(frames, net))


def test_unused_marker_is_fixed_and_refused(tmp_path):
    save_zerodce(tmp_path / "a.pt", None, note="unused")
    save_zerodce(tmp_path / "b.pt", None, note="unused")
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()  # same hash → enhance not re-run
    try:
        load_zerodce(tmp_path / "a.pt")
    except ValueError as err:
        assert "enhance.method=zerodce" in str(err) and "\n" not in str(err)
    else:
        raise AssertionError("an unused marker must not load as a model")


def test_to_tensor_layout():
    f = np.zeros((2, 4, 5, 3), np.uint8)
    f[..., 0] = 255
    t = to_tensor(f)
    assert t.shape == (2, 3, 4, 5) and t[:, 0].min() == 1 and t[:, 1:].max() == 0

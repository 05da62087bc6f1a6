"""Model size knob (tiny3d width, kept in the checkpoint) and the two-stream alternative's late-fusion accuracy."""
import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from dlkdd.data.dataset import ClipDataset
from dlkdd.checkpoint import load_model, save_model
from dlkdd.distill.evaluation import evaluate_split, evaluate_two_stream
from dlkdd.models.build import build_model, count_params


def test_width_sizes_tiny3d_and_survives_the_checkpoint(tmp_path):
    sizes = [count_params(build_model("tiny3d", 11, width=w)) for w in (12, 24, 48)]
    assert sizes[0] < sizes[1] < sizes[2] and sizes[2] > 3 * sizes[1]  # params grow ~ width²
    model = build_model("tiny3d", 11, width=48)
    save_model(tmp_path / "t.pt", model, "tiny3d", [str(i) for i in range(11)], num_frames=8, size=64, width=48)
    loaded, ckpt = load_model(tmp_path / "t.pt")  # would fail on shapes if the width were not restored
    assert ckpt["width"] == 48 and count_params(loaded) == sizes[2]


def test_width_leaves_fixed_size_backbones_at_their_published_size(tmp_path):
    # the default student is tiny3d width 12: switching student.arch alone must give the real r3d_18
    model = build_model("r3d_18", 3, width=12)
    assert count_params(model) == count_params(build_model("r3d_18", 3))
    save_model(tmp_path / "r.pt", model, "r3d_18", ["a", "b", "c"], num_frames=8, size=64, width=12)  # as stages do
    assert count_params(load_model(tmp_path / "r.pt")[0]) == count_params(model)


class BrightnessVote(nn.Module):
    """p(class 0) = the clip's mean pixel value in [0, 1]: a model whose answer a test can compute by hand."""

    def __init__(self) -> None:
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(1))  # predict() reads the device from the parameters

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x.mean(dim=(1, 2, 3, 4))
        return torch.stack([m, 1 - m], 1).clamp_min(1e-6).log()


def test_two_stream_averages_the_streams_softmax(tmp_path):
    # clip a (class 0): dark alone says 1, bright says 0; clip b (class 1): dark says 1, bright says 0.
    # averaged p(class 0): a (0.4+0.9)/2 = 0.65 → 0 ✓; b (0.2+0.7)/2 = 0.45 → 1 ✓. Each stream alone: 1 of 2.
    values = {"a": (0.4, 0.9), "b": (0.2, 0.7)}
    for view, folder in enumerate(("dark", "bright")):
        (tmp_path / folder).mkdir()
        for cid, v in values.items():
            np.save(tmp_path / folder / f"{cid}.npy", np.full((2, 4, 4, 3), round(v[view] * 255), np.uint8))
    index = pd.DataFrame({"clip_id": ["a", "b"], "split": "test", "label": [0, 1], "video_id": ["a", "b"]})
    test = ClipDataset(index, [tmp_path / "dark", tmp_path / "bright"], "test")
    model = BrightnessVote()
    dark, dark_logits = evaluate_split(model, test, 0)
    bright, bright_logits = evaluate_split(model, test, 1)
    assert dark["top1"] == pytest.approx(0.5) and bright["top1"] == pytest.approx(0.5)
    fused, fused_logits = evaluate_two_stream(bright_logits, dark_logits, test)
    assert fused["top1"] == pytest.approx(1.0) and fused_logits.argmax(1).tolist() == [0, 1]
    assert fused_logits.exp()[:, 0].tolist() == pytest.approx([0.65, 0.45], abs=0.005)  # uint8 rounding


def test_median_ms_times_one_call_per_repeat():
    """The latency figures' timer: the median of ``repeats`` single calls, in milliseconds."""
    import time

    from dlkdd.distill.evaluation import median_ms

    calls = []
    ms = median_ms(lambda: (calls.append(1), time.sleep(0.01)), 5)
    assert 9 <= ms < 100, ms
    assert len(calls) >= 5  # each repeat timed one call (plus the Timer's warm-up calls)

"""Test-split evaluation: clip- and video-level accuracy, predictions for confusion matrices, inference cost."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

import torch
from torch import nn
from torch.utils.data import DataLoader

from dlkdd.data.dataset import ClipDataset, to_float
from dlkdd.distill.metrics import accuracy, video_level
from dlkdd.distill.trainer import predict
from dlkdd.models.build import count_params


def split_metrics(logits: torch.Tensor, labels: torch.Tensor, dataset: ClipDataset) -> dict[str, float]:
    """Clip-level top-1/top-5 of (N, K) scores and video-level ones (softmax averaged per ``video_id``)."""
    clip = accuracy(logits, labels)
    vprobs, vlabels = video_level(logits.softmax(1), labels, dataset.index["video_id"].astype(str).tolist())
    video = accuracy(vprobs.log(), vlabels)
    return {**clip, "video_top1": video["top1"], "video_top5": video["top5"], "clips": len(labels)}


def evaluate_split(model: nn.Module, dataset: ClipDataset, view: int = 0) -> tuple[dict[str, float], torch.Tensor]:
    """Accuracy of ``model`` on every clip of ``dataset`` (from view ``view``); returns metrics and (N, K) logits."""
    logits, labels = predict(model, DataLoader(dataset, batch_size=64), view)
    return split_metrics(logits, labels, dataset), logits


def late_fusion(bright_logits: torch.Tensor, dark_logits: torch.Tensor) -> torch.Tensor:
    """The two-stream alternative's scores (N, K): log of the two streams' averaged softmax (late fusion)."""
    return ((bright_logits.softmax(1) + dark_logits.softmax(1)) / 2).log()


def evaluate_two_stream(bright_logits: torch.Tensor, dark_logits: torch.Tensor,
                        dataset: ClipDataset) -> tuple[dict[str, float], torch.Tensor]:
    """The two-stream alternative from each stream's (N, K) logits on ``dataset`` (the bright stream's from view 1,
    enhanced; the dark one's from view 0), so neither network runs again; returns metrics and the fused (N, K).
    At inference it costs enhancement plus both backbones, unlike the student."""
    fused = late_fusion(bright_logits, dark_logits)
    return split_metrics(fused, dataset.labels, dataset), fused


def _benchmark():
    """``torch.utils.benchmark``, imported on first use with its import-time notice silenced: it pulls in
    ``cpp_extension``, which logs "No CUDA runtime is found" on a CPU machine (about compiling extensions, which this
    never does) and would make every stage's error output two lines."""
    import logging

    log = logging.getLogger("torch.utils.cpp_extension")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        from torch.utils import benchmark
    finally:
        log.setLevel(level)
    return benchmark


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time in ms of ``repeats`` single calls of ``fn`` (each after the Timer's own warm-up calls).

    ``torch.utils.benchmark.Timer`` syncs CUDA around each timing; it is given the process's thread count (its
    default, one thread, would time another configuration than the one that runs)."""
    benchmark = _benchmark()
    timer = benchmark.Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    runs = benchmark.Measurement.merge([timer.timeit(number=1) for _ in range(max(1, repeats))])
    return runs[0].median * 1e3


@torch.inference_mode()
def latency_ms(model: nn.Module, clip: torch.Tensor, repeats: int = 20) -> float:
    """Median wall time in ms of one forward pass on one uint8 clip (3, T, H, W)."""
    model.eval()
    x = to_float(clip[None])
    return median_ms(lambda: model(x), repeats)


def per_class_accuracy(pred: torch.Tensor, labels: torch.Tensor, classes: list[str]) -> dict[str, float]:
    """Top-1 accuracy per class (N,) predictions vs (N,) labels; classes absent from ``labels`` are left out."""
    out = {}
    for k, name in enumerate(classes):
        mask = labels == k
        if mask.any():
            out[name] = round(float((pred[mask] == k).float().mean()), 4)
    return out


def predictions_table(dataset: ClipDataset, preds: dict[str, torch.Tensor], classes: list[str]) -> pd.DataFrame:
    """One row per clip of ``dataset``: clip_id, video_id, label and each model's predicted class (names, not
    indices, so the file reads alone); ``preds`` maps a model name to its (N,) predicted indices. Sorted by clip_id:
    the paired regression test (dlkdd.regression) compares two such tables clip by clip."""
    table = pd.DataFrame({"clip_id": dataset.index["clip_id"].astype(str).to_numpy(),
                          "video_id": dataset.index["video_id"].astype(str).to_numpy(),
                          "label": [classes[int(i)] for i in dataset.labels]})
    for name, p in preds.items():
        table[name] = [classes[int(i)] for i in p]
    return table.sort_values("clip_id", kind="stable").reset_index(drop=True)


def gflops(model: nn.Module, clip: torch.Tensor) -> float:
    """GFLOPs of one forward pass on one uint8 clip (3, T, H, W), counted by torch's FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode

    model.eval()
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model(to_float(clip[None]))
    return counter.get_total_flops() / 1e9


def inference_cost(model: nn.Module, clip: torch.Tensor, repeats: int) -> dict[str, float]:
    """Parameters, GFLOPs per clip and median latency (ms, batch 1) of ``model`` on ``clip`` (3, T, H, W) uint8."""
    return {"params": count_params(model), "gflops": round(gflops(model, clip), 4),
            "latency_ms": round(latency_ms(model, clip, repeats), 3)}


@torch.inference_mode()
def two_stream_latency_ms(enhance: Callable[[np.ndarray], np.ndarray], bright: nn.Module, dark: nn.Module,
                          clip: torch.Tensor, repeats: int = 20) -> float:
    """Median ms per uint8 clip (3, T, H, W) of the two-stream alternative: enhance the clip, run one backbone on the
    enhanced and one on the dark clip, average their softmax (DarkLight-style; what DL-KDD avoids at inference)."""
    bright.eval(), dark.eval()

    def run() -> torch.Tensor:
        frames = clip.permute(1, 2, 3, 0).numpy()  # (T, H, W, 3) as the enhancement takes it
        lit = torch.from_numpy(enhance(frames)).permute(3, 0, 1, 2)
        return late_fusion(bright(to_float(lit[None])), dark(to_float(clip[None])))

    return median_ms(run, repeats)


def two_stream_cost(enhance: Callable[[np.ndarray], np.ndarray], bright: nn.Module, dark: nn.Module,
                    clip: torch.Tensor, repeats: int) -> dict[str, float]:
    """Cost of enhancement + two backbones; GFLOPs count the backbones (the gamma lookup table is ~0 FLOPs)."""
    return {"params": count_params(bright) + count_params(dark),
            "gflops": round(gflops(bright, clip) + gflops(dark, clip), 4),
            "latency_ms": round(two_stream_latency_ms(enhance, bright, dark, clip, repeats), 3)}

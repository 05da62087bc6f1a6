"""Test-split evaluation: clip- and video-level accuracy, predictions for confusion matrices, inference cost."""
from __future__ import annotations

import statistics
import time

import torch
from torch import nn
from torch.utils.data import DataLoader

from dlkdd.data.dataset import ClipDataset, to_float
from dlkdd.distill.metrics import accuracy, video_level
from dlkdd.distill.trainer import predict
from dlkdd.models.build import count_params


def evaluate_split(model: nn.Module, dataset: ClipDataset, view: int = 0) -> tuple[dict[str, float], torch.Tensor]:
    """Accuracy of ``model`` on every clip of ``dataset`` (from view ``view``); returns metrics and (N,) predictions.

    Video-level scores average the clips' softmax per ``video_id``.
    """
    logits, labels = predict(model, DataLoader(dataset, batch_size=64), view)
    clip = accuracy(logits, labels)
    vprobs, vlabels = video_level(logits.softmax(1), labels, dataset.index["video_id"].astype(str).tolist())
    video = accuracy(vprobs.log(), vlabels)
    metrics = {**clip, "video_top1": video["top1"], "video_top5": video["top5"], "clips": len(labels)}
    return metrics, logits.argmax(1)


@torch.inference_mode()
def latency_ms(model: nn.Module, clip: torch.Tensor, repeats: int = 20) -> float:
    """Median wall time in ms of one forward pass on one uint8 clip (3, T, H, W), after a warm-up pass."""
    model.eval()
    x = to_float(clip[None])
    model(x)
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        model(x)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def inference_cost(model: nn.Module, clip: torch.Tensor, repeats: int) -> dict[str, float]:
    return {"params": count_params(model), "latency_ms": round(latency_ms(model, clip, repeats), 3)}

"""Clip- and video-level accuracy from logits."""
from __future__ import annotations

import numpy as np
import torch


def topk_correct(logits: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """(N, K) logits, (N,) labels → (N,) bool: label among the top-k."""
    k = min(k, logits.shape[1])
    return (logits.topk(k, dim=1).indices == labels[:, None]).any(dim=1)


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Top-1 and top-5 accuracy as fractions."""
    return {f"top{k}": float(topk_correct(logits, labels, k).float().mean()) for k in (1, 5)}


def video_level(probs: torch.Tensor, labels: torch.Tensor, video_ids: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Average clip probabilities (N, K) per video → (V, K) probabilities and (V,) labels."""
    ids = np.asarray(video_ids)
    uniq, inverse = np.unique(ids, return_inverse=True)
    inv = torch.from_numpy(inverse)
    summed = torch.zeros(len(uniq), probs.shape[1]).index_add_(0, inv, probs)
    counts = torch.bincount(inv, minlength=len(uniq)).clamp(min=1)
    vlabels = torch.zeros(len(uniq), dtype=torch.long).index_copy_(0, inv, labels)
    return summed / counts[:, None], vlabels


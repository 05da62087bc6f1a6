"""Backbones by name. Every model takes float clips in [0, 1] shaped (B, 3, T, H, W) and normalises them itself,
so a checkpoint is self-contained: callers never need to know the mean/std it was trained with."""
from __future__ import annotations

import torch
from torch import nn
from torchvision.models import video as tvv

from dlkdd.models.tiny import Tiny3DNet

# Kinetics-400 statistics, as torchvision's video models expect
KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.216989)
TORCHVISION_ARCHS = {"r3d_18": tvv.r3d_18, "mc3_18": tvv.mc3_18, "r2plus1d_18": tvv.r2plus1d_18}
ARCHS = ("tiny3d", *TORCHVISION_ARCHS)


class Normalized(nn.Module):
    """Wraps a backbone with per-channel input normalisation: (B, 3, T, H, W) in [0, 1] → logits (B, K)."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.register_buffer("mean", torch.tensor(KINETICS_MEAN).view(1, 3, 1, 1, 1))
        self.register_buffer("std", torch.tensor(KINETICS_STD).view(1, 3, 1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone((x - self.mean) / self.std)


def build_model(arch: str, num_classes: int, dropout: float = 0.3) -> Normalized:
    """A randomly initialised classifier (no weights are ever downloaded)."""
    if arch == "tiny3d":
        return Normalized(Tiny3DNet(num_classes, dropout=dropout))
    if arch in TORCHVISION_ARCHS:
        net = TORCHVISION_ARCHS[arch](weights=None)
        net.fc = nn.Sequential(nn.Dropout(dropout), nn.Linear(net.fc.in_features, num_classes))
        return Normalized(net)
    raise ValueError(f"unknown arch '{arch}'; choose one of {', '.join(ARCHS)}")


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())

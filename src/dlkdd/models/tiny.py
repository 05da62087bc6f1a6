"""A small 3D CNN (~0.6M parameters) that trains in seconds per epoch on a 2-core CPU at 8x64x64."""
from __future__ import annotations

import torch
from torch import nn


def _block(cin: int, cout: int, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> nn.Sequential:
    pad = tuple(k // 2 for k in kernel)
    return nn.Sequential(nn.Conv3d(cin, cout, kernel, stride, pad, bias=False), nn.BatchNorm3d(cout),
                         nn.ReLU(inplace=True))


class Tiny3DNet(nn.Module):
    """(B, 3, T, H, W) → (B, num_classes). Spatial-only stem, then 3x3x3 blocks that see motion.

    The head max-pools over space and time: the actor fills a small part of a dark frame, and average pooling
    drowns its features in background (measured on the synthetic data: val top-1 0.41 with avg vs 0.78 with max
    after 40 epochs on the enhanced clips).
    """

    def __init__(self, num_classes: int, width: int = 24, dropout: float = 0.3) -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(
            _block(3, w, (1, 3, 3), (1, 2, 2)),  # (B, w, T, H/2, W/2)
            _block(w, 2 * w, (3, 3, 3), (1, 2, 2)),  # (B, 2w, T, H/4, W/4)
            _block(2 * w, 4 * w, (3, 3, 3), (2, 2, 2)),  # (B, 4w, T/2, H/8, W/8)
            _block(4 * w, 6 * w, (3, 3, 3), (2, 2, 2)),  # (B, 6w, T/4, H/16, W/16)
        )
        self.pool = nn.AdaptiveMaxPool3d(1)
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(6 * w, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.features(x)))

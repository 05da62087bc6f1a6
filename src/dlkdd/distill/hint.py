"""A FitNets-style hint loss (Romero et al., ICLR 2015) on the pooled last-block features, online teacher only.

The hint is the input of each network's classifier head: the pooled features (B, C) of its last block, for every
arch built by :mod:`dlkdd.models.build` (tiny3d ``head``, ResNets ``fc``, S3D ``classifier``, MViT/Swin ``head``).
A learned linear map takes the student's C_s features to the teacher's C_t; the loss is their mean squared error.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dlkdd.distill.kd import DualLightTeacher


def head_of(model: nn.Module) -> nn.Module:
    """The classifier head of a built model (``Normalized(backbone)``); its input is the pooled features."""
    net = getattr(model, "backbone", model)
    for name in ("head", "fc", "classifier"):
        if isinstance(getattr(net, name, None), nn.Module):
            return getattr(net, name)
    raise ValueError(f"kd.hint: no classifier head (head/fc/classifier) on {type(net).__name__}")


def feature_dim(model: nn.Module) -> int:
    """C of the pooled features: the input size of the head's last Linear (or 1x1 Conv3d, S3D)."""
    last = [m for m in head_of(model).modules() if isinstance(m, (nn.Linear, nn.Conv3d))][-1]
    return last.in_features if isinstance(last, nn.Linear) else last.in_channels


class FeatureTap:
    """Keeps the input of ``model``'s head at every forward, flattened to (B, C)."""

    def __init__(self, model: nn.Module) -> None:
        self.features: torch.Tensor | None = None
        self._handle = head_of(model).register_forward_pre_hook(self._keep)

    def _keep(self, module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        self.features = args[0].flatten(1)

    def remove(self) -> None:
        self._handle.remove()


class HintLoss(nn.Module):
    """weight · MSE(proj(student features (B, C_s)), teacher features (B, C_t)) → scalar; ``proj`` is trained."""

    def __init__(self, student_dim: int, teacher_dim: int, weight: float) -> None:
        super().__init__()
        self.proj, self.weight = nn.Linear(student_dim, teacher_dim), weight

    def forward(self, student_features: torch.Tensor, teacher_features: torch.Tensor) -> torch.Tensor:
        return self.weight * F.mse_loss(self.proj(student_features.float()), teacher_features.float())


class Hint:
    """The hint term of one training run: taps on the student and the (enhanced-view) teacher, and the loss.

    Call it after both forwards of a batch; the teacher's features were taken without grad (a plain copy here, so
    autograd may keep them)."""

    def __init__(self, student: nn.Module, teacher: nn.Module, weight: float) -> None:
        teacher = teacher.teacher if isinstance(teacher, DualLightTeacher) else teacher  # the enhanced-view net
        self.loss = HintLoss(feature_dim(student), feature_dim(teacher), weight)
        self.student, self.teacher = FeatureTap(student), FeatureTap(teacher)

    def __call__(self) -> torch.Tensor:
        return self.loss(self.student.features, self.teacher.features.clone())

    def remove(self) -> None:
        self.student.remove()
        self.teacher.remove()

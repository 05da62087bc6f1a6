"""The dual-light KD loss (Hinton et al. logit distillation, as DL-KDD uses it)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def kd_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """T² · KL(softmax(teacher/T) ‖ softmax(student/T)), averaged over the batch.

    ``reduction="batchmean"`` is the true KL per sample; the elementwise mean (PyTorch's default) silently divides by
    the number of classes too. The T² factor keeps the gradient scale independent of T.
    Shapes: logits (B, K) → scalar.
    """
    t = temperature
    log_p_student = F.log_softmax(student_logits / t, dim=1)
    log_p_teacher = F.log_softmax(teacher_logits / t, dim=1)
    return F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True) * (t * t)


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor | None, labels: torch.Tensor,
            temperature: float, alpha: float, label_smoothing: float = 0.0) -> torch.Tensor:
    """(1 − α)·CE(student_logits, labels) + α·T²·KL(teacher ‖ student). ``teacher_logits=None`` means plain CE."""
    ce = F.cross_entropy(student_logits, labels, label_smoothing=label_smoothing)
    if teacher_logits is None or alpha == 0:
        return ce
    return (1 - alpha) * ce + alpha * kd_kl(student_logits, teacher_logits.detach(), temperature)


class KDLoss(nn.Module):
    """Module form of :func:`kd_loss` with fixed ``temperature`` and ``alpha``."""

    def __init__(self, temperature: float = 4.0, alpha: float = 0.5, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.temperature, self.alpha, self.label_smoothing = temperature, alpha, label_smoothing

    def forward(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor | None,
                labels: torch.Tensor) -> torch.Tensor:
        return kd_loss(student_logits, teacher_logits, labels, self.temperature, self.alpha, self.label_smoothing)

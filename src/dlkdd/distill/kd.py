"""The dual-light KD loss (Hinton et al. logit distillation, as DL-KDD uses it), the two-stream teacher's fused
logits, and function-matching mixup (Beyer et al., CVPR 2022)."""
from __future__ import annotations

import math

import numpy as np
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


def fuse_logits(logits: list[torch.Tensor], temperature: float) -> torch.Tensor:
    """Logits whose softmax at ``temperature`` is the mean of the members' softmaxes at ``temperature``.

    T·log(mean_i softmax(z_i / T)): fed to :func:`kd_kl` at the same T, the soft target is exactly the two-stream
    ensemble's averaged probabilities, so the KD loss itself needs no ensemble case. Shapes: each (..., K) → (..., K).
    """
    # at least float32 (autocast may hand bf16 logits); float64 stays float64
    log_p = torch.stack([F.log_softmax(z.to(torch.promote_types(z.dtype, torch.float32)) / temperature, dim=-1)
                         for z in logits])  # (M, ..., K)
    return temperature * (torch.logsumexp(log_p, dim=0) - math.log(len(logits)))


class DualLightTeacher(nn.Module):
    """The two-stream model as one frozen teacher: ``teacher`` on the enhanced view, ``baseline`` on the dark view,
    fused at ``temperature`` (:func:`fuse_logits`). Inputs (B, 3, T, H, W) each → (B, K)."""

    def __init__(self, teacher: nn.Module, baseline: nn.Module, temperature: float) -> None:
        super().__init__()
        self.teacher, self.baseline, self.temperature = teacher, baseline, temperature

    def forward(self, x_enhanced: torch.Tensor, x_dark: torch.Tensor) -> torch.Tensor:
        return fuse_logits([self.teacher(x_enhanced), self.baseline(x_dark)], self.temperature)


def draw_mixup(batch: int, concentration: float, generator: torch.Generator) -> tuple[float, torch.Tensor]:
    """λ ~ Beta(a, a) and a pairing permutation (B,), both from the training ``generator`` (so a resumed run draws
    the same). torch's Beta sampler takes no generator: λ comes from a NumPy generator seeded by one torch draw."""
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    lam = float(np.random.default_rng(seed).beta(concentration, concentration))
    return lam, torch.randperm(batch, generator=generator)


def mix(x: torch.Tensor, lam: float, perm: torch.Tensor) -> torch.Tensor:
    """λ·x + (1 − λ)·x[perm] along the batch: (B, ...) float → (B, ...)."""
    return lam * x + (1 - lam) * x[perm.to(x.device)]


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor | None, labels: torch.Tensor,
            temperature: float, alpha: float, label_smoothing: float = 0.0,
            unlabeled_weight: float = 1.0) -> torch.Tensor:
    """(1 − α)·CE(student_logits, labels) + α·T²·KL(teacher ‖ student). ``teacher_logits=None`` means plain CE.

    A label ``< 0`` marks a pool clip (no label): see :func:`pool_kd_loss`, which a batch holding one goes to."""
    if teacher_logits is not None and bool((labels < 0).any()):
        return pool_kd_loss(student_logits, teacher_logits, labels, None, 1.0, temperature, alpha, label_smoothing,
                            unlabeled_weight)
    ce = F.cross_entropy(student_logits, labels, label_smoothing=label_smoothing)
    return _with_kd(ce, student_logits, teacher_logits, temperature, alpha)


def pool_kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
                 labels_b: torch.Tensor | None, lam: float, temperature: float, alpha: float,
                 label_smoothing: float = 0.0, unlabeled_weight: float = 1.0) -> torch.Tensor:
    """The loss of a batch mixing labelled clips and pool clips (label ``< 0``): the mean over the batch of

    - a labelled clip: (1 − α)·CE + α·T²·KL(teacher ‖ student), as :func:`kd_loss`;
    - a pool clip: ``unlabeled_weight``·T²·KL(teacher ‖ student): the soft target alone, its label never read.

    A mixed batch (``labels_b`` = labels[perm], weight ``lam``) takes each CE term only where that label exists.
    Without pool clips this is :func:`kd_loss`'s value (the loss functions keep their own, older float path).
    Shapes: logits (B, K), labels (B,).
    """
    batch, t = len(labels), temperature

    def ce(y: torch.Tensor) -> torch.Tensor:  # summed over the labelled clips, divided by the whole batch
        return F.cross_entropy(student_logits, y, ignore_index=-1, reduction="sum",
                               label_smoothing=label_smoothing) / batch
    ce_term = ce(labels) if labels_b is None else lam * ce(labels) + (1 - lam) * ce(labels_b)
    kl = F.kl_div(F.log_softmax(student_logits / t, dim=1), F.log_softmax(teacher_logits.detach() / t, dim=1),
                  reduction="none", log_target=True).sum(1) * (t * t)  # (B,)
    weight = torch.where(labels < 0, torch.full_like(kl, unlabeled_weight), torch.full_like(kl, alpha))
    return (1 - alpha) * ce_term + (weight * kl).sum() / batch


def mixup_kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor | None, labels: torch.Tensor,
                  labels_b: torch.Tensor, lam: float, temperature: float, alpha: float,
                  label_smoothing: float = 0.0, unlabeled_weight: float = 1.0) -> torch.Tensor:
    """Function matching on a mixed batch: (1 − α)·(λ·CE(y) + (1 − λ)·CE(y_b)) + α·T²·KL(teacher ‖ student).

    Both logits come from the same mixed input; ``labels_b`` = labels[perm]. Shapes: logits (B, K), labels (B,).
    """
    if teacher_logits is not None and bool((labels < 0).any()):
        return pool_kd_loss(student_logits, teacher_logits, labels, labels_b, lam, temperature, alpha,
                            label_smoothing, unlabeled_weight)
    ce = lam * F.cross_entropy(student_logits, labels, label_smoothing=label_smoothing) \
        + (1 - lam) * F.cross_entropy(student_logits, labels_b, label_smoothing=label_smoothing)
    return _with_kd(ce, student_logits, teacher_logits, temperature, alpha)


def _with_kd(ce: torch.Tensor, student_logits: torch.Tensor, teacher_logits: torch.Tensor | None,
             temperature: float, alpha: float) -> torch.Tensor:
    """(1 − α)·ce + α·T²·KL(teacher ‖ student); ``ce`` alone without a teacher or at α = 0."""
    if teacher_logits is None or alpha == 0:
        return ce
    return (1 - alpha) * ce + alpha * kd_kl(student_logits, teacher_logits.detach(), temperature)


class KDLoss(nn.Module):
    """Module form of :func:`kd_loss` with fixed ``temperature`` and ``alpha`` (kd.T and kd.α: their defaults live in
    :class:`dlkdd.config.KDConfig` alone)."""

    def __init__(self, temperature: float, alpha: float, label_smoothing: float = 0.0,
                 unlabeled_weight: float = 1.0) -> None:
        super().__init__()
        self.temperature, self.alpha, self.label_smoothing = temperature, alpha, label_smoothing
        self.unlabeled_weight = unlabeled_weight  # kd.unlabeled_weight: a pool clip's KD term (label < 0)

    def forward(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor | None,
                labels: torch.Tensor) -> torch.Tensor:
        return kd_loss(student_logits, teacher_logits, labels, self.temperature, self.alpha, self.label_smoothing,
                       self.unlabeled_weight)

    def mixed(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor | None, labels: torch.Tensor,
              labels_b: torch.Tensor, lam: float) -> torch.Tensor:
        """:func:`mixup_kd_loss` with this loss's temperature, alpha and label smoothing."""
        return mixup_kd_loss(student_logits, teacher_logits, labels, labels_b, lam, self.temperature, self.alpha,
                             self.label_smoothing, self.unlabeled_weight)

"""KD loss against hand-computed values (torchdistill-style golden tests)."""
import math

import pytest
import torch
import torch.nn.functional as F

from dlkdd.distill.kd import KDLoss, kd_kl, kd_loss


def _softmax(xs, t):
    e = [math.exp(x / t) for x in xs]
    return [v / sum(e) for v in e]


def test_kd_kl_matches_hand_computed_value():
    s, t, T = [1.0, 2.0, 0.5], [2.0, 0.0, 1.0], 2.0
    p_t, p_s = _softmax(t, T), _softmax(s, T)
    expected = T * T * sum(pt * math.log(pt / ps) for pt, ps in zip(p_t, p_s))
    got = kd_kl(torch.tensor([s]), torch.tensor([t]), T)
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_kd_kl_is_batchmean_not_elementwise_mean():
    torch.manual_seed(0)
    s, t = torch.randn(4, 11), torch.randn(4, 11)
    per_sample = [kd_kl(s[i : i + 1], t[i : i + 1], 3.0).item() for i in range(4)]
    assert kd_kl(s, t, 3.0).item() == pytest.approx(sum(per_sample) / 4, rel=1e-5)
    # the buggy elementwise mean would be 11x smaller
    log_s, log_t = F.log_softmax(s / 3, 1), F.log_softmax(t / 3, 1)
    wrong = (log_t.exp() * (log_t - log_s)).mean().item() * 9  # what reduction="mean" computes
    assert kd_kl(s, t, 3.0).item() == pytest.approx(wrong * 11, rel=1e-5)


def test_golden_value_full_loss():
    s = torch.tensor([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])
    t = torch.tensor([[2.0, 0.0, 1.0], [0.5, 0.5, 2.0]])
    y = torch.tensor([1, 2])
    T, a = 4.0, 0.3
    ce = sum(-math.log(_softmax(row, 1)[lab]) for row, lab in zip(s.tolist(), y.tolist())) / 2
    kl = sum(sum(pt * math.log(pt / ps) for pt, ps in zip(_softmax(tr, T), _softmax(sr, T)))
             for sr, tr in zip(s.tolist(), t.tolist())) / 2
    expected = (1 - a) * ce + a * T * T * kl
    assert kd_loss(s, t, y, T, a).item() == pytest.approx(expected, rel=1e-6)
    assert KDLoss(T, a)(s, t, y).item() == pytest.approx(expected, rel=1e-6)


def test_alpha_zero_is_cross_entropy_and_identical_logits_give_zero_kl():
    torch.manual_seed(1)
    s, t, y = torch.randn(5, 11), torch.randn(5, 11), torch.randint(0, 11, (5,))
    assert kd_loss(s, t, y, 4.0, 0.0).item() == pytest.approx(F.cross_entropy(s, y).item(), rel=1e-7)
    assert kd_kl(s, s.clone(), 4.0).item() == pytest.approx(0.0, abs=1e-6)
    assert kd_loss(s, None, y, 4.0, 0.9).item() == pytest.approx(F.cross_entropy(s, y).item(), rel=1e-7)


def test_kd_gradient_flows_to_student_only():
    s = torch.randn(3, 5, requires_grad=True)
    t = torch.randn(3, 5, requires_grad=True)
    kd_loss(s, t, torch.tensor([0, 1, 2]), 2.0, 0.5).backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    assert t.grad is None

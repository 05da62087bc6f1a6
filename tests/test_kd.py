"""KD loss against hand-computed values (torchdistill-style golden tests)."""
import math

import pytest
import torch
import torch.nn.functional as F

from dlkdd.config import KDConfig, TrainConfig, kd_record, student_train
from dlkdd.distill.kd import KDLoss, draw_mixup, fuse_logits, kd_kl, kd_loss, mix, mixup_kd_loss


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


def test_fused_logits_golden_value_is_the_two_stream_mean_at_T():
    """dual_light: softmax(fused/T) is the mean of the members' softmaxes at T, so kd_kl distils the ensemble."""
    s, a, b, T = [1.0, 2.0, 0.5], [2.0, 0.0, 1.0], [-1.0, 3.0, 0.0], 2.0
    mean = [(pa + pb) / 2 for pa, pb in zip(_softmax(a, T), _softmax(b, T))]
    fused = fuse_logits([torch.tensor([a], dtype=torch.float64), torch.tensor([b], dtype=torch.float64)], T)
    expected_logits = [T * math.log(m) for m in mean]
    assert fused[0].tolist() == pytest.approx(expected_logits, rel=1e-6)
    expected_kl = T * T * sum(pm * math.log(pm / ps) for pm, ps in zip(mean, _softmax(s, T)))
    assert kd_kl(torch.tensor([s], dtype=torch.float64), fused, T).item() == pytest.approx(expected_kl, rel=1e-6)


def test_fused_logits_keep_leading_dims_and_one_member_is_the_same_target():
    torch.manual_seed(0)
    z = torch.randn(4, 2, 5)  # the cache's layout (N, plain/flipped, K)
    fused = fuse_logits([z, z + 1.0], 3.0)  # a shift changes no softmax: the mean is the member's own
    assert fused.shape == z.shape
    torch.testing.assert_close(F.softmax(fused / 3.0, -1), F.softmax(z / 3.0, -1))


def test_mixup_kd_loss_golden_value():
    s = torch.tensor([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])
    t = torch.tensor([[2.0, 0.0, 1.0], [0.5, 0.5, 2.0]])
    y, y_b, lam, T, a = torch.tensor([1, 2]), torch.tensor([2, 1]), 0.3, 4.0, 0.6

    def ce(labels):
        return sum(-math.log(_softmax(row, 1)[lab]) for row, lab in zip(s.tolist(), labels.tolist())) / 2

    kl = sum(sum(pt * math.log(pt / ps) for pt, ps in zip(_softmax(tr, T), _softmax(sr, T)))
             for sr, tr in zip(s.tolist(), t.tolist())) / 2
    expected = (1 - a) * (lam * ce(y) + (1 - lam) * ce(y_b)) + a * T * T * kl
    assert mixup_kd_loss(s, t, y, y_b, lam, T, a).item() == pytest.approx(expected, rel=1e-6)
    assert KDLoss(T, a).mixed(s, t, y, y_b, lam).item() == pytest.approx(expected, rel=1e-6)
    assert mixup_kd_loss(s, t, y, y_b, 1.0, T, a).item() == pytest.approx(kd_loss(s, t, y, T, a).item(), rel=1e-6)


def test_mixup_draw_comes_from_the_training_generator():
    lam, perm = draw_mixup(8, 0.4, torch.Generator().manual_seed(1))
    lam2, perm2 = draw_mixup(8, 0.4, torch.Generator().manual_seed(1))
    assert lam == lam2 and torch.equal(perm, perm2) and 0 < lam < 1
    assert sorted(perm.tolist()) == list(range(8))
    x = torch.arange(4.0).view(4, 1)
    assert mix(x, 0.25, torch.tensor([1, 0, 3, 2])).view(-1).tolist() == [0.75, 0.25, 2.75, 2.25]


def test_kd_record_leaves_default_levers_out_so_checkpoint_bytes_stay():
    assert kd_record(KDConfig()) == {"temperature": 4.0, "alpha": 0.5, "teacher_logits": "cached"}
    rec = kd_record(KDConfig(teacher="dual_light", mixup=0.2))
    assert rec["teacher"] == "dual_light" and rec["mixup"] == 0.2 and "epochs" not in rec and "hint" not in rec


def test_kd_epochs_sets_the_student_schedule_alone():
    train = TrainConfig(epochs=30)
    assert student_train(train, KDConfig()) is train
    assert student_train(train, KDConfig(epochs=100)).epochs == 100 and train.epochs == 30

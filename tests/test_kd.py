"""KD loss against hand-computed values (torchdistill-style golden tests)."""
import math

import pytest
import torch
import torch.nn.functional as F

from dlkdd.config import KDConfig, TrainConfig, kd_record, student_train
from dlkdd.distill.kd import KDLoss, draw_mixup, fuse_logits, kd_kl, kd_loss, mix, mixup_kd_loss
from dlkdd.distill.targets import (CachedRows, OnlineDualLight, OnlineTeacher, Source, build_criterion,
                                   load_kd_targets, target_source)
from dlkdd.distill.trainer import Placement


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


# --- the criterion built from KDConfig (dlkdd.distill.targets): each target source against a by-hand computation ---

def _ce(rows, labels):
    return sum(-math.log(_softmax(r, 1)[lab]) for r, lab in zip(rows, labels)) / len(rows)


def _kl(student_rows, teacher_rows, T):
    return T * T * sum(sum(pt * math.log(pt / ps) for pt, ps in zip(_softmax(tr, T), _softmax(sr, T)))
                       for sr, tr in zip(student_rows, teacher_rows)) / len(student_rows)


class LeftColumn(torch.nn.Module):
    """A fixed 'network': logits (B, 3) = mean of each colour channel over the left-most pixel column, x ``scale``
    (so a flip changes them)."""

    def __init__(self, scale: float = 10.0) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(scale))

    def forward(self, x):
        return x[..., 0].mean(dim=(2, 3)) * self.scale


def _clips(seed: int) -> torch.Tensor:
    return torch.randint(0, 256, (2, 3, 1, 2, 2), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


S = torch.tensor([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])  # the student's logits
Y = torch.tensor([1, 2])
FLIP = torch.tensor([True, False])


def _criterion(kd, source):
    return build_criterion(kd, source, LeftColumn(), label_smoothing=0.0)


def test_no_kd_criterion_is_plain_cross_entropy_and_leaves_the_batch_alone():
    crit = build_criterion(None, Source(), LeftColumn(), label_smoothing=0.1)
    x = _clips(0)
    x_in, target = crit.batch([x], Y, torch.tensor([False, False]), torch.Generator(), Placement())
    assert torch.equal(x_in, x.float() / 255) and target.soft is None
    k = 3  # label smoothing 0.1: the target is 0.9 on the label + 0.1/K everywhere
    expected = sum(-sum((0.9 * (j == lab) + 0.1 / k) * math.log(p) for j, p in enumerate(_softmax(r, 1)))
                   for r, lab in zip(S.tolist(), Y.tolist())) / 2
    assert crit(S, target).item() == pytest.approx(expected, rel=1e-6)


def test_cached_criterion_takes_each_clip_row_of_the_flip_it_got_golden():
    rows = torch.tensor([[[2.0, 0.0, 1.0], [0.0, 1.0, 2.0]], [[0.5, 0.5, 2.0], [1.0, 0.0, 0.0]]])  # (B, plain/flip, K)
    crit = _criterion(KDConfig(temperature=2.0, alpha=0.3), CachedRows(rows, "enhanced", 2.0))
    x = _clips(1)
    x_in, target = crit.batch([x, rows], Y, FLIP, torch.Generator(), Placement())
    assert torch.equal(target.soft, torch.stack([rows[0, 1], rows[1, 0]]))
    assert torch.equal(x_in[0], x[0].flip(-1).float() / 255) and torch.equal(x_in[1], x[1].float() / 255)
    teacher = [rows[0, 1].tolist(), rows[1, 0].tolist()]
    expected = 0.7 * _ce(S.tolist(), Y.tolist()) + 0.3 * _kl(S.tolist(), teacher, 2.0)
    assert crit(S, target).item() == pytest.approx(expected, rel=1e-6)


def test_online_criterion_runs_the_teacher_on_the_flipped_enhanced_view_golden():
    teacher, x, x_t = LeftColumn(), _clips(2), _clips(3)
    crit = _criterion(KDConfig(teacher_logits="online", temperature=3.0, alpha=0.6), OnlineTeacher(teacher))
    _, target = crit.batch([x, x_t], Y, FLIP, torch.Generator(), Placement())
    seen = torch.stack([x_t[0].flip(-1), x_t[1]]).float() / 255  # the teacher sees the same flip as the student
    soft = (seen[..., 0].mean(dim=(2, 3)) * 10.0).tolist()
    torch.testing.assert_close(target.soft, torch.tensor(soft))
    expected = 0.4 * _ce(S.tolist(), Y.tolist()) + 0.6 * _kl(S.tolist(), soft, 3.0)
    assert crit(S, target).item() == pytest.approx(expected, rel=1e-5)


def test_online_dual_light_criterion_fuses_teacher_and_baseline_at_kd_T():
    kd = KDConfig(teacher_logits="online", teacher="dual_light", temperature=2.0)
    crit = _criterion(kd, target_source(kd, teacher=LeftColumn(10.0), baseline=LeftColumn(-5.0)))
    x, x_t = _clips(4), _clips(5)
    _, target = crit.batch([x, x_t], Y, FLIP, torch.Generator(), Placement())
    dark = torch.stack([x[0].flip(-1), x[1]]).float() / 255  # the baseline sees the student's (flipped) dark view
    lit = torch.stack([x_t[0].flip(-1), x_t[1]]).float() / 255
    a, b = lit[..., 0].mean(dim=(2, 3)) * 10.0, dark[..., 0].mean(dim=(2, 3)) * -5.0
    mean = [[(pa + pb) / 2 for pa, pb in zip(_softmax(ra, 2.0), _softmax(rb, 2.0))] for ra, rb in zip(a.tolist(),
                                                                                                     b.tolist())]
    assert F.softmax(target.soft / 2.0, -1).tolist() == [pytest.approx(m, rel=1e-5) for m in mean]


def test_mixup_criterion_mixes_both_views_with_one_draw_golden():
    kd = KDConfig(teacher_logits="online", mixup=0.4, alpha=0.5)
    crit = _criterion(kd, OnlineTeacher(LeftColumn()))
    x, x_t = _clips(6), _clips(7)
    x_in, target = crit.batch([x, x_t], Y, torch.tensor([False, False]), torch.Generator().manual_seed(3), Placement())
    lam, perm = draw_mixup(2, 0.4, torch.Generator().manual_seed(3))  # the same single draw
    assert target.lam == lam and torch.equal(target.labels_b, Y[perm])
    torch.testing.assert_close(x_in, lam * x.float() / 255 + (1 - lam) * x[perm].float() / 255)
    lit = lam * x_t.float() / 255 + (1 - lam) * x_t[perm].float() / 255
    soft = (lit[..., 0].mean(dim=(2, 3)) * 10.0).tolist()
    ce = lam * _ce(S.tolist(), Y.tolist()) + (1 - lam) * _ce(S.tolist(), Y[perm].tolist())
    assert crit(S, target).item() == pytest.approx(0.5 * ce + 0.5 * _kl(S.tolist(), soft, 4.0), rel=1e-5)


def test_kd_temperature_has_no_default_outside_the_schema():
    import inspect

    for fn in (KDLoss, load_kd_targets, CachedRows, OnlineDualLight):
        assert inspect.signature(fn).parameters["temperature"].default is inspect.Parameter.empty, fn
    assert KDConfig().temperature == 4.0  # the one default
    crit = _criterion(KDConfig(temperature=2.5, alpha=0.2), target_source(KDConfig(), logits=torch.zeros(1, 2, 3)))
    assert (crit.loss.temperature, crit.loss.alpha) == (2.5, 0.2)


def test_target_source_reads_only_what_kd_asks_and_refuses_levers_it_cannot_serve():
    absent = "/nonexistent/teacher.pt"  # never opened unless kd asks for it
    assert type(target_source(None, teacher=absent, logits=absent)) is Source
    assert isinstance(target_source(KDConfig(), teacher=absent, baseline=absent, logits=absent), CachedRows)
    online = target_source(KDConfig(teacher_logits="online"), teacher=LeftColumn(), baseline=absent, logits=absent)
    assert type(online) is OnlineTeacher
    dual = KDConfig(teacher_logits="online", teacher="dual_light")
    assert isinstance(target_source(dual, teacher=LeftColumn(), baseline=LeftColumn()), OnlineDualLight)
    with pytest.raises(ValueError, match=r"^kd.mixup=0.2 needs the online teacher"):
        target_source(KDConfig(mixup=0.2), logits=torch.zeros(1, 2, 3))
    with pytest.raises(ValueError, match=r"^kd.hint=0.5 needs the online teacher"):
        target_source(KDConfig(hint=0.5), logits=torch.zeros(1, 2, 3))
    with pytest.raises(ValueError, match="needs the teacher_logits stage's file"):
        target_source(KDConfig())

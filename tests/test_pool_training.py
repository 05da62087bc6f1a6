"""The unlabelled pool in the student's training: KD term only, never a label, the same budget per epoch."""
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from dlkdd.config import KDConfig, ModelConfig, TrainConfig
from dlkdd.data.frame_index import read_index
from dlkdd.data.pool import NO_LABEL, split_pool
from dlkdd.distill.kd import kd_kl, kd_loss, pool_kd_loss
from dlkdd.distill.logit_cache import compute_teacher_logits, save_teacher_logits
from dlkdd.distill.training_run import Pool, train_classifier
from dlkdd.models.build import build_model

TINY = ModelConfig(arch="tiny3d", dropout=0.3, width=4)


def test_pool_loss_golden_values():
    """Two labelled clips and one pool clip: the mean over the batch of (1−α)·CE + α·T²·KL for the labelled ones and
    w·T²·KL for the pool one, computed by hand."""
    s = torch.tensor([[2.0, 0.0, -1.0], [0.5, 1.5, 0.0], [0.0, 0.0, 3.0]])
    t = torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 1.0, 1.0]])
    y = torch.tensor([0, 1, -1])
    temp, alpha, w = 2.0, 0.25, 0.5
    ce = [F.cross_entropy(s[i:i + 1], y[i:i + 1]) for i in (0, 1)]
    kl = [kd_kl(s[i:i + 1], t[i:i + 1], temp) for i in range(3)]
    want = ((1 - alpha) * (ce[0] + ce[1]) + alpha * (kl[0] + kl[1]) + w * kl[2]) / 3
    got = pool_kd_loss(s, t, y, None, 1.0, temp, alpha, unlabeled_weight=w)
    assert torch.allclose(got, want)
    assert torch.allclose(kd_loss(s, t, y, temp, alpha, unlabeled_weight=w), want)  # kd_loss routes a pool batch
    # a batch without pool clips: the same value as the plain KD loss
    assert torch.allclose(pool_kd_loss(s[:2], t[:2], y[:2], None, 1.0, temp, alpha), kd_loss(s[:2], t[:2], y[:2],
                                                                                              temp, alpha))


def test_a_pool_clip_gives_no_cross_entropy_gradient():
    """At α = 0 (CE only on labelled clips) a pool clip's logits get no gradient at all: its label is never read."""
    s = torch.randn(4, 5, requires_grad=True)
    loss = pool_kd_loss(s, torch.randn(4, 5), torch.tensor([1, -1, 3, -1]), None, 1.0, 4.0, 0.0, unlabeled_weight=0.0)
    loss.backward()
    assert s.grad[[1, 3]].abs().sum() == 0 and s.grad[[0, 2]].abs().sum() > 0


def test_split_pool_drops_any_label_a_pool_row_carries():
    manifest = pd.DataFrame({"path": ["a.avi", "b.avi", "c.avi"], "label": [0.0, 1.0, 2.0],
                             "class_name": ["A", "B", "C"], "split": ["train", "unlabeled", "test"],
                             "video_id": ["a", "b", "c"]})
    labelled, pool = split_pool(manifest)
    assert labelled["label"].tolist() == [0, 2] and all(isinstance(v, int) for v in labelled["label"])
    assert pool["label"].tolist() == [NO_LABEL] and pool["class_name"].tolist() == [""]


def _pool_from_train(frames, labels):
    """The tiny cache's train clips presented as a pool (split ``unlabeled``) whose label column says ``labels``."""
    index, _ = read_index(frames)
    pool = index[index["split"] == "train"].copy()
    pool["split"], pool["label"] = "unlabeled", labels(pool)
    return Pool(pool.reset_index(drop=True), [frames / "clips", frames / "enhanced" / "clips"])


def _student(frames, tmp_path, pool, kd=None, epochs=2):
    index, classes = read_index(frames)
    teacher = build_model("tiny3d", len(classes), 0.0, width=4)
    every = index[index["split"].isin(["train"])]
    ids = every["clip_id"].astype(str).tolist()
    from dlkdd.data.dataset import ClipDataset

    rows = compute_teacher_logits(teacher, ClipDataset(index, [frames / "enhanced" / "clips"], "train").views[0])
    path = tmp_path / "logits.pt"
    # the pool is the train clips again, under the same ids: one row each serves both
    save_teacher_logits(path, rows, ids, arch="tiny3d")
    cfg = TrainConfig(epochs=epochs, batch_size=2, lr=3e-3, threads=1, resume_dir="")
    model, result = train_classifier(index, len(classes), [frames / "clips"], TINY, cfg, seed=5,
                                     kd=kd or KDConfig(alpha=0.0), teacher_logits=path, pool=pool)
    return model, result


def test_unlabelled_rows_never_reach_the_cross_entropy(tiny_frames, tmp_path):
    """A pool whose label column is poisoned (the true labels, or all 0) trains exactly the weights a pool with no
    labels trains: at α = 0 and unlabeled_weight 0 a pool clip contributes nothing but its draw."""
    kd = KDConfig(alpha=0.0, unlabeled_weight=0.0)
    clean, _ = _student(tiny_frames, tmp_path, _pool_from_train(tiny_frames, lambda p: -1), kd)
    for poison in (lambda p: p["label"], lambda p: 0):
        poisoned, _ = _student(tiny_frames, tmp_path, _pool_from_train(tiny_frames, poison), kd)
        for a, b in zip(clean.state_dict().values(), poisoned.state_dict().values()):
            assert torch.equal(a, b)


def test_the_pool_adds_data_not_compute(tiny_frames, tmp_path):
    """An epoch with a pool is as many clips (so optimizer steps) as without one, and the pool changes the weights."""
    index, _ = read_index(tiny_frames)
    n_train = int((index["split"] == "train").sum())
    without, r0 = _student(tiny_frames, tmp_path, None, KDConfig(alpha=1.0))
    with_pool, r1 = _student(tiny_frames, tmp_path, _pool_from_train(tiny_frames, lambda p: -1), KDConfig(alpha=1.0))
    assert len(r0.history) == len(r1.history) == 2
    assert any(not torch.equal(a, b) for a, b in zip(without.state_dict().values(), with_pool.state_dict().values()))
    # the loader of a pooled run: len(train) clips per epoch, drawn from train + pool
    from dlkdd.distill.runtime import Runtime
    from dlkdd.distill.training_run import make_train_loader

    loader = make_train_loader(list(range(3 * n_train)), TrainConfig(batch_size=2), torch.Generator().manual_seed(0),
                               Runtime(), 0, epoch_clips=n_train)
    drawn = [int(i) for batch in loader for i in batch]
    assert len(drawn) == n_train // 2 * 2 and len(set(drawn)) == len(drawn)
    assert max(drawn) >= n_train or n_train < 3  # pool indices are drawn too


def test_pool_under_torchrun_is_one_line_error():
    from dlkdd.distill.runtime import Runtime
    from dlkdd.distill.training_run import make_train_loader

    class Distributed(Runtime):
        distributed = True

    with pytest.raises(ValueError, match="kd.use_pool=false"):
        make_train_loader(list(range(10)), TrainConfig(batch_size=2), torch.Generator(), Distributed(), 0,
                          epoch_clips=4)


def test_online_teacher_with_mixup_learns_from_the_pool(tiny_frames):
    """kd.teacher_logits=online runs the teacher on the pool's enhanced view too; mixup pairs pool and labelled
    clips (a mixed pair's CE takes each label only where it exists)."""
    index, classes = read_index(tiny_frames)
    teacher = build_model("tiny3d", len(classes), 0.0, width=4)
    pool = _pool_from_train(tiny_frames, lambda p: -1)
    cfg = TrainConfig(epochs=1, batch_size=4, lr=3e-3, threads=1, resume_dir="")
    kd = KDConfig(teacher_logits="online", mixup=0.4, alpha=0.5)
    model, result = train_classifier(index, len(classes), [tiny_frames / "clips", tiny_frames / "enhanced" / "clips"],
                                     TINY, cfg, seed=2, kd=kd, teacher=teacher, pool=pool)
    assert len(result.history) == 1 and all(torch.isfinite(p).all() for p in model.parameters())
    assert result.history[0]["train_loss"] > 0

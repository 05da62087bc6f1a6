"""The production trainer on a tiny frame cache: resume-after-kill equality, cached vs online KD, schedules."""
import json

import pytest
import torch
from torch.utils.data import DataLoader

from dlkdd.config import KDConfig, ModelConfig, TrainConfig
from dlkdd.data.dataset import ClipDataset
from dlkdd.data.frame_index import read_index
from dlkdd.distill.logit_cache import (compute_teacher_logits, load_teacher_logits,
                                       save_teacher_logits)
from dlkdd.distill.schedule import build_optimizer, build_scheduler
from dlkdd.distill.targets import build_criterion, flip_clips, load_kd_targets, target_source
from dlkdd.distill.training_run import train_classifier
from dlkdd.distill.trainer import Placement, flip_mask
from dlkdd.models.build import build_model

TINY = ModelConfig(arch="tiny3d", dropout=0.3)


def _cfg(**kw) -> TrainConfig:
    return TrainConfig(**{"epochs": 4, "batch_size": 2, "lr": 3e-3, "threads": 1, "resume_dir": "", **kw})


class Killed(Exception):
    pass


def _train(frames, cfg, resume=None, kill_after=None, seed=3, model_cfg=TINY, **kw):
    """train_classifier on the tiny cache; with an online ``teacher`` it sees the enhanced view."""
    index, classes = read_index(frames)

    def hook(epoch, row):  # the process "dies" right after this epoch's checkpoint was written
        if epoch == kill_after:
            raise Killed

    dirs = [frames / "clips", frames / "enhanced" / "clips"] if kw.get("teacher") is not None else [frames / "clips"]
    return train_classifier(index, len(classes), dirs, model_cfg, cfg, seed=seed, resume_path=resume,
                            on_epoch_end=hook, **kw)


def test_resume_after_kill_gives_identical_final_weights(tiny_frames, tmp_path):
    cfg = _cfg(schedule="cosine", warmup_epochs=1.0, grad_clip=1.0, label_smoothing=0.1)
    full, full_res = _train(tiny_frames, cfg)
    ckpt = tmp_path / "resume" / "baseline.pt"
    with pytest.raises(Killed):
        _train(tiny_frames, cfg, resume=ckpt, kill_after=2)
    assert ckpt.is_file(), "no resume checkpoint after the killed run"
    resumed, res = _train(tiny_frames, cfg, resume=ckpt)
    assert not ckpt.exists(), "a completed run must remove its resume state"
    a, b = full.state_dict(), resumed.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert [r["train_loss"] for r in res.history] == [r["train_loss"] for r in full_res.history]
    assert len(res.history) == cfg.epochs and res.best_epoch == full_res.best_epoch


def test_resume_state_for_another_config_is_ignored(tiny_frames, tmp_path):
    ckpt = tmp_path / "r.pt"
    with pytest.raises(Killed):
        _train(tiny_frames, _cfg(epochs=2), resume=ckpt, kill_after=1)
    _, res = _train(tiny_frames, _cfg(epochs=2, lr=1e-3), resume=ckpt)
    assert [r["epoch"] for r in res.history] == [1, 2]  # started fresh, did not resume at epoch 2


def _copy_frames(src, dest):
    import shutil

    shutil.copytree(src, dest)
    return dest


def _kill_then_change(tmp_path, capsys, frames, change):
    """Kill a run after epoch 1, apply ``change`` (returns the kwargs of the second run), re-run: its history and
    log."""
    ckpt = tmp_path / "state" / "baseline.pt"
    with pytest.raises(Killed):
        _train(frames, _cfg(epochs=2), resume=ckpt, kill_after=1)
    capsys.readouterr()
    _, res = _train(**{"frames": frames, "cfg": _cfg(epochs=2), "resume": ckpt, **change()})
    return [r["epoch"] for r in res.history], capsys.readouterr().out


def test_resume_state_is_kept_when_nothing_changed(tiny_frames, tmp_path, capsys):
    epochs, out = _kill_then_change(tmp_path, capsys, tiny_frames, dict)
    assert epochs == [1, 2] and "resuming after epoch 1" in out  # history carries epoch 1 from the killed run


def test_resume_state_from_another_seed_is_ignored(tiny_frames, tmp_path, capsys):
    epochs, out = _kill_then_change(tmp_path, capsys, tiny_frames, lambda: {"seed": 4})
    assert "resuming" not in out and "seed changed (3 → 4); starting fresh" in out, out


def test_resume_state_from_another_dropout_is_ignored(tiny_frames, tmp_path, capsys):
    epochs, out = _kill_then_change(tmp_path, capsys, tiny_frames,
                                    lambda: {"model_cfg": ModelConfig(arch="tiny3d", dropout=0.1)})
    assert "resuming" not in out and "model.dropout changed (0.3 → 0.1)" in out, out


def test_resume_state_from_other_clip_bytes_is_ignored(tiny_frames, tmp_path, capsys):
    import numpy as np

    frames = _copy_frames(tiny_frames, tmp_path / "frames")
    index, _ = read_index(frames)

    def change():  # one train clip's pixels change, same shape, same index
        f = frames / "clips" / f"{index[index.split == 'train'].clip_id.astype(str).iloc[0]}.npy"
        clip = np.load(f)
        np.save(f, 255 - clip)
        return {}

    epochs, out = _kill_then_change(tmp_path, capsys, frames, change)
    assert "resuming" not in out and "clips content changed" in out and "index" not in out, out


def test_resume_state_from_another_frame_size_is_ignored(tiny_dataset, tiny_frames, tmp_path, capsys):
    import pandas as pd

    from dlkdd.data.frames import build_frame_cache

    def rebuild():  # the frames stage re-run with frames.size 24 into the same folder
        import shutil

        shutil.rmtree(frames)
        build_frame_cache(pd.read_csv(tiny_dataset), tiny_dataset.parent, frames, 4, 24, ["Drink", "Jump", "Sit"])
        return {}

    frames = _copy_frames(tiny_frames, tmp_path / "frames")
    epochs, out = _kill_then_change(tmp_path, capsys, frames, rebuild)
    assert "resuming" not in out and "clip_shape changed ([4, 32, 32] → [4, 24, 24])" in out, out


def test_resume_state_with_other_teacher_logits_is_ignored(tiny_frames, tmp_path, capsys):
    index, classes = read_index(tiny_frames)
    n = int((index.split == "train").sum())
    torch.manual_seed(0)
    logits = torch.randn(n, 2, len(classes))
    ckpt = tmp_path / "state" / "student.pt"
    with pytest.raises(Killed):
        _train(tiny_frames, _cfg(epochs=2), resume=ckpt, kill_after=1, kd=KDConfig(), teacher_logits=logits)
    capsys.readouterr()
    _, res = _train(tiny_frames, _cfg(epochs=2), resume=ckpt, kd=KDConfig(), teacher_logits=logits + 1)
    out = capsys.readouterr().out
    assert "resuming" not in out and "teacher content changed" in out, out


def _batch_loss(kd, source, ds, student):
    """The criterion built from ``kd`` and ``source`` on the first 6 clips of ``ds`` with fixed flips: its loss."""
    crit = build_criterion(kd, source, student, 0.0)
    *views, y = next(iter(DataLoader(source.dataset(ds), batch_size=6)))
    x, target = crit.batch(views, y, flip_mask(len(y), torch.Generator().manual_seed(5)), torch.Generator(),
                           Placement())  # the same flips both times
    with torch.no_grad():
        return crit(student(x), target)


def test_cached_and_online_kd_give_the_same_loss_on_the_same_batch(tiny_frames, tmp_path):
    torch.manual_seed(0)
    index, _ = read_index(tiny_frames)
    teacher = build_model("tiny3d", 3).eval()
    student = build_model("tiny3d", 3).eval()  # eval: no dropout, so both paths see one student function
    online = ClipDataset(index, [tiny_frames / "clips", tiny_frames / "enhanced" / "clips"], "train")
    ids = online.index["clip_id"].astype(str).tolist()
    path = tmp_path / "teacher_logits.pt"
    save_teacher_logits(path, compute_teacher_logits(teacher, online.views[1], batch_size=4), ids)
    dark = ClipDataset(index, [tiny_frames / "clips"], "train")
    losses = [_batch_loss(KDConfig(teacher_logits="online"), target_source(KDConfig(teacher_logits="online"),
                                                                          teacher=teacher), online, student),
              _batch_loss(KDConfig(), target_source(KDConfig(), logits=path), dark, student)]
    assert flip_mask(6, torch.Generator().manual_seed(5)).any()  # the batch really mixes flipped clips
    assert losses[0].item() > 0
    torch.testing.assert_close(losses[0], losses[1], rtol=1e-5, atol=1e-6)


def test_cached_logit_cache_missing_clip_is_one_line_error(tmp_path):
    path = tmp_path / "t.pt"
    save_teacher_logits(path, torch.zeros(1, 2, 3), ["a"])
    with pytest.raises(ValueError, match="no cached logits for 1 clips"):
        load_teacher_logits(path, ["a", "b"])


def test_student_trains_from_cached_logits(tiny_frames, tmp_path):
    index, _ = read_index(tiny_frames)
    teacher = build_model("tiny3d", 3)
    train = ClipDataset(index, [tiny_frames / "enhanced" / "clips"], "train")
    path = tmp_path / "tl.pt"
    save_teacher_logits(path, compute_teacher_logits(teacher, train.views[0]), train.index["clip_id"].tolist())
    model, res = _train(tiny_frames, _cfg(epochs=1), kd=KDConfig(), teacher_logits=path)
    assert len(res.history) == 1 and res.history[0]["train_loss"] > 0


@pytest.mark.parametrize("schedule", ["onecycle", "cosine", "step"])
def test_schedules_warm_up_and_decay(schedule):
    cfg = _cfg(epochs=4, schedule=schedule, warmup_epochs=1.0, step_size=2, step_gamma=0.1, optimizer="sgd")
    opt = build_optimizer(torch.nn.Linear(2, 2), cfg)
    sched = build_scheduler(opt, cfg, steps_per_epoch=5)
    lrs = []
    for _ in range(20):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] < max(lrs), "no warm-up"
    assert lrs[-1] < 0.2 * max(lrs), "no decay"


def test_bad_choice_is_one_line_error():
    with pytest.raises(ValueError, match="train.optimizer"):
        build_optimizer(torch.nn.Linear(2, 2), _cfg(optimizer="adam"))


def test_checkpoint_bytes_do_not_depend_on_the_file_name_or_process(tmp_path):
    """dvc.lock records the checkpoint's md5: the same weights must give the same bytes whatever the path or pid."""
    import subprocess
    import sys

    from dlkdd.checkpoint import save_model
    from dlkdd.models.build import build_model

    torch.manual_seed(0)
    model = build_model("tiny3d", 3, width=8)
    save_model(tmp_path / "a.pt", model, "tiny3d", ["a", "b", "c"], 4, 32, width=8)
    save_model(tmp_path / "much_longer_name.pt", model, "tiny3d", ["a", "b", "c"], 4, 32, width=8)
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "much_longer_name.pt").read_bytes()
    code = ("import torch, sys; from dlkdd.torch_file import save_atomic; "
            f"save_atomic(torch.load(r'{tmp_path / 'a.pt'}', weights_only=True), r'{tmp_path / 'c.pt'}')")
    subprocess.run([sys.executable, "-c", code], check=True)  # another process: another pid in the temp name
    assert (tmp_path / "c.pt").read_bytes() == (tmp_path / "a.pt").read_bytes()


class Recorder(torch.nn.Module):
    """A network that keeps every input it is given (the views the trainer really feeds it)."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net, self.inputs = net, []

    def forward(self, x):
        self.inputs.append(x.detach().clone())
        return self.net(x)


def _one_online_epoch(tiny_frames, mixup, seed=11):
    """One online-KD epoch (fixed batch order) with recording student and teacher; returns both and the generator."""
    from dlkdd.distill.trainer import train_one_epoch

    torch.manual_seed(0)
    index, _ = read_index(tiny_frames)
    ds = ClipDataset(index, [tiny_frames / "clips", tiny_frames / "enhanced" / "clips"], "train")
    student, teacher = Recorder(build_model("tiny3d", 3, width=8)), Recorder(build_model("tiny3d", 3, width=8).eval())
    opt = build_optimizer(student, _cfg())
    loader = DataLoader(ds, batch_size=3)  # no shuffle: the generator only draws flips (and mixup)
    gen = torch.Generator().manual_seed(seed)
    kd = KDConfig(teacher_logits="online", mixup=mixup)
    criterion = build_criterion(kd, target_source(kd, teacher=teacher), student, 0.0)
    train_one_epoch(student, criterion, loader, opt, build_scheduler(opt, _cfg(), len(loader)), gen, hflip=True)
    return ds, loader, student, teacher, gen


def test_mixup_gives_student_and_teacher_views_exactly_the_same_mixing(tiny_frames):
    """Function matching: after the flip, one λ and one pairing per batch mix the dark and the enhanced view alike."""
    from dlkdd.data.dataset import to_float
    from dlkdd.distill.kd import draw_mixup, mix

    ds, loader, student, teacher, _ = _one_online_epoch(tiny_frames, mixup=0.4)
    gen = torch.Generator().manual_seed(11)  # replay the trainer's draws: flips, then λ and pairs, per batch
    lams = []
    for b, (x, x_t, y) in enumerate(loader):
        flip = flip_mask(len(y), gen)
        lam, perm = draw_mixup(len(y), 0.4, gen)
        lams.append(lam)
        x, x_t = flip_clips(x, flip), flip_clips(x_t, flip)
        torch.testing.assert_close(student.inputs[b], mix(to_float(x), lam, perm), rtol=0, atol=0)
        torch.testing.assert_close(teacher.inputs[b], mix(to_float(x_t), lam, perm), rtol=0, atol=0)
        assert not torch.equal(student.inputs[b], to_float(x))  # really mixed
    assert all(0 < lam < 1 for lam in lams) and len(set(lams)) == len(lams)


def test_mixup_zero_leaves_the_loop_and_its_random_stream_unchanged(tiny_frames):
    from dlkdd.data.dataset import to_float

    ds, loader, student, teacher, gen = _one_online_epoch(tiny_frames, mixup=0.0)
    replay = torch.Generator().manual_seed(11)
    for b, (x, x_t, y) in enumerate(loader):
        flip = flip_mask(len(y), replay)
        x, x_t = flip_clips(x, flip), flip_clips(x_t, flip)
        assert torch.equal(student.inputs[b], to_float(x)) and torch.equal(teacher.inputs[b], to_float(x_t))
    assert torch.equal(gen.get_state(), replay.get_state()), "mixup=0 drew from the training generator"


def test_mixup_with_cached_logits_is_one_line_error(tiny_frames):
    index, classes = read_index(tiny_frames)
    logits = torch.zeros(int((index.split == "train").sum()), 2, len(classes))
    with pytest.raises(ValueError, match=r"^kd.mixup=0.2 needs the online teacher .*set kd.teacher_logits=online$"):
        _train(tiny_frames, _cfg(epochs=1), kd=KDConfig(mixup=0.2), teacher_logits=logits)


def test_online_mixup_student_trains(tiny_frames):
    teacher = build_model("tiny3d", 3, width=8)
    _, res = _train(tiny_frames, _cfg(epochs=2), kd=KDConfig(mixup=0.4, teacher_logits="online"), teacher=teacher)
    assert len(res.history) == 2 and all(r["train_loss"] > 0 and r["clips_per_s"] > 0 for r in res.history)


def test_dual_light_cached_and_online_give_the_same_loss(tiny_frames, tmp_path):
    """The cached rows of teacher (enhanced) and baseline (dark), fused at T at train time, are the online
    two-stream teacher's target on the same flipped batch."""
    torch.manual_seed(0)
    index, _ = read_index(tiny_frames)
    teacher, baseline = build_model("tiny3d", 3).eval(), build_model("tiny3d", 3, width=8).eval()
    student = build_model("tiny3d", 3).eval()
    online = ClipDataset(index, [tiny_frames / "clips", tiny_frames / "enhanced" / "clips"], "train")
    ids = online.index["clip_id"].astype(str).tolist()
    path = tmp_path / "teacher_logits.pt"
    save_teacher_logits(path, compute_teacher_logits(teacher, online.views[1]), ids,
                        baseline_logits=compute_teacher_logits(baseline, online.views[0]))
    dark = ClipDataset(index, [tiny_frames / "clips"], "train")
    targets = load_kd_targets(path, ids, "dual_light", 3.0)  # what train_classifier distils from (kd.teacher)
    assert not torch.allclose(targets, load_teacher_logits(path, ids))  # not the enhanced teacher's alone
    on, cached = (KDConfig(teacher="dual_light", temperature=3.0, teacher_logits=t) for t in ("online", "cached"))
    losses = [_batch_loss(on, target_source(on, teacher=teacher, baseline=baseline), online, student),
              _batch_loss(cached, target_source(cached, logits=path), dark, student)]
    torch.testing.assert_close(losses[0], losses[1], rtol=1e-5, atol=1e-6)


def test_kd_at_alpha_zero_trains_exactly_the_no_kd_baseline(tiny_frames):
    """No KD is the same loop with a plain cross-entropy criterion: a student at kd.alpha=0 (cached rows ignored by
    the loss) draws the same flips and dropout and ends with the baseline's very weights."""
    index, classes = read_index(tiny_frames)
    logits = torch.randn(int((index.split == "train").sum()), 2, len(classes))
    baseline, _ = _train(tiny_frames, _cfg(epochs=1, label_smoothing=0.1))
    student, _ = _train(tiny_frames, _cfg(epochs=1, label_smoothing=0.1), kd=KDConfig(alpha=0.0),
                        teacher_logits=logits)
    for k, v in baseline.state_dict().items():
        assert torch.equal(v, student.state_dict()[k]), k


def test_dual_light_cache_without_baseline_rows_is_one_line_error(tiny_frames, tmp_path):
    index, classes = read_index(tiny_frames)
    ids = index[index.split == "train"].clip_id.astype(str).tolist()
    path = tmp_path / "t.pt"
    save_teacher_logits(path, torch.zeros(len(ids), 2, len(classes)), ids)
    with pytest.raises(ValueError, match="no 'baseline_logits'.*re-run the teacher_logits stage"):
        _train(tiny_frames, _cfg(epochs=1), kd=KDConfig(teacher="dual_light"), teacher_logits=path)


def _stage_repo(tmp_path, tiny_frames, kd: dict):
    """A copy of the stages + library with params.yaml's kd overridden, the tiny frame cache, a teacher and a
    baseline."""
    import shutil

    from conftest import copy_pipeline

    from dlkdd.checkpoint import save_model

    d = copy_pipeline(tmp_path / "repo", {"kd": kd, "train": {"epochs": 1, "batch_size": 2, "threads": 1,
                                                                "resume_dir": ""}})
    shutil.copytree(tiny_frames, d / "frames")
    torch.manual_seed(0)
    for name, width in (("teacher", 24), ("baseline", 12)):
        save_model(d / f"{name}.pt", build_model("tiny3d", 3, width=width), "tiny3d", ["Drink", "Jump", "Sit"], 4, 32,
                   width=width)
    return d


def _run_stage(d, script, *args):
    import subprocess
    import sys

    return subprocess.run([sys.executable, f"stages/{script}.py", *args], cwd=d, capture_output=True, text=True)


TL_ARGS = ("--frames", "frames", "--clips", "frames/enhanced/clips", "--teacher", "teacher.pt",
           "--dark-clips", "frames/clips", "--baseline", "baseline.pt", "--out", "tl.pt")


@pytest.mark.parametrize("teacher", ["enhanced", "dual_light"])
def test_teacher_logits_stage_stores_baseline_rows_only_for_dual_light(tiny_frames, tmp_path, teacher):
    from dlkdd.checkpoint import load_model

    d = _stage_repo(tmp_path, tiny_frames, {"teacher": teacher})
    r = _run_stage(d, "teacher_logits", *TL_ARGS)
    assert r.returncode == 0, r.stderr[-2000:]
    cache = torch.load(d / "tl.pt", weights_only=True)
    if teacher == "enhanced":  # the default: exactly the keys (and so the bytes) of the cache before kd.teacher
        assert list(cache) == ["logits", "clip_ids", "arch"]
        return
    index, _ = read_index(d / "frames")
    dark = ClipDataset(index, [d / "frames" / "clips"], "train")
    assert cache["clip_ids"] == dark.index["clip_id"].astype(str).tolist()
    expected = compute_teacher_logits(load_model(d / "baseline.pt")[0], dark.views[0])
    assert cache["baseline_logits"].shape == cache["logits"].shape == (len(dark), 2, 3)
    torch.testing.assert_close(cache["baseline_logits"], expected)


def test_train_student_stage_with_mixup_and_cached_logits_stops_with_one_line(tiny_frames, tmp_path):
    d = _stage_repo(tmp_path, tiny_frames, {"mixup": 0.2})
    assert _run_stage(d, "teacher_logits", *TL_ARGS).returncode == 0
    r = _run_stage(d, "train_student", "--frames", "frames", "--clips", "frames/clips", "--teacher-clips",
                   "frames/enhanced/clips", "--teacher", "teacher.pt", "--baseline", "baseline.pt",
                   "--teacher-logits", "tl.pt", "--out", "student.pt", "--history", "h.csv")
    lines = [line for line in r.stderr.splitlines() if line.strip() and "%|" not in line]
    assert r.returncode != 0 and not (d / "student.pt").exists()
    assert lines == ["error: kd.mixup=0.2 needs the online teacher (cached logits are per clip, not per mixed pair): "
                     "set kd.teacher_logits=online"], r.stderr[-2000:]


def test_train_student_stage_online_dual_light_mixup_with_its_own_epochs(tiny_frames, tmp_path):
    """All levers at once through the stage: kd.epochs=2 over train.epochs=1, the two-stream teacher run online,
    mixup and a hint on the enhanced teacher's features; the checkpoint records the levers and the schedule the student
    really had."""
    import pandas as pd

    kd = {"teacher": "dual_light", "teacher_logits": "online", "epochs": 2, "mixup": 0.3, "hint": 0.5}
    d = _stage_repo(tmp_path, tiny_frames, kd)
    r = _run_stage(d, "train_student", "--frames", "frames", "--clips", "frames/clips", "--teacher-clips",
                   "frames/enhanced/clips", "--teacher", "teacher.pt", "--baseline", "baseline.pt",
                   "--teacher-logits", "absent.pt", "--out", "student.pt", "--history", "h.csv")
    assert r.returncode == 0, r.stderr[-2000:]
    history = pd.read_csv(d / "h.csv")
    assert history["epoch"].tolist() == [1, 2] and "clips_per_s" not in history  # the curves carry no timings
    timing = json.loads((d / ".timings/student.pt.json").read_text())  # the throughput goes beside the model
    assert timing["train_clips_per_s"] > 0 and timing["epochs"] == 2
    ckpt = torch.load(d / "student.pt", weights_only=True)
    assert ckpt["train"]["epochs"] == 2 and {k: ckpt["kd"][k] for k in kd} == kd


def test_hint_tap_takes_the_pooled_last_block_features_and_the_loss_is_mse_of_the_projection():
    from dlkdd.distill.hint import FeatureTap, HintLoss, feature_dim

    torch.manual_seed(0)
    model = build_model("tiny3d", 3, width=8).eval()
    tap, x = FeatureTap(model), torch.rand(2, 3, 4, 32, 32)
    model(x)
    net = model.backbone
    torch.testing.assert_close(tap.features, net.pool(net.features((x - model.mean) / model.std)).flatten(1))
    assert feature_dim(model) == 48 == tap.features.shape[1]
    loss = HintLoss(2, 3, weight=0.5)
    with torch.no_grad():
        loss.proj.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
        loss.proj.bias.zero_()
    fs, ft = torch.tensor([[1.0, 2.0]]), torch.tensor([[0.0, 2.0, 1.0]])  # proj(fs) = [1, 2, 3]: errors 1, 0, 2
    assert loss(fs, ft).item() == pytest.approx(0.5 * (1 + 0 + 4) / 3)


def test_online_hint_changes_training_and_resumes_after_kill_with_its_projection(tiny_frames, tmp_path):
    teacher = build_model("tiny3d", 3, width=8)
    kd = KDConfig(teacher_logits="online", hint=1.0)
    cfg = _cfg(epochs=2)
    full, full_res = _train(tiny_frames, cfg, kd=kd, teacher=teacher)
    plain, _ = _train(tiny_frames, cfg, kd=KDConfig(teacher_logits="online"), teacher=teacher)
    assert any(not torch.equal(a, b) for a, b in zip(full.state_dict().values(), plain.state_dict().values()))
    ckpt = tmp_path / "student.pt"
    with pytest.raises(Killed):
        _train(tiny_frames, cfg, resume=ckpt, kill_after=1, kd=kd, teacher=teacher)
    assert "hint" in torch.load(ckpt, weights_only=True)  # the projection is part of the training state
    resumed, res = _train(tiny_frames, cfg, resume=ckpt, kd=kd, teacher=teacher)
    assert [r["train_loss"] for r in res.history] == [r["train_loss"] for r in full_res.history]
    for k, v in full.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k


def test_hint_without_the_online_teacher_is_one_line_error(tiny_frames):
    index, classes = read_index(tiny_frames)
    logits = torch.zeros(int((index.split == "train").sum()), 2, len(classes))
    with pytest.raises(ValueError, match=r"^kd.hint=0.5 needs the online teacher .*set kd.teacher_logits=online$"):
        _train(tiny_frames, _cfg(epochs=1), kd=KDConfig(hint=0.5), teacher_logits=logits)

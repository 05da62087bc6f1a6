"""The synthetic dark-footage generator: deterministic, dark, decodable, motion-defined."""
from dataclasses import asdict

import numpy as np
import pandas as pd
import pytest
from conftest import tiny_generate_config

from dlkdd.data.synthetic import action_pose, darken, generate_dataset, render_clip
from dlkdd.data.video import read_video


def test_manifest_and_clips_decode(tiny_dataset):
    m = pd.read_csv(tiny_dataset)
    assert list(m.columns) == ["path", "label", "class_name", "split", "video_id"]
    assert len(m) == 12 and m.groupby("split").size().to_dict() == {"test": 3, "train": 6, "val": 3}
    for rel in m["path"]:
        frames, fps = read_video(tiny_dataset.parent / rel)
        assert frames.shape == (10, 48, 64, 3) and frames.dtype == np.uint8 and fps == pytest.approx(15.0)


def test_footage_is_dark(tiny_dataset):
    m = pd.read_csv(tiny_dataset)
    for rel in m["path"]:
        frames, _ = read_video(tiny_dataset.parent / rel)
        assert 2 <= frames.mean() <= 40  # luma_min..luma_max, plus codec and noise slack


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    cfg = tiny_generate_config(classes=["Wave"], train_per_class=1, val_per_class=0, test_per_class=0)
    a = generate_dataset(tmp_path / "a", cfg, seed=3)
    b = generate_dataset(tmp_path / "b", cfg, seed=3)
    c = generate_dataset(tmp_path / "c", cfg, seed=4)
    rel = pd.read_csv(a)["path"][0]
    assert (a.parent / rel).read_bytes() == (b.parent / rel).read_bytes()
    assert (a.parent / rel).read_bytes() != (c.parent / rel).read_bytes()


def test_mp4_container_writes_and_decodes(tmp_path):
    cfg = tiny_generate_config(classes=["Run"], train_per_class=1, val_per_class=0, test_per_class=0, container="mp4")
    m = generate_dataset(tmp_path, cfg, seed=0)
    frames, _ = read_video(m.parent / pd.read_csv(m)["path"][0])
    assert frames.shape[0] == 10


def test_sit_and_stand_are_time_reversals():
    # the same single pose occurs in both: only the direction of motion tells them apart
    for s in (0.1, 0.5, 0.9):
        sit, stand = asdict(action_pose("Sit", s, 0.0)), asdict(action_pose("Stand", 1 - s, 0.0))
        assert sit == pytest.approx(stand, abs=1e-9)
    assert action_pose("Sit", 0.0, 0.0) != action_pose("Sit", 1.0, 0.0)


def test_darken_models_a_noisy_low_light_sensor():
    cfg = tiny_generate_config(luma_min=10.0, luma_max=10.0)
    rng = np.random.default_rng(0)
    clean = render_clip("Walk", rng, cfg)
    dark = darken(clean, rng, cfg)
    assert dark.dtype == np.uint8 and dark.shape == clean.shape
    assert dark.mean() == pytest.approx(10.0, abs=1.0)
    # shot + read noise: consecutive frames of a mostly static scene differ
    assert np.abs(dark[1].astype(int) - dark[0].astype(int)).mean() > 1.0


def _tree(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_worker_processes_write_the_serial_bytes_in_the_serial_order(tmp_path, capsys):
    # 3 classes x 5 clips rendered by 3 processes: every clip and the manifest (its row order included) are the bytes
    # the serial path writes, so the data's md5s in dvc.lock do not depend on how many cores rendered it
    cfg = tiny_generate_config(train_per_class=3, num_frames=6)
    serial = generate_dataset(tmp_path / "serial", cfg, seed=11, workers=1)
    capsys.readouterr()
    parallel = generate_dataset(tmp_path / "parallel", cfg, seed=11, workers=3)
    bar = capsys.readouterr().err
    assert "generate" in bar and "15/15" in bar  # the progress bar still counts every clip
    a, b = _tree(serial.parent), _tree(parallel.parent)
    assert len(a) == 16 and a.keys() == b.keys()
    assert [k for k in a if a[k] != b[k]] == []
    rows = pd.read_csv(parallel)
    assert list(rows["video_id"][:5]) == ["Drink_train_000", "Drink_train_001", "Drink_train_002", "Drink_val_000",
                                          "Drink_test_000"]
    assert not list((tmp_path / "parallel").rglob("*.part.*"))  # every clip was renamed into place

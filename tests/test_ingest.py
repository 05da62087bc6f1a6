"""Frames on real-world footage: every bad input quarantined with its reason, the rest decoded once, in order."""
import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import yaml

from dlkdd.config import GenerateConfig
from dlkdd.data.frame_index import read_index
from dlkdd.data.frames import SamplingSpec, build_frame_cache
from dlkdd.data.importers import read_csv_manifest, write_import
from dlkdd.data.video import open_video, read_video, sample_clips
from footage import corrupt, set_avi_frame_count, truncate, write_clip

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ["run", "sit"]


def tree_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def mixed(tmp_path) -> tuple[Path, Path]:
    """Good clips in every split + one of each bad kind, listed in a plain CSV manifest."""
    root = tmp_path / "footage"
    rows = []
    for ci, cls in enumerate(CLASSES):
        for split, n in (("train", 3), ("val", 1), ("test", 1)):
            for k in range(n):
                rel = f"{cls}/{split}_{k}.{['avi', 'mp4', 'mkv'][k % 3]}"
                write_clip(root / rel, frames=10, seed=len(rows))  # distinct bytes: a copy is a duplicate
                rows.append((rel, cls, split))
    write_clip(root / "run/corrupt.avi", frames=40)
    corrupt(root / "run/corrupt.avi")
    (root / "run/empty.avi").write_bytes(b"")
    write_clip(root / "sit/truncated.avi", frames=40)
    truncate(root / "sit/truncated.avi", 0.3)
    (root / "sit/notes.avi").write_text("this is a text file renamed .avi\n" * 20)
    write_clip(tmp_path / "outside.avi", frames=10)  # exists, but outside the dataset root
    rows += [("run/corrupt.avi", "run", "train"), ("run/empty.avi", "run", "train"),
             ("sit/truncated.avi", "sit", "train"), ("sit/notes.avi", "sit", "test"),
             ("run/train_0.avi", "jog", "train"),  # label not in the class list
             ("../outside.avi", "run", "train"),  # escapes the root
             ("sit/never_recorded.avi", "sit", "val")]  # missing
    (tmp_path / "list.csv").write_text("path,label,split\n" + "".join(f"{p},{lab},{s}\n" for p, lab, s in rows))
    (tmp_path / "classes.txt").write_text("run\nsit\n")
    return root, tmp_path


def test_every_bad_kind_is_quarantined_with_its_reason(mixed):
    root, base = mixed
    before = tree_digest(root)
    imp = write_import(read_csv_manifest(base / "list.csv", base / "classes.txt"), root, base / "m")
    q_import = pd.read_csv(imp.quarantine).set_index("path")
    assert q_import["kind"].to_dict() == {"run/train_0.avi": "bad_label", "../outside.avi": "escapes_root",
                                          "sit/never_recorded.avi": "missing"}
    assert "'jog' is not in the class list" in q_import.loc["run/train_0.avi", "reason"]
    manifest = pd.read_csv(imp.manifest)
    res = build_frame_cache(manifest, root, base / "frames", 4, 16, imp.classes,
                            spec=SamplingSpec(min_decoded_fraction=0.9))
    q = pd.read_csv(base / "frames/quarantine.csv").set_index("path")
    assert q["kind"].to_dict() == {"run/corrupt.avi": "unreadable", "run/empty.avi": "empty",
                                   "sit/truncated.avi": "incomplete", "sit/notes.avi": "not_video"}
    assert re.search(r"decoded \d of the 40 frames", q.loc["sit/truncated.avi", "reason"])
    assert "0 bytes" in q.loc["run/empty.avi", "reason"] and "not a video file" in q.loc["sit/notes.avi", "reason"]
    index, _ = read_index(base / "frames")
    assert (res.ready, res.quarantined) == (10, 4) and len(index) == 10
    assert not set(index["path"]) & set(q.index)
    assert res.summary() == f"10 clips ready, 4 quarantined: see {base / 'frames' / 'quarantine.csv'}"
    assert tree_digest(root) == before  # nothing in the source folder is modified or deleted


def test_frames_checks_hand_written_manifest_rows(mixed):
    root, base = mixed
    m = pd.DataFrame([{"path": "run/train_0.avi", "label": 0, "class_name": "run", "split": "train", "video_id": "a"},
                      {"path": "../outside.avi", "label": 0, "class_name": "run", "split": "train", "video_id": "b"},
                      {"path": "sit/train_0.avi", "label": 7, "class_name": "x", "split": "train", "video_id": "c"}])
    res = build_frame_cache(m, root, base / "f", 4, 16, CLASSES)
    q = pd.read_csv(base / "f/quarantine.csv")
    assert res.ready == 1 and q["kind"].tolist() == ["escapes_root", "bad_label"]


def _stage(base: Path, manifest: Path, root: Path, frames: dict) -> subprocess.CompletedProcess:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["frames"].update(frames)
    (base / "params.yaml").write_text(yaml.safe_dump(params))
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT / 'stages'}"}
    return subprocess.run([sys.executable, str(ROOT / "stages/frames.py"), "--manifest", str(manifest), "--root",
                           str(root), "--out", str(base / "out")], cwd=base, env=env, capture_output=True, text=True,
                          errors="replace")


def test_frames_stage_summary_and_clear_stops(mixed):
    root, base = mixed
    imp = write_import(read_csv_manifest(base / "list.csv", base / "classes.txt"), root, base / "m")
    r = _stage(base, imp.manifest, root, {"num_frames": 4, "size": 16, "workers": 2})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == f"10 clips ready, 4 quarantined: see {base / 'out/quarantine.csv'}"
    good = pd.read_csv(imp.manifest)
    # everything bad: one clear line, non-zero exit, no traceback
    good.assign(path="sit/notes.avi").to_csv(base / "bad.csv", index=False)
    r = _stage(base, base / "bad.csv", root, {"num_frames": 4, "size": 16})
    assert r.returncode != 0 and "no usable clips" in r.stderr and "Traceback" not in r.stderr
    # a split left with no clips: every val file is broken
    good.assign(path=good.path.where(good.split != "val", "run/empty.avi")).to_csv(base / "noval.csv", index=False)
    r = _stage(base, base / "noval.csv", root, {"num_frames": 4, "size": 16})
    assert r.returncode != 0 and "['val'] have no usable clips" in r.stderr and "Traceback" not in r.stderr
    r = _stage(base, imp.manifest, root, {"train_sampling": "sometimes"})
    assert r.returncode != 0 and "frames.train_sampling" in r.stderr


def test_decoding_survives_odd_real_files(tmp_path):
    odd = write_clip(tmp_path / "wide.avi", frames=6, width=96, height=24)  # 4:1 aspect
    gray = write_clip(tmp_path / "gray.avi", frames=6, width=32, height=48, gray=True)
    short = write_clip(tmp_path / "short.mkv", frames=2)
    liar = write_clip(tmp_path / "liar.avi", frames=30)
    set_avi_frame_count(liar, 5)  # header says 5 frames, there are 30
    assert read_video(odd)[0].shape == (6, 24, 96, 3)
    g, _ = read_video(gray)
    assert g.shape == (6, 48, 32, 3) and (g[..., 0] == g[..., 1]).all()
    frames, fps = read_video(liar)
    assert open_video(liar)[2] == 5 and len(frames) == 30 and fps == 15.0  # the real count wins
    m = pd.DataFrame([{"path": p.name, "label": 0, "class_name": "a", "split": "test", "video_id": p.stem}
                      for p in (odd, gray, short, liar)])
    res = build_frame_cache(m, tmp_path, tmp_path / "f", 8, 16, ["a"], spec=SamplingSpec(min_decoded_fraction=0.9))
    assert (res.ready, res.quarantined) == (4, 0)
    assert np.load(tmp_path / "f/clips/short.npy").shape == (8, 16, 16, 3)  # 2 frames padded to 8 in order
    stats = pd.read_csv(tmp_path / "f/stats.csv").set_index("clip_id")
    assert stats.loc["liar", "frames"] == 30 and stats.loc["liar", "reported_frames"] == 5
    assert stats.loc["wide", "width"] == 96 and stats.loc["wide", "duration_s"] == pytest.approx(6 / 15)


def test_decode_converts_only_planned_frames_and_survives_wrong_counts(tmp_path):
    from dlkdd.data.clipstats import clip_stats
    from dlkdd.data.untrusted import decode_for_cache

    clip = write_clip(tmp_path / "v.avi", frames=30, width=96, height=72)
    full, fps = read_video(clip)  # every frame, RGB
    planned: list[int] = []

    def plan(n: int) -> list[np.ndarray]:
        planned.append(n)
        return sample_clips(n, 8, 2)

    for count in (30, 0, 7, 200):  # the header's frame count: true, missing, too low, too high
        set_avi_frame_count(clip, count)
        planned.clear()
        clips, stats, _ = decode_for_cache(clip, plan)
        assert planned[-1] == 30 and stats["frames"] == 30, count  # the clips are planned on the real count
        for idx, frames in zip(sample_clips(30, 8, 2), clips, strict=True):
            for i, f in zip(idx, frames, strict=True):
                assert np.array_equal(cv2.cvtColor(f, cv2.COLOR_BGR2RGB), full[i]), count
    whole = clip_stats(full, fps)  # kept frames only (sampled + the next ones) vs every frame
    assert stats["luma_mean"] == pytest.approx(whole["luma_mean"], abs=0.5)
    assert stats["noise"] == pytest.approx(whole["noise"], rel=0.1)


def test_sampling_policies():
    assert sample_clips(32, 4, 1)[0].tolist() == [4, 12, 20, 28]  # segment centres
    three = sample_clips(32, 4, 3)
    assert [c.tolist() for c in three] == [[1, 9, 17, 25], [4, 12, 20, 28], [6, 14, 22, 30]]
    rng = np.random.default_rng(0)
    rand = sample_clips(32, 4, 1, "random", rng=rng)[0]
    assert all(8 * i <= x < 8 * (i + 1) for i, x in enumerate(rand))  # one random frame inside each segment
    assert sample_clips(5, 4, 1, stride=2)[0].tolist() == [0, 2, 4, 1]  # window longer than the clip loops
    assert sample_clips(40, 4, 2, stride=2)[1].tolist()[1] - sample_clips(40, 4, 2, stride=2)[1].tolist()[0] == 2


def test_parallel_clips_per_video_and_random_train(tiny_dataset, tmp_path):
    m = pd.read_csv(tiny_dataset)
    spec = SamplingSpec(clips_per_video=3, train_sampling="random", seed=5)
    one = build_frame_cache(m, tiny_dataset.parent, tmp_path / "w1", 4, 16, ["Drink", "Jump", "Sit"], 1, spec)
    two = build_frame_cache(m, tiny_dataset.parent, tmp_path / "w2", 4, 16, ["Drink", "Jump", "Sit"], 2, spec)
    i1, i2 = pd.read_csv(tmp_path / "w1/index.csv"), pd.read_csv(tmp_path / "w2/index.csv")
    assert i1.equals(i2) and one.ready == two.ready == 6 + 3 * 3 + 3 * 3  # 6 train + 3 val/test videos x 3 clips
    for cid in i1.clip_id:  # same bytes whatever the worker count (random train offsets are seeded per video)
        assert np.array_equal(np.load(tmp_path / f"w1/clips/{cid}.npy"), np.load(tmp_path / f"w2/clips/{cid}.npy"))
    test = i1[i1.split == "test"]
    assert test.groupby("video_id").size().eq(3).all() and test.clip_id.str.contains("__").all()
    assert not i1[i1.split == "train"].clip_id.str.contains("__").any()
    assert "clips ready from 12 videos" in one.summary()
    # defaults keep the embedded pipeline's cache byte-identical: one clip per video at the segment centres
    base = build_frame_cache(m, tiny_dataset.parent, tmp_path / "d", 4, 16, ["Drink", "Jump", "Sit"])
    first = m.video_id[0]
    frames, _ = read_video(tiny_dataset.parent / m.path[0])
    from dlkdd.data.video import resize_frames, uniform_indices
    assert np.array_equal(np.load(tmp_path / f"d/clips/{first}.npy"), resize_frames(frames[uniform_indices(10, 4)], 16))
    assert base.ready == 12
    shutil.rmtree(tmp_path / "w1")


def test_histogram_stats_equal_numpy_reference():
    from dlkdd.data.clipstats import clip_stats, luma

    v = np.random.default_rng(1).integers(0, 60, (5, 7, 9, 3), dtype=np.uint8)
    exact = luma(v)
    y = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in v]).astype(np.float64)
    assert np.abs(y - exact).max() <= 0.51  # OpenCV's integer grey is the BT.601 luma, rounded
    s = clip_stats(v, 15.0)
    ref = {"luma_mean": y.mean(), "luma_p05": np.percentile(y, 5), "luma_p50": np.median(y),
           "luma_p95": np.percentile(y, 95), "dark_fraction": (y < 16).mean(),
           "noise": _trimmed_mean(np.abs(np.diff(y, axis=0)).ravel(), 0.9) * np.sqrt(np.pi) / 2}
    for k, want in ref.items():
        assert s[k] == pytest.approx(float(want), abs=1e-4), k


def test_large_frames_use_the_pixel_grid_and_stay_close_to_full_resolution(tmp_path):
    from dlkdd.data.clipstats import clip_stats, grid_step
    from dlkdd.data.synthetic import generate_dataset

    cfg = GenerateConfig(classes=["Wave"], train_per_class=1, val_per_class=0, test_per_class=0)
    manifest = generate_dataset(tmp_path, cfg, seed=3)  # one real dark clip at the default 160x120
    v, fps = read_video(manifest.parent / pd.read_csv(manifest).path[0])
    assert grid_step(120, 160) == 2 and grid_step(240, 320) == 4 and grid_step(1080, 1920) == 22
    assert grid_step(48, 64) == 1  # small frames are read whole
    for h, w in ((121, 161), (240, 320), (1081, 1919)):  # the shrink picks exactly frame[::k, ::k]
        f = np.random.default_rng(h).integers(0, 256, (1, h, w, 3), dtype=np.uint8)
        k = grid_step(h, w)
        assert clip_stats(f, 0.0) | {"height": 0, "width": 0} == (
            clip_stats(np.ascontiguousarray(f[:, :h // k * k:k, :w // k * k:k]), 0.0) | {"height": 0, "width": 0})
    grid = clip_stats(v, fps)
    assert grid == clip_stats(np.ascontiguousarray(v[:, ::2, ::2]), fps) | {"height": 120, "width": 160}
    y = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in v]).astype(np.float64)  # every pixel
    full = {"luma_mean": y.mean(), "luma_p05": np.percentile(y, 5), "luma_p50": np.median(y),
            "luma_p95": np.percentile(y, 95), "dark_fraction": (y < 16).mean(),
            "noise": _trimmed_mean(np.abs(np.diff(y, axis=0)).ravel(), 0.9) * np.sqrt(np.pi) / 2}
    assert grid["luma_mean"] == pytest.approx(full["luma_mean"], abs=0.2)
    for k in ("luma_p05", "luma_p50", "luma_p95"):
        assert abs(grid[k] - full[k]) <= 1.0, k
    assert grid["dark_fraction"] == pytest.approx(full["dark_fraction"], abs=0.01)
    assert grid["noise"] == pytest.approx(full["noise"], rel=0.05)


def _trimmed_mean(values: np.ndarray, keep: float) -> float:
    v = np.sort(values)
    k = keep * len(v)
    whole = int(np.floor(k))
    return (v[:whole].sum() + (k - whole) * (v[whole] if whole < len(v) else 0)) / k


@pytest.mark.parametrize("sigma", [0.7, 2.0, 5.0])
def test_noise_estimate_recovers_sensor_noise_and_ignores_a_mover(sigma):
    from dlkdd.data.clipstats import clip_stats

    rng = np.random.default_rng(0)
    scene = np.full((12, 48, 64, 3), 20.0)
    for t in range(12):  # a bright block moving across 5% of the frame: must barely count
        scene[t, 10:20, 5 * t : 5 * t + 8] = 200.0
    frames = np.clip(np.rint(scene + rng.normal(0, sigma, scene.shape[:3])[..., None]), 0, 255).astype(np.uint8)
    assert clip_stats(frames, 15.0)["noise"] == pytest.approx(sigma, rel=0.25)
    frozen = np.repeat(frames[:1], 12, axis=0)
    assert clip_stats(frozen, 15.0)["noise"] == 0.0

"""Frame cache and enhancement produce the documented shapes and dtypes."""
import numpy as np
import pandas as pd
import pytest

from dlkdd.config import EnhanceConfig
from dlkdd.data.frame_index import read_classes, read_index
from dlkdd.data.frames import build_frame_cache
from dlkdd.data.video import VideoDecodeError, read_video, uniform_indices
from dlkdd.enhance import enhance_clip
from dlkdd.enhance.gamma import gamma_correct, gamma_lut


def test_uniform_indices_segments_and_short_clips():
    assert uniform_indices(32, 8).tolist() == [2, 6, 10, 14, 18, 22, 26, 30]
    assert uniform_indices(3, 8).tolist() == [0, 0, 0, 1, 1, 2, 2, 2]  # short clip: frames repeat, in order
    assert len(uniform_indices(1, 4)) == 4


def test_frame_cache_layout(tiny_dataset, tmp_path):
    m = pd.read_csv(tiny_dataset)
    res = build_frame_cache(m, tiny_dataset.parent, tmp_path, num_frames=4, size=32, classes=["Drink", "Jump", "Sit"])
    assert (res.ready, res.quarantined) == (12, 0)
    index, classes = read_index(tmp_path)
    assert classes == ["Drink", "Jump", "Sit"] and len(index) == 12
    clip = np.load(tmp_path / "clips" / f"{index.clip_id[0]}.npy")
    assert clip.shape == (4, 32, 32, 3) and clip.dtype == np.uint8
    stats = pd.read_csv(tmp_path / "stats.csv")
    assert len(stats) == 12 and (stats["frames"] == 10).all() and (stats["luma_mean"] < 40).all()


def test_one_classes_reader_for_frames_dirs_and_hand_edited_lists(tiny_dataset, tmp_path):
    """read_index reads classes.txt as the frames stage reads a manifest's: a list saved with CRLF line endings (a
    hand-edited one, then copied into a frames folder) gives the same names, not "Drink\\r"."""
    m = pd.read_csv(tiny_dataset)
    build_frame_cache(m, tiny_dataset.parent, tmp_path, num_frames=4, size=32, classes=["Drink", "Jump", "Sit"])
    (tmp_path / "classes.txt").write_bytes(b"Drink\r\nJump\r\nSit\r\n\r\n")
    assert read_index(tmp_path)[1] == read_classes(tmp_path) == ["Drink", "Jump", "Sit"]


def test_corrupt_clip_is_quarantined_and_rest_goes_on(tiny_dataset, tmp_path):
    m = pd.read_csv(tiny_dataset)
    root = tmp_path / "root"
    root.mkdir()
    for rel in m["path"]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes((tiny_dataset.parent / rel).read_bytes())
    (root / m["path"][0]).write_bytes(b"not a video at all")
    res = build_frame_cache(m, root, tmp_path / "out", 4, 32, ["Drink", "Jump", "Sit"])
    assert (res.ready, res.quarantined) == (11, 1)
    q = pd.read_csv(tmp_path / "out" / "quarantine.csv")
    assert q["path"].tolist() == [m["path"][0]]
    assert "quarantined" in res.summary()


def test_read_video_errors_are_one_line(tmp_path):
    (tmp_path / "empty.avi").write_bytes(b"")
    for p in (tmp_path / "missing.avi", tmp_path / "empty.avi"):
        with pytest.raises(VideoDecodeError) as err:
            read_video(p)
        assert "\n" not in str(err.value) and p.name in str(err.value)


def test_gamma_is_monotone_brightens_and_keeps_shape():
    lut = gamma_lut(0.4)
    assert lut.dtype == np.uint8 and lut[0] == 0 and lut[255] == 255
    assert (np.diff(lut.astype(int)) >= 0).all()
    dark = np.random.default_rng(0).integers(0, 40, (8, 16, 16, 3), dtype=np.uint8)
    out = enhance_clip(dark, EnhanceConfig(method="gamma", gamma=0.4))
    assert out.shape == dark.shape and out.dtype == np.uint8 and out.mean() > 2 * dark.mean()
    assert np.array_equal(gamma_correct(dark, 1.0), dark)
    with pytest.raises(ValueError, match="enhance.method"):
        enhance_clip(dark, EnhanceConfig(method="nope"))

"""Untrusted footage is decoded in supervised worker processes: a codec that crashes or hangs on one file, or a file
name no codec may see, quarantines that file and the rest of the dataset goes on (dlkdd.data.untrusted)."""
import os
import shutil

import pandas as pd
import pytest

from dlkdd.data.frames import SamplingSpec, build_frame_cache, decode_for_cache
from dlkdd.data.untrusted import IsolatedWorker, clip_stats_isolated, close_workers
from dlkdd.data.video import VideoDecodeError, sample_clips
from footage import write_clip


def _manifest(names):
    return pd.DataFrame([{"path": n, "label": 0, "class_name": "a", "split": "train", "video_id": f"v{i}"}
                         for i, n in enumerate(names)])


@pytest.mark.parametrize("workers", [1, 2])
def test_crash_hang_and_bad_name_quarantine_one_file_each(tmp_path, monkeypatch, workers):
    for n in ("ok1.avi", "boom.avi", "stuck.avi", "ok2.avi"):
        write_clip(tmp_path / n, frames=10)
    bad_name = os.fsdecode(b"caf\xe9.avi")  # not UTF-8: OpenCV's FFmpeg would segfault on the name itself
    shutil.copy(tmp_path / "ok1.avi", tmp_path / bad_name)
    # the real worker process really segfaults / really hangs on these two files
    monkeypatch.setenv("DLKDD_FAULT", "decode@boom=crash,decode@stuck=hang")
    names = ["ok1.avi", "boom.avi", bad_name, "stuck.avi", "ok2.avi"]
    res = build_frame_cache(_manifest(names), tmp_path, tmp_path / "f", 4, 16, ["a"], workers=workers,
                            spec=SamplingSpec(decode_timeout_s=3))
    assert (res.ready, res.quarantined) == (2, 3)
    q = pd.read_csv(tmp_path / "f/quarantine.csv").set_index("path")
    assert q.loc["boom.avi", "kind"] == "crashed" and "SIGSEGV" in q.loc["boom.avi", "reason"]
    assert q.loc["stuck.avi", "kind"] == "timeout"
    assert q.loc["caf\\xe9.avi", "kind"] == "bad_name"
    assert pd.read_csv(tmp_path / "f/index.csv")["path"].tolist() == ["ok1.avi", "ok2.avi"]  # manifest order kept


def test_isolated_stats_equal_the_frame_cache_stats(tmp_path):
    clip = write_clip(tmp_path / "c.avi", frames=30)
    close_workers()
    isolated = clip_stats_isolated(clip, timeout_s=30, min_decoded_fraction=0.9, num_frames=8)
    _, local, _ = decode_for_cache(clip, lambda total: sample_clips(total, 8))
    assert isolated == local  # the landing gate compares like with like against the training set's stats.csv


def test_isolated_stats_report_crash_timeout_and_truncation(tmp_path, monkeypatch):
    from footage import truncate

    clip = write_clip(tmp_path / "c.avi", frames=30)
    clip_stats_isolated(clip, timeout_s=30, min_decoded_fraction=0.9)  # leaves a kept worker, started without faults
    monkeypatch.setenv("DLKDD_FAULT", "decode@c.avi=crash")  # a kept worker restarts when the environment changed
    with pytest.raises(VideoDecodeError) as e:
        clip_stats_isolated(clip, timeout_s=30, min_decoded_fraction=0.9)
    assert e.value.kind == "crashed"
    monkeypatch.setenv("DLKDD_FAULT", "decode@c.avi=hang")
    with pytest.raises(VideoDecodeError) as e:
        clip_stats_isolated(clip, timeout_s=1.5, min_decoded_fraction=0.9)
    assert e.value.kind == "timeout"
    monkeypatch.delenv("DLKDD_FAULT")
    close_workers()
    cut = write_clip(tmp_path / "cut.avi", frames=30)
    truncate(cut, 0.5)
    with pytest.raises(VideoDecodeError) as e:
        clip_stats_isolated(cut, timeout_s=30, min_decoded_fraction=0.9)
    assert e.value.kind in ("incomplete", "unreadable")
    close_workers()


def _sleepy(seconds):
    import time

    time.sleep(seconds)
    return seconds


def test_worker_survives_its_callers_errors_and_is_replaced_after_a_timeout():
    w = IsolatedWorker(timeout_s=3.0)
    try:
        assert w.call(_sleepy, 0.1) == 0.1
        with pytest.raises(RuntimeError, match="TypeError"):
            w.call(_sleepy, "not a number")
        assert w.call(_sleepy, 30).kind == "timeout"  # no heartbeat from a sleeping function
        assert w.call(_sleepy, 0.2) == 0.2  # a fresh worker took over
    finally:
        w.close()

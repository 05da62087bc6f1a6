"""Untrusted footage is decoded in supervised worker processes: a codec that crashes or hangs on one file, or a file
name no codec may see, quarantines that file and the rest of the dataset goes on (dlkdd.data.untrusted)."""
import os
import shutil

import pandas as pd
import pytest

from dlkdd.data.frames import SamplingSpec, build_frame_cache
from dlkdd.data.untrusted import clip_stats_isolated, close_workers, decode_for_cache
from dlkdd.isolated import IsolatedWorker
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


def _decoding_slowly(seconds):
    """A job that keeps decoding for ``seconds``: a beat per frame, as :func:`dlkdd.data.video.read_stream` gives."""
    import time

    from dlkdd.data import video

    start = time.monotonic()
    while time.monotonic() - start < seconds:
        if video.heartbeat is not None:
            video.heartbeat()
        time.sleep(0.05)
    return seconds


_CODEC_LOADED = "[m for m in ('cv2', 'dlkdd.data.video') if m in __import__('sys').modules]"


def test_the_worker_mechanism_knows_nothing_of_video_and_the_decoder_kind_beats_per_frame():
    """dlkdd.isolated is the mechanism only: a plain worker loads no codec and a job's frames do not beat there; a
    DECODER worker loads OpenCV before it is ready, and each decoded frame resets its time limit."""
    from dlkdd.data.untrusted import DECODER

    plain, decoder = IsolatedWorker(timeout_s=60), IsolatedWorker(timeout_s=60, kind=DECODER)
    try:
        assert plain.call(eval, _CODEC_LOADED) == []
        assert decoder.call(eval, _CODEC_LOADED) == ["cv2", "dlkdd.data.video"]
        for w in (plain, decoder):
            assert w.call(_decoding_slowly, 0.0) == 0.0  # imports this test module: not part of the limit below
            w.timeout_s = 1.0
        assert decoder.call(_decoding_slowly, 3.0) == 3.0
        assert plain.call(_decoding_slowly, 3.0).kind == "timeout"
    finally:
        plain.close()
        decoder.close()


# ---------------------------------------------------------------- issue 20: one file never stops the run


def zero_frame_avi(path):
    """A valid AVI container holding no frame: a writer opened and released without a frame written."""
    import cv2

    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 15.0, (40, 32))
    assert w.isOpened()
    w.release()
    return path


def test_what_opencv_reads_from_a_zero_frame_avi(tmp_path):
    import cv2

    cap = cv2.VideoCapture(str(zero_frame_avi(tmp_path / "zero.avi")))
    try:  # it opens, reports no frame count and gives no frame: only a full pass can tell
        assert cap.isOpened() and cap.get(cv2.CAP_PROP_FRAME_COUNT) == 0 and not cap.grab()
    finally:
        cap.release()
    with pytest.raises(VideoDecodeError, match="no decodable frames") as e:
        decode_for_cache(tmp_path / "zero.avi", lambda total: sample_clips(total, 8))
    assert e.value.kind == "unreadable"  # before: ValueError "slice step cannot be zero" from the stats frames


@pytest.mark.parametrize("workers", [1, 2])
def test_zero_frame_avi_and_any_worker_error_quarantine_one_file_each(tmp_path, workers):
    """Before, either killed build_frame_cache with a RuntimeError (the worker's error re-raised) and nothing was
    quarantined; now the file goes to quarantine.csv with its kind and one line, and the rest is cached."""
    for n in ("ok1.avi", "ok2.avi"):
        write_clip(tmp_path / n, frames=10)
    zero_frame_avi(tmp_path / "zero.avi")
    names = ["ok1.avi", "zero.avi", "ok2.avi"]
    res = build_frame_cache(_manifest(names), tmp_path, tmp_path / "f", 4, 16, ["a"], workers=workers)
    q = pd.read_csv(tmp_path / "f/quarantine.csv")
    assert (res.ready, res.quarantined) == (2, 1) and list(q.path) == ["zero.avi"]
    assert q.kind[0] == "unreadable" and "no decodable frames" in q.reason[0] and "\n" not in q.reason[0]
    assert pd.read_csv(tmp_path / "f/index.csv")["path"].tolist() == ["ok1.avi", "ok2.avi"]
    # OpenCV itself raising in the worker (cv2.error: a size it cannot resize to) costs each file, not the run
    res = build_frame_cache(_manifest(names), tmp_path, tmp_path / "g", 4, 0, ["a"], workers=workers)
    q = pd.read_csv(tmp_path / "g/quarantine.csv").set_index("path")
    assert (res.ready, res.quarantined) == (0, 3) and list(q.index) == names
    assert q.loc["zero.avi", "kind"] == "unreadable" and set(q.kind) == {"unreadable", "error"}
    assert q.loc["ok1.avi", "reason"].startswith("ok1.avi: failed on this file: error: OpenCV")
    assert "\n" not in "".join(q.reason)


def _picky(arg):
    """A job for map_isolated: a value, an exception in the worker, or a result the parent cannot unpickle."""
    if arg == "oom":
        raise MemoryError("cannot allocate 30000000000 bytes\nsecond line")
    if arg == "bomb":
        return _Bomb()
    return arg.upper()


def _explode():
    raise ValueError("this result cannot be read back")


class _Bomb:
    def __reduce__(self):  # pickled fine in the worker, raises when the parent unpickles it
        return _explode, ()


@pytest.mark.parametrize("workers", [1, 2])
def test_map_isolated_turns_any_error_into_that_files_failure(workers):
    from dlkdd.isolated import Failure, map_isolated

    args = ["a", "oom", "b", "bomb", "c"]
    out = list(map_isolated(_picky, args, workers, timeout_s=30, subject=lambda a: f"{a}.avi"))
    assert [out[i] for i in (0, 2, 4)] == ["A", "B", "C"]  # the rest goes on, in order
    assert out[1] == Failure("error", "oom.avi: failed on this file: MemoryError: cannot allocate 30000000000 bytes")
    assert out[3] == Failure("error", "bomb.avi: failed on this file: ValueError: this result cannot be read back")


def test_frames_stage_quarantines_a_zero_frame_avi_and_goes_on(tmp_path):
    """The stage itself: exit 0, the clip in quarantine.csv and the summary, the other clips cached."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    data = tmp_path / "data"
    rows = []
    for i, split in enumerate(["train", "train", "val", "test"]):
        write_clip(data / f"c{i}.avi", frames=8, seed=i)
        rows.append({"path": f"c{i}.avi", "label": 0, "class_name": "a", "split": split, "video_id": f"c{i}"})
    zero_frame_avi(data / "zero.avi")
    rows.insert(1, {"path": "zero.avi", "label": 0, "class_name": "a", "split": "train", "video_id": "zero"})
    pd.DataFrame(rows).to_csv(data / "manifest.csv", index=False)
    (tmp_path / "params.yaml").write_text("frames:\n  num_frames: 4\n  size: 16\n")
    env = {**os.environ, "PYTHONPATH": f"{root / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    r = subprocess.run([sys.executable, str(root / "stages/frames.py"), "--manifest", "data/manifest.csv",
                        "--out", "frames"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == f"4 clips ready, 1 quarantined: see {Path('frames/quarantine.csv')}"
    q = pd.read_csv(tmp_path / "frames/quarantine.csv")
    assert list(zip(q.path, q.kind)) == [("zero.avi", "unreadable")]
    assert pd.read_csv(tmp_path / "frames/stats.csv")["clip_id"].tolist() == ["c0", "c1", "c2", "c3"]


def _mark_and_sleep(marker):
    """A job that says it started (its worker's pid in ``marker``) and then takes ten minutes."""
    import time
    from pathlib import Path

    Path(marker).write_text(str(os.getpid()))
    time.sleep(600)


def _gone(pid):
    """No such process, or a zombie (killed, waiting for init to reap it)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux /proc")
def test_decoder_worker_dies_with_its_killed_parent(tmp_path):
    """A parent SIGKILLed in the middle of a long job (a pool thread started its worker, as the frames stage's do)
    leaves no orphaned decoder behind. Before, the worker went on for the job's whole ten minutes."""
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    here = Path(__file__).resolve().parent
    marker = tmp_path / "worker.pid"
    script = (f"import sys; sys.path[:0] = [{str(here.parent / 'src')!r}, {str(here)!r}]\n"
              "from dlkdd.isolated import map_isolated\nfrom test_untrusted import _mark_and_sleep\n"
              f"list(map_isolated(_mark_and_sleep, [{str(marker)!r}], 1, 900))\n")
    parent = subprocess.Popen([sys.executable, "-c", script])
    worker = None
    try:
        deadline = time.monotonic() + 120
        while not (marker.is_file() and marker.read_text()) and time.monotonic() < deadline:
            assert parent.poll() is None, "the parent ended before its worker started the job"
            time.sleep(0.1)
        worker = int(marker.read_text())
        assert not _gone(worker)
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        deadline = time.monotonic() + 5
        while not _gone(worker) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _gone(worker), "the decoder worker outlived its killed parent"
    finally:
        if parent.poll() is None:
            parent.kill()
        if worker is not None and not _gone(worker):
            os.kill(worker, signal.SIGKILL)  # the test's own orphan, by its pid

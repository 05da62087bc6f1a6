"""The student on footage of any length (dlkdd predict --window/--timeline): a real student trained here on Walk and
Wave, a real 20-second video of 10 s Walk then 10 s Wave, decoded by the streaming decoder from a file, a folder and a
loopback HTTP stream."""
import functools
import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import tracemalloc

import numpy as np
import pandas as pd
import pytest

from dlkdd.cli import main
from dlkdd.config import GenerateConfig, ModelConfig, TrainConfig
from dlkdd.data.frame_index import read_index
from dlkdd.data.frames import build_frame_cache
from dlkdd.data.stream import stream_windows
from dlkdd.data.synthetic import darken, generate_dataset, render_clip, write_video
from dlkdd.data.video import read_video
from dlkdd.checkpoint import save_model
from dlkdd.distill.training_run import train_classifier
from footage import write_clip
from helpers import serve_slowly

FPS = 15.0
CFG = GenerateConfig(classes=["Walk", "Wave"], train_per_class=60, val_per_class=8, test_per_class=1, num_frames=30,
                     width=96, height=72, fps=FPS)
SIZE = 48


@pytest.fixture(scope="module")
def walk_wave(tmp_path_factory):
    """(student checkpoint, a 20 s video: Walk for 0-10 s then Wave for 10-20 s)."""
    d = tmp_path_factory.mktemp("walkwave")
    manifest = generate_dataset(d / "raw", CFG, seed=3)
    build_frame_cache(pd.read_csv(manifest), manifest.parent, d / "frames", 8, SIZE, CFG.classes)
    index, classes = read_index(d / "frames")
    model, _ = train_classifier(index, 2, [d / "frames/clips"], ModelConfig(width=12, dropout=0.0),
                                TrainConfig(epochs=12, batch_size=8, threads=2), seed=0, desc="walk/wave")
    ckpt = d / "student.pt"
    save_model(ckpt, model, "tiny3d", classes, num_frames=8, size=SIZE, width=12)
    parts = []  # 5 two-second takes of each action, none of them seen in training
    for ci, action in enumerate(CFG.classes):
        for k in range(5):
            rng = np.random.default_rng([99, ci, k])
            parts.append(darken(render_clip(action, rng, CFG), rng, CFG))
    video = d / "night_cam.mp4"
    write_video(video, np.concatenate(parts), FPS)
    return ckpt, video


def _predict_json(capsys, *args):
    code = main(["predict", *map(str, args), "--json"])
    out = capsys.readouterr()
    return code, (json.loads(out.out) if out.out.strip() else None), out.err


@pytest.mark.e2e  # walk_wave trains a student
def test_timeline_finds_walk_then_wave_within_one_stride(walk_wave, tmp_path, capsys):
    ckpt, video = walk_wave
    code, doc, err = _predict_json(capsys, video, "--model", ckpt, "--window", "2s", "--stride", "1s",
                                   "--timeline", tmp_path / "out")
    assert code == 0, err
    segs = [(s["class"], s["start_s"], s["end_s"]) for s in doc["segments"]]
    labels = [c for c, _, _ in segs]
    assert labels[0] == "Walk" and labels[-1] == "Wave" and labels.count("Walk") == 1, segs
    walk_end = segs[0][2]
    wave_start = [s for c, s, _ in segs if c == "Wave"][0]
    assert abs(walk_end - 10.0) <= 1.0 and abs(wave_start - 10.0) <= 1.0, segs
    assert segs[-1][2] >= 19.0
    files = {p.name for p in (tmp_path / "out").iterdir()}
    assert {"night_cam.json", "night_cam.html", "night_cam.png", "night_cam.windows.csv",
            "night_cam.segments.csv"} <= files
    html = (tmp_path / "out/night_cam.html").read_text()
    assert "http://" not in html and "https://" not in html  # opens offline


@pytest.mark.e2e  # walk_wave trains a student
def test_short_clip_without_window_is_one_label_as_before(walk_wave, capsys):
    ckpt, video = walk_wave
    code, doc, _ = _predict_json(capsys, video, "--model", ckpt)
    assert code == 0 and set(doc) == {"clip", "top", "uncertain", "probs"}
    assert abs(sum(doc["probs"].values()) - 1) < 1e-5


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.mark.e2e  # walk_wave trains a student
def test_loopback_http_stream_is_read_for_max_seconds(walk_wave, capsys):
    ckpt, video = walk_wave
    served = video.with_name("live.avi")  # MJPG in AVI plays as it arrives (an mp4v .mp4 keeps its index at the end)
    frames, _ = read_video(video)
    write_video(served, frames, FPS)
    handler = functools.partial(_QuietHandler, directory=str(video.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/{served.name}"
        code, doc, err = _predict_json(capsys, url, "--model", ckpt, "--window", "2s", "--max-seconds", "6s")
    finally:
        server.shutdown()
    assert code == 0, err
    ends = [w["end_s"] for w in doc["windows"]]
    assert 3 <= len(ends) <= 6 and max(ends) <= 6.0 + 1e-6  # stopped at 6 s of a 20 s stream
    assert doc["segments"][0]["class"] == "Walk"


@pytest.mark.e2e  # walk_wave trains a student
def test_unopenable_stream_is_one_line_exit_2(walk_wave, capsys):
    ckpt, _ = walk_wave
    code, _, err = _predict_json(capsys, "http://127.0.0.1:9/cam.mp4", "--model", ckpt)
    assert code == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1


@pytest.mark.e2e  # walk_wave trains a student
def test_truncated_long_video_is_one_line_not_a_partial_timeline(walk_wave, tmp_path, capsys):
    ckpt, video = walk_wave
    frames, _ = read_video(video)
    cut = tmp_path / "cut.avi"
    write_video(cut, frames, FPS)
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])  # an upload that stopped half way
    code, _, err = _predict_json(capsys, cut, "--model", ckpt, "--window", "2s", "--timeline", tmp_path / "out")
    assert code == 2 and err.startswith("error: ") and "truncated" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out/cut.json").exists()  # no timeline that looks like the whole video


@pytest.mark.e2e  # walk_wave trains a student
def test_ctrl_c_on_a_stream_still_writes_what_was_seen(walk_wave, tmp_path):
    ckpt, video = walk_wave
    frames, _ = read_video(video)
    write_video(tmp_path / "live.avi", frames, FPS)
    client: dict[str, int] = {}

    def ctrl_c_half_way(sent: int, total: int) -> None:  # once, on the client, when half the file is out
        if sent >= total // 2 and (pid := client.pop("pid", 0)):
            os.kill(pid, signal.SIGINT)

    with serve_slowly(tmp_path, 0.01, ctrl_c_half_way) as base:
        # Ctrl-C as a terminal sends it: the child starts with SIGINT's default action, whatever this pytest process
        # inherited or was given by a library (an ignored SIGINT is inherited across exec, and Python keeps it)
        proc = subprocess.Popen([sys.executable, "-m", "dlkdd.cli", "predict", f"{base}/live.avi", "--model",
                                 str(ckpt), "--window", "2s", "--timeline", str(tmp_path / "out")],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        client["pid"] = proc.pid
        out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert "stopped by Ctrl-C" in out and "Traceback" not in err
    timeline = base.removeprefix("http://").replace(":", "_") + "_live.avi.json"  # 127.0.0.1_<port>_live.avi.json
    doc = json.loads((tmp_path / "out" / timeline).read_text())
    assert doc["interrupted"] is True and 1 <= len(doc["windows"]) and doc["windows"][-1]["end_s"] < 19


@pytest.mark.e2e  # walk_wave trains a student
def test_folder_lists_bad_files_at_the_end_and_does_the_rest(walk_wave, tmp_path, capsys):
    ckpt, video = walk_wave
    folder = tmp_path / "recordings"
    (folder / "cam2").mkdir(parents=True)
    (folder / "cam1.mp4").write_bytes(video.read_bytes())
    (folder / "cam2/cam1.mp4").write_bytes(video.read_bytes()[: 300])  # truncated upload, same stem
    (folder / "notes.txt").write_text("not a video")
    code, docs, err = _predict_json(capsys, folder, "--model", ckpt, "--timeline", tmp_path / "out")
    assert code == 1  # something failed, the rest is done
    assert [d["video"] for d in docs] == [str(folder / "cam1.mp4")]
    assert "1 of 2 inputs failed" in err and "cam2/cam1.mp4" in err and "Traceback" not in err
    assert (tmp_path / "out/cam1.html").is_file() and not (tmp_path / "out/cam2__cam1.html").exists()


@pytest.mark.e2e  # walk_wave trains a student
def test_annotate_writes_every_frame_with_the_action(walk_wave, tmp_path, capsys):
    ckpt, video = walk_wave
    out = tmp_path / "annotated.mp4"
    code = main(["predict", str(video), "--model", str(ckpt), "--window", "2s", "--annotate", str(out)])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert f"annotated video: {out}" in printed.out
    frames, fps = read_video(out)
    source, _ = read_video(video)
    assert frames.shape == source.shape and fps == FPS  # every frame, same size and rate
    diff = np.abs(frames.astype(np.int16) - source.astype(np.int16))
    assert diff[:, :10, :30].max() > 150  # the white label text drawn top left on every frame
    assert frames[:, 30:].mean() > 3 * source[:, 30:].mean()  # the picture brightened for a person


def _peak_window_bytes(path):
    tracemalloc.start()
    n = sum(1 for _ in stream_windows(path, 8, 32, 2.0, 1.0))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return n, peak


def test_memory_is_flat_in_the_videos_length(tmp_path):
    short = write_clip(tmp_path / "short.avi", frames=150, width=160, height=120)
    long = write_clip(tmp_path / "long.avi", frames=3000, width=160, height=120)  # 20x longer
    n_short, peak_short = _peak_window_bytes(short)
    n_long, peak_long = _peak_window_bytes(long)
    assert n_long > 15 * n_short
    frame_bytes = 160 * 120 * 3
    assert peak_long < peak_short + 10 * frame_bytes, (peak_short, peak_long)  # not 3000 frames' worth

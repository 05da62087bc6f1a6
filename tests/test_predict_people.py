"""What a person sees from `dlkdd predict`: segment lines as they happen (a real file and a real loopback HTTP
stream), a readable timeline chart, "no action reached", a marked uncertain top class, a brightened --annotate video
with its path, no codec noise on the progress bar (a really damaged file), a hint when no model is found,
--version. The model is a real tiny3d trained here in seconds to tell the two scenes of a real alternating video."""
import json
import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from conftest import ROOT
from dlkdd.cli import main
from dlkdd.data.stream import stream_windows
from dlkdd.data.video import read_video
from dlkdd.checkpoint import save_model
from dlkdd.infer.runner import load_runner
from dlkdd.infer.timeline import (UNCERTAIN_BELOW, WindowResult, class_colour, merge_segments, smooth,
                                  timeline_html, timeline_png, uncertain)
from dlkdd.infer.watch import Timeline, watch_live
from dlkdd.models.build import build_model
from footage import write_clip
from helpers import serve_slowly

FPS = 15.0
PART_S = 4  # the video alternates scenes every 4 s: dark noise (Drink), bright moving bars (Jump)
CLASSES = ["Drink", "Jump", "Sit"]


def write_alternating(path: Path, parts: int = 10) -> Path:
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (64, 48))
    rng = np.random.default_rng(0)
    for part in range(parts):
        for t in range(int(PART_S * FPS)):
            if part % 2 == 0:
                img = rng.integers(0, 20, (48, 64, 3), dtype=np.uint8)
            else:
                img = np.zeros((48, 64, 3), np.uint8)
                img[:, (t * 3) % 64: (t * 3) % 64 + 8] = (40, 200, 90)
                img[::6] = 255
            w.write(img)
    w.release()
    return path


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    """(model, a 40 s MJPG video: Drink 0-4 s, Jump 4-8 s, ... ten segments), the model trained on its windows."""
    d = tmp_path_factory.mktemp("scenes")
    video = write_alternating(d / "night_cam.avi")
    ws = list(stream_windows(video, 4, 32, 1.0, 1.0))
    x = torch.from_numpy(np.stack([w.frames for w in ws])).permute(0, 4, 1, 2, 3).float() / 255
    y = torch.tensor([int((w.start_s + w.end_s) / 2 // PART_S) % 2 for w in ws])
    torch.manual_seed(0)
    model = build_model("tiny3d", 3, width=8)
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    for _ in range(20):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    save_model(d / "scene.pt", model.eval(), "tiny3d", CLASSES, num_frames=4, size=32, width=8)
    return d / "scene.pt", video


@pytest.fixture(scope="module")
def doubtful(scenes, tmp_path_factory):
    """A real 3 s video of one flat grey level the model cannot place: black is Drink to it and mid-grey Jump, so the
    level in between where the two are closest is found by bisection with the real model."""
    runner = load_runner(scenes[0])

    def drink_minus_jump(level: int) -> float:
        p = runner(np.full((1, 4, 32, 32, 3), level, np.uint8))[0]
        return float(p[0] - p[1])

    lo, hi = 0, 128
    assert drink_minus_jump(lo) > 0 > drink_minus_jump(hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if drink_minus_jump(mid) > 0 else (lo, mid)
    level = min((lo, hi), key=lambda v: abs(drink_minus_jump(v)))
    path = tmp_path_factory.mktemp("doubt") / "doubtful.avi"
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (64, 48))
    for _ in range(45):
        w.write(np.full((48, 64, 3), level, np.uint8))
    w.release()
    return path


def run(capsys, *args):
    rc = main([str(a) for a in args])
    out = capsys.readouterr()
    return rc, out.out, out.err


# ------------------------------------------------------------------------------ 1. segment lines as they happen


def test_segments_are_yielded_before_the_decoder_reaches_the_end(scenes):
    model, video = scenes
    into = Timeline(str(video))
    seen = []  # (segment, windows predicted when it came)
    for seg in watch_live(load_runner(model), video, 2.0, 1.0, into):
        seen.append((seg, len(into.windows)))
    total = len(into.windows)
    assert [s.label for s, _ in seen] == ["Drink", "Jump"] * 5  # every scene, in order
    assert seen[0][1] < total / 2 and [n for _, n in seen] == sorted(n for _, n in seen)
    assert [s for s, _ in seen] == merge_segments(into.windows, CLASSES, 0.5)  # the same as the batch form


def test_a_stream_prints_each_segment_line_while_it_is_still_playing(scenes):
    model, video = scenes
    total = video.stat().st_size
    sent = [0]  # bytes the server has sent so far: 4 KB every 100 ms, the 40 s video in 12 s
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    with serve_slowly(video.parent, 0.1, lambda n, _total: sent.__setitem__(0, n)) as base:
        proc = subprocess.Popen([sys.executable, "-m", "dlkdd.cli", "predict", f"{base}/{video.name}", "--model",
                                 str(model), "--window", "2s", "--stride", "1s"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env)
        first = [proc.stdout.readline(), proc.stdout.readline()]  # the input's name, then its first segment
        sent_at_first = sent[0]
        rest, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert "Drink" in first[1] and sent_at_first < total * 0.5, (first, sent_at_first, total)
    lines = [ln.split()[1] for ln in (first[1:] + rest.splitlines()) if ln.startswith("  0:")]
    assert lines == ["Drink", "Jump"] * 5 and "10 segments" in rest


def test_a_file_found_truncated_after_its_lines_were_printed_says_the_lines_are_partial(scenes, tmp_path, capsys):
    model, video = scenes
    cut = tmp_path / "cut.avi"
    cut.write_bytes(video.read_bytes()[: video.stat().st_size // 2])  # an upload that stopped half way
    rc, out, err = run(capsys, "predict", cut, "--model", model, "--window", "2s")
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "truncated" in err, err
    printed = [ln for ln in out.splitlines() if ln.startswith("  0:")]
    assert printed and f"the {len(printed)} segment line(s) printed above cover only what was read" in err


# ------------------------------------------------------------------------------------------- 2. the chart


def test_the_chart_draws_only_the_top_classes_with_title_axes_and_labelled_bands(tmp_path):
    classes = ["Drink", "Jump", "Pick", "Pour", "Push", "Run", "Sit", "Stand", "Turn", "Walk", "Wave"]
    rng = np.random.default_rng(0)
    windows = []
    for i in range(40):  # Walk, then nothing confident, then Wave; the other 9 classes stay low
        p = rng.dirichlet(np.ones(11)) * (0.3 if i < 15 or 20 <= i < 32 else 1.0)
        p[9 if i < 15 else 10] += 0.7 if i < 15 or 20 <= i < 32 else 0.0
        windows.append(WindowResult(i * 0.5, i * 0.5 + 1.0, (p / p.sum()).astype(np.float32)))
    windows = smooth(windows, 3)
    segs = merge_segments(windows, classes, 0.5)
    img = timeline_png(windows, classes, segs, title="night_cam.mp4", min_prob=0.5)
    cv2.imwrite(str(tmp_path / "chart.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))  # looked at by a person
    colours = {c: int((img == class_colour(c)).all(axis=2).sum()) for c in range(11)}
    assert colours[9] > 100 and colours[10] > 100  # Walk and Wave drawn (curves and legend) ...
    others = [c for c in range(9) if c != 7]  # (7 is tab10's grey #7f7f7f, also a shade of anti-aliased black text)
    assert all(colours[c] == 0 for c in others), colours  # ... and none of the classes that never reached 0.5
    ink = (img < 128).any(axis=2)
    assert ink[:30].sum() > 50  # a title above the plot
    assert ink[:, :20].sum() > 30  # the vertical "probability" label left of the tick labels
    html = timeline_html("videos/night_cam.mp4", classes, windows, segs, min_prob=0.5)
    assert html.count("<polyline") == 2 and ">time (s)</text>" in html and ">probability</text>" in html
    assert ">Walk</text>" in html and ">Wave</text>" in html  # the bands are labelled
    assert ">videos/night_cam.mp4</text>" in html


# ----------------------------------------------------------------------------------------- 3. no action


def test_a_video_where_nothing_reaches_the_threshold_says_so(scenes, doubtful, tmp_path, capsys):
    model, _ = scenes
    rc, out, err = run(capsys, "predict", doubtful, "--model", model, "--window", "1s", "--min-prob", "0.9",
                       "--timeline", tmp_path / "tl")
    assert rc == 0, err
    assert "4 windows, no action reached 0.9" in out and "0 segments" not in out
    html = (tmp_path / "tl/doubtful.html").read_text()
    assert "No action reached 0.9" in html and "<table>" not in html


# ----------------------------------------------------------------------------------------- 4. --annotate


def test_annotate_brightens_the_picture_prints_its_path_and_leaves_the_prediction_alone(scenes, tmp_path, capsys):
    model, video = scenes
    out_video = tmp_path / "seen.mp4"
    rc, out, err = run(capsys, "predict", video, "--model", model, "--window", "2s", "--annotate", out_video)
    assert rc == 0, err
    assert str(out_video) in out
    shown, _ = read_video(out_video)
    dark, _ = read_video(video)
    assert len(shown) == len(dark)
    below_label = (slice(None), slice(20, None))  # the label box sits top left
    assert shown[0][below_label].mean() > 3 * dark[0][below_label].mean()  # a dark noise frame made visible
    _, plain, _ = run(capsys, "predict", video, "--model", model, "--window", "2s", "--json")
    _, annotated, _ = run(capsys, "predict", video, "--model", model, "--window", "2s", "--json",
                          "--annotate", tmp_path / "again.mp4")
    assert json.loads(plain)["windows"] == json.loads(annotated)["windows"]  # the model saw the same dark frames


# --------------------------------------------------------------------------------------- 5. uncertain


def test_uncertain_rule_is_below_a_half_or_under_twice_the_runner_up():
    assert uncertain(np.array([0.26, 0.25, 0.25, 0.24]))
    assert uncertain(np.array([0.55, 0.30, 0.15]))  # above 0.5 but not twice the second
    assert uncertain(np.array([0.49, 0.10, 0.41])) and UNCERTAIN_BELOW == 0.5
    assert not uncertain(np.array([0.70, 0.20, 0.10]))


def test_a_low_confidence_top_class_is_marked_in_text_and_json(scenes, doubtful, capsys):
    model, video = scenes
    rc, out, _ = run(capsys, "predict", doubtful, "--model", model, "--json")
    doc = json.loads(out)
    assert rc == 0 and doc["top"][0]["prob"] < 0.7 and doc["uncertain"] is True
    _, text, _ = run(capsys, "predict", doubtful, "--model", model)
    assert text.rstrip().endswith("(uncertain)")
    clear = write_alternating(video.parent / "dark_only.avi", parts=1)  # 4 s of the dark scene: Drink to it
    rc, out, _ = run(capsys, "predict", clear, "--model", model, "--json")
    doc = json.loads(out)
    assert doc["top"][0]["class"] == "Drink" and doc["uncertain"] is uncertain(np.array(list(doc["probs"].values())))
    assert doc["uncertain"] is False
    _, text, _ = run(capsys, "predict", clear, "--model", model)
    assert "uncertain" not in text


# --------------------------------------------------------------------------------------- 6. codec noise


def damage_jpeg_payloads(path: Path, frames: int = 4) -> None:
    """Flip bytes inside the entropy-coded data of ``frames`` JPEG frames of an MJPG AVI (after their SOS marker),
    leaving the container intact: FFmpeg decodes every frame and complains about each damaged one on fd 2."""
    data = bytearray(path.read_bytes())
    starts = [i for i in range(len(data) - 1) if data[i] == 0xFF and data[i + 1] == 0xDA]
    for s in starts[5: 5 + frames]:
        for k in range(s + 40, s + 200, 7):
            data[k] ^= 0x5A
    path.write_bytes(bytes(data))


def test_ffmpeg_decoder_lines_stay_off_the_progress_bar(scenes, tmp_path):
    model, _ = scenes
    folder = tmp_path / "recordings"
    write_clip(folder / "a_good.avi", frames=60, width=64, height=48)
    damaged = write_clip(folder / "b_damaged.avi", frames=60, width=64, height=48, seed=1)
    damage_jpeg_payloads(damaged)
    env = {k: v for k, v in os.environ.items() if k != "OPENCV_FFMPEG_LOGLEVEL"}
    decode_all = "import cv2, sys\ncap = cv2.VideoCapture(sys.argv[1])\nwhile cap.grab(): cap.retrieve()"
    probe = subprocess.run([sys.executable, "-c", decode_all, str(damaged)], env=env, capture_output=True, text=True)
    assert "[mjpeg @" in probe.stderr  # the file really provokes FFmpeg's lines
    r = subprocess.run([sys.executable, "-m", "dlkdd.cli", "predict", str(folder), "--model", str(model)],
                       env={**env, "PYTHONPATH": str(ROOT / "src")}, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "@ 0x" not in r.stderr and "mjpeg" not in r.stderr, r.stderr  # only the bar is on stderr
    assert len(r.stdout.splitlines()) == 2  # both files labelled


# ------------------------------------------------------------------------------- 7. no model, 8. --version


def test_no_default_model_outside_the_checkout_is_one_line_saying_where_and_what_to_do(tmp_path, monkeypatch,
                                                                                     capsys):
    clip = write_clip(tmp_path / "clip.avi", frames=30)
    monkeypatch.chdir(tmp_path)
    rc, out, err = run(capsys, "predict", clip)
    assert rc == 2 and out == "" and len(err.strip().splitlines()) == 1, err
    assert str(tmp_path / "models/student.pt") in err and "--model PATH" in err
    assert "dvc pull models/student.pt" in err and "make run" in err


def test_version_prints_the_installed_package_version(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"dlkdd {version('dlkdd')}"

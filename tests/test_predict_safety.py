"""`dlkdd predict` never prints a wrong answer with exit 0 and never shows a traceback for bad input: truncated files
in every mode, model metadata that does not fit its graph or weights, numeric options out of range, inputs that would
share timeline files. Real videos (OpenCV), the real student checkpoint and its real ONNX export."""
import json

import cv2
import pytest
import torch

from footage import truncate, write_clip
from helpers import CLASSES, dlkdd_inproc


def one_error_line(rc, stdout, stderr, name):
    assert rc == 2, (stdout, stderr)
    assert stdout == "" and "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and name in lines[0], stderr
    return lines[0]


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """A complete 250-frame AVI and the same file cut after its first fifth (an upload that stopped)."""
    d = tmp_path_factory.mktemp("clips")
    good = write_clip(d / "good.avi", frames=250, width=64, height=48)
    cut = write_clip(d / "cut.avi", frames=250, width=64, height=48)
    truncate(cut, 0.2)
    cap, n = cv2.VideoCapture(str(cut)), 0
    while cap.grab():
        n += 1
    assert 0 < n < 0.9 * 250 and cap.get(cv2.CAP_PROP_FRAME_COUNT) == 250  # still opens, most frames gone
    cap.release()
    return good, cut


# ------------------------------------------------------------------------------------------ 1. truncated files


@pytest.mark.parametrize("mode", [[], ["--json"], ["--window", "2s"]])
def test_a_truncated_clip_is_one_line_exit_2_in_every_mode(student, clips, mode, capsys):
    good, cut = clips
    line = one_error_line(*dlkdd_inproc(capsys, "predict", cut, "--model", student, *mode), cut.name)
    assert "truncated" in line and "of the 250 frames" in line
    rc, out, err = dlkdd_inproc(capsys, "predict", good, "--model", student, *mode)
    assert rc == 0 and out, err  # the complete file still gets its answer


def test_a_folder_without_timeline_lists_the_truncated_file_as_failed(student, clips, tmp_path, capsys):
    good, cut = clips
    folder = tmp_path / "recordings"
    folder.mkdir()
    (folder / "cut.avi").write_bytes(cut.read_bytes())
    (folder / "good.avi").write_bytes(good.read_bytes())
    rc, out, err = dlkdd_inproc(capsys, "predict", folder, "--model", student, "--json")
    assert rc == 1 and "Traceback" not in err
    assert [r["clip"] for r in json.loads(out)] == [str(folder / "good.avi")]  # no label for the cut file
    assert "1 of 2 inputs failed" in err and "cut.avi: truncated" in err


# ------------------------------------------------------------------------------------------ 2. model metadata


def edited_onnx(exported, out, **meta):
    """The real export with some ``dlkdd.*`` metadata_props values replaced (JSON text, as the exporter writes)."""
    import onnx

    proto = onnx.load(str(exported))
    for prop in proto.metadata_props:
        key = prop.key.removeprefix("dlkdd.")
        if key in meta:
            prop.value = meta[key] if isinstance(meta[key], str) and meta[key][:1] in "[N" else json.dumps(meta[key])
    onnx.save(proto, str(out))
    return out


ONNX_EDITS = {
    "2_classes": ({"classes": ["Drink", "Jump"]}, "names 2 classes, the graph gives 3 outputs"),
    "7_classes": ({"classes": [f"c{i}" for i in range(7)]}, "names 7 classes, the graph gives 3 outputs"),
    "1e6_classes": ({"classes": [f"c{i}" for i in range(10**6)]}, "names 1000000 classes"),
    "duplicate_class": ({"classes": ["Drink", "Drink", "Sit"]}, "'Drink' is listed twice"),
    "classes_a_string": ({"classes": "DJS"}, "list of strings"),
    "std_0": ({"std": [0.0, 0.0, 0.0]}, "std"),
    "std_nan": ({"std": "[NaN, 0.2, 0.2]"}, "std"),
    "mean_nan": ({"mean": "[NaN, 0.4, 0.4]"}, "mean"),
    "num_frames_100000": ({"num_frames": 100000}, "num_frames 100000 is outside 1..512"),
    "num_frames_8": ({"num_frames": 8}, "metadata says clips of 8 frames x 32x32, the graph takes (3, 4, 32, 32)"),
    "size_64": ({"size": 64}, "the graph takes (3, 4, 32, 32)"),
    "num_frames_4.7": ({"num_frames": 4.7}, "not a whole number"),
}


@pytest.mark.parametrize("what", ONNX_EDITS)
def test_onnx_metadata_that_does_not_fit_the_graph_is_refused_on_load(exported, clips, tmp_path, capsys, what):
    meta, says = ONNX_EDITS[what]
    model = edited_onnx(exported, tmp_path / "edited.onnx", **meta)
    line = one_error_line(*dlkdd_inproc(capsys, "predict", clips[0], "--model", model), "edited.onnx")
    assert says in line and "dlkdd export --format onnx" in line


def test_the_unedited_export_still_loads_and_agrees_with_its_metadata(exported, clips, capsys):
    rc, out, err = dlkdd_inproc(capsys, "predict", clips[0], "--model", exported, "--json")
    assert rc == 0 and sorted(json.loads(out)["probs"]) == sorted(CLASSES), err


def test_a_std_under_one_grey_level_is_refused(exported, clips, tmp_path, capsys):
    """Finite and > 0, but it scales the input by 1e37: the network saturates to one class at 1.000 (measured)."""
    model = edited_onnx(exported, tmp_path / "tiny_std.onnx", std=[1e-37, 1e-37, 1e-37])
    line = one_error_line(*dlkdd_inproc(capsys, "predict", clips[0], "--model", model, "--json"), "tiny_std.onnx")
    assert "std" in line


def test_weights_that_give_nan_are_an_error_not_nan_probabilities(exported, clips, tmp_path, capsys):
    """Metadata intact, one weight tensor NaN (a damaged file): every load check passes, the output check refuses."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(str(exported))
    init = next(t for t in proto.graph.initializer if t.data_type == onnx.TensorProto.FLOAT and len(t.dims) == 5)
    init.CopyFrom(numpy_helper.from_array(np.full_like(numpy_helper.to_array(init), np.nan), init.name))
    onnx.save(proto, str(tmp_path / "nan_weights.onnx"))
    line = one_error_line(*dlkdd_inproc(capsys, "predict", clips[0], "--model", tmp_path / "nan_weights.onnx",
                                        "--json"), "nan_weights.onnx")
    assert "not finite" in line


def edited_checkpoint(student, out, **fields):
    """The real checkpoint with top-level fields or the model's mean/std buffers replaced."""
    ckpt = torch.load(student, weights_only=True)
    state = dict(ckpt["state_dict"])
    for key, value in fields.items():
        if key in ("mean", "std"):
            state[key] = torch.full((1, 3, 1, 1, 1), value)
        else:
            ckpt[key] = value
    torch.save({**ckpt, "state_dict": state}, out)
    return out


CHECKPOINT_EDITS = {
    "std_0": ({"std": 0.0}, "std"),
    "std_nan": ({"std": float("nan")}, "std"),
    "mean_inf": ({"mean": float("inf")}, "mean"),
    "num_frames_100000": ({"num_frames": 100000}, "num_frames 100000 is outside 1..512"),
    "size_4": ({"size": 4}, "size 4 is outside 8..1024"),
    "num_frames_4.5": ({"num_frames": 4.5}, "not a whole number"),
    "duplicate_class": ({"classes": ["Drink", "Drink", "Sit"]}, "'Drink' is listed twice"),
    "control_char_class": ({"classes": ["Drink", "Ju\nmp", "Sit"]}, "control characters"),
}


@pytest.mark.parametrize("what", CHECKPOINT_EDITS)
def test_checkpoint_fields_that_do_not_fit_are_refused_on_load(student, clips, tmp_path, capsys, what):
    fields, says = CHECKPOINT_EDITS[what]
    model = edited_checkpoint(student, tmp_path / "edited.pt", **fields)
    line = one_error_line(*dlkdd_inproc(capsys, "predict", clips[0], "--model", model), "edited.pt")
    assert says in line


def test_export_refuses_a_checkpoint_with_a_zero_std(student, tmp_path, capsys):
    model = edited_checkpoint(student, tmp_path / "edited.pt", std=0.0)
    rc, out, err = dlkdd_inproc(capsys, "export", "--model", model, "--out", tmp_path / "out.onnx")
    assert rc == 2 and "std" in err and not (tmp_path / "out.onnx").exists()


# ------------------------------------------------------------------------------------------ 3. numeric options


@pytest.mark.parametrize("option", [
    ["--window", "inf"], ["--window", "1e20"], ["--window", "nan"], ["--stride", "inf"], ["--stride", "1e20"],
    ["--window", "2s", "--stride", "-1"], ["--min-prob", "nan"], ["--min-prob", "-5"], ["--min-prob", "1.5"],
    ["--min-prob", "inf"], ["--max-seconds", "inf"], ["--max-seconds", "nan"], ["--smooth", "0"]])
def test_a_numeric_option_out_of_range_is_one_usage_line_exit_2(student, clips, option, capsys):
    from dlkdd.cli import main

    with pytest.raises(SystemExit) as ex:
        main(["predict", str(clips[0]), "--model", str(student), *option])
    out = capsys.readouterr()
    assert ex.value.code == 2 and out.out == "" and "Traceback" not in out.err
    assert out.err.strip().splitlines()[-1].startswith(f"dlkdd predict: error: argument {option[-2]}: ")


def test_a_stride_that_opens_too_many_windows_at_once_is_refused(student, clips, capsys):
    line = one_error_line(*dlkdd_inproc(capsys, "predict", clips[0], "--model", student, "--window", "60s",
                                        "--stride", "10ms"), "--stride")
    assert "window" in line


@pytest.mark.parametrize("option", [["--val-fraction", "nan"], ["--test-fraction", "inf"], ["--test-fraction", "1"],
                                    ["--val-fraction", "-0.1"], ["--seed", "-1"]])
def test_import_numeric_options_out_of_range_are_one_usage_line(tmp_path, option, capsys):
    from dlkdd.cli import main

    (tmp_path / "ds").mkdir()
    with pytest.raises(SystemExit) as ex:
        main(["import-folder", str(tmp_path / "ds"), "--out", str(tmp_path / "out"), *option])
    err = capsys.readouterr().err
    assert ex.value.code == 2 and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith(f"dlkdd import-folder: error: argument {option[0]}: ")
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------------ 4. output names


def test_videos_sharing_a_stem_never_share_timeline_files(student, tmp_path, capsys):
    folder = tmp_path / "recordings"
    sources = ["a.mp4", "a.avi", "cam2/a.mp4", "cam2__a.avi", "b.avi"]
    for i, rel in enumerate(sources):
        write_clip(folder / rel, frames=12, seed=i)
    runs = []
    for out in ("out1", "out2"):
        rc, stdout, err = dlkdd_inproc(capsys, "predict", folder, "--model", student, "--timeline", tmp_path / out,
                                       "--json")
        assert rc == 0, err
        runs.append(sorted(p.name for p in (tmp_path / out).glob("*.json")))
        videos = {json.loads(p.read_text())["video"] for p in (tmp_path / out).glob("*.json")}
        assert videos == {str(folder / s) for s in sources}  # one timeline per video, none overwritten
    assert runs[0] == runs[1] and len(runs[0]) == 5  # the same names on every run
    assert "b.json" in runs[0]  # a stem no other video has keeps its plain name


def test_files_given_with_one_stem_get_a_timeline_each(student, tmp_path, capsys):
    given = [write_clip(tmp_path / rel, seed=i) for i, rel in enumerate(["x/clip.mp4", "y/clip.avi", "y/Clip.mkv"])]
    rc, _, err = dlkdd_inproc(capsys, "predict", *given, "--model", student, "--timeline", tmp_path / "out")
    assert rc == 0, err
    docs = [json.loads(p.read_text()) for p in (tmp_path / "out").glob("*.json")]
    assert sorted(d["video"] for d in docs) == sorted(map(str, given))  # "Clip" too: macOS folders ignore case


# ------------------------------------------------------------------------------------------ 5. safe outputs


def test_a_file_name_with_an_escape_sequence_is_printed_escaped(student, tmp_path, capsys):
    clip = write_clip(tmp_path / "cam\x1b[2J.avi")
    rc, out, err = dlkdd_inproc(capsys, "predict", clip, "--model", student)
    assert rc == 0, err
    assert "\x1b" not in out and "cam\\x1b[2J.avi: " in out
    rc, out, err = dlkdd_inproc(capsys, "predict", clip, "--model", student, "--json")
    assert json.loads(out)["clip"] == str(clip)  # machine-read output keeps the exact path


@pytest.mark.parametrize("model", ["student", "exported"])
def test_a_runner_imports_nothing_once_loaded(model, request):
    """Ctrl-C on a stream landed inside the first batch's lazy import (pandas, via to_float): the module stayed half
    initialised and the windows already read could not be predicted (AttributeError instead of a timeline). Every
    import happens when the model loads, before any frame is read."""
    import subprocess
    import sys

    code = ("import sys, numpy as np; from dlkdd.infer.runner import load_runner; r = load_runner(sys.argv[1]); "
            "before = set(sys.modules); r(np.zeros((1, r.num_frames, r.size, r.size, 3), np.uint8)); "
            "print(sorted(set(sys.modules) - before))")
    out = subprocess.run([sys.executable, "-c", code, str(request.getfixturevalue(model))], capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == "[]", out

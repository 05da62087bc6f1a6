"""`dlkdd predict` / `dlkdd export` as a user runs them (subprocess), on real generated dark clips: ONNX export and
ONNX Runtime vs PyTorch, bad inputs, the inference-only install; cost metrics."""
import json
import os
import subprocess
import sys

import pandas as pd
import pytest
import torch

from conftest import ROOT
from helpers import CLASSES, dlkdd, dlkdd_inproc
from dlkdd.checkpoint import save_model
from dlkdd.models.build import build_model

@pytest.fixture(scope="module")
def dark_clip(tiny_dataset):
    m = pd.read_csv(tiny_dataset)
    return tiny_dataset.parent / m["path"].iloc[0]


def export_onnx_file(student, out, capsys):
    rc, stdout, err = dlkdd_inproc(capsys, "export", "--format", "onnx", "--model", student, "--out", out)
    assert rc == 0 and out.is_file(), err
    return out


def test_export_onnx_then_predict_json_from_checkpoint_and_onnx_agree(student, dark_clip, tmp_path, capsys):
    exported = export_onnx_file(student, tmp_path / "student.onnx", capsys)
    runs = {}
    for name, model in (("checkpoint", student), ("onnx", exported)):
        if name == "onnx":  # a fresh interpreter that never built the model class runs the export alone
            proc = dlkdd("predict", dark_clip, "--model", model, "--topk", "2", "--json", cwd=tmp_path)
            rc, stdout, err = proc.returncode, proc.stdout, proc.stderr
        else:
            rc, stdout, err = dlkdd_inproc(capsys, "predict", dark_clip, "--model", model, "--topk", "2", "--json")
        assert rc == 0, err
        out = json.loads(stdout)
        assert set(out["probs"]) == set(CLASSES)
        assert sum(out["probs"].values()) == pytest.approx(1.0, abs=1e-5)
        assert len(out["top"]) == 2 and out["top"][0]["prob"] >= out["top"][1]["prob"]
        runs[name] = out["probs"]
    for c in CLASSES:
        assert runs["checkpoint"][c] == pytest.approx(runs["onnx"][c], abs=1e-4)


def test_the_onnx_file_carries_no_path_of_the_machine_that_exported_it(exported):
    """The exporter writes each node's stack trace (absolute paths of this checkout and its venv) into the file; a
    shipped model must not carry them, and the same checkpoint must export to the same bytes from any checkout."""
    import onnx

    data = exported.read_bytes()
    assert str(ROOT).encode() not in data and sys.prefix.encode() not in data
    assert not [p.key for n in onnx.load(str(exported)).graph.node for p in n.metadata_props
                if p.key == "pkg.torch.onnx.stack_trace"]


def test_onnx_runtime_matches_pytorch_within_1e4_on_real_clips_at_any_batch(student, exported, tiny_frames):
    """Every decoded clip of the tiny dataset (dark and gamma-enhanced, so logits spread), batches 1, 5 and all."""
    import numpy as np

    from dlkdd.infer.runner import OnnxRunner, TorchRunner, load_runner

    clips = np.stack([np.load(f) for d in ("clips", "enhanced/clips") for f in sorted((tiny_frames / d).glob("*.npy"))])
    torch_runner, onnx_runner = load_runner(student), load_runner(exported)
    assert isinstance(torch_runner, TorchRunner) and isinstance(onnx_runner, OnnxRunner)
    for batch in (clips[:1], clips[:5], clips):
        ref, got = torch_runner(batch), onnx_runner(batch)
        assert got.shape == (len(batch), len(CLASSES))
        assert np.abs(ref - got).max() <= 1e-4
        assert np.abs(torch_runner.logits(batch) - onnx_runner.logits(batch)).max() <= 1e-4
    assert (ref.argmax(1) == got.argmax(1)).all()


def test_onnx_runner_reads_everything_from_the_files_metadata_without_dlkdd_model_code(exported, tiny_frames,
                                                                                       tmp_path):
    """A fresh interpreter: ONNX Runtime + metadata only; neither torch nor dlkdd's model code is ever imported."""
    clip = sorted((tiny_frames / "clips").glob("*.npy"))[0]
    code = (
        "import json, sys, numpy as np\n"
        "from dlkdd.infer.runner import load_runner\n"
        f"r = load_runner({str(exported)!r})\n"
        f"p = r(np.load({str(clip)!r})[None])\n"
        "bad = [m for m in sys.modules if m == 'torch' or m.startswith(('torch.', 'torchvision', 'dlkdd.models',"
        " 'dlkdd.distill'))]\n"
        "print(json.dumps({'classes': r.classes, 'T': r.num_frames, 'S': r.size, 'mean': r.info.mean,"
        " 'backend': r.backend, 'sum': float(p.sum()), 'bad': bad[:5]}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["bad"] == [] and out["backend"] == "onnxruntime"
    assert (out["classes"], out["T"], out["S"]) == (CLASSES, 4, 32)
    from dlkdd.models.build import KINETICS_MEAN

    assert out["mean"] == pytest.approx(list(KINETICS_MEAN), abs=1e-6)  # tiny3d's training statistics
    assert out["sum"] == pytest.approx(1.0, abs=1e-5)


def onnx_without_metadata(exported, out):
    import onnx

    proto = onnx.load(str(exported))
    del proto.metadata_props[:]
    onnx.save(proto, str(out))


def wrong_shapes_checkpoint(out):
    """A checkpoint whose weights are for 5 classes but whose class list has 3 (e.g. a hand-edited file)."""
    save_model(out, build_model("tiny3d", 5), "tiny3d", CLASSES, num_frames=4, size=32)


@pytest.mark.parametrize("what", ["clip", "model", "missing", "onnx_no_metadata", "onnx_corrupt", "wrong_shapes"])
def test_corrupt_or_missing_clip_or_model_is_one_line_and_exit_2(student, exported, dark_clip, tmp_path, capsys,
                                                                  what):
    bad = tmp_path / {"clip": "bad.avi", "model": "bad.pt", "missing": "absent.pt", "onnx_no_metadata": "bare.onnx",
                      "onnx_corrupt": "bad.onnx", "wrong_shapes": "edited.pt"}[what]
    if what == "onnx_no_metadata":
        onnx_without_metadata(exported, bad)
    elif what == "wrong_shapes":
        wrong_shapes_checkpoint(bad)
    elif what != "missing":
        bad.write_bytes(b"\x00garbage" * 100)
    args = [bad, "--model", student] if what == "clip" else [dark_clip, "--model", bad]
    rc, stdout, stderr = dlkdd_inproc(capsys, "predict", *args, "--json")
    assert rc == 2
    assert stdout == ""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and bad.name in lines[0], stderr
    if what == "onnx_no_metadata":
        assert "metadata" in lines[0] and "dlkdd export --format onnx" in lines[0]
    if what == "wrong_shapes":
        assert "do not fit" in lines[0] and "(5, 144)" in lines[0]


def test_export_of_a_bad_checkpoint_is_one_line_and_writes_nothing(tmp_path, capsys):
    wrong_shapes_checkpoint(tmp_path / "edited.pt")
    rc, stdout, stderr = dlkdd_inproc(capsys, "export", "--model", tmp_path / "edited.pt", "--out",
                                      tmp_path / "out.onnx")
    assert rc == 2 and len(stderr.strip().splitlines()) == 1 and "edited.pt" in stderr
    assert list(tmp_path.iterdir()) == [tmp_path / "edited.pt"]  # no partial file, no temp left behind


@pytest.mark.parametrize("topk", ["-1", "0", "two"])
def test_predict_topk_below_one_is_an_argparse_error_exit_2(dark_clip, student, topk, capsys):
    from dlkdd.cli import main

    with pytest.raises(SystemExit) as ex:
        main(["predict", str(dark_clip), "--model", str(student), "--topk", topk])
    assert ex.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip().splitlines()[-1].endswith(f"--topk: invalid positive integer "
                                                                             f"value: '{topk}'")


def test_every_option_of_every_command_has_a_help_line():
    import argparse

    from dlkdd.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert {"summary", "predict", "export", "import-arid", "import-csv"} <= set(sub.choices)
    for name in sub.choices:
        for action in sub.choices[name]._actions:
            if not isinstance(action, argparse._HelpAction):
                assert action.help, f"dlkdd {name} {action.option_strings or action.dest} has no help line"
    text = " ".join(sub.choices["predict"].format_help().split())
    assert "--topk TOPK classes to print per clip" in text and "--json print JSON" in text


def test_predict_imports_none_of_the_pipelines_packages(student, exported, dark_clip, tmp_path):
    """`pip install dlkdd` (no `pipeline` extra) must be enough for predict, on either backend."""
    pipeline = ("dvc", "prefect", "great_expectations", "evidently", "matplotlib", "omegaconf", "hydra")
    for model in (student, exported):
        code = ("import json, sys\nfrom dlkdd.cli import main\n"
                f"rc = main(['predict', {str(dark_clip)!r}, '--model', {str(model)!r}, '--json'])\n"
                f"print(json.dumps([rc, sorted({{m.split('.')[0] for m in sys.modules}} & set({pipeline!r}))]))\n")
        proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                              timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
        assert proc.returncode == 0, proc.stderr
        rc, imported = json.loads(proc.stdout.strip().splitlines()[-1])
        assert rc == 0 and imported == [], (model.name, imported)


def test_inference_install_has_what_predict_needs_and_the_pipeline_is_an_extra():
    import importlib.metadata
    import re
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    name = lambda req: re.split(r"[<>=!\[ ;~]", req, maxsplit=1)[0].lower()  # noqa: E731
    core = {name(r) for r in project["dependencies"]}
    extras = {k: {name(r) for r in v} for k, v in project["optional-dependencies"].items()}
    assert {"torch", "torchvision", "numpy", "opencv-python-headless", "onnxruntime", "tqdm"} <= core
    pipeline = {"dvc", "dvc-s3", "prefect", "great-expectations", "evidently", "matplotlib", "omegaconf"}
    assert not core & pipeline, core & pipeline
    assert pipeline <= extras["pipeline"]
    # `dvc exp run -S` parses overrides with hydra: DVC requires hydra-core itself, so it is not declared here
    assert "hydra-core" not in extras["pipeline"] | core
    assert "hydra-core" in {name(r) for r in importlib.metadata.requires("dvc")}


def test_cost_counts_flops_and_two_stream_costs_more_than_the_student():
    from dlkdd.config import EnhanceConfig
    from dlkdd.distill.evaluation import gflops, inference_cost, per_class_accuracy, two_stream_cost
    from dlkdd.enhance import enhance_clip

    model = build_model("tiny3d", 3)
    clip = torch.randint(0, 40, (3, 4, 32, 32), dtype=torch.uint8)
    conv1 = model.backbone.features[0][0]  # (1, 3, 3) conv, stride 2 → 4 x 16 x 16 outputs per channel
    expected_conv1 = 2 * conv1.weight.numel() * 4 * 16 * 16 / 1e9
    assert gflops(model, clip) > expected_conv1
    one = inference_cost(model, clip, repeats=3)
    two = two_stream_cost(lambda f: enhance_clip(f, EnhanceConfig()), model, build_model("tiny3d", 3), clip, 3)
    assert two["gflops"] == pytest.approx(2 * one["gflops"], rel=1e-3)
    assert two["params"] == 2 * one["params"] and two["latency_ms"] > 0
    acc = per_class_accuracy(torch.tensor([0, 1, 1, 2]), torch.tensor([0, 1, 2, 2]), ["a", "b", "c", "d"])
    assert acc == {"a": 1.0, "b": 1.0, "c": 0.5}

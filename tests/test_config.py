"""params.yaml schema: typos and wrong types are one clear line naming the key."""
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dlkdd.config import ConfigError, Params, load_params, parse_params

ROOT = Path(__file__).resolve().parents[1]


def test_repo_params_validate():
    p = load_params(ROOT / "params.yaml")
    assert isinstance(p, Params) and p.kd.temperature > 0


def test_int_override_becomes_float():
    p = parse_params({"kd": {"temperature": 4}})
    assert p.kd.temperature == 4.0 and isinstance(p.kd.temperature, float)


@pytest.mark.parametrize("raw, key", [
    ({"kd": {"temprature": 4}}, "kd.temprature"),
    ({"trian": {}}, "trian"),
    ({"train": {"epochs": "many"}}, "train.epochs"),
    ({"kd": {"alpha": [1, 2]}}, "kd.alpha"),
])
def test_bad_key_or_type_names_the_key(raw, key):
    with pytest.raises(ConfigError) as err:
        parse_params(raw, "params.yaml")
    msg = str(err.value)
    assert f"'{key}'" in msg and "\n" not in msg


def test_stage_exits_with_one_line_on_typo(tmp_path):
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["kd"]["temprature"] = 4
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    r = subprocess.run([sys.executable, str(ROOT / "stages/enhance.py"), "--frames", "x", "--out", "y"],
                       cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode != 0
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "kd.temprature" in lines[0], r.stderr


@pytest.mark.parametrize("raw, line", [
    ({"validate": {"drift_share": 2}}, "validate.drift_share=2.0 is out of range: must be in [0, 1]"),
    ({"validate": {"mostly": 3}}, "validate.mostly=3.0 is out of range: must be in [0, 1]"),
    ({"retrain": {"settle_s": -1}}, "retrain.settle_s=-1.0 is out of range: must be >= 0"),
    ({"frames": {"num_frames": 0}}, "frames.num_frames=0 is out of range: must be >= 1"),
    ({"frames": {"decode_timeout_s": 0}}, "frames.decode_timeout_s=0.0 is out of range: must be > 0"),
    ({"student": {"dropout": 1.5}}, "student.dropout=1.5 is out of range: must be in [0, 1]"),
    ({"kd": {"alpha": -0.1}}, "kd.alpha=-0.1 is out of range: must be in [0, 1]"),
    ({"validate": {"luma_mean_min": 50}},
     "validate.luma_mean_min=50.0 is out of range: must be <= validate.luma_mean_max"),
    ({"frames": {"train_sampling": "sometimes"}},
     "frames.train_sampling='sometimes' is not a valid choice: must be one of uniform, random"),
    ({"train": {"amp": "fp8"}}, "train.amp='fp8' is not a valid choice: must be one of bf16, fp16, off"),
    ({"enhance": {"method": "retinex"}},
     "enhance.method='retinex' is not a valid choice: must be one of gamma, hist_eq"),
    ({"teacher": {"arch": "resnet50"}}, "teacher.arch='resnet50' is not a valid choice: must be one of tiny3d, r3d_18"),
    ({"kd": {"teacher_logits": "live"}},
     "kd.teacher_logits='live' is not a valid choice: must be one of cached, online"),
])
def test_out_of_range_or_bad_choice_is_one_line_naming_the_key(raw, line):
    with pytest.raises(ConfigError) as err:
        parse_params(raw, "params.yaml")
    msg = str(err.value)
    assert msg.startswith(f"params.yaml: {line}") and "\n" not in msg, msg


def test_schema_choices_are_what_the_library_builds():
    from dlkdd.config import ARCHS, ENHANCE_METHODS
    from dlkdd.enhance import METHODS
    from dlkdd.models.build import ARCHS as BUILT

    assert set(ARCHS) == set(BUILT) and set(ENHANCE_METHODS) == set(METHODS)


def test_stage_exits_with_one_line_on_out_of_range(tmp_path):
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["validate"]["drift_share"] = 2
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    r = subprocess.run([sys.executable, str(ROOT / "stages/validate.py"), "--frames", "x", "--reports", "r",
                        "--metrics", "m.json", "--ok", "ok"], cwd=tmp_path, capture_output=True, text=True)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode != 0 and len(lines) == 1 and "validate.drift_share=2.0 is out of range" in lines[0], r.stderr

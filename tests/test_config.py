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
    ({"retrain": {"settle_s": -1}}, "retrain.settle_s=-1.0 is out of range: must be in [0, 86400]"),
    ({"frames": {"num_frames": 0}}, "frames.num_frames=0 is out of range: must be in [1, 128]"),
    ({"frames": {"decode_timeout_s": 0}}, "frames.decode_timeout_s=0.0 is out of range: must be in (0, 3600]"),
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


def _leaves(cls=Params, prefix=""):
    """(dotted key, dataclass field) of every value in the schema."""
    import dataclasses

    for f in dataclasses.fields(cls):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if dataclasses.is_dataclass(default):
            yield from _leaves(type(default), f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", f


def _raw(key: str, value) -> dict:
    raw: dict = {}
    *sections, name = key.split(".")
    node = raw
    for sec in sections:
        node = node.setdefault(sec, {})
    node[name] = value
    return raw


FLOATS = [k for k, f in _leaves() if f.type in (float, "float")]
NUMBERS = [k for k, f in _leaves() if f.type in (int, float, "int", "float")]


def test_schema_walk_finds_the_numbers():
    assert {"retrain.alpha", "retrain.tolerance", "kd.temperature", "frames.decode_timeout_s"} <= set(FLOATS)
    assert {"seed", "frames.clips_per_video", "evaluate.latency_clips"} <= set(NUMBERS) - set(FLOATS)


@pytest.mark.parametrize("key", FLOATS)
def test_every_float_refuses_nan_and_inf(key):
    """NaN compares False with every bound, so it passed every range: retrain.alpha=NaN made the paired test call a
    30-lost / 2-gained regression 'not significantly worse'. ``"nan"``: what ``dvc exp run -S key=nan`` writes."""
    for value in (float("nan"), float("inf"), float("-inf"), "nan", "-inf"):
        with pytest.raises(ConfigError) as err:
            parse_params(_raw(key, value), "params.yaml")
        msg = str(err.value)
        assert msg.startswith(f"params.yaml: {key}=") and msg.endswith(" is not a finite number"), msg


@pytest.mark.parametrize("text, key", [("retrain:\n  alpha: .nan\n", "retrain.alpha"),
                                       ("retrain:\n  tolerance: .inf\n", "retrain.tolerance"),
                                       ("kd:\n  temperature: -.inf\n", "kd.temperature")])
def test_yaml_nan_and_inf_in_a_params_file_are_one_line(tmp_path, text, key):
    (tmp_path / "params.yaml").write_text(text)
    with pytest.raises(ConfigError, match=rf"^.*params.yaml: {key}=(nan|inf|-inf) is not a finite number$"):
        load_params(tmp_path / "params.yaml")


def test_every_number_has_an_upper_bound():
    """A typo of a few zeros (frames.clips_per_video: 100000 wrote 6 GB) must be refused, not run."""
    unbounded = [k for k, f in _leaves() if k in NUMBERS and f.metadata.get("high") is None]
    assert unbounded == []


@pytest.mark.parametrize("raw, line", [
    ({"frames": {"clips_per_video": 100000}}, "frames.clips_per_video=100000 is out of range: must be in [1, 64]"),
    ({"frames": {"size": 100000}}, "frames.size=100000 is out of range: must be in [1, 512]"),
    ({"frames": {"num_frames": 100000}}, "frames.num_frames=100000 is out of range: must be in [1, 128]"),
    ({"generate": {"train_per_class": 100000}},
     "generate.train_per_class=100000 is out of range: must be in [1, 1000]"),
    ({"generate": {"width": 100000}}, "generate.width=100000 is out of range: must be in [1, 640]"),
    ({"evaluate": {"latency_clips": 100000}}, "evaluate.latency_clips=100000 is out of range: must be in [1, 1000]"),
    ({"train": {"epochs": 100000}}, "train.epochs=100000 is out of range: must be in [1, 1000]"),
    ({"train": {"batch_size": 100000}}, "train.batch_size=100000 is out of range: must be in [1, 1024]"),
    ({"enhance": {"zerodce": {"batch_size": 100000}}},
     "enhance.zerodce.batch_size=100000 is out of range: must be in [1, 1024]"),
    ({"retrain": {"tolerance": 2}}, "retrain.tolerance=2.0 is out of range: must be in [-1, 1]"),
    ({"seed": -1}, "seed=-1 is out of range: must be in [0, 4294967295]"),
])
def test_upper_bounds_are_one_line(raw, line):
    with pytest.raises(ConfigError) as err:
        parse_params(raw, "params.yaml")
    assert str(err.value) == f"params.yaml: {line}"


def _yaml_comments(path) -> dict[str, str]:
    """{dotted key: the comment on its line} of a block-style YAML file."""
    import re

    out, stack = {}, []
    for line in path.read_text().splitlines():
        m = re.match(r"^( *)(\w+):([^#]*)(?:#(.*))?$", line)
        if not m:
            continue
        depth = len(m.group(1)) // 2
        stack = stack[:depth] + [m.group(2)]
        out[".".join(stack)] = (m.group(4) or "").strip()
    return out


def test_params_yaml_states_every_range():
    """Each number's line in params.yaml gives its range as low..high (and why, in words): the file people edit
    says what the schema will refuse."""
    comments = _yaml_comments(ROOT / "params.yaml")
    wrong = []
    for key, f in _leaves():
        if key not in NUMBERS:
            continue
        low, high = f.metadata["low"], f.metadata["high"]
        rng = f"{low:g}..{high:g}" if isinstance(low, float) or isinstance(high, float) else f"{low}..{high}"
        if rng not in comments.get(key, ""):
            wrong.append(f"{key}: comment {comments.get(key)!r} lacks {rng}")
    assert wrong == []


@pytest.mark.parametrize("raw, line", [
    ({"validate": {"drift_columns": []}},
     "validate.drift_columns=[] needs at least 1 name(s) from: frames, fps, height, width, duration_s, luma_mean"),
    ({"validate": {"drift_columns": ["luma_mean", "lumamean"]}},
     "validate.drift_columns: unknown name(s) ['lumamean']"),
    ({"validate": {"drift_columns": ["noise", "noise"]}}, "validate.drift_columns: ['noise'] listed more than once"),
    ({"validate": {"warn_only": ["drfit"]}}, "validate.warn_only: unknown name(s) ['drfit']: must be among row_count"),
    ({"validate": {"warn_only": ["drift", "drift"]}}, "validate.warn_only: ['drift'] listed more than once"),
    ({"generate": {"classes": []}}, "generate.classes=[] needs at least 2 name(s) from: Drink, Jump"),
    ({"generate": {"classes": ["Wave"]}}, "generate.classes=['Wave'] needs at least 2 name(s)"),
    ({"generate": {"classes": ["Wave", "Dance"]}}, "generate.classes: unknown name(s) ['Dance']: must be among Drink"),
    ({"generate": {"classes": ["Wave", "Run", "Wave"]}}, "generate.classes: ['Wave'] listed more than once"),
])
def test_lists_are_checked_in_one_line(raw, line):
    """drift_columns: [] was a ZeroDivisionError inside the quality code; an unknown name failed only at its stage."""
    with pytest.raises(ConfigError) as err:
        parse_params(raw, "params.yaml")
    msg = str(err.value)
    assert msg.startswith(f"params.yaml: {line}") and "\n" not in msg, msg


def test_list_name_sets_are_what_the_library_has():
    import numpy as np

    from dlkdd.config import QUALITY_CHECKS, STATS_COLUMNS
    from dlkdd.data.clipstats import clip_stats
    from dlkdd.quality import CHECKS

    assert list(QUALITY_CHECKS) == list(CHECKS)
    assert set(STATS_COLUMNS) == set(clip_stats(np.zeros((2, 16, 16, 3), np.uint8), 10.0))
    assert parse_params({"validate": {"warn_only": ["drift", "class_balance"], "drift_columns": ["noise"]},
                         "generate": {"classes": ["Walk", "Wave"]}}).validate.warn_only == ["drift", "class_balance"]


def _check_params(d):
    return subprocess.run([sys.executable, str(ROOT / "stages/check_params.py"), "--ok", "data/params.ok"], cwd=d,
                          capture_output=True, text=True)


def test_check_params_stage_refuses_in_one_line_and_leaves_no_stamp(tmp_path):
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    (tmp_path / "data").mkdir()
    for key, value, line in (("temprature", 4.0, "unknown key 'kd.temprature'"),
                             ("alpha", float("nan"), "kd.alpha=nan is not a finite number")):
        (tmp_path / "data/params.ok").write_text("stale\n")
        (tmp_path / "params.yaml").write_text(yaml.safe_dump({**raw, "kd": {**raw["kd"], key: value}}))
        r = _check_params(tmp_path)
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert r.returncode == 1 and len(lines) == 1 and lines[0].startswith(f"error: params.yaml: {line}"), r.stderr
        assert not (tmp_path / "data/params.ok").exists()


def test_check_params_stamp_does_not_depend_on_the_values(tmp_path):
    """Every stage depends on the stamp: were its bytes to follow the values, any params edit would re-run all."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    stamps = []
    for temperature in (4.0, 2.0):
        (tmp_path / "params.yaml").write_text(yaml.safe_dump({**raw, "kd": {**raw["kd"], "temperature": temperature}}))
        r = _check_params(tmp_path)
        assert r.returncode == 0, r.stderr
        stamps.append((tmp_path / "data/params.ok").read_bytes())
    assert stamps[0] == stamps[1] and stamps[0]

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

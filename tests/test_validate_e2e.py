"""`dvc repro` in a temp git + DVC repo on floodlit footage stops at `validate` and trains nothing."""
import json
import subprocess
import sys

import pytest
import yaml

from conftest import TINY_REPRO, copy_pipeline, merge_dicts, tool_env

pytestmark = pytest.mark.e2e


def test_repro_stops_at_validate_on_floodlit_footage(tmp_path):
    d = copy_pipeline(tmp_path / "repo", merge_dicts(TINY_REPRO, {"generate": {"luma_min": 120.0, "luma_max": 160.0}}))
    env = tool_env()
    for cmd in (["git", "init", "-q"], [sys.executable, "-m", "dvc", "init", "-q"]):
        subprocess.run(cmd, cwd=d, env=env, check=True)

    r = subprocess.run([sys.executable, "-m", "dvc", "repro"], cwd=d, env=env, capture_output=True, text=True)
    out = r.stdout + r.stderr
    assert r.returncode != 0, out
    ran = {line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage")}
    assert ran == {"check_params", "generate", "frames", "validate"}, out
    # one readable summary: which expectation, how many clips, worst offenders, where the report is
    assert "validate: FAILED" in out and "FAIL luma_mean [expect_column_values_to_be_between]: 21/21 clips" in out
    assert "worst: " in out and "reports/validate/index.html" in out
    assert "Traceback" not in out
    # nothing trained, nothing enhanced, no pass stamp; the reports and the metric are there to look at
    assert not list(d.rglob("*.pt"))
    assert not (d / "data/enhanced").exists() and not (d / "data/validated.ok").exists()
    metric = json.loads((d / "metrics/validate.json").read_text())
    details = json.loads((d / "reports/validate/details.json").read_text())
    assert metric["passed"] is False and metric["failed"] == len(details["failed_checks"]) >= 1
    assert "luma_mean" in details["failed_checks"] and details["checks"]["luma_mean"]["unexpected"] == 21
    assert (d / "reports/validate/index.html").is_file() and (d / "reports/validate/drift.html").is_file()

    # a user who decides the floodlit footage is fine downgrades the failed checks: visible warnings, and on it goes
    failed = details["failed_checks"]
    params = yaml.safe_load((d / "params.yaml").read_text())
    params["validate"]["warn_only"] = failed
    (d / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    r = subprocess.run([sys.executable, "-m", "dvc", "repro", "validate"], cwd=d, env=env, capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "WARNING (downgraded by validate.warn_only) luma_mean" in r.stdout
    metric = json.loads((d / "metrics/validate.json").read_text())
    assert metric["passed"] is True and metric["warnings"] == len(failed)
    assert json.loads((d / "reports/validate/details.json").read_text())["warned_checks"] == failed
    assert (d / "data/validated.ok").is_file()

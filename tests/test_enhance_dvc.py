"""DVC behaviour of enhancement in a real temp git + DVC repo: each method runs via `dvc exp run -S`, a method used
before is restored from the run-cache (not recomputed), and Zero-DCE training only costs when it is used."""
import hashlib
import json
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, TINY_REPRO as TINY, copy_pipeline, merge_dicts as _merge, run_ok as run

pytestmark = pytest.mark.e2e

# the enhancement half of the real dvc.yaml (check_params: every stage depends on its stamp)
STAGES = ("check_params", "generate", "frames", "validate", "train_zerodce", "enhance")
ZERODCE_TINY = {"epochs": 1, "batch_size": 8, "crop": 16, "frames_per_clip": 1}


def ran(out: str) -> set[str]:
    """The stages that ran, but check_params: it re-checks every edited params.yaml in a moment (or comes from the
    run-cache) and its stamp never changes, so it re-runs nothing downstream."""
    return {line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage")} - {"check_params"}


def digest(d: Path) -> str:
    h = hashlib.md5()
    for p in sorted((d / "data/enhanced/clips").glob("*.npy")):
        h.update(p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    # the test's starting point is gamma, whatever the checkout's params say
    d = copy_pipeline(tmp_path_factory.mktemp("enh"),
                      _merge(TINY, {"enhance": {"method": "gamma", "zerodce": ZERODCE_TINY}}))
    pipeline = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    pipeline = {"stages": {k: v for k, v in pipeline["stages"].items() if k in STAGES}}
    (d / "dvc.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False))
    for cmd in (["git", "init", "-q"], [sys.executable, "-m", "dvc", "init", "-q"],
                [sys.executable, "-m", "dvc", "config", "core.analytics", "false"],
                [sys.executable, "-m", "dvc", "repro"], ["git", "add", "-A"], ["git", "commit", "-qm", "gamma"]):
        run(cmd, d)
    return d


def exp(repo: Path, *sets: str) -> set[str]:
    args = [a for s in sets for a in ("-S", s)]
    return ran(run([sys.executable, "-m", "dvc", "exp", "run", *args], repo))


def test_switching_methods_recomputes_once_then_restores_from_cache(repo):
    gamma = digest(repo)
    seen = {"gamma": gamma}
    for method in ("hist_eq", "clahe", "lime", "zerodce"):
        stages = exp(repo, f"enhance.method={method}")
        assert "enhance" in stages, (method, stages)
        # train_zerodce re-runs when the method changes (it reads enhance.method) but trains only for zerodce
        assert ((repo / "models/zerodce.pt").stat().st_size > 100_000) == (method == "zerodce"), method
        summary = json.loads((repo / "reports/enhance/summary.json").read_text())
        assert summary["luma_after"] > summary["luma_before"], (method, summary)
        assert (repo / "reports/enhance/strip.png").read_bytes()[:4] == b"\x89PNG"
        seen[method] = digest(repo)
    assert len(set(seen.values())) == 5  # five different teacher views
    plots = run([sys.executable, "-m", "dvc", "plots", "show", "--json"], repo)
    assert "reports/enhance/strip.png" in plots  # the dark | enhanced strip is a DVC image plot
    # back to methods used before: nothing runs, the outs come back from DVC's run-cache, byte-identical
    for method in ("clahe", "zerodce", "gamma"):
        assert exp(repo, f"enhance.method={method}") == set(), method
        assert digest(repo) == seen[method], method


def test_zerodce_params_do_not_touch_other_methods(repo):
    before = digest(repo)
    stages = exp(repo, "enhance.method=gamma", "enhance.zerodce.epochs=2", "enhance.zerodce.lr=0.002")
    assert stages == {"train_zerodce"}, stages  # writes the same 'unused' marker; enhance is skipped
    assert digest(repo) == before


def test_enhance_zerodce_without_weights_is_one_line(repo, tmp_path):
    run(["git", "checkout", "-q", "--", "params.yaml"], repo)
    p = yaml.safe_load((repo / "params.yaml").read_text())
    p["enhance"]["method"] = "zerodce"
    (repo / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    import subprocess

    (tmp_path / "empty.pt").write_bytes(b"")
    r = subprocess.run([sys.executable, "stages/enhance.py", "--frames", "data/frames", "--out", str(tmp_path / "e"),
                        "--model", str(tmp_path / "empty.pt")], cwd=repo, capture_output=True, text=True)
    run(["git", "checkout", "-q", "--", "params.yaml"], repo)
    assert r.returncode != 0 and r.stderr.strip().startswith("error:") and "Traceback" not in r.stderr, r.stderr


def test_unknown_method_is_one_line(repo):
    import subprocess

    p = yaml.safe_load((repo / "params.yaml").read_text())
    p["enhance"]["method"] = "retinex"
    (repo / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    r = subprocess.run([sys.executable, "stages/enhance.py", "--frames", "data/frames", "--out", "/nonexistent/e"],
                       cwd=repo, capture_output=True, text=True)
    run(["git", "checkout", "-q", "--", "params.yaml"], repo)
    assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip() == "error: params.yaml: enhance.method='retinex' is not a valid choice: must be one " \
        "of gamma, hist_eq, clahe, lime, zerodce"

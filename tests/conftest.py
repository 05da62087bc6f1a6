"""Shared fixtures: tiny synthetic dark footage written as real video files, ONE Prefect test server per session,
ONE tiny production repo (`dvc repro` run once per session, copied per module), a tiny student checkpoint."""
import os
import shutil
import sys
from pathlib import Path

import pytest

from dlkdd.config import GenerateConfig

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # the flows/ package lives at the repository root


def pytest_configure(config) -> None:
    # `make test` runs two xdist workers on two cores: an OpenMP thread that spins while it waits would take the other
    # worker's core (the training stages run train.threads=2 each). Waiting passively changes no result.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the groups into the test ids
def pytest_collection_modifyitems(items) -> None:
    """`pytest -n 2 --dist loadgroup` (`make test`): one xdist group per module, so a module's fixtures are built once
    and its tests run in file order on one worker. A test that needs a Prefect server or the production template
    (a `dvc repro`) is e2e (not in `make test-fast`) wherever it is written."""
    for item in items:
        if {"prefect_server", "prod_template"} & set(item.fixturenames):
            item.add_marker(pytest.mark.e2e)
        item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::")[0]))


def session_dir(tmp_path_factory) -> Path:
    """A folder every xdist worker of this pytest session shares (the workers' temp folders sit side by side in
    it); this process's own temp folder when the suite runs in one process."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def tiny_generate_config(**kw) -> GenerateConfig:
    base = dict(classes=["Drink", "Jump", "Sit"], train_per_class=2, val_per_class=1, test_per_class=1,
                num_frames=10, width=64, height=48)
    return GenerateConfig(**{**base, **kw})


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    """A 3-class synthetic dataset (12 clips) on disk; returns its manifest path."""
    from dlkdd.data.synthetic import generate_dataset

    return generate_dataset(tmp_path_factory.mktemp("raw"), tiny_generate_config(), seed=7)


@pytest.fixture(scope="session")
def tiny_frames(tiny_dataset, tmp_path_factory) -> Path:
    """The tiny dataset as a frame cache (4 frames x 32x32) plus its gamma-enhanced view in ``<dir>/enhanced/clips``."""
    import numpy as np
    import pandas as pd

    from dlkdd.atomic import write_array_atomic
    from dlkdd.config import EnhanceConfig
    from dlkdd.data.frame_index import read_index
    from dlkdd.data.frames import build_frame_cache
    from dlkdd.enhance import enhance_clip

    out = tmp_path_factory.mktemp("frames")
    build_frame_cache(pd.read_csv(tiny_dataset), tiny_dataset.parent, out, 4, 32, ["Drink", "Jump", "Sit"])
    index, _ = read_index(out)
    (out / "enhanced" / "clips").mkdir(parents=True)
    for cid in index["clip_id"].astype(str):
        clip = np.load(out / "clips" / f"{cid}.npy")
        write_array_atomic(out / "enhanced" / "clips" / f"{cid}.npy", enhance_clip(clip, EnhanceConfig()))
    return out


PIPELINE_FILES = ("dvc.yaml", ".gitignore", ".dvcignore", "data/.gitignore", "data/footage.csv", "models/.gitignore")


def copy_pipeline(dest: Path, params_override: dict | None = None) -> Path:
    """Copy what `dvc repro` needs of this project (stages, library, dvc.yaml, the landed-footage sidecar, ignores)
    into ``dest`` and write params.yaml = the project's params merged with ``params_override``."""
    import shutil

    import yaml

    for name in ("stages", "src"):
        shutil.copytree(ROOT / name, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in PIPELINE_FILES:
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, dest / name)
    params = merge_dicts(yaml.safe_load((ROOT / "params.yaml").read_text()), params_override or {})
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return dest


def merge_dicts(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = merge_dicts(base.get(k, {}), v) if isinstance(v, dict) else v
    return out


# the smallest pipeline config that still runs every stage (3 classes, 21 clips, 4x32x32 frames, 2 epochs)
TINY_PIPELINE = {
    "generate": {"classes": ["Drink", "Jump", "Sit"], "train_per_class": 4, "val_per_class": 1, "test_per_class": 2,
                 "num_frames": 12, "width": 64, "height": 48},
    "frames": {"num_frames": 4, "size": 32},
    "train": {"epochs": 2, "batch_size": 4},
    "evaluate": {"latency_clips": 2},
}


def tool_env(**extra: str) -> dict[str, str]:
    """Environment for dvc/git subprocesses: this venv first on PATH, no analytics, a git identity."""
    import os
    import sys

    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            "DVC_NO_ANALYTICS": "1", "GX_ANALYTICS_ENABLED": "false", "GIT_AUTHOR_NAME": "t",
            "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t", **extra}


def run_ok(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    """Run ``cmd`` in ``cwd``; fail the test with the tail of its output unless it exits 0. Returns stdout."""
    import subprocess

    r = subprocess.run(cmd, cwd=cwd, env=env or tool_env(), capture_output=True, text=True)
    assert r.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r.stdout


# `dvc repro` of the tiny pipeline, as the pipeline tests run it (kd.temperature 2.0, so `-S kd.temperature=4` changes)
TINY_REPRO = merge_dicts(TINY_PIPELINE, {"kd": {"temperature": 2.0}})
# production for the retrain flows: the tiny pipeline, no settle time, any drop in accuracy refused
TINY_PROD = merge_dicts(TINY_PIPELINE, {"retrain": {"settle_s": 0.0, "tolerance": 0.0, "push_retries": 1,
                                                   "push_retry_delay_s": 0.5}})


@pytest.fixture(scope="session")
def prefect_server():
    """The one Prefect test server of the session (Prefect's testing guide: a session-scoped harness)."""
    from prefect.testing.utilities import prefect_test_harness

    # the ephemeral server (uvicorn + SQLite migrations) took > 60 s to answer on this 2-core machine under load
    with prefect_test_harness(server_startup_timeout=180):
        yield


@pytest.fixture(scope="session")
def prod_template(tmp_path_factory) -> Path:
    """The production checkout, built once per pytest session, whichever xdist worker asks first (the others wait on
    the lock): pipeline run (`dvc repro`) and committed, a local-directory DVC remote. Never handed to a test:
    ``prod`` and the pipeline tests copy it."""
    from filelock import FileLock

    shared = session_dir(tmp_path_factory)
    d, built = shared / "prod-template", shared / "prod-template.built"
    with FileLock(str(shared / "prod-template.lock")):
        if not built.is_file():
            shutil.rmtree(d, ignore_errors=True)
            build_template(copy_pipeline(d, TINY_PROD), shared / "remote-template")
            built.touch()
    return d


def build_template(d: Path, remote: Path) -> None:
    dvc = [sys.executable, "-m", "dvc"]
    run_ok(["git", "init", "-q", "-b", "main"], d)
    run_ok([*dvc, "init", "-q"], d)
    run_ok([*dvc, "config", "core.analytics", "false"], d)
    run_ok([*dvc, "remote", "add", "-d", "local", str(remote)], d)
    run_ok([*dvc, "repro"], d)
    run_ok(["git", "add", "-A"], d)
    run_ok(["git", "commit", "-qm", "tiny production"], d)


def copy_repo(template: Path, dest: Path, remote: Path) -> Path:
    """A git + DVC repo copied whole (.git, .dvc/cache, the workspace; not DVC's scratch .dvc/tmp) with its own DVC
    remote ``remote`` (in .dvc/config.local, which git ignores and retrain worktrees copy): git state as committed."""
    shutil.copytree(template, dest, symlinks=True, ignore=lambda d, names: ["tmp"] if Path(d).name == ".dvc" else [])
    run_ok([sys.executable, "-m", "dvc", "remote", "modify", "--local", "local", "url", str(remote)], dest)
    return dest


@pytest.fixture(scope="module")
def prod(tmp_path_factory, prod_template, prefect_server) -> Path:
    """The production checkout for one module (its tests run in file order, each from the state the previous one
    left, as nights do): a copy of the session's template, with its own remote."""
    return copy_repo(prod_template, tmp_path_factory.mktemp("prod") / "repo", tmp_path_factory.mktemp("remote"))


@pytest.fixture(scope="session")
def student(tmp_path_factory):
    """A tiny untrained tiny3d student checkpoint (4 x 32 x 32, classes Drink/Jump/Sit); tests only read it."""
    import torch

    from dlkdd.checkpoint import save_model
    from dlkdd.models.build import build_model

    d = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    save_model(d / "student.pt", build_model("tiny3d", 3), "tiny3d", ["Drink", "Jump", "Sit"], num_frames=4, size=32)
    return d / "student.pt"


@pytest.fixture(scope="session")
def exported(student, tmp_path_factory):
    """``student`` exported to ONNX; tests only read it."""
    from dlkdd.distill.export import export_onnx

    out = tmp_path_factory.mktemp("onnx") / "student.onnx"
    export_onnx(student, out)
    return out

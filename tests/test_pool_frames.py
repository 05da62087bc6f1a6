"""The frames stage's unlabelled pool: cached apart, copies of labelled clips refused by name, the truth kept aside."""
import shutil
import subprocess
import sys

import pandas as pd
from conftest import copy_pipeline, tiny_generate_config

from dlkdd.data.synthetic import generate_dataset


def _frames(d, *extra):
    return subprocess.run([sys.executable, "stages/frames.py", "--manifest", "raw/manifest.csv", "--root", "raw",
                           "--out", "frames", "--pool-out", "pool", *extra], cwd=d, capture_output=True, text=True)


def test_pool_is_cached_apart_and_a_test_clip_copy_is_refused_naming_the_kept_row(tmp_path):
    d = copy_pipeline(tmp_path / "repo", {"frames": {"num_frames": 4, "size": 32}})
    generate_dataset(d / "raw", tiny_generate_config(unlabeled_per_class=2), seed=7)
    manifest = pd.read_csv(d / "raw/manifest.csv", dtype=str, keep_default_na=False)
    truth = pd.read_csv(d / "raw/unlabeled_truth.csv")
    pool = manifest[manifest["split"] == "unlabeled"]
    assert len(pool) == 6 and (pool["label"] == "").all() and (pool["class_name"] == "").all()
    assert not any(c in p for p in pool["path"] for c in ("Drink", "Jump", "Sit"))  # the name says no class
    assert sorted(truth["path"]) == sorted(pool["path"])
    # a careless operator: a test clip copied into the unlabelled folder under a new name, and a pool row listing
    # a test clip's own file
    test = manifest[manifest["split"] == "test"].iloc[0]
    shutil.copy(d / "raw" / test["path"], d / "raw/unlabeled/u_copied.avi")
    extra = pd.DataFrame([{"path": "unlabeled/u_copied.avi", "label": "", "class_name": "", "split": "unlabeled",
                           "video_id": "u_copied"},
                          {"path": test["path"], "label": "", "class_name": "", "split": "unlabeled",
                           "video_id": "again"}])
    pd.concat([manifest, extra]).to_csv(d / "raw/manifest.csv", index=False)
    r = _frames(d)
    assert r.returncode == 0, r.stderr[-2000:]
    index = pd.read_csv(d / "pool/index.csv", dtype={"clip_id": str})
    assert len(index) == 6 and set(index["split"]) == {"unlabeled"} and set(index["label"]) == {-1}
    assert all((d / "pool/clips" / f"{c}.npy").is_file() for c in index["clip_id"])
    labelled = pd.read_csv(d / "frames/index.csv")
    assert "unlabeled" not in set(labelled["split"]) and len(labelled) == 12
    q = pd.read_csv(d / "pool/quarantine.csv")
    assert list(q["kind"]) == ["duplicate", "duplicate"], q
    for reason in q["reason"]:
        assert f"labelled clip {test['path']} (test, video_id {test['video_id']})" in reason, reason
    assert "same bytes" in q["reason"][0] and "same file" in q["reason"][1]
    # the generator's truth, by clip id, for scoring pseudo-labels only
    assert sorted(pd.read_csv(d / "pool/truth.csv", dtype={"clip_id": str})["clip_id"]) == sorted(index["clip_id"])


def test_without_a_pool_the_labelled_cache_is_byte_identical_and_the_pool_empty(tmp_path):
    """The pool's rows never reach data/frames: with and without 2 pool clips per class, its files are the same."""
    d = copy_pipeline(tmp_path / "repo", {"frames": {"num_frames": 4, "size": 32}})
    generate_dataset(d / "raw", tiny_generate_config(), seed=7)
    assert not (d / "raw/unlabeled_truth.csv").exists()  # no pool: the folder holds what it held before pools
    assert _frames(d).returncode == 0
    before = {p.name: p.read_bytes() for p in (d / "frames").iterdir() if p.is_file()}
    assert pd.read_csv(d / "pool/index.csv").empty and not (d / "pool/truth.csv").exists()
    shutil.rmtree(d / "raw")
    generate_dataset(d / "raw", tiny_generate_config(unlabeled_per_class=2), seed=7)
    assert _frames(d).returncode == 0
    assert {p.name: p.read_bytes() for p in (d / "frames").iterdir() if p.is_file()} == before
    assert len(pd.read_csv(d / "pool/index.csv")) == 6

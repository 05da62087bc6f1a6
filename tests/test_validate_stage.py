"""The `validate` stage on real footage whose checks fail, and drift compared one row per video.

Real dark clips (the synthetic generator's, re-encoded with OpenCV) of mixed sizes, one cut to 5 frames; decoded by the
real frame cache into stats.csv; the stage script runs as DVC runs it.
"""
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import yaml

from dlkdd.config import ValidateConfig
from dlkdd.data.frames import SamplingSpec, build_frame_cache
from dlkdd.data.synthetic import generate_dataset, write_video
from dlkdd.data.video import read_video
from dlkdd.quality import check_footage

from conftest import ROOT, tiny_generate_config

CLASSES = ["Drink", "Jump", "Sit"]
NUM_FRAMES = 8


@pytest.fixture(scope="module")
def footage(tmp_path_factory) -> Path:
    """12 train + 12 val/test dark clips; a third re-encoded at 96x72 (mixed sizes), test clip 0 cut to 5 frames."""
    raw = tmp_path_factory.mktemp("mixed")
    manifest = generate_dataset(raw, tiny_generate_config(train_per_class=4, val_per_class=2, test_per_class=2),
                                seed=3)
    m = pd.read_csv(manifest)
    for i, rel in enumerate(m["path"]):
        if i % 3 == 0:
            frames, fps = read_video(raw / rel)
            write_video(raw / rel, np.stack([cv2.resize(f, (96, 72)) for f in frames]), fps)
    short = m[m["split"] == "test"]["path"].iloc[0]
    frames, fps = read_video(raw / short)
    write_video(raw / short, frames[:5], fps)
    return manifest


def frames_dir(manifest: Path, out: Path, clips_per_video: int = 1) -> Path:
    build_frame_cache(pd.read_csv(manifest), manifest.parent, out, NUM_FRAMES, 32, CLASSES,
                      spec=SamplingSpec(clips_per_video=clips_per_video))
    return out


def test_stage_on_a_short_clip_prints_its_summary_and_fails_without_traceback(footage, tmp_path):
    frames = frames_dir(footage, tmp_path / "frames")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["frames"]["num_frames"] = NUM_FRAMES
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    ok = tmp_path / "validated.ok"
    ok.write_text("stale pass\n")
    r = subprocess.run([sys.executable, str(ROOT / "stages/validate.py"), "--frames", str(frames), "--reports",
                        "reports", "--metrics", "metrics/validate.json", "--ok", str(ok)], cwd=tmp_path,
                       capture_output=True, text=True)
    out = r.stdout + r.stderr
    assert r.returncode == 1, out  # the gate's failure code, not a crash
    assert "Traceback" not in out and "not JSON serializable" not in out
    assert "validate: FAILED 1 of" in out and "FAIL frames [expect_column_values_to_be_between]: 1/24 clips" in out
    short_id = pd.read_csv(footage).query("split == 'test'")["video_id"].iloc[0]
    assert f"worst: {short_id}=5" in out, out
    metric = json.loads((tmp_path / "metrics/validate.json").read_text())  # written whole, plain JSON
    assert metric == {"passed": False, "clips": 24, "failed": 1, "warnings": 0}  # numbers to compare, no more
    details = json.loads((tmp_path / "reports/details.json").read_text())  # the rest, for a person
    assert details["failed_checks"] == ["frames"]
    assert details["checks"]["frames"]["worst"] == [{"clip_id": short_id, "column": "frames", "value": 5}]
    assert not ok.exists()


def test_several_clips_per_video_do_not_fake_drift_and_real_drift_still_shows(footage, tmp_path):
    one = pd.read_csv(frames_dir(footage, tmp_path / "one") / "stats.csv")
    two = pd.read_csv(frames_dir(footage, tmp_path / "two", clips_per_video=2) / "stats.csv")
    assert len(two[two.split != "train"]) == 2 * len(one[one.split != "train"])  # each val/test video twice
    cfg = ValidateConfig()

    def drift(stats: pd.DataFrame, name: str):
        res = check_footage(stats, cfg, NUM_FRAMES, reference=stats[stats.split == "train"], classes=CLASSES,
                            current=stats[stats.split != "train"], report_dir=tmp_path / name)
        return res.by_name("drift")

    def column_pvalues(name: str) -> dict[str, float]:  # Evidently's own per-column KS p-values, from its report
        data = json.loads((tmp_path / name / "drift.json").read_text())
        return {m["config"]["column"]: m["value"] for m in data["metrics"]
                if m["config"]["type"].endswith("ValueDrift")}

    d1, d2 = drift(one, "one"), drift(two, "two")
    assert d1.status == "pass" and d2.status == "pass", (d1.detail, d2.detail)
    # the same footage gives the same test, one row per video on both sides, whatever clips_per_video is
    assert column_pvalues("two") == column_pvalues("one") and len(column_pvalues("one")) == 5
    assert "current 12 videos vs reference 12" in d2.detail

    # the val/test footage under stray light (clearly brighter, re-encoded) drifts, with two clips per video too
    m = pd.read_csv(footage)
    for rel, split in zip(m["path"], m["split"]):
        frames, fps = read_video(footage.parent / rel)
        if split != "train":
            frames = np.clip(frames.astype(np.int16) + 20, 0, 255).astype(np.uint8)
        (tmp_path / "lit" / rel).parent.mkdir(parents=True, exist_ok=True)
        write_video(tmp_path / "lit" / rel, frames, fps)
    m.to_csv(tmp_path / "lit/manifest.csv", index=False)
    d3 = drift(pd.read_csv(frames_dir(tmp_path / "lit/manifest.csv", tmp_path / "lit_frames", 2) / "stats.csv"), "lit")
    assert d3.status == "fail" and d3.unexpected >= 3, d3.detail

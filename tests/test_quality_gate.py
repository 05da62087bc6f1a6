"""The data-quality gate with real GX and Evidently runs on real (tiny) video files.

Bad footage is made the way it happens: the synthetic dark clips are re-encoded floodlit, replaced by black or blank
(frozen grey) clips, or cut short, then decoded by the real frame cache into per-clip statistics.
"""
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dlkdd.config import FramesConfig, Params, ValidateConfig
from dlkdd.data.frames import build_frame_cache
from dlkdd.data.synthetic import generate_dataset, write_video
from dlkdd.data.video import read_video
from dlkdd.quality import GateInputError, check_footage, gate_batch
from dlkdd.quality.expectations import class_balance

from conftest import tiny_generate_config

CLASSES = ["Drink", "Jump", "Sit"]
NUM_FRAMES = 8  # the sampled clip length (frames.num_frames); the tiny clips have 10 frames


def stats_of(manifest: Path, out: Path) -> pd.DataFrame:
    """Decode a dataset with the real frame cache and return its per-clip statistics."""
    build_frame_cache(pd.read_csv(manifest), manifest.parent, out, NUM_FRAMES, 32, CLASSES)
    return pd.read_csv(out / "stats.csv")


def rewrite(manifest: Path, out: Path, edit, which=lambda i: True) -> Path:
    """Copy a dataset to ``out``, passing the decoded RGB frames (T, H, W, 3) of chosen clips through ``edit``."""
    m = pd.read_csv(manifest)
    for i, rel in enumerate(m["path"]):
        frames, fps = read_video(manifest.parent / rel)
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        write_video(out / rel, edit(frames) if which(i) else frames, fps)
    m.to_csv(out / "manifest.csv", index=False)
    return out / "manifest.csv"


@pytest.fixture(scope="module")
def dark(tmp_path_factory):
    """A dark dataset (12 train + 12 val/test clips) and its statistics."""
    raw = tmp_path_factory.mktemp("dark")
    cfg = tiny_generate_config(train_per_class=4, val_per_class=2, test_per_class=2)
    manifest = generate_dataset(raw, cfg, seed=3)
    return manifest, stats_of(manifest, raw / "frames")


def gate(stats, reference=None, **cfg):
    return check_footage(stats, ValidateConfig(**cfg), NUM_FRAMES, reference=reference, classes=CLASSES)


def test_embedded_dark_footage_passes(dark, tmp_path):
    _, stats = dark
    assert stats["luma_mean"].between(2, 45).all()  # the generator's 5..30 survives decoding
    train = stats[stats.split == "train"]
    res = check_footage(stats, ValidateConfig(), NUM_FRAMES, reference=train, report_dir=tmp_path, classes=CLASSES,
                        current=stats[stats.split != "train"])
    assert res.passed, res.summary()
    assert {c.name: c.status for c in res.checks} == {
        "row_count": "pass", "not_null": "pass", "luma_mean": "pass", "dark_fraction": "pass", "noise": "pass",
        "frames": "pass", "fps": "pass", "resolution": "pass", "class_balance": "pass", "drift": "pass"}
    assert res.to_json()["passed"] is True


def test_batch_verdict_rejects_clips_by_name_and_says_when_drift_was_not_tested(dark, tmp_path):
    """gate_batch, the retrain flow's step 1: one night's landing of a single class is not refused for balance (the
    validate stage checks the merged set), a floodlit clip is rejected by its clip_id with the check that failed,
    and a batch too small for drift says so instead of passing silently."""
    manifest, stats = dark
    params = Params(frames=FramesConfig(num_frames=NUM_FRAMES))
    train = stats[stats.split == "train"]
    jump = train[train.label == CLASSES.index("Jump")]
    v = gate_batch(jump, params, reference=train, classes=CLASSES)
    assert v.passed and v.rejected == {} and v.drift.startswith("tested"), (v.report, v.drift)
    lit = rewrite(manifest, tmp_path / "lit", lambda f: np.clip(f.astype(np.int16) + 130, 0, 255).astype(np.uint8),
                  which=lambda i: i == 0)
    batch = stats_of(lit, tmp_path / "lit_frames")
    bright = set(batch.loc[batch.luma_mean > 100, "clip_id"])
    assert len(bright) == 1
    v = gate_batch(batch, params, reference=train, classes=CLASSES, report_dir=tmp_path / "report")
    assert set(v.rejected) == bright and v.rejected[next(iter(bright))].startswith("luma_mean="), v.rejected
    one = gate_batch(jump.iloc[:1], params, reference=train, classes=CLASSES)
    assert one.drift == "not tested: 1 clip (needs >= 2)"


def test_floodlit_footage_fails_luma(dark, tmp_path):
    manifest, stats = dark
    lit = rewrite(manifest, tmp_path / "lit", lambda f: np.clip(f.astype(np.int16) + 130, 0, 255).astype(np.uint8))
    res = gate(stats_of(lit, tmp_path / "lit_frames"))
    assert not res.passed
    assert set(res.failed_checks) == {"luma_mean", "dark_fraction"}, res.summary()
    luma = res.by_name("luma_mean")
    assert luma.unexpected == len(stats) and luma.expectation == "expect_column_values_to_be_between"
    assert len(luma.worst) == 5 and all(w["value"] > 130 for w in luma.worst)
    assert "FAIL luma_mean [expect_column_values_to_be_between]: 24/24 clips" in res.summary()


def test_share_of_black_clips_fails_luma_and_noise(dark, tmp_path):
    manifest, _ = dark
    black = rewrite(manifest, tmp_path / "black", np.zeros_like, which=lambda i: i % 4 == 0)  # 6 of 24
    res = gate(stats_of(black, tmp_path / "black_frames"))
    assert set(res.failed_checks) == {"luma_mean", "noise"}, res.summary()
    assert res.by_name("luma_mean").unexpected == 6
    assert {w["clip_id"] for w in res.by_name("luma_mean").worst} <= set(pd.read_csv(black)["video_id"][::4])


def test_blank_grey_clips_fail_noise_only(dark, tmp_path):
    manifest, _ = dark
    grey = rewrite(manifest, tmp_path / "grey", lambda f: np.full_like(f, 15), which=lambda i: i % 6 == 0)  # 4 of 24
    res = gate(stats_of(grey, tmp_path / "grey_frames"))
    assert res.failed_checks == ["noise"], res.summary()
    assert res.by_name("noise").unexpected == 4


def test_too_short_clips_fail_frames(dark, tmp_path):
    manifest, _ = dark
    short = rewrite(manifest, tmp_path / "short", lambda f: f[:3], which=lambda i: i % 2 == 0)
    res = gate(stats_of(short, tmp_path / "short_frames"))
    assert res.failed_checks == ["frames"], res.summary()
    frames = res.by_name("frames")
    assert frames.unexpected == 12 and all(w["value"] == 3 for w in frames.worst)


def test_missing_class_fails_balance_and_is_named_as_a_class(dark, tmp_path):
    _, stats = dark
    res = check_footage(stats[~((stats.split == "train") & (stats.label == 2))], ValidateConfig(), NUM_FRAMES,
                        report_dir=tmp_path, classes=CLASSES)
    assert res.failed_checks == ["class_balance"], res.summary()
    # the offender is a class, recorded under "class" (the per-clip checks keep "clip_id"), in the metric too
    sit = {"class": "Sit", "column": "share_ratio", "value": 0.0}
    assert res.by_name("class_balance").worst[0] == sit
    assert res.details()["checks"]["class_balance"]["worst"][0] == sit
    assert "/3 classes with share_ratio" in res.by_name("class_balance").detail
    assert "; worst: class Sit=0" in res.summary(), res.summary()
    assert "class Sit = 0" in " ".join(parse(tmp_path / "index.html").text)


def test_class_balance_table_names_classes_not_clips():
    labels = pd.Series([0, 0, 1, 1])
    named = class_balance(labels, CLASSES)
    assert "clip_id" not in named.columns
    assert named["class"].tolist() == CLASSES and named["clips"].tolist() == [2, 2, 0]
    # without names a class is named by its label; a missing top class cannot be seen without the class list
    assert class_balance(labels)["class"].tolist() == ["0", "1"]


def test_nulls_fail(dark):
    _, stats = dark
    bad = stats.copy()
    bad.loc[[0, 5], "noise"] = np.nan
    res = gate(bad)
    assert res.failed_checks == ["not_null"] and res.by_name("not_null").unexpected == 2


def test_drifted_batch_fails_evidently_and_undrifted_passes(dark, tmp_path):
    manifest, stats = dark
    train = stats[stats.split == "train"]
    # a new batch from the same camera (another seed) does not drift ...
    fresh = generate_dataset(tmp_path / "fresh", tiny_generate_config(train_per_class=0, val_per_class=2,
                                                                      test_per_class=2), seed=11)
    ok = gate(stats_of(fresh, tmp_path / "fresh_frames"), reference=train)
    assert ok.passed and ok.by_name("drift").status == "pass", ok.summary()
    # ... the same batch under stray light drifts (per-clip bounds widened so that drift alone must catch it)
    lit = rewrite(fresh, tmp_path / "stray", lambda f: np.clip(f.astype(np.int16) + 20, 0, 255).astype(np.uint8))
    res = check_footage(stats_of(lit, tmp_path / "stray_frames"),
                        ValidateConfig(luma_mean_max=80.0, dark_fraction_mean_min=0.0), NUM_FRAMES, reference=train,
                        report_dir=tmp_path / "rep")
    assert res.failed_checks == ["drift"], res.summary()
    drift = res.by_name("drift")
    assert drift.unexpected >= 3 and drift.total == 5 and "Evidently" in drift.expectation
    assert (tmp_path / "rep/drift.html").stat().st_size > 10_000
    assert '"DriftedColumnsCount' in (tmp_path / "rep/drift.json").read_text()


def test_warn_only_downgrades_visibly(dark, tmp_path):
    manifest, _ = dark
    lit = rewrite(manifest, tmp_path / "lit", lambda f: np.clip(f.astype(np.int16) + 130, 0, 255).astype(np.uint8))
    lit_stats = stats_of(lit, tmp_path / "lit_frames")
    res = gate(lit_stats, warn_only=["luma_mean", "dark_fraction"])
    assert res.passed and res.warned_checks == ["luma_mean", "dark_fraction"]
    assert "WARNING (downgraded by validate.warn_only) luma_mean" in res.summary()
    assert res.details()["warned_checks"] == ["luma_mean", "dark_fraction"]
    with pytest.raises(GateInputError, match="unknown check"):
        gate(pd.DataFrame(), warn_only=["lumamean"])
    with pytest.raises(GateInputError, match="validate.drift_method: No stattest found of name foo"):
        gate(lit_stats, reference=lit_stats, drift_method="foo")
    with pytest.raises(GateInputError, match="lack column"):
        gate(pd.DataFrame({"clip_id": ["a"]}))


class _Page(HTMLParser):
    """Collects text, links, scripts with an external src and the ids of a page."""

    def __init__(self):
        super().__init__()
        self.text, self.links, self.external, self.ids = [], [], [], set()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get("id"):
            self.ids.add(a["id"])
        if tag == "a" and a.get("href"):
            self.links.append(a["href"])
        if tag == "script" and (a.get("src") or "").startswith("http"):
            self.external.append(a["src"])

    def handle_data(self, data):
        self.text.append(data)


def parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text())
    page.close()
    return page


def test_html_reports_are_complete_and_offline(dark, tmp_path):
    manifest, stats = dark
    lit = rewrite(manifest, tmp_path / "lit", lambda f: np.clip(f.astype(np.int16) + 130, 0, 255).astype(np.uint8))
    lit_stats = stats_of(lit, tmp_path / "lit_frames")
    out = tmp_path / "reports"
    res = check_footage(lit_stats, ValidateConfig(), NUM_FRAMES, reference=stats[stats.split == "train"],
                        report_dir=out, classes=CLASSES, data_docs=True)
    index = parse(out / "index.html")
    text = " ".join(index.text)
    assert {"verdict", "checks", "reports"} <= index.ids and "Data-quality gate FAILED" in text
    assert not index.external
    for name in ("luma_mean", "dark_fraction", "drift"):
        assert name in text
    assert all((out / href).is_file() for href in index.links) and "drift.html" in index.links
    # GX Data Docs on request (data_docs=True; off by default); the page of the clips suite is rendered server-side:
    # the failed expectation is in the HTML text
    clips_page = next(h for h in index.links if h.endswith("clips_source-clips.html"))
    docs = " ".join(" ".join(parse(out / clips_page).text).split())
    assert "luma_mean" in docs and "less than or equal to 45.0" in docs
    assert f"{len(lit_stats)} unexpected values found" in docs
    # Evidently's report carries its own JS (no CDN), so it renders offline
    drift = parse(out / "drift.html")
    assert not drift.external and res.by_name("drift").status == "fail"

"""Landed footage: the inbox scan, the all-or-nothing add, and the merge into the frames manifest."""
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from dlkdd.data.footage import (FOOTAGE_COLUMNS, SIDECAR_COLUMNS, ClipChanged, FootageError, NewClip, add_clips,
                                file_md5, footage_manifest, read_footage_csv)
from dlkdd.data.inbox import survey_inbox

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def clips(tiny_dataset, tmp_path) -> list[Path]:
    """Three real (MJPG) dark clips copied out of the tiny synthetic dataset."""
    man = pd.read_csv(tiny_dataset)
    out = []
    for rel in man["path"][:3]:
        dest = tmp_path / "src" / Path(rel).name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(tiny_dataset.parent / rel, dest)
        out.append(dest)
    return out


def test_add_clips_lists_them_and_skips_known_md5(clips, tmp_path):
    csv = tmp_path / "data/footage.csv"
    new = [NewClip(clips[0], "Jump", file_md5(clips[0])), NewClip(clips[1], None, file_md5(clips[1]))]
    added = add_clips(csv, new)
    assert len(added) == 2 and added[0].startswith("Jump/") and added[1].startswith("_unlabelled/")
    table = read_footage_csv(csv)
    assert list(table.columns) == SIDECAR_COLUMNS and list(table["class_name"]) == ["Jump", ""]
    assert list(table["source"]) == [clips[0].name, clips[1].name]
    for rel, m in zip(table["path"], table["md5"]):
        assert file_md5(tmp_path / "data/footage" / rel) == m
    assert add_clips(csv, new[:1]) == []  # the same bytes again: nothing added
    assert not list((tmp_path / "data").glob(".incoming-*"))


def test_add_clips_is_all_or_nothing(clips, tmp_path):
    csv = tmp_path / "data/footage.csv"
    add_clips(csv, [NewClip(clips[0], "Jump", file_md5(clips[0]))])
    before_csv = csv.read_text()
    before_files = sorted(p for p in (tmp_path / "data/footage").rglob("*"))
    gone = tmp_path / "src/vanished.avi"  # listed but removed before the copy: the whole batch must fail
    batch = [NewClip(clips[1], "Sit", file_md5(clips[1])), NewClip(gone, "Sit", "0" * 32)]
    with pytest.raises(ClipChanged, match="vanished"):
        add_clips(csv, batch)
    assert csv.read_text() == before_csv
    assert sorted(p for p in (tmp_path / "data/footage").rglob("*")) == before_files
    assert not list((tmp_path / "data").glob(".incoming-*"))


def test_footage_manifest_labels_and_paths(clips, tmp_path):
    csv = tmp_path / "data/footage.csv"
    csv.parent.mkdir(parents=True)
    csv.write_text(",".join(FOOTAGE_COLUMNS) + "\n")
    assert footage_manifest(csv, ["Drink", "Jump", "Sit"]).empty  # header only: no rows
    add_clips(csv, [NewClip(clips[0], "Sit", file_md5(clips[0])), NewClip(clips[1], None, file_md5(clips[1]))])
    man = footage_manifest(csv, ["Drink", "Jump", "Sit"])
    assert len(man) == 2  # the labelled clip trains as a train clip, the unlabelled one joins the pool
    row, pool = man.iloc[0], man.iloc[1]
    assert row["label"] == 2 and row["split"] == "train" and row["path"].startswith("Sit/")
    assert row["root"] == str(tmp_path / "data/footage") and (Path(row["root"]) / row["path"]).is_file()
    assert pool["split"] == "unlabeled" and pool["label"] == -1 and pool["class_name"] == ""
    assert pool["path"].startswith("_unlabelled/") and (Path(pool["root"]) / pool["path"]).is_file()
    with pytest.raises(FootageError, match="unknown class"):
        footage_manifest(csv, ["Drink", "Jump"])


def test_survey_inbox_labels_and_waits_for_settled_files(clips, tmp_path):
    inbox = tmp_path / "inbox"
    (inbox / "Jump").mkdir(parents=True)
    shutil.copy(clips[0], inbox / "Jump/a.avi")
    shutil.copy(clips[1], inbox / "loose.avi")
    shutil.copy(clips[2], inbox / "unknown.avi")
    shutil.copy(clips[2], inbox / ".partial.avi")
    (inbox / "notes.txt").write_text("not a video")
    (inbox / "labels.csv").write_text("path,class_name\nloose.avi,Sit\n")
    found = {str(c.path.relative_to(inbox)): c.class_name for c in survey_inbox(inbox).landed}
    assert found == {"Jump/a.avi": "Jump", "loose.avi": "Sit", "unknown.avi": None}
    fresh = time.time()
    os.utime(inbox / "Jump/a.avi", (fresh, fresh))
    settling = survey_inbox(inbox, settle_s=60, now=fresh).landed
    assert "Jump/a.avi" not in {str(c.path.relative_to(inbox)) for c in settling}
    assert survey_inbox(tmp_path / "no-inbox").landed == []


def test_frames_stage_merges_footage_and_is_unchanged_without_it(tiny_dataset, clips, tmp_path):
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    (tmp_path / "params.yaml").write_text("frames:\n  num_frames: 4\n  size: 32\n")
    csv = tmp_path / "footage.csv"
    csv.write_text(",".join(FOOTAGE_COLUMNS) + "\n")

    def frames(out: str, footage: bool) -> pd.DataFrame:
        cmd = [sys.executable, str(ROOT / "stages/frames.py"), "--manifest", str(tiny_dataset), "--out", out]
        r = subprocess.run(cmd + (["--footage", str(csv)] if footage else []), cwd=tmp_path, env=env,
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        return pd.read_csv(tmp_path / out / "index.csv")

    plain, empty = frames("plain", False), frames("empty", True)
    pd.testing.assert_frame_equal(plain, empty)
    for name in ["stats.csv", "classes.txt", *[f"clips/{c}" for c in os.listdir(tmp_path / "plain/clips")]]:
        assert file_md5(tmp_path / "plain" / name) == file_md5(tmp_path / "empty" / name), name  # byte-identical
    add_clips(csv, [NewClip(clips[0], "Jump", file_md5(clips[0]))])
    merged = frames("merged", True)
    extra = merged[merged["video_id"].str.startswith("footage_")]
    assert len(merged) == len(plain) + 1 and list(extra["class_name"]) == ["Jump"]
    assert list(extra["split"]) == ["train"]
    assert (tmp_path / "merged/clips" / f"{extra['clip_id'].iloc[0]}.npy").is_file()


def test_symlink_out_of_the_inbox_is_refused_not_followed(clips, tmp_path):
    """A link to a private video (or folder) outside the inbox must never have its bytes landed."""
    from dlkdd.data.inbox import survey_inbox

    inbox = tmp_path / "inbox"
    (inbox / "Jump").mkdir(parents=True)
    private = tmp_path / "private"
    private.mkdir()
    shutil.copy(clips[0], private / "secret.avi")
    os.symlink(private / "secret.avi", inbox / "Jump/secret.avi")
    os.symlink(private, inbox / "Sit")  # a whole folder
    shutil.copy(clips[1], inbox / "Jump/ok.avi")
    scan = survey_inbox(inbox)
    assert [str(c.path.relative_to(inbox)) for c in scan.landed] == ["Jump/ok.avi"]
    refused = {str(p.relative_to(inbox)): why for p, why in scan.refused.items()}
    assert set(refused) == {"Jump/secret.avi", "Sit"}
    assert all(why.startswith("escapes_root: ") for why in refused.values())


def test_non_utf8_name_is_quarantined_by_bytes_before_any_codec(clips, tmp_path):
    from dlkdd.data.inbox import quarantine_file, survey_inbox

    inbox = tmp_path / "inbox"
    (inbox / "Jump").mkdir(parents=True)
    bad = os.path.join(os.fsencode(inbox / "Jump"), b"caf\xe9.avi")  # latin-1 bytes: not UTF-8
    shutil.copy(clips[0], bad)
    scan = survey_inbox(inbox)
    assert scan.landed == []
    ((path, why),) = scan.refused.items()
    assert why.startswith("bad_name: ") and "caf\\xe9.avi" in why
    quarantine_file(path, tmp_path / "q" / path.relative_to(inbox), why)
    assert not os.path.exists(bad)
    moved = os.path.join(os.fsencode(tmp_path / "q/Jump"), b"caf\xe9.avi")
    assert file_md5(moved) == file_md5(clips[0])
    assert open(moved + b".reason.txt", encoding="utf-8").read().startswith("bad_name: ")


def test_malformed_labels_csv_is_refused_and_the_folder_clips_still_land(clips, tmp_path):
    from dlkdd.data.inbox import survey_inbox

    inbox = tmp_path / "inbox"
    (inbox / "Jump").mkdir(parents=True)
    shutil.copy(clips[0], inbox / "Jump/a.avi")
    shutil.copy(clips[1], inbox / "loose.avi")
    (inbox / "labels.csv").write_text("file;label\nloose.avi;Sit\n")  # wrong header
    scan = survey_inbox(inbox)
    assert [(str(c.path.relative_to(inbox)), c.class_name) for c in scan.landed] == [("Jump/a.avi", "Jump")]
    refused = {str(p.relative_to(inbox)): why for p, why in scan.refused.items()}
    assert set(refused) == {"labels.csv", "loose.avi"}  # the loose clip is not landed unlabelled by mistake
    assert refused["labels.csv"].startswith("bad_labels: ") and "path,class_name" in refused["labels.csv"]
    (inbox / "labels.csv").write_bytes(b'path,class_name\n"unclosed,\xff\n')  # not even parseable
    assert "bad_labels" in survey_inbox(inbox).refused[inbox / "labels.csv"]


def test_claimed_clips_are_not_landings_and_dead_claims_return(clips, tmp_path):
    from dlkdd.data.inbox import claim, release_claims

    inbox = tmp_path / "inbox"
    (inbox / "Jump").mkdir(parents=True)
    shutil.copy(clips[0], inbox / "Jump/a.avi")
    shutil.copy(clips[1], inbox / "b.avi")
    taken = claim(inbox, "run1", [c.path for c in survey_inbox(inbox).landed])
    assert all(q.is_file() for q in taken.values())
    assert survey_inbox(inbox).landed == []  # a poll during the run sees nothing new
    shutil.copy(clips[2], inbox / "Jump/a.avi")  # the same name lands again meanwhile: never overwritten
    assert sorted(release_claims(inbox)) == ["Jump/a.avi", "b.avi"]
    assert not (inbox / ".claimed").exists()
    back = survey_inbox(inbox).landed
    assert {str(c.path.relative_to(inbox)) for c in back} == {"Jump/a.avi", "Jump/a.reclaimed-run1.avi", "b.avi"}

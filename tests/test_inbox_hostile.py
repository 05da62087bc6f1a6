"""Inbox content an adversary can drop (a FIFO named like a clip, names at the file system's length limit, a clip
that keeps changing after it was taken, copies of the dataset's own test clips): none may block, crash or sneak in."""
import json
import os
import shutil
import stat
from pathlib import Path

import pandas as pd
import pytest

from helpers import deadline

from dlkdd.data.footage import NewClip, add_clips, file_md5, read_footage_csv
from dlkdd.data.inbox import claim, quarantine_file, release_claims, survey_inbox


@pytest.fixture
def clip(tiny_dataset, tmp_path) -> Path:
    """One real (MJPG) dark clip of the tiny synthetic dataset."""
    src = tiny_dataset.parent / pd.read_csv(tiny_dataset)["path"][0]
    return Path(shutil.copy(src, tmp_path / "clip.avi"))


def test_a_fifo_named_like_a_clip_is_refused_without_being_opened(clip, tmp_path):
    inbox = tmp_path / "inbox"
    (inbox / "Jump").mkdir(parents=True)
    os.mkfifo(inbox / "Jump/clip.mp4")  # open() for reading would wait for a writer forever
    os.mkfifo(inbox / "labels.csv")
    shutil.copy(clip, inbox / "Jump/ok.avi")
    with deadline(10):
        scan = survey_inbox(inbox)
        assert [str(c.path.relative_to(inbox)) for c in scan.landed] == ["Jump/ok.avi"]
        why = scan.refused[inbox / "Jump/clip.mp4"]
        assert why.startswith("not_regular: ") and "FIFO" in why and "never opened" in why
        assert scan.refused[inbox / "labels.csv"].startswith("bad_labels: ")  # a FIFO labels.csv is not read
        with pytest.raises(ValueError, match="FIFO"):
            file_md5(inbox / "Jump/clip.mp4")
        dest = quarantine_file(inbox / "Jump/clip.mp4", tmp_path / "q/Jump/clip.mp4", why)  # a rename: not opened
    assert stat.S_ISFIFO(os.lstat(dest).st_mode) and not os.path.lexists(inbox / "Jump/clip.mp4")
    assert Path(f"{dest}.reason.txt").read_text().startswith("not_regular: ")


def test_names_at_the_length_limit_land_and_quarantine_under_safe_names(clip, tmp_path):
    """A 254-byte name is legal; the landing's ``_<md5>``, the quarantine's ``.reason.txt`` (and its temp file)
    and a release's ``.reclaimed-<run>`` must not push it past the 255-byte limit."""
    inbox = tmp_path / "inbox"
    (inbox / "Jump").mkdir(parents=True)
    long_ascii, long_utf8 = "n" * 250 + ".avi", "é" * 125 + ".avi"  # 254 bytes each
    for name in (long_ascii, long_utf8):
        shutil.copy(clip, inbox / "Jump" / name)
    assert len(survey_inbox(inbox).landed) == 2
    # landing: a short name, the original recorded in the sidecar
    csv = tmp_path / "data/footage.csv"
    (added,) = add_clips(csv, [NewClip(inbox / "Jump" / long_ascii, "Jump", file_md5(clip))])
    assert len(added.encode()) < 130 and file_md5(tmp_path / "data/footage" / added) == file_md5(clip)
    assert list(read_footage_csv(csv)["source"]) == [long_ascii]
    # quarantine: a short name, the original on the reason file's second line
    dest = quarantine_file(inbox / "Jump" / long_utf8, tmp_path / "q/Jump" / long_utf8, "bad: for a test")
    assert len(dest.name.encode()) <= 200 and dest.name.endswith(".avi") and dest.is_file()
    assert Path(f"{dest}.reason.txt").read_text(encoding="utf-8") == f"bad: for a test\noriginal name: {long_utf8}\n"
    # a claimed long name whose twin landed meanwhile comes back beside it, under a short name
    claim(inbox, "20261206-210000-abcdef", [inbox / "Jump" / long_ascii])
    shutil.copy(clip, inbox / "Jump" / long_ascii)
    assert release_claims(inbox) == [f"Jump/{long_ascii}"] and not (inbox / ".claimed").exists()
    assert len(list((inbox / "Jump").iterdir())) == 2
    from dlkdd.data.safe_files import safe_name

    a, b = safe_name("x" * 300 + "a.mp4", 60), safe_name("x" * 300 + "b.mp4", 60)
    assert a != b and len(a) <= 60 and a.endswith(".mp4")
    cut = safe_name("é" * 200, 51)
    assert len(cut.encode()) <= 51 and cut.encode().decode("utf-8") == cut  # no half character at the cut


def test_a_clip_that_changes_after_it_was_hashed_is_noticed_and_never_landed(clip, tmp_path):
    from dlkdd.data.footage import ClipChanged
    from dlkdd.data.safe_files import changed_since, fingerprint

    path = Path(shutil.copy(clip, tmp_path / "growing.avi"))
    fp = fingerprint(path)
    assert changed_since(path, fp) is None
    with open(path, "ab") as fh:
        fh.write(b"\0" * 100)  # the uploader was still writing
    assert "changed" in changed_since(path, fp)
    csv = tmp_path / "data/footage.csv"
    with pytest.raises(ClipChanged, match="changed after it was accepted") as err:
        add_clips(csv, [NewClip(path, "Jump", fp.md5)])
    assert err.value.src == path and not csv.exists() and not list((tmp_path / "data").glob(".incoming-*"))
    other = Path(shutil.copy(clip, tmp_path / "other.avi"))
    os.replace(other, path)  # swapped for another file with the same bytes
    assert "replaced" in changed_since(path, fingerprint(clip))
    path.unlink()
    assert "vanished" in changed_since(path, fp)


def test_copies_of_any_dataset_clip_are_duplicates_by_content(tiny_dataset, tmp_path):
    """The index covers every split of the manifest and the landed footage; md5s are cached by file identity."""
    from dlkdd.data.content_index import build_index, find_duplicates, listed_files

    raw = Path(shutil.copytree(tiny_dataset.parent, tmp_path / "data/raw"))  # a repo: data/raw + data/footage.csv
    man = pd.read_csv(raw / "manifest.csv")
    test_rel = man.loc[man["split"] == "test", "path"].iloc[0]
    footage = tmp_path / "data/footage.csv"
    footage.write_text("path,class_name,md5\nJump/landed_0123abcd.avi,Jump," + "f" * 32 + "\n")  # not checked out
    files = listed_files(raw / "manifest.csv", raw) + listed_files(footage, tmp_path / "data/footage")
    cache = tmp_path / ".dvc/tmp/dataset-md5.json"
    index = build_index(files, cache, shown_from=tmp_path)
    assert index.hashed == len(man) and index.unchecked == []
    batch = {"inbox/a.avi": file_md5(raw / test_rel), "inbox/b.avi": "f" * 32,
             "inbox/c.avi": "1" * 32, "inbox/d.avi": "1" * 32}
    dupes = find_duplicates(batch, index)
    assert dupes["inbox/a.avi"] == f"duplicate: same bytes as data/raw/{test_rel} (test)"
    assert dupes["inbox/b.avi"] == "duplicate: same bytes as data/footage/Jump/landed_0123abcd.avi (train)"
    assert dupes["inbox/d.avi"] == "duplicate: same bytes as inbox/c.avi (this batch)" and "inbox/c.avi" not in dupes
    # the second look reads the cache (a forged cached md5 shows through) until the file's identity changes
    entries = json.loads(cache.read_text())
    entries["files"][os.path.abspath(raw / test_rel)][4] = "0" * 32
    cache.write_text(json.dumps(entries))
    again = build_index(files, cache)
    assert again.hashed == 0 and "0" * 32 in again.by_md5
    os.utime(raw / test_rel, ns=(1, 1))
    fresh = build_index(files, cache)
    assert fresh.hashed == 1 and "0" * 32 not in fresh.by_md5 and batch["inbox/a.avi"] in fresh.by_md5


def test_a_planted_claim_folder_is_never_followed_nor_claimed_into(clip, tmp_path):
    """``<inbox>/.claimed`` is the retrain's own hidden folder: a symlink planted there must not pull a private
    folder's videos into the inbox, and a file planted there must not stop the claim."""
    inbox = tmp_path / "inbox"
    (inbox / "Jump").mkdir(parents=True)
    private = tmp_path / "private/run0/Jump"
    private.mkdir(parents=True)
    shutil.copy(clip, private / "secret.avi")
    os.symlink(tmp_path / "private", inbox / ".claimed")
    assert release_claims(inbox) == [] and (private / "secret.avi").is_file()
    assert survey_inbox(inbox).landed == []
    shutil.copy(clip, inbox / "Jump/a.avi")
    taken = claim(inbox, "run1", [inbox / "Jump/a.avi"])
    assert list(taken.values()) == [inbox / ".claimed/run1/Jump/a.avi"] and not (private.parent / "run1").exists()
    assert os.path.islink(inbox / ".claimed.displaced-run1")
    assert release_claims(inbox, "run1") == ["Jump/a.avi"]
    (inbox / ".claimed").write_text("not a folder")
    assert list(claim(inbox, "run2", [inbox / "Jump/a.avi"]).values()) == [inbox / ".claimed/run2/Jump/a.avi"]

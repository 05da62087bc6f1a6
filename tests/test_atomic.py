"""Atomic writes: the target appears whole or not at all, and a failed write leaves no temp file."""
import pytest

from dlkdd.atomic import atomic_path, write_text_atomic


def test_success_replaces_target_and_failure_leaves_it_untouched(tmp_path):
    target = tmp_path / "sub" / "m.json"
    write_text_atomic(target, "old")
    assert target.read_text() == "old"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert [p.name for p in target.parent.iterdir()] == ["m.json"]  # no temp file left behind


def test_temp_file_is_fsynced_before_the_rename_and_the_folder_after(tmp_path, monkeypatch):
    """Without the first fsync a power cut can leave the renamed file empty; without the second, the rename can be
    lost. The real calls run; the spy only records what each fsync flushed and when the rename happened."""
    import os

    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        return real_fsync(fd)

    def replace(src, dst):
        events.append(("rename", os.fspath(dst)))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    target = tmp_path / "index.csv"
    write_text_atomic(target, "a,b\n")
    assert events == [("fsync", str(tmp_path / f".index.csv.{os.getpid()}.tmp")), ("rename", str(target)),
                      ("fsync", str(tmp_path))]
    events.clear()
    from dlkdd.atomic import write_csv_atomic

    class Frame:  # anything with pandas' to_csv(path, index=False)
        def to_csv(self, path, index):
            path.write_text("x\n")

    write_csv_atomic(Frame(), tmp_path / "q.csv")
    assert [e[0] for e in events] == ["fsync", "rename", "fsync"] and (tmp_path / "q.csv").read_text() == "x\n"


def test_frame_cache_tables_are_written_through_dlkdd_atomic(tiny_dataset, tmp_path, monkeypatch):
    """index/stats/quarantine/classes of the frame cache: each fsynced as a temp file, then renamed into place."""
    import os

    import pandas as pd

    from dlkdd.data.frames import build_frame_cache

    renamed: list[str] = []
    real_replace = os.replace

    def replace(src, dst):
        renamed.append(os.path.basename(dst))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    manifest = pd.read_csv(tiny_dataset).head(2)
    build_frame_cache(manifest, tiny_dataset.parent, tmp_path / "f", 2, 16, ["Drink", "Jump", "Sit"])
    assert {"index.csv", "stats.csv", "quarantine.csv", "classes.txt"} <= set(renamed)


def test_generated_manifest_and_quarantine_reasons_are_written_through_dlkdd_atomic(tmp_path, monkeypatch):
    """The synthetic manifest and a quarantined file's ``.reason.txt`` (a name that is not UTF-8 included): each a
    temp file renamed into place, with the bytes a direct write gave (csv's CRLF dialect, one reason line)."""
    import os

    from conftest import tiny_generate_config
    from dlkdd.data.inbox import quarantine_file
    from dlkdd.data.synthetic import generate_dataset

    renamed: list[bytes] = []
    real_replace = os.replace

    def replace(src, dst):
        renamed.append(os.path.basename(os.fsencode(dst)))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    manifest = generate_dataset(tmp_path / "raw", tiny_generate_config(train_per_class=1, val_per_class=0,
                                                                       test_per_class=0), seed=0)
    assert renamed[-1] == b"manifest.csv"  # the videos before it are written atomically too
    assert manifest.read_bytes().startswith(b"path,label,class_name,split,video_id\r\n")
    renamed.clear()
    bad = os.fsdecode(b"caf\xe9.avi")
    (tmp_path / bad).write_bytes(b"x")
    quarantine_file(tmp_path / bad, tmp_path / "q" / bad, "bad_name: not UTF-8")
    assert renamed == [b"caf\xe9.avi.reason.txt"]
    assert (tmp_path / "q" / (bad + ".reason.txt")).read_text(encoding="utf-8") == "bad_name: not UTF-8\n"

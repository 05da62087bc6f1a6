"""``dlkdd import-folder DIR --unlabeled`` (issue 23): every clip under DIR, whatever its layout, becomes an
unlabelled pool row of the labelled manifest already in --out; real .avi files, real symlinks, a real FIFO and a
real non-UTF-8 name. The importer does not decode: a corrupt clip is a pool row here and the frame cache's job."""
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

from dlkdd.cli import main as cli
from footage import corrupt, write_clip


def quarantine(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "import_quarantine.csv", keep_default_na=False)


def labelled(root: Path, out: Path) -> pd.DataFrame:
    """``root/labelled/<Class>/<Class>_<g>_<n>.avi`` (ARID-like unique stems, so video ids are stems), imported
    with ``--root root`` into ``out``; returns the manifest."""
    for ci, cls in enumerate(("run", "sit")):
        for k in range(5):
            write_clip(root / "labelled" / cls / f"{cls}_{k}_1.avi", frames=4, width=32, seed=ci * 10 + k)
    assert cli(["import-folder", str(root / "labelled"), "--root", str(root), "--out", str(out)]) == 0
    return pd.read_csv(out / "manifest.csv", keep_default_na=False)


@pytest.fixture
def dataset(tmp_path) -> tuple[Path, Path, pd.DataFrame]:
    root, out = tmp_path / "data", tmp_path / "m"
    return root, out, labelled(root, out)


def test_labelled_folder_under_a_root_keeps_paths_relative_to_the_root(dataset):
    root, out, m = dataset
    assert m.path.str.startswith("labelled/").all() and len(m) == 10
    assert set(m.split) == {"train", "val", "test"} and m.video_id.str.match(r"^(run|sit)_\d_1$").all()


def test_pool_of_any_layout_with_its_rejects(dataset, tmp_path, capsys):
    root, out, m = dataset
    before = {f: (out / f).read_bytes() for f in ("manifest.csv", "classes.txt")}
    test_clip = m[m.split == "test"].path.iloc[0]
    pool = root / "pool"
    write_clip(pool / "cam1" / "night1" / "a.avi", frames=4, width=32, seed=101)  # nested, no class folders
    write_clip(pool / "cam2" / "a.avi", frames=4, width=32, seed=102)  # same stem: ids take the path
    write_clip(pool / "loose.avi", frames=4, width=32, seed=103)
    corrupt(write_clip(pool / "corrupt.avi", frames=4, width=32, seed=104))
    (pool / "notes.txt").write_text("not a clip")
    shutil.copyfile(root / test_clip, pool / "cam2" / "copied_test.avi")  # a test clip's bytes under a new name
    write_clip(pool / "reencoded" / f"{Path(test_clip).stem}.avi", frames=5, width=32, seed=7)  # same video name
    shutil.copyfile(pool / "loose.avi", pool / "cam2" / "z_loose_again.avi")  # a duplicate within the pool
    (pool / "cam1" / "link_out.avi").symlink_to(write_clip(tmp_path / "private" / "secret.avi", frames=4, seed=9))
    os.mkfifo(pool / "cam1" / "fifo.avi")
    write_clip(pool / "tmp.avi", frames=4, width=32, seed=105)
    os.rename(os.fsencode(pool / "tmp.avi"), os.fsencode(pool) + b"/caf\xe9.avi")

    assert cli(["import-folder", str(pool), "--unlabeled", "--root", str(root), "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert "4 unlabelled clips added to the pool (0 already in it, 4 in all), 6 quarantined" in said
    new = pd.read_csv(out / "manifest.csv", keep_default_na=False)
    pooled = new[new.split == "unlabeled"]
    assert sorted(pooled.path) == ["pool/cam1/night1/a.avi", "pool/cam2/a.avi", "pool/corrupt.avi", "pool/loose.avi"]
    assert (pooled.label == "").all() and (pooled.class_name == "").all() and new.video_id.is_unique
    assert {"pool_cam1_night1_a", "pool_cam2_a", "loose", "corrupt"} == set(pooled.video_id)
    assert pd.read_csv(out / "manifest.csv").label.isna().sum() == 4  # the pool.md contract: NaN labels in pandas
    text = (out / "manifest.csv").read_bytes()
    assert text.startswith(before["manifest.csv"]) and (out / "classes.txt").read_bytes() == before["classes.txt"]

    q = quarantine(out).set_index("path")
    assert q.loc["pool/cam1/link_out.avi", "kind"] == "escapes_root"
    assert str(tmp_path / "private" / "secret.avi") in q.loc["pool/cam1/link_out.avi", "reason"]
    assert q.loc["pool/cam1/fifo.avi", "kind"] == "not_regular"
    assert "a FIFO (named pipe), not a regular file (never opened)" in q.loc["pool/cam1/fifo.avi", "reason"]
    assert q.loc["pool/caf\\xe9.avi", "kind"] == "bad_name"
    copied = q.loc["pool/cam2/copied_test.avi"]
    assert copied.kind == "duplicate" and f"of {test_clip} (test), which is kept" in copied.reason
    assert copied.reason.startswith("pool/cam2/copied_test.avi (unlabeled): a byte copy (md5 ")
    renamed = q.loc[f"pool/reencoded/{Path(test_clip).stem}.avi"]
    assert renamed.kind == "duplicate" and f"is already that of {test_clip} (test)" in renamed.reason
    again = q.loc["pool/cam2/z_loose_again.avi"]
    assert again.kind == "duplicate" and "of pool/loose.avi (unlabeled), which is kept" in again.reason

    # re-running is idempotent: nothing added, nothing quarantined twice, files byte-identical
    files = {f: (out / f).read_bytes() for f in ("manifest.csv", "import_quarantine.csv", "classes.txt")}
    assert cli(["import-folder", str(pool), "--unlabeled", "--root", str(root), "--out", str(out)]) == 0
    assert "0 unlabelled clips added to the pool (4 already in it, 4 in all)" in capsys.readouterr().out
    assert files == {f: (out / f).read_bytes() for f in files}

    # a second pool folder adds to the first; a copy of a pool clip is a duplicate of that pool row
    write_clip(root / "pool2" / "b.avi", frames=4, width=32, seed=201)
    shutil.copyfile(pool / "cam2" / "a.avi", root / "pool2" / "c.avi")
    assert cli(["import-folder", str(root / "pool2"), "--unlabeled", "--root", str(root), "--out", str(out)]) == 0
    new = pd.read_csv(out / "manifest.csv", keep_default_na=False)
    assert (new.split == "unlabeled").sum() == 5 and "pool2/b.avi" in set(new.path)
    assert "of pool/cam2/a.avi (unlabeled)" in quarantine(out).set_index("path").loc["pool2/c.avi", "reason"]
    assert len(quarantine(out)) == 7


def test_labelled_folder_as_the_pool_adds_nothing(dataset, capsys):
    """Pointing --unlabeled at the labelled clips themselves: each is the same file as its labelled row."""
    root, out, m = dataset
    assert cli(["import-folder", str(root / "labelled"), "--unlabeled", "--root", str(root), "--out", str(out)]) == 0
    assert len(pd.read_csv(out / "manifest.csv")) == len(m) == 10
    q = quarantine(out)
    assert len(q) == 10 and set(q.kind) == {"duplicate"} and q.reason.str.contains("the same file as labelled/").all()


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_refusals_are_one_line(tmp_path, capsys):
    root, out = tmp_path / "data", tmp_path / "m"
    write_clip(root / "pool" / "x" / "a.avi", frames=4, width=32)
    args = ["import-folder", str(root / "pool"), "--unlabeled", "--root", str(root), "--out", str(out)]
    assert cli(args) == 2  # no labelled manifest in --out: a pool alone cannot train
    assert "manifest.csv not found: a pool is added to a labelled dataset" in one_error_line(capsys)
    assert not out.exists()
    assert cli(args[:3] + ["--out", str(out)]) == 2
    assert "--unlabeled needs --root" in one_error_line(capsys)
    labelled(root, out)
    capsys.readouterr()
    write_clip(tmp_path / "elsewhere" / "b.avi", frames=4, width=32)
    assert cli(["import-folder", str(tmp_path / "elsewhere"), "--unlabeled", "--root", str(root),
                "--out", str(out)]) == 2
    assert "is not inside the dataset root" in one_error_line(capsys)
    assert cli(["import-folder", str(root / "pool"), "--unlabeled", "--root", str(root / "pool"),
                "--out", str(out)]) == 2  # a root that is not the labelled import's
    assert "pass the --root the labelled dataset was imported with" in one_error_line(capsys)
    (root / "empty").mkdir()
    assert cli(["import-folder", str(root / "empty"), "--unlabeled", "--root", str(root), "--out", str(out)]) == 2
    assert "no video files" in one_error_line(capsys)
    assert cli(["import-folder", str(root / "labelled"), "--root", str(root / "pool"), "--out", str(out)]) == 2
    assert "is not inside the dataset root" in one_error_line(capsys)


def test_imported_pool_through_the_frames_stage(dataset, tmp_path):
    """The issue's case end to end: a folder with a corrupt clip, a symlink out of the root and a copy of a test clip.
    The importer quarantines the symlink and the copy; the frames stage's isolated decoder quarantines the corrupt
    clip into data/pool/quarantine.csv; the good clips are pool clips, and the labelled cache is untouched."""
    import subprocess
    import sys

    from conftest import copy_pipeline

    root, out, m = dataset
    pool = root / "pool"
    for k in range(3):
        write_clip(pool / f"good_{k}.avi", frames=4, width=32, seed=200 + k)
    corrupt(write_clip(pool / "corrupt.avi", frames=4, width=32, seed=204))
    shutil.copyfile(root / m[m.split == "test"].path.iloc[0], pool / "copied_test.avi")
    (pool / "link_out.avi").symlink_to(write_clip(tmp_path / "private" / "secret.avi", frames=4, seed=9))
    assert cli(["import-folder", str(pool), "--unlabeled", "--root", str(root), "--out", str(out)]) == 0
    assert set(quarantine(out)["kind"]) == {"escapes_root", "duplicate"}
    d = copy_pipeline(tmp_path / "repo", {"frames": {"num_frames": 4, "size": 32}})
    r = subprocess.run([sys.executable, "stages/frames.py", "--manifest", str(out / "manifest.csv"), "--root",
                        str(root), "--out", "frames", "--pool-out", "pool"], cwd=d, capture_output=True, text=True,
                       errors="backslashreplace")
    assert r.returncode == 0, r.stderr[-2000:]
    # the corrupt file's bytes never reach the operator's terminal (OpenCV's AVI reader echoes a chunk id it did not
    # expect; the isolated decoder's stderr is closed)
    assert "\\x" not in r.stderr + r.stdout and "Unexpected element" not in r.stderr, r.stderr[-2000:]
    assert "pool: 3 unlabelled clips ready, 1 quarantined" in r.stdout, r.stdout
    index = pd.read_csv(d / "pool/index.csv")
    assert sorted(index["path"]) == [f"pool/good_{k}.avi" for k in range(3)] and set(index["label"]) == {-1}
    q = pd.read_csv(d / "pool/quarantine.csv")
    assert list(q["path"]) == ["pool/corrupt.avi"], q
    assert len(pd.read_csv(d / "frames/index.csv")) == 10  # the labelled clips, no pool row among them

"""Roots are roots, duplicates are refused, bad bytes are one line (issue 13): real files, real symlinks, real
non-UTF-8 names; the importers, the frame cache and the frames stage each refuse what would corrupt the dataset."""
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from dlkdd.cli import main as cli
from dlkdd.data.frames import build_frame_cache
from footage import write_clip

ROOT = Path(__file__).resolve().parents[1]


def quarantine(out: Path, name: str = "import_quarantine.csv") -> pd.DataFrame:
    return pd.read_csv(out / name, keep_default_na=False)


def temp_files(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob("*") if p.name.endswith(".tmp")] if folder.exists() else []


def class_folders(root: Path, classes: dict[str, int]) -> None:
    """``<root>/<Class>/v<k>.avi``: enough clips per class for train, val and test to be carved."""
    for ci, (cls, n) in enumerate(classes.items()):
        for k in range(n):
            write_clip(root / cls / f"v{k}.avi", frames=4, width=32, seed=ci * 10 + k)


# ---------------------------------------------------------------- roots


def test_import_refuses_symlink_out_of_the_dataset_root(tmp_path, capsys):
    """A symlink inside the dataset to a private video elsewhere is quarantined, never imported (its bytes would be
    copied into the frame cache and pushed to the remote); a symlink to a clip inside the root is that clip."""
    root, private = tmp_path / "dataset", write_clip(tmp_path / "private" / "secret.avi", frames=4, seed=99)
    class_folders(root, {"run": 5, "sit": 5})
    (root / "run" / "linked.avi").symlink_to(private)
    (root / "sit" / "alias.avi").symlink_to(root / "sit" / "v0.avi")
    assert cli(["import-folder", str(root), "--out", str(tmp_path / "m")]) == 0
    m, q = pd.read_csv(tmp_path / "m/manifest.csv"), quarantine(tmp_path / "m")
    assert "run/linked.avi" not in set(m.path) and len(m) == 10
    linked = q[q.path == "run/linked.avi"]
    assert list(linked.kind) == ["escapes_root"] and str(private) in linked.reason.item()
    # the alias names the same file as sit/v0.avi and is listed first ("alias" < "v0"): one of the two is kept
    assert list(zip(q.path, q.kind)) == [("run/linked.avi", "escapes_root"), ("sit/v0.avi", "duplicate")]
    assert "the same file as sit/alias.avi" in q.reason[1] and "2 quarantined" in capsys.readouterr().out


def test_import_csv_root_column_cannot_escape(tmp_path):
    """A user's ``root`` column is a folder inside the dataset root or the row is quarantined ``escapes_root``."""
    root = tmp_path / "dataset"
    class_folders(root / "night1", {"run": 4, "sit": 4})
    write_clip(tmp_path / "private" / "run" / "v0.avi", frames=4, seed=99)
    lines = ["path,label,root"] + [f"{c}/v{k}.avi,{c},night1" for c in ("run", "sit") for k in range(4)]
    lines += [f"run/v0.avi,run,{tmp_path / 'private'}", "run/v0.avi,run,../private"]
    (tmp_path / "list.csv").write_text("\n".join(lines) + "\n")
    assert cli(["import-csv", str(tmp_path / "list.csv"), "--root", str(root), "--out", str(tmp_path / "m")]) == 0
    m, q = pd.read_csv(tmp_path / "m/manifest.csv"), quarantine(tmp_path / "m")
    assert len(m) == 8 and m.path.str.startswith("night1/").all()  # the root cell folded into the path
    assert list(q.kind) == ["escapes_root", "escapes_root"]


def test_frame_cache_refuses_symlinks_and_row_roots_out_of_the_root(tmp_path):
    """check_row resolves symlinks against each row's own root, and a row's own root must be the dataset root, a
    folder inside it, or one the caller trusts (landed footage); other rows are decoded as before."""
    root, footage = tmp_path / "dataset", tmp_path / "footage"
    private = write_clip(tmp_path / "private" / "secret.avi", frames=6, seed=99)
    write_clip(root / "a.avi", frames=6)
    write_clip(footage / "Jump" / "landed.avi", frames=6, seed=1)
    (root / "leak.avi").symlink_to(private)
    (footage / "Jump" / "leak.avi").symlink_to(private)
    rows = [("a.avi", "a", None), ("leak.avi", "leak", None), ("secret.avi", "own_root", str(private.parent)),
            ("Jump/landed.avi", "landed", str(footage)), ("Jump/leak.avi", "landed_leak", str(footage))]
    manifest = pd.DataFrame([{"path": p, "label": 0, "class_name": "Drink", "split": "train", "video_id": v,
                              "root": r} for p, v, r in rows])
    # a user's manifest: the footage folder (beside the dataset, not in it) is just another foreign root
    res = build_frame_cache(manifest, root, tmp_path / "user", 4, 16, ["Drink"])
    q = quarantine(tmp_path / "user", "quarantine.csv")
    assert (res.ready, res.quarantined) == (1, 4) and set(q.kind) == {"escapes_root"}
    assert "resolves to" in q.reason[0] and "root column" in q.reason[1]
    assert [p.name for p in (tmp_path / "user/clips").iterdir()] == ["a.npy"]
    # the frames stage trusts the landed-footage folder: its clip is decoded, a symlink out of it still is not
    res = build_frame_cache(manifest, root, tmp_path / "frames", 4, 16, ["Drink"], trusted_roots=(footage,))
    index, q = pd.read_csv(tmp_path / "frames/index.csv"), quarantine(tmp_path / "frames", "quarantine.csv")
    assert list(index.video_id) == ["a", "landed"] and (res.ready, res.quarantined) == (2, 3)
    assert list(q.path) == ["leak.avi", "secret.avi", "Jump/leak.avi"] and set(q.kind) == {"escapes_root"}
    assert sorted(p.name for p in (tmp_path / "frames/clips").iterdir()) == ["a.npy", "landed.npy"]


def test_importer_and_frame_cache_give_one_reason_for_one_escape(tmp_path):
    """One check behind both (video.escape_problem): a row climbing out of the root, or a symlink out of it, reads
    the same in the import quarantine and in the frame cache's."""
    root = tmp_path / "dataset"
    class_folders(root, {"run": 4, "sit": 4})
    private = write_clip(tmp_path / "private" / "secret.avi", frames=4, seed=99)
    (root / "run" / "leak.avi").symlink_to(private)
    escaping = ["run/leak.avi", "../private/secret.avi"]
    rows = [f"{c}/v{k}.avi,{c}" for c in ("run", "sit") for k in range(4)] + [f"{p},run" for p in escaping]
    (tmp_path / "list.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    assert cli(["import-csv", str(tmp_path / "list.csv"), "--root", str(root), "--out", str(tmp_path / "m")]) == 0
    manifest = pd.DataFrame([{"path": p, "label": 0, "class_name": "run", "split": "train", "video_id": f"v{i}"}
                             for i, p in enumerate(escaping)])
    build_frame_cache(manifest, root, tmp_path / "frames", 4, 16, ["run"])
    imported, cached = quarantine(tmp_path / "m"), quarantine(tmp_path / "frames", "quarantine.csv")
    assert list(imported.path) == list(cached.path) == escaping
    assert list(imported.reason) == list(cached.reason) and set(cached.kind) == {"escapes_root"}
    assert str(private) in cached.reason[0] and "escapes" in cached.reason[1]


# ---------------------------------------------------------------- duplicates


def write_list(path: Path, rows: list[tuple[int, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{i}\t{cid}\t{rel}\n" for i, (cid, rel) in enumerate(rows)))


def test_import_refuses_one_clip_listed_twice_across_splits(tmp_path):
    """The same clip in train and test (also spelled ``./``) is kept once, in the first list; the others are
    quarantined ``duplicate`` naming the kept row. Before, it was trained on and tested on."""
    videos, lists = tmp_path / "avi", tmp_path / "list_cvt"
    class_folders(videos, {"Drink": 5, "Jump": 5})
    train = [(c, f"{n}/v{k}.avi") for c, n in enumerate(("Drink", "Jump")) for k in range(4)]
    test = [(0, "Drink/v4.avi"), (1, "Jump/v4.avi"), (0, "Drink/v0.avi"), (0, "Drink/./v1.avi")]
    write_list(lists / "ARID_split1_train.txt", train)
    write_list(lists / "ARID_split1_test.txt", test)
    (lists / "mapping_table.txt").write_text("0\tDrink\n1\tJump\n")
    assert cli(["import-arid", "--root", str(videos), "--lists", str(lists), "--out", str(tmp_path / "m")]) == 0
    m, q = pd.read_csv(tmp_path / "m/manifest.csv"), quarantine(tmp_path / "m")
    assert len(m) == 10 and m.path.is_unique and m.video_id.is_unique
    assert set(m.loc[m.split == "test", "path"]) == {"Drink/v4.avi", "Jump/v4.avi"}
    assert list(q.kind) == ["duplicate", "duplicate"]
    assert "Drink/v0.avi (test): the same file as Drink/v0.avi (train)" in q.reason[0]


def test_import_refuses_hard_links_and_byte_copies_across_splits(tmp_path):
    """A hard link to a train clip and a byte copy of another under a new name, both listed in test, are the clips
    they copy: quarantined ``duplicate`` naming the train row kept. Before, only resolved paths were compared, so
    both were trained on and tested on."""
    videos, lists = tmp_path / "avi", tmp_path / "list_cvt"
    class_folders(videos, {"Drink": 5, "Jump": 5})
    os.link(videos / "Drink/v0.avi", videos / "Drink/linked.avi")
    shutil.copyfile(videos / "Jump/v1.avi", videos / "Jump/renamed.avi")
    train = [(c, f"{n}/v{k}.avi") for c, n in enumerate(("Drink", "Jump")) for k in range(4)]
    test = [(0, "Drink/v4.avi"), (0, "Drink/linked.avi"), (1, "Jump/v4.avi"), (1, "Jump/renamed.avi")]
    write_list(lists / "ARID_split1_train.txt", train)
    write_list(lists / "ARID_split1_test.txt", test)
    (lists / "mapping_table.txt").write_text("0\tDrink\n1\tJump\n")
    assert cli(["import-arid", "--root", str(videos), "--lists", str(lists), "--out", str(tmp_path / "m")]) == 0
    m, q = pd.read_csv(tmp_path / "m/manifest.csv"), quarantine(tmp_path / "m")
    assert len(m) == 10 and set(m.loc[m.split == "test", "path"]) == {"Drink/v4.avi", "Jump/v4.avi"}
    assert list(zip(q.path, q.kind)) == [("Drink/linked.avi", "duplicate"), ("Jump/renamed.avi", "duplicate")]
    assert q.reason[0] == ("Drink/linked.avi (test): a hard link to Drink/v0.avi (train), which is kept; "
                           "list each clip once")
    md5 = hashlib.md5((videos / "Jump/v1.avi").read_bytes()).hexdigest()
    assert q.reason[1].startswith(f"Jump/renamed.avi (test): a byte copy (md5 {md5}) of Jump/v1.avi (train), ")


def test_folder_import_compares_bytes_not_sizes_or_emptiness(tmp_path):
    """A copy filed under another class is refused; a file of the same size with other bytes, and two empty files
    (the frame cache quarantines each as ``empty``), are not copies of anything."""
    root = tmp_path / "dataset"
    class_folders(root, {"run": 5, "sit": 5})
    shutil.copyfile(root / "run/v0.avi", root / "sit/a_copy.avi")
    data = bytearray((root / "run/v1.avi").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (root / "sit/same_size.avi").write_bytes(bytes(data))
    for name in ("run/e1.avi", "sit/e2.avi"):
        (root / name).write_bytes(b"")
    assert cli(["import-folder", str(root), "--out", str(tmp_path / "m")]) == 0
    m, q = pd.read_csv(tmp_path / "m/manifest.csv"), quarantine(tmp_path / "m")
    assert list(zip(q.path, q.kind)) == [("sit/a_copy.avi", "duplicate")]
    assert "sit/a_copy.avi (no split): a byte copy (md5 " in q.reason[0] and "of run/v0.avi (no split)" in q.reason[0]
    assert {"sit/same_size.avi", "run/e1.avi", "sit/e2.avi"} <= set(m.path) and len(m) == 13


def test_import_quarantines_a_file_it_cannot_read(tmp_path):
    root = tmp_path / "dataset"
    class_folders(root, {"run": 5, "sit": 5})
    shutil.copyfile(root / "run/v0.avi", root / "sit/locked.avi")  # same size as run/v0.avi: it must be read
    (root / "sit/locked.avi").chmod(0)
    try:
        (root / "sit/locked.avi").open("rb").close()
        pytest.skip("this user reads any file (root with CAP_DAC_OVERRIDE)")
    except PermissionError:
        pass
    assert cli(["import-folder", str(root), "--out", str(tmp_path / "m")]) == 0
    q = quarantine(tmp_path / "m")
    assert list(zip(q.path, q.kind)) == [("sit/locked.avi", "unreadable")]
    assert "cannot open it (Permission denied)" in q.reason[0]  # safe_files.fingerprint's words


def test_same_size_files_that_differ_only_at_the_end_are_not_duplicates(tmp_path):
    """Every file shares its size with another (the worst case: all are hashed) and differs only in its last bytes:
    none is a duplicate. (Its speed is measured in bench/, not asserted here: 400 x 64 KiB took ~0.2 s.)"""
    from dlkdd.data.importers import drop_duplicates

    payload = os.urandom(64 * 1024)
    rows = []
    for k in range(400):
        (tmp_path / f"c{k}.avi").write_bytes(payload[:-8] + k.to_bytes(8, "big"))
        rows.append({"path": f"c{k}.avi", "split": "train"})
    kept, dups = drop_duplicates(rows, tmp_path)
    assert len(kept) == 400 and dups == []


def test_import_refuses_two_files_with_one_video_id(tmp_path):
    """``a b/v0.avi`` and ``a_b/v0.avi`` both give video_id ``a_b_v0``: one .npy would hold both clips, so the
    second is quarantined ``duplicate`` and the ids in the manifest are unique."""
    root = tmp_path / "dataset"
    class_folders(root, {"a b": 5, "a_b": 5})
    assert cli(["import-folder", str(root), "--out", str(tmp_path / "m")]) == 0
    m, q = pd.read_csv(tmp_path / "m/manifest.csv"), quarantine(tmp_path / "m")
    assert len(m) == 5 and m.video_id.is_unique
    assert len(q) == 5 and set(q.kind) == {"duplicate"} and set(q.path.str.split("/").str[0]) == {"a_b"}
    assert "video_id 'a_b_v0' is already that of a b/v0.avi" in q.reason[0]


def test_frame_cache_stops_when_two_rows_would_write_one_clip_file(tmp_path):
    """video_ids ``x/y`` and ``x_y`` both write clips/x_y.npy: the frame cache stops before decoding, one line;
    the frames stage turns it into ``error: ...``."""
    write_clip(tmp_path / "data" / "a.avi", frames=6)
    write_clip(tmp_path / "data" / "b.avi", frames=6, seed=1)
    manifest = pd.DataFrame({"path": ["a.avi", "b.avi"], "label": [0, 0], "class_name": ["Drink"] * 2,
                             "split": ["train", "test"], "video_id": ["x/y", "x_y"]})
    with pytest.raises(ValueError, match=r"a\.avi \(video_id x/y\) and b\.avi \(video_id x_y\) would both write "
                                         r"clips/x_y\.npy"):
        build_frame_cache(manifest, tmp_path / "data", tmp_path / "frames", 4, 16, ["Drink"])
    assert not (tmp_path / "frames" / "clips").exists()
    manifest.assign(video_id="same").to_csv(tmp_path / "data" / "manifest.csv", index=False)
    (tmp_path / "params.yaml").write_text("frames:\n  num_frames: 4\n  size: 16\n")
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    r = subprocess.run([sys.executable, str(ROOT / "stages/frames.py"), "--manifest", "data/manifest.csv",
                        "--out", "frames"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert r.returncode == 1 and r.stderr.startswith("error: data/manifest.csv: ") and r.stderr.count("\n") == 1
    assert "would both write clips/same.npy" in r.stderr and "Traceback" not in r.stderr


# ---------------------------------------------------------------- bad bytes and bad ids: one line, exit 2


def arid_lists(tmp_path: Path, test_list: bytes, mapping: bytes = b"0\tDrink\n1\tJump\n") -> tuple[Path, Path]:
    videos, lists = tmp_path / "avi", tmp_path / "list_cvt"
    class_folders(videos, {"Drink": 4, "Jump": 4})
    write_list(lists / "ARID_split1_train.txt", [(c, f"{n}/v{k}.avi") for c, n in enumerate(("Drink", "Jump"))
                                                 for k in range(3)])
    (lists / "ARID_split1_test.txt").write_bytes(test_list)
    (lists / "mapping_table.txt").write_bytes(mapping)
    return videos, lists


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_class_id_double_minus_is_malformed_not_a_traceback(tmp_path, capsys):
    videos, lists = arid_lists(tmp_path, b"0\t0\tDrink/v3.avi\n1\t1\tJump/v3.avi\n2\t--1\tJump/v0.avi\n")
    args = ["import-arid", "--root", str(videos), "--lists", str(lists), "--out", str(tmp_path / "m")]
    assert cli(args) == 0  # a bad row in a list: quarantined, the rest imported
    q = quarantine(tmp_path / "m")
    assert list(q.kind) == ["malformed"] and "ARID_split1_test.txt:3" in q.reason[0]
    (lists / "mapping_table.txt").write_bytes(b"0\tDrink\n--1\tJump\n")  # a bad mapping table: nothing to import
    assert cli(args[:-1] + [str(tmp_path / "m2")]) == 2
    assert "mapping_table.txt:2: expected '<class_id><TAB><ClassName>'" in one_error_line(capsys)
    assert not (tmp_path / "m2").exists()


def test_non_utf8_list_and_csv_are_one_line(tmp_path, capsys):
    videos, lists = arid_lists(tmp_path, b"0\t0\tDrink/v3.avi\n1\t1\tJump/v3.avi\n2\t0\tDrink/caf\xe9.avi\n")
    assert cli(["import-arid", "--root", str(videos), "--lists", str(lists), "--out", str(tmp_path / "m")]) == 2
    assert "ARID_split1_test.txt: not UTF-8 text at line 3" in one_error_line(capsys)
    (tmp_path / "list.csv").write_bytes(b"path,label\nDrink/v0.avi,Drink\nJump/v0.avi,J\xfcmp\n")
    assert cli(["import-csv", str(tmp_path / "list.csv"), "--root", str(videos), "--out", str(tmp_path / "m")]) == 2
    assert "list.csv: not UTF-8 text at line 3" in one_error_line(capsys)
    assert not (tmp_path / "m").exists()


def test_non_utf8_file_name_is_quarantined_bad_name(tmp_path, capsys):
    """A file (and a class folder) named with bytes that are not UTF-8: quarantined ``bad_name`` with the name
    escaped; the rest is imported and no temp file is left (before: a traceback and a stray .tmp)."""
    root = tmp_path / "dataset"
    class_folders(root, {"run": 5, "sit": 5})
    os.rename(os.fsencode(root / "run" / "v4.avi"), os.fsencode(root / "run") + b"/caf\xe9.avi")
    write_clip(root / "tmpdir" / "v0.avi", frames=4)
    os.rename(os.fsencode(root / "tmpdir"), os.fsencode(root) + b"/d\xe9j\xe0")
    assert cli(["import-folder", str(root), "--out", str(tmp_path / "m")]) == 0
    m, q = pd.read_csv(tmp_path / "m/manifest.csv"), quarantine(tmp_path / "m")
    assert len(m) == 9 and (tmp_path / "m/classes.txt").read_text().split() == ["run", "sit"]
    assert list(q.kind) == ["bad_name", "bad_name"]
    assert set(q.path) == {"d\\xe9j\\xe0", "run/caf\\xe9.avi"} and "not valid UTF-8" in q.reason[1]
    assert temp_files(tmp_path / "m") == []
    assert "2 quarantined" in capsys.readouterr().out

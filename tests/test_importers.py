"""Importers read each dataset format exactly as it ships and write the pipeline's one manifest."""
from pathlib import Path

import pandas as pd
import pytest

from dlkdd.cli import main as cli
from dlkdd.data.frame_index import INDEX_COLUMNS, MANIFEST_COLUMNS
from dlkdd.data.frames import build_frame_cache
from dlkdd.data.importers import (DatasetImportError, arid_group, assign_splits, parse_split_list, read_arid_v1,
                                  read_arid_v15, read_csv_manifest, read_folder, read_mapping_table, write_import)
from footage import write_clip

ROOT = Path(__file__).resolve().parents[1]
REAL_ARID = ROOT.parent / "shared" / "datasets" / "ARID_v1.0"
ARID_MAP = ["Drink", "Jump", "Pick", "Pour", "Push", "Run", "Sit", "Stand", "Turn", "Walk", "Wave"]


def write_arid_list(path: Path, rows: list[tuple[int, str]]) -> None:
    """Exactly ARID's list_cvt format: ``<idx>\\t<class_id>\\t<Class>/<file>`` with LF line ends."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{i}\t{cid}\t{rel}\n" for i, (cid, rel) in enumerate(rows)))


@pytest.fixture(scope="module")
def arid(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny ARID v1.0: clips_v1/avi/<Class>/<Class>_<g>_<n>.avi + list_cvt (3 of the 11 classes used); per class
    two train groups (1, 4), one test group (2) and one ``other`` group (3), disjoint as in the real lists."""
    base = tmp_path_factory.mktemp("arid")
    videos, lists = base / "clips_v1" / "avi", base / "list_cvt"
    used = {0: "Drink", 5: "Run", 10: "Wave"}
    split_rows: dict[str, list] = {"train": [], "test": [], "other": []}
    for cid, cls in used.items():
        for g, split, n_clips in ((1, "train", 2), (4, "train", 2), (2, "test", 2), (3, "other", 1)):
            for n in range(1, n_clips + 1):
                rel = f"{cls}/{cls}_{g}_{n}.avi"
                write_clip(videos / rel, frames=6, seed=cid * 100 + g * 10 + n)
                split_rows[split].append((cid, rel))
    for split, rows in split_rows.items():
        write_arid_list(lists / f"ARID_split1_{split}.txt", rows)
        write_arid_list(lists / f"ARID_split2_{split}.txt", rows[::-1])
    (lists / "mapping_table.txt").write_text("".join(f"{i}\t{c}\n" for i, c in enumerate(ARID_MAP)))
    return videos, lists


def test_arid_v1_manifest(arid, tmp_path):
    videos, lists = arid
    res = write_import(read_arid_v1(lists, 1), videos, tmp_path / "m", val_fraction=0.25, seed=3)
    m = pd.read_csv(res.manifest)
    assert list(m.columns) == MANIFEST_COLUMNS + ["group"]
    # val takes one whole train group (2 clips) per class: 0.25 of 4 clips rounds to 1, reached by one group
    assert res.quarantined == 0 and res.per_split == {"train": 6, "val": 6, "test": 6}
    assert not m["path"].str.contains("_3_").any()  # the "other" list is not imported
    assert set(m[m.split == "test"]["path"].str.split("_").str[1]) == {"2"}  # the list's test group, untouched
    assert set(m[m.split == "val"]["class_name"]) == {"Drink", "Run", "Wave"}  # val carved per class
    assert (m.groupby("group").split.nunique() == 1).all()  # no recording group straddles two splits
    assert set(m.group) == {f"{c}_{g}" for c in ("Drink", "Run", "Wave") for g in (1, 2, 4)}
    # class list = ARID's mapping table, all 11, labels = the ARID ids
    assert res.classes == ARID_MAP and (tmp_path / "m/classes.txt").read_text().split() == ARID_MAP
    assert dict(zip(m.class_name, m.label)) == {"Drink": 0, "Run": 5, "Wave": 10}
    assert m.loc[m.path == "Drink/Drink_1_1.avi", "video_id"].item() == "Drink_1_1"
    again = write_import(read_arid_v1(lists, 1), videos, tmp_path / "m2", val_fraction=0.25, seed=3)
    assert pd.read_csv(again.manifest).equals(m)  # deterministic
    # the manifest is what the frame cache consumes: every clip decodes
    fr = build_frame_cache(m, videos, tmp_path / "frames", 4, 16, res.classes)
    assert (fr.ready, fr.quarantined) == (18, 0)
    assert list(pd.read_csv(tmp_path / "frames/index.csv").columns) == INDEX_COLUMNS  # the extra column stays out


def split_groups(m: pd.DataFrame) -> dict[str, set[str]]:
    return {s: set(m.loc[m.split == s, "group"]) for s in ("train", "val", "test")}


def test_arid_val_is_carved_by_recording_group(tmp_path):
    """Uneven groups per class: whole groups go to val, none straddles train and val, the seed decides which."""
    videos, lists = tmp_path / "clips_v1" / "avi", tmp_path / "list_cvt"
    train_groups = {0: {1: 3, 5: 1, 6: 2, 7: 1}, 1: {1: 2, 3: 2, 8: 1}, 2: {2: 3}}  # class id -> {g: clips}
    rows: dict[str, list] = {"train": [], "test": []}
    for cid, groups in train_groups.items():
        cls = ARID_MAP[cid]
        for g, n_clips in [*groups.items(), (9, -1)]:  # group 9: one test clip per class
            for n in range(1, abs(n_clips) + 1):
                rel = f"{cls}/{cls}_{g}_{n}.avi"
                write_clip(videos / rel, frames=4, width=32, seed=cid * 100 + g * 10 + n)
                rows["train" if n_clips > 0 else "test"].append((cid, rel))
    write_clip(videos / "Drink/Drink_extra.avi", frames=4, width=32)  # not an ARID name: a group of its own
    rows["train"].append((0, "Drink/Drink_extra.avi"))
    for split, listed in rows.items():
        write_arid_list(lists / f"ARID_split1_{split}.txt", listed)
    (lists / "mapping_table.txt").write_text("".join(f"{i}\t{c}\n" for i, c in enumerate(ARID_MAP)))

    def carve(seed: int, out: str) -> pd.DataFrame:
        res = write_import(read_arid_v1(lists, 1), videos, tmp_path / out, val_fraction=0.3, seed=seed)
        return pd.read_csv(res.manifest, keep_default_na=False)

    m = carve(0, "m0")
    groups = split_groups(m)
    assert groups["train"].isdisjoint(groups["val"]) and groups["test"] == {"Drink_9", "Jump_9", "Pick_9"}
    assert m.loc[m.path == "Drink/Drink_extra.avi", "group"].item() == ""
    for cid, cls in ((0, "Drink"), (1, "Jump")):  # 2+ groups: val holds >= 0.3 of the class's train clips, whole
        c = m[(m.class_name == cls) & (m.split != "test")]
        val = c[c.split == "val"]
        assert len(val) >= round(0.3 * len(c)) and (c.split == "train").any()
        named = val[val.group != ""]
        assert all(len(c[c.group == g]) == n for g, n in named.group.value_counts().items())
    assert set(m.loc[m.class_name == "Pick", "split"]) == {"train", "test"}  # one group only: it stays in train
    assert carve(0, "again").equals(m)  # deterministic for a seed
    carvings = {frozenset(split_groups(carve(seed, f"s{seed}"))["val"]) for seed in range(1, 5)}
    assert len(carvings | {frozenset(groups["val"])}) > 1  # and the seed picks the groups


def test_groupless_rows_carve_exactly_as_one_row_groups():
    """A row without a group is its own group: the carving equals giving every row a unique group."""
    rows = [{"path": f"c{c}/v{i:02d}.avi", "class_id": c, "split": s} for c in range(3) for i, s in
            enumerate(["", "", "", "", "", "train", "train", "train", "train", "", "", ""])]
    plain, tagged = [dict(r) for r in rows], [dict(r, group=f"g_{r['path']}") for r in rows]
    assign_splits(plain, 0.25, 0.2, seed=7)
    assign_splits(tagged, 0.25, 0.2, seed=7)
    assert [r["split"] for r in plain] == [r["split"] for r in tagged]
    assert {r["split"] for r in plain} == {"train", "val", "test"}


def test_arid_group_from_file_name():
    assert arid_group("Drink/Drink_10_1.avi") == "Drink_10" and arid_group("Push_Up/Push_Up_3_12.mp4") == "Push_Up_3"
    assert arid_group("Drink/Drink_train_0.mp4") is None and arid_group("Drink/clip.avi") is None


def test_arid_v1_cli_split_choice_and_bad_args(arid, tmp_path, capsys):
    videos, lists = arid
    assert cli(["import-arid", "--root", str(videos), "--lists", str(lists), "--split", "2",
                "--out", str(tmp_path / "m")]) == 0
    out = capsys.readouterr().out
    assert "18 clips imported (train 6, val 6, test 6; 11 classes)" in out and "data.manifest" in out
    assert cli(["import-arid", "--root", str(videos), "--lists", str(lists), "--split", "3",
                "--out", str(tmp_path / "x")]) == 2  # this fixture has no split 3 lists
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "ARID_split3_train.txt not found" in err and err.count("\n") == 1
    # writing into the dataset is refused: the source folder is never modified
    assert cli(["import-arid", "--root", str(videos), "--lists", str(lists), "--out", str(videos / "m")]) == 2
    assert "never written to" in capsys.readouterr().err and not (videos / "m").exists()


def test_arid_v15_split_folders(tmp_path):
    root, lists = tmp_path / "clips_v1.5", tmp_path / "list_cvt"
    rows = {"train": [], "test": []}
    for cid, cls in ((0, "Drink"), (1, "Jump")):
        for split, n in (("train", 3), ("test", 1)):
            for k in range(n):
                rel = f"{cls}/{cls}_{split}_{k}.mp4"
                write_clip(root / rel, frames=5, seed=cid * 10 + k + (5 if split == "test" else 0))
                rows[split].append((cid, rel))
    for split in rows:
        write_arid_list(lists / "split_0" / f"ARID1.5_{split}.txt", rows[split])
    (lists / "mapping_table.txt").write_text("0\tDrink\n1\tJump\n")
    res = write_import(read_arid_v15(lists, 0), root, tmp_path / "m")
    assert res.per_split == {"train": 4, "val": 2, "test": 2} and res.classes == ["Drink", "Jump"]
    with pytest.raises(DatasetImportError, match="split_1"):
        read_arid_v15(lists, 1)


def test_ug2_csv_remaps_class_ids(tmp_path, capsys):
    root = tmp_path / "train_data"
    lines = {"train": ["VideoID,Video,ClassID"], "val": ["VideoID,Video,ClassID"]}
    for cid, cls in ((10, "Wave"), (5, "Run"), (6, "Sit")):
        for split, n in (("train", 3), ("val", 1)):
            for k in range(n):
                rel = f"{cls}/{cls}_{split}{k}_1.mp4"
                write_clip(root / rel, frames=5, seed=cid * 10 + k + (5 if split == "val" else 0))
                lines[split].append(f"{len(lines[split]) - 1},{rel},{cid}")
    (tmp_path / "t1_train.csv").write_text("\n".join(lines["train"]) + "\n")
    (tmp_path / "t1_val.csv").write_text("\n".join(lines["val"]) + "\n")
    (tmp_path / "mapping_table_t1.txt").write_text("5\tRun\n6\tSit\n7\tStand\n8\tTurn\n9\tWalk\n10\tWave\n")
    assert cli(["import-ug2", "--root", str(root), "--train", str(tmp_path / "t1_train.csv"), "--test",
                str(tmp_path / "t1_val.csv"), "--mapping", str(tmp_path / "mapping_table_t1.txt"),
                "--out", str(tmp_path / "m")]) == 0
    m = pd.read_csv(tmp_path / "m/manifest.csv")
    # 6 classes from the mapping table, ids 5..10 become labels 0..5 in order
    assert (tmp_path / "m/classes.txt").read_text().split() == ["Run", "Sit", "Stand", "Turn", "Walk", "Wave"]
    assert dict(zip(m.class_name, m.label)) == {"Run": 0, "Sit": 1, "Wave": 5}
    assert m.split.value_counts().to_dict() == {"train": 6, "test": 3, "val": 3}


def test_folder_per_class_dark48_style(tmp_path):
    root = tmp_path / "Dark48"
    for ci, cls in enumerate(["climb", "drink", "wave"]):
        for k in range(5):
            write_clip(root / cls / f"{k:03d}.{['avi', 'mp4', 'mkv'][k % 3]}", frames=5, seed=ci * 10 + k)
    (root / "drink" / "notes.txt").write_text("not a clip")
    imp = read_folder(root)
    assert imp.class_names == {0: "climb", 1: "drink", 2: "wave"}
    res = write_import(imp, root, tmp_path / "m", val_fraction=0.25, test_fraction=0.2, seed=0)
    m = pd.read_csv(res.manifest)
    assert len(m) == 15 and not m.path.str.endswith(".txt").any()
    assert (m.groupby("class_name").split.value_counts().unstack()[["train", "val", "test"]] == [3, 1, 1]).all().all()
    # stems repeat across classes, so video ids keep the class folder and stay unique
    assert m.video_id.is_unique and "drink_000" in set(m.video_id)
    # pre-split layout: <root>/{train,val,test}/<Class>/*
    pre = tmp_path / "presplit"
    for si, split in enumerate(("train", "val", "test")):
        for ci, cls in enumerate(("a", "b")):
            write_clip(pre / split / cls / f"{split}_{cls}.avi", frames=4, seed=si * 2 + ci)
    res2 = write_import(read_folder(pre), pre, tmp_path / "m2")
    assert res2.per_split == {"train": 2, "val": 2, "test": 2}


def test_csv_manifest_and_unusable_dataset(tmp_path):
    root = tmp_path / "data"
    rows = ["path,label,split"]
    for cls in ("dark_run", "dark_sit"):
        for split in ("train", "train", "val", "test"):
            rel = f"{cls}/{split}_{len(rows)}.avi"
            write_clip(root / rel, frames=4, seed=len(rows))
            rows.append(f"{rel},{cls},{split}")
    (tmp_path / "list.csv").write_text("\n".join(rows) + "\n")
    assert cli(["import-csv", str(tmp_path / "list.csv"), "--root", str(root), "--out", str(tmp_path / "m")]) == 0
    m = pd.read_csv(tmp_path / "m/manifest.csv")
    assert m.split.value_counts().to_dict() == {"train": 4, "val": 2, "test": 2}
    assert sorted(set(zip(m.class_name, m.label))) == [("dark_run", 0), ("dark_sit", 1)]
    # a dataset where nothing is usable stops with one clear line
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    with pytest.raises(DatasetImportError, match="none of the 8 listed clips is usable"):
        write_import(read_folder(root), elsewhere, tmp_path / "m3")
    # a split left empty stops too
    (tmp_path / "train_only.csv").write_text("path,label,split\n" + "\n".join(
        r for r in rows[1:] if r.endswith(",train")) + "\n")
    assert cli(["import-csv", str(tmp_path / "train_only.csv"), "--root", str(root), "--out",
                str(tmp_path / "m4")]) == 2


def test_csv_group_column_keeps_groups_whole_in_test_and_val(tmp_path):
    root = tmp_path / "data"
    rows = ["path,label,group"]
    for cls in ("dark_run", "dark_sit"):
        for g in range(4):
            for n in range(2):
                rel = f"{cls}/s{g}_{n}.avi"
                write_clip(root / rel, frames=4, width=32, seed=len(rows))
                rows.append(f"{rel},{cls},session{g}")
    (tmp_path / "list.csv").write_text("\n".join(rows) + "\n")
    res = write_import(read_csv_manifest(tmp_path / "list.csv"), root, tmp_path / "m", val_fraction=0.2,
                       test_fraction=0.2, seed=1)
    m = pd.read_csv(res.manifest)
    # 8 clips per class in 4 groups of 2: 0.2 * 8 rounds to 2, one whole group each for test and val
    assert res.per_split == {"train": 8, "val": 4, "test": 4}
    assert (m.groupby(["class_name", "group"]).split.nunique() == 1).all()


def test_real_arid_v1_split_lists():
    """The official ARID v1.0 lists (CI: ../shared/datasets): 3,784 clips per split, 11 classes. Must exist."""
    lists = REAL_ARID / "list_cvt"
    assert lists.is_dir(), f"the real ARID v1.0 split lists are missing at {lists}"
    mapping = read_mapping_table(lists / "mapping_table.txt")
    assert [mapping[i] for i in sorted(mapping)] == ARID_MAP
    for split in (1, 2, 3):
        imp = read_arid_v1(lists, split)
        assert imp.bad == [] and imp.class_names == mapping
        other, bad = parse_split_list(lists / f"ARID_split{split}_other.txt", "other")
        rows = imp.rows + other
        paths = [r["path"] for r in rows]
        assert len(rows) == 3784 and len(set(paths)) == 3784 and not bad
        assert {r["class_id"] for r in rows} == set(mapping)
        # every path is <Class>/<Class>_<g>_<n>.avi with the class the id names
        assert all(p.split("/")[0] == mapping[r["class_id"]] and p.endswith(".avi") for p, r in zip(paths, rows))
        # every clip names its recording group; the lists keep test groups apart and carving val keeps groups whole
        # (assign_splits is write_import's carving, run here without the videos write_import checks for)
        carved = [dict(r) for r in imp.rows]
        assert all(r.get("group") for r in carved)
        assign_splits(carved, 0.1, 0.2, seed=0)
        groups = {s: {r["group"] for r in carved if r["split"] == s} for s in ("train", "val", "test")}
        assert groups["train"].isdisjoint(groups["val"]) and groups["test"].isdisjoint(groups["train"] | groups["val"])
        assert {r["class_id"] for r in carved if r["split"] == "val"} == set(mapping)  # val in every class
    assert len(read_arid_v1(lists, 1).rows) == 2288 + 823

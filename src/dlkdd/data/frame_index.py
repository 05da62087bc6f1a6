"""The frame cache's index, as its readers see it: which clips are ready, their labels and splits, the class names.

Training, evaluation and the checks read a frames directory through this module only; the decoder that writes it
(:mod:`dlkdd.data.frames`) is not imported with it, so editing the decoder does not retrain a model.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

INDEX_COLUMNS = ["clip_id", "path", "label", "class_name", "split", "video_id"]
MANIFEST_COLUMNS = INDEX_COLUMNS[1:]  # what generate and the importers write
REQUIRED_SPLITS = ("train", "val", "test")  # the training and evaluation stages need all three
QUARANTINE_COLUMNS = ["path", "reason", "kind"]
EVAL_SPLITS = ("val", "test")
POOL_SPLIT = "unlabeled"  # a manifest's split for clips with no label: the unlabelled pool (dlkdd.data.pool)
TRUTH_FILE = "unlabeled_truth.csv"  # a generated pool's true classes (path,label,class_name): scoring only


def read_classes(folder: str | Path) -> list[str]:
    """The class names of ``<folder>/classes.txt`` (a frames directory, a manifest's folder) in label order: one per
    line, blank lines skipped, any line ending (a hand-edited list may have ``\\r\\n``). Raises FileNotFoundError."""
    return [c for c in (Path(folder) / "classes.txt").read_text(encoding="utf-8").splitlines() if c]


def read_index(frames_dir: str | Path) -> tuple[pd.DataFrame, list[str]]:
    """The ready clips and the class names of a frames directory."""
    return pd.read_csv(Path(frames_dir) / "index.csv"), read_classes(frames_dir)

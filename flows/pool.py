"""The unlabelled pool as the retrain flow sees it: which landed unlabelled clips production's model has not trained
from yet (the ``retrain.min_unlabeled`` rule), and how many pool clips a candidate learned from (its summary).

Landed unlabelled clips are the rows of ``data/footage.csv`` with an empty ``class_name``. The production model was
trained on the footage listed at the last commit that changed ``dvc.lock`` (every pipeline run that produced it
commits ``dvc.lock``; a landing that trains nothing commits only the footage), so the clips waiting are the pool rows
at HEAD that were not there at that commit. That is git state only: nothing to keep between runs, and a rollback of
production (``git reset --hard <prod tag>``) rolls the count back with it.
"""
from __future__ import annotations

import io
from pathlib import Path

import pandas as pd

from dlkdd.paths import FOOTAGE_CSV, POOL_INDEX
from flows import ops

LOCK = "dvc.lock"


def unlabelled_md5s(footage_csv_text: str) -> set[str]:
    """The md5s of the unlabelled rows (empty ``class_name``) of a ``data/footage.csv`` text ('' = no footage)."""
    if not footage_csv_text.strip():
        return set()
    df = pd.read_csv(io.StringIO(footage_csv_text), dtype=str, keep_default_na=False)
    return set(df.loc[df["class_name"] == "", "md5"])


def waiting_unlabelled(repo: Path) -> set[str]:
    """md5s of the unlabelled clips landed in ``repo``'s HEAD that its model was not trained from: listed in
    ``data/footage.csv`` now but not at the last commit that changed ``dvc.lock`` (all of them when none did)."""
    now = unlabelled_md5s(ops.git(repo, "show", f"HEAD:{FOOTAGE_CSV}", check=False))
    trained_at = ops.git(repo, "log", "-1", "--format=%H", "HEAD", "--", LOCK)
    if not trained_at:
        return now
    return now - unlabelled_md5s(ops.git(repo, "show", f"{trained_at}:{FOOTAGE_CSV}", check=False))


def pool_clips(ws: Path) -> int:
    """How many pool clips the pipeline in ``ws`` trained the student on: the rows of ``data/pool/index.csv`` (0 when
    the frames stage wrote no pool)."""
    index = ws / POOL_INDEX
    if not index.is_file() or not index.read_text().strip():
        return 0
    return len(pd.read_csv(index))

"""Training throughput kept beside a model file, for the one timings metric (never a tracked output itself).

Timings differ from run to run, so no tracked file but the timings metric may hold one: a training run writes its
median clips/s to ``<model dir>/.timings/<model file name>.json`` together with the sha256 of the model file it
trained. :func:`read_train_timing` gives it back only while it still describes that file: a model restored from a
cache (never trained here) has no fresh measurement, and another run's leftover is ignored.
"""
from __future__ import annotations

import hashlib
import json
import statistics
from pathlib import Path
from typing import Any

from dlkdd.atomic import write_text_atomic


def sidecar(model_path: str | Path) -> Path:
    p = Path(model_path)
    return p.parent / ".timings" / f"{p.name}.json"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_train_timing(model_path: str | Path, history: list[dict[str, Any]]) -> None:
    """Record the median ``clips_per_s`` over ``history`` (one row per epoch) for the model just saved at
    ``model_path``; the median, so an epoch slowed by another job on the machine does not move it."""
    speeds = [float(r["clips_per_s"]) for r in history if r.get("clips_per_s")]
    if not speeds:
        return
    record = {"model_sha256": _sha256(Path(model_path)), "epochs": len(history),
              "train_clips_per_s": round(statistics.median(speeds), 2)}
    write_text_atomic(sidecar(model_path), json.dumps(record, indent=1) + "\n")


def read_train_timing(model_path: str | Path) -> float | None:
    """The median training clips/s measured when ``model_path`` was trained here; None when it was not (restored
    from a cache, or the record belongs to other weights)."""
    path = sidecar(model_path)
    try:
        record = json.loads(path.read_text())
        fresh = record["model_sha256"] == _sha256(Path(model_path))
        return float(record["train_clips_per_s"]) if fresh else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def ratio(a: float | None, b: float | None) -> float | None:
    """a / b rounded to 3 places; None when either is unknown (or b is 0)."""
    return round(a / b, 3) if a is not None and b else None

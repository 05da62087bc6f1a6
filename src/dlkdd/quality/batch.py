"""The batch verdict: the data-quality gate (:func:`dlkdd.quality.check_footage`) on a batch of landed clips, turned
into per-clip rejections. The one place the retrain flow asks the gate about new clips."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from dlkdd.config import Params
from dlkdd.quality.drift import MIN_DRIFT_ROWS
from dlkdd.quality.gate import check_footage
from dlkdd.quality.result import GateInputError


@dataclass
class BatchVerdict:
    passed: bool  # False: the batch as a whole is refused, nothing of it is trained on
    rejected: dict[str, str] = field(default_factory=dict)  # clip_id -> why (named offenders of failed checks)
    report: str = ""  # the gate's readable summary, for the run summary
    drift: str = ""  # "tested: ..." or "not tested: <why>": a batch too small for drift must say so, not pass silently


def gate_batch(stats: pd.DataFrame, params: Params, reference: pd.DataFrame | None = None,
               classes: list[str] | None = None, report_dir: str | Path | None = None) -> BatchVerdict:
    """Run the project's gate on a batch of new clips (``stats``: one row per clip, ``clip_stats`` columns).

    The same GX expectations as the ``validate`` stage, and Evidently drift against ``reference`` (the production
    train split's statistics). Class balance is a property of the whole training set, not of one night's landing
    (a batch of only ``Jump`` clips is fine): it is downgraded to a recorded warning here and enforced by the
    pipeline's ``validate`` stage after the clips are merged.
    """
    cfg = dataclasses.replace(params.validate, warn_only=[*params.validate.warn_only, "class_balance"])
    try:
        result = check_footage(stats, cfg, params.frames.num_frames, reference=reference, classes=classes,
                               balance_split="train", report_dir=report_dir)
    except GateInputError as err:
        return BatchVerdict(False, {}, f"gate could not judge the batch: {err}")
    rejected: dict[str, str] = {}
    drift = next((c for c in result.checks if c.name == "drift"), None)
    if len(stats) < MIN_DRIFT_ROWS:
        drift_note = f"not tested: {len(stats)} clip{'s' if len(stats) != 1 else ''} (needs >= {MIN_DRIFT_ROWS})"
    elif drift is None or drift.status == "skipped":
        drift_note = "not tested: " + (drift.detail if drift else "no drift check ran")
    else:
        drift_note = f"tested ({drift.status}): {drift.detail}"
    for check in result.checks:
        if check.failed:
            for w in check.worst:
                if "clip_id" in w and w["clip_id"] in set(stats["clip_id"]):
                    why = f"{check.name}={w.get('value')}: {check.detail}"
                    rejected[w["clip_id"]] = f"{rejected[w['clip_id']]}; {why}" if w["clip_id"] in rejected else why
    return BatchVerdict(result.passed, rejected, result.summary(), drift_note)

"""The one place the retrain flow asks the data-quality gate about a batch of landed clips."""
from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from dlkdd.config import Params


@dataclass
class GateResult:
    passed: bool  # False: the batch as a whole is refused, nothing of it is trained on
    rejected: dict[str, str] = field(default_factory=dict)  # clip_id -> why (these are quarantined)
    report: str = ""  # one or two lines for the run summary


def gate_batch(stats: pd.DataFrame, params: Params) -> GateResult:
    """Run the project's data-quality gate on ``stats`` (one row per clip: ``clip_id`` + ``clip_stats`` columns)."""
    raise NotImplementedError("the data-quality gate (issue 6, src/dlkdd/quality) is not merged yet")

"""Evidently 0.7 data drift of current footage against the reference (training) footage on the brightness columns.

The gate's explicit test: the share of drifted brightness columns must stay below ``drift_share``; each column's
drift (method and threshold from params) is shown in the report. Evidently is imported lazily (seconds to import).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dlkdd.atomic import atomic_path, write_text_atomic
from dlkdd.config import ValidateConfig
from dlkdd.quality.result import FAIL, PASS, SKIPPED, CheckResult, GateInputError


def per_video(stats: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    """One row per video: the mean of its clips' ``cols`` (rows without a ``video_id`` column are taken as one video
    each). Drift compares like with like: with ``frames.clips_per_video`` > 1 val/test give several clips per video
    (same footage, even the same statistics) while train gives one, and counting a video twice halves the KS test's
    p-values on unchanged footage. (V, len(cols)) out, videos sorted by id."""
    if "video_id" not in stats.columns:
        return stats[cols].astype(float).reset_index(drop=True)
    return stats[cols].astype(float).groupby(stats["video_id"].astype(str), sort=True).mean().reset_index(drop=True)


def drift_report(current: pd.DataFrame, reference: pd.DataFrame, cfg: ValidateConfig) -> Any:
    """Run the drift report (current first, as Evidently 0.7 wants) and return its snapshot."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import DriftedColumnsCount, ValueDrift
    from evidently.tests import lt

    cols = list(cfg.drift_columns)
    definition = DataDefinition(numerical_columns=cols)
    metrics = [DriftedColumnsCount(columns=cols, method=cfg.drift_method, threshold=cfg.drift_threshold,
                                   drift_share=cfg.drift_share, share_tests=[lt(cfg.drift_share)])]
    # per-column drift for the report only (tests=[]): the gate is the share test above
    metrics += [ValueDrift(column=c, method=cfg.drift_method, threshold=cfg.drift_threshold, tests=[]) for c in cols]
    report = Report(metrics, include_tests=False)
    with np.errstate(invalid="ignore", divide="ignore"):  # constant columns (all-dark clips) in Evidently's plots
        return report.run(Dataset.from_pandas(current[cols].astype(float), data_definition=definition),
                          Dataset.from_pandas(reference[cols].astype(float), data_definition=definition))


MIN_DRIFT_ROWS = 2  # clips each side needs for a drift test; fewer and the check is skipped (and says so)


def check_drift(current: pd.DataFrame, reference: pd.DataFrame | None, cfg: ValidateConfig,
                out_dir: Path | None = None) -> tuple[CheckResult, dict[str, str]]:
    """The ``drift`` check; writes ``drift.html`` and ``drift.json`` under ``out_dir`` when given.

    Both sides are compared one row per video (:func:`per_video`). Skipped (and said so) when there is no reference
    or no current footage: drift needs both.
    """
    cols = list(cfg.drift_columns)
    current = per_video(current, cols)
    reference = None if reference is None else per_video(reference, cols)
    if reference is None or len(reference) < MIN_DRIFT_ROWS or len(current) < MIN_DRIFT_ROWS:
        why = "no reference footage" if reference is None or len(reference) < MIN_DRIFT_ROWS else "no current footage"
        return CheckResult("drift", SKIPPED, "DriftedColumnsCount share",
                           f"skipped: {why} (needs >= {MIN_DRIFT_ROWS} videos each)"
                           ), {}
    from evidently.legacy.calculations.stattests.registry import StatTestNotFoundError

    try:
        snap = drift_report(current, reference, cfg)
    except StatTestNotFoundError as err:
        raise GateInputError(f"validate.drift_method: {str(err).split('. Available')[0]}; see the Evidently "
                             "drift methods (ks, wasserstein, psi, ...)") from None
    data = snap.dict()
    scores, n_drifted = {}, 0
    for m in data["metrics"]:
        cfg_m = m["config"]
        if cfg_m["type"].endswith("ValueDrift"):
            scores[cfg_m["column"]] = float(m["value"])
        elif cfg_m["type"].endswith("DriftedColumnsCount"):
            n_drifted = int(m["value"]["count"])  # Evidently's own count is the truth; ours only orders columns
    tests = data.get("tests", [])
    failed = any(str(t["status"]).upper().endswith("FAIL") for t in tests)
    # which columns drifted: the same rule Evidently applies (p-value methods: score < threshold; distances: >)
    pvalue = cfg.drift_method in ("ks", "chisquare", "z", "t_test", "mannw", "anderson", "cramer_von_mises",
                                  "fisher_exact", "g_test", "epps_singleton", "empirical_mmd")
    drifted = {c: s for c, s in scores.items() if (s < cfg.drift_threshold if pvalue else s > cfg.drift_threshold)}
    order = sorted(drifted.items(), key=lambda kv: kv[1] if pvalue else -kv[1])
    rule = f"{cfg.drift_method} {'p-value <' if pvalue else 'score >'} {cfg.drift_threshold:g}"
    detail = (f"{n_drifted}/{len(scores)} brightness columns drifted ({rule}); the gate allows a share "
              f"< {cfg.drift_share:g}; current {len(current)} videos vs reference {len(reference)}")
    result = CheckResult("drift", FAIL if failed else PASS, "Evidently DriftedColumnsCount share < "
                         f"{cfg.drift_share:g}", detail, unexpected=n_drifted, total=len(scores),
                         worst=[{"column": c, "score": s} for c, s in order[:cfg.worst]])
    paths: dict[str, str] = {}
    if out_dir is not None:
        with atomic_path(out_dir / "drift.html") as tmp:
            snap.save_html(str(tmp))
        write_text_atomic(out_dir / "drift.json", json.dumps(data, indent=1, default=str))
        paths = {"drift": str(out_dir / "drift.html"), "drift_json": str(out_dir / "drift.json")}
    return result, paths

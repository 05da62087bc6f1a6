"""Evidently 0.7 data drift of current footage against the reference (training) footage on the brightness columns.

Evidently's ``DataDriftPreset`` with its tests is the gate: the share of drifted brightness columns must stay below
``drift_share``; each column's drift (method and threshold from params) is Evidently's verdict and is in the report.
Evidently is imported lazily (seconds to import).
"""
from __future__ import annotations

import json
import re
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
    """Run Evidently's ``DataDriftPreset`` (current first, as Evidently 0.7 wants) and return its snapshot.

    With tests included the preset carries the gate's whole verdict: one share test (drifted share < drift_share) on
    its ``DriftedColumnsCount`` and one drift test per column's ``ValueDrift`` (failed = drifted, by Evidently's own
    rule for the method)."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    cols = list(cfg.drift_columns)
    definition = DataDefinition(numerical_columns=cols)
    preset = DataDriftPreset(columns=cols, method=cfg.drift_method, threshold=cfg.drift_threshold,
                             drift_share=cfg.drift_share)
    with np.errstate(invalid="ignore", divide="ignore"):  # constant columns (all-dark clips) in Evidently's plots
        return Report([preset], include_tests=True).run(
            Dataset.from_pandas(current[cols].astype(float), data_definition=definition),
            Dataset.from_pandas(reference[cols].astype(float), data_definition=definition))


def read_snapshot(data: dict[str, Any]) -> tuple[bool, int, dict[str, float], set[str]]:
    """A preset snapshot's ``.dict()`` → (share test failed, drifted count, {column: score}, drifted columns).

    Each test names the metric it checks (``metric_config``): a per-column test's metric is that column's
    ``ValueDrift`` (value = p-value or distance), the one other test is the share test on ``DriftedColumnsCount``."""
    values = {m["id"]: m["value"] for m in data["metrics"]}
    failed, n_drifted, scores, drifted = False, 0, {}, set()
    for t in data["tests"]:
        metric = t["metric_config"]
        value, column, fail = values[metric["metric_id"]], metric["params"].get("column"), t["status"] == "FAIL"
        if column is None:
            failed, n_drifted = fail, int(value["count"])
        else:
            scores[column] = float(value)
            if fail:
                drifted.add(column)
    return failed, n_drifted, scores, drifted


# Evidently's p-value tests (drift: score < threshold; the others are distances: score > threshold). Evidently decides
# which columns drifted; this only orders them and words the rule, as the 0.7 API exposes no test's direction.
PVALUE_METHODS = frozenset({"ks", "chisquare", "z", "t_test", "mannw", "anderson", "cramer_von_mises", "fisher_exact",
                            "g_test", "epps_singleton", "empirical_mmd"})


_RANDOM_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|metric_[0-9a-f]{32}")


def stable_ids(page: str) -> str:
    """Evidently's HTML with its per-run random ids (a uuid4 per report, a time-based uuid7 per widget) replaced by
    counters in order of first use, so the same data gives the same bytes. Only ids used in the report's data (the
    ``<head>``) are replaced, everywhere they occur; the UUID constants inside the bundled JavaScript are left alone."""
    head = page[:page.find("</head>")]
    ids: dict[str, str] = {}
    for m in _RANDOM_ID.finditer(head):
        token = m.group(0)
        if token not in ids:
            n = len(ids)
            ids[token] = f"metric_{n:032x}" if token.startswith("metric_") else f"00000000-0000-4000-8000-{n:012x}"
    return _RANDOM_ID.sub(lambda m: ids.get(m.group(0), m.group(0)), page)


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
    try:
        snap = drift_report(current, reference, cfg)
    except ValueError as err:  # Evidently's StatTestNotFoundError (a ValueError, not in its public API)
        if not str(err).startswith("No stattest found"):
            raise
        raise GateInputError(f"validate.drift_method: {str(err).split('. Available')[0]}; see the Evidently "
                             "drift methods (ks, wasserstein, psi, ...)") from None
    data = snap.dict()
    failed, n_drifted, scores, drifted = read_snapshot(data)
    pvalue = cfg.drift_method in PVALUE_METHODS
    # worst first; ties (capped p-values) keep the column order
    order = sorted((c for c in scores if c in drifted), key=lambda c: scores[c] if pvalue else -scores[c])
    rule = f"{cfg.drift_method} {'p-value <' if pvalue else 'score >'} {cfg.drift_threshold:g}"
    detail = (f"{n_drifted}/{len(scores)} brightness columns drifted ({rule}); the gate allows a share "
              f"< {cfg.drift_share:g}; current {len(current)} videos vs reference {len(reference)}")
    result = CheckResult("drift", FAIL if failed else PASS, "Evidently DriftedColumnsCount share < "
                         f"{cfg.drift_share:g}", detail, unexpected=n_drifted, total=len(scores),
                         worst=[{"column": c, "score": scores[c]} for c in order[:cfg.worst]])
    paths: dict[str, str] = {}
    if out_dir is not None:
        with atomic_path(out_dir / "drift.html") as tmp:
            snap.save_html(str(tmp))
            tmp.write_text(stable_ids(tmp.read_text(encoding="utf-8")), encoding="utf-8")
        write_text_atomic(out_dir / "drift.json", json.dumps(data, indent=1, default=str))
        paths = {"drift": str(out_dir / "drift.html"), "drift_json": str(out_dir / "drift.json")}
    return result, paths

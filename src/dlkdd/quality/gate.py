"""The data-quality gate: GX expectations on every clip + Evidently drift against the training footage.

:func:`check_footage` is the one entry point, for the ``validate`` stage and for a batch of new footage alike:
a per-clip statistics table in, a :class:`~dlkdd.quality.result.GateResult` out (reports written when asked).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd

from dlkdd.atomic import write_text_atomic
from dlkdd.config import ValidateConfig
from dlkdd.quality.drift import check_drift
from dlkdd.quality.expectations import (BALANCE_CHECKS, CLASS_KEY, CLIP_CHECKS, REQUIRED_COLUMNS,
                                        balance_expectations, class_balance, clip_expectations, run_suite, to_checks)
from dlkdd.quality.report import write_index
from dlkdd.quality.result import FAIL, SKIPPED, WARN, CheckResult, GateInputError, GateResult

CHECKS = CLIP_CHECKS + BALANCE_CHECKS + ["drift"]


def check_footage(stats: pd.DataFrame, cfg: ValidateConfig, min_frames: int, reference: pd.DataFrame | None = None,
                  report_dir: str | Path | None = None, classes: list[str] | None = None,
                  balance_split: str | None = "train", current: pd.DataFrame | None = None,
                  data_docs: bool = False) -> GateResult:
    """Validate a batch of footage described by its per-clip statistics.

    stats: one row per clip with :data:`REQUIRED_COLUMNS` (what ``build_frame_cache`` writes to ``stats.csv``).
    min_frames: decoded frames a clip needs (the sampled clip length, ``frames.num_frames``).
    reference: statistics of the footage the model was built for (the train split); ``stats`` is compared with it for
        drift. None skips the drift check (recorded as skipped, never silently passed).
    classes: class names in label order; gives the class count for the balance check (absent classes count 0).
    current: the rows compared with ``reference`` for drift (default: all of ``stats``; the stage passes val+test
        so the train rows are not compared with themselves).
    balance_split: rows of this split are checked for class balance (None: all rows); no such rows: skipped.
    report_dir: where the Evidently drift HTML/JSON, ``details.json`` (every check, offenders and report paths) and
        the ``index.html`` overview go: all self-contained, offline and byte-identical for the same input.
    data_docs: also build GX Data Docs under ``report_dir/data_docs`` (off by default: their file names and pages
        carry run times, and their index table and icons need jQuery, bootstrap-table and Font Awesome from CDNs).
    """
    unknown = sorted(set(cfg.warn_only) - set(CHECKS))
    if unknown:
        raise GateInputError(f"validate.warn_only: unknown check(s) {unknown}; known: {', '.join(CHECKS)}")
    missing = [c for c in REQUIRED_COLUMNS if c not in stats.columns]
    if missing:
        raise GateInputError(f"clip statistics lack column(s) {missing}: rebuild them with the frames stage")
    bad_drift = [c for c in cfg.drift_columns if c not in stats.columns]
    if bad_drift:
        raise GateInputError(f"validate.drift_columns: {bad_drift} not in the clip statistics")
    df = stats.reset_index(drop=True)
    out = Path(report_dir) if report_dir is not None else None
    docs = out / "data_docs" if out is not None and data_docs else None
    if out is not None:
        shutil.rmtree(out / "data_docs", ignore_errors=True)  # never leave another run's pages behind

    ctx, results = run_suite(df, "clips", clip_expectations(cfg, min_frames), docs)
    checks = to_checks(df, results, CLIP_CHECKS, cfg.worst)

    rows = df if balance_split is None else df[df["split"] == balance_split]
    if len(rows):
        bal = class_balance(rows["label"], classes)
        _, bal_results = run_suite(bal, "class_balance", balance_expectations(cfg), docs, context=ctx)
        checks += to_checks(bal, bal_results, BALANCE_CHECKS, cfg.worst, key=CLASS_KEY, unit="classes")
    else:
        checks.append(CheckResult("class_balance", SKIPPED, "expect_column_values_to_be_between",
                                  f"skipped: no clips of split '{balance_split}' in this batch"))

    drift, paths = check_drift(df if current is None else current, reference, cfg, out)
    checks.append(drift)

    for c in checks:  # downgrade named checks, visibly: status 'warn' is printed and recorded
        if c.status == FAIL and c.name in cfg.warn_only:
            c.status = WARN
    result = GateResult(clips=len(df), checks=checks, reports=dict(paths))
    if out is not None:
        _write_reports(result, out, docs)
    return result


def _write_reports(result: GateResult, out: Path, docs: Path | None) -> None:
    """Record the GX Data Docs pages (when built) in ``result.reports``, then write the overview and the details."""
    if docs is not None:
        pages = sorted((docs / "validations").rglob("*.html"))
        result.reports["data_docs"] = str(docs / "index.html")
        result.reports.update({f"data_docs_{p.stem.split('-')[-1]}": str(p) for p in pages})
    result.reports["index"] = str(out / "index.html")
    result.reports["details"] = str(out / "details.json")
    write_index(result, out / "index.html")
    write_text_atomic(out / "details.json", json.dumps(result.details(), indent=1) + "\n")

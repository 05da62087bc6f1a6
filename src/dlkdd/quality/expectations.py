"""Great Expectations 1.x suites on the per-clip statistics table (``data/frames/stats.csv``) and its class balance.

Each expectation carries ``meta={"check": name}``: the gate reports and downgrades named checks, not GX internals.
GX is imported inside the functions: importing it costs seconds, and stages that never validate should not pay.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dlkdd.config import ValidateConfig
from dlkdd.quality.result import FAIL, PASS, CheckResult

# columns the gate reads; frames.py writes them (others may be added and are ignored)
REQUIRED_COLUMNS = ["clip_id", "split", "label", "frames", "fps", "height", "width", "luma_mean", "luma_p05",
                    "luma_p50", "luma_p95", "dark_fraction", "noise"]
CLIP_CHECKS = ["row_count", "not_null", "luma_mean", "dark_fraction", "noise", "frames", "fps", "resolution"]
BALANCE_CHECKS = ["class_balance"]
# what names a row in each table, and so each worst offender: a clip in the clips table, a class in the balance table
CLIP_KEY, CLASS_KEY = "clip_id", "class"


def clip_expectations(cfg: ValidateConfig, min_frames: int) -> list[Any]:
    """The suite on the clips table: one row per clip, columns :data:`REQUIRED_COLUMNS`."""
    import great_expectations.expectations as gxe

    def between(check: str, column: str, lo: float | None, hi: float | None, per_clip: bool = True) -> Any:
        kw = {"mostly": cfg.mostly} if per_clip else {}
        return gxe.ExpectColumnValuesToBeBetween(column=column, min_value=lo, max_value=hi, meta={"check": check},
                                                 **kw)

    exps = [gxe.ExpectTableRowCountToBeBetween(min_value=cfg.min_clips, meta={"check": "row_count"})]
    exps += [gxe.ExpectColumnValuesToNotBeNull(column=c, meta={"check": "not_null"}) for c in REQUIRED_COLUMNS]
    exps += [
        between("luma_mean", "luma_mean", cfg.luma_mean_min, cfg.luma_mean_max),
        between("dark_fraction", "dark_fraction", 0.0, 1.0, per_clip=False),
        gxe.ExpectColumnMeanToBeBetween(column="dark_fraction", min_value=cfg.dark_fraction_mean_min,
                                        max_value=cfg.dark_fraction_mean_max, meta={"check": "dark_fraction"}),
        between("noise", "noise", cfg.noise_min, None),
        between("frames", "frames", min_frames, None),
        between("fps", "fps", cfg.fps_min, cfg.fps_max),
        between("resolution", "height", cfg.side_min, cfg.side_max),
        between("resolution", "width", cfg.side_min, cfg.side_max),
    ]
    return exps


def balance_expectations(cfg: ValidateConfig) -> list[Any]:
    """The suite on the class-balance table (:func:`class_balance`)."""
    import great_expectations.expectations as gxe

    return [gxe.ExpectColumnValuesToBeBetween(column="share_ratio", min_value=cfg.class_share_ratio_min,
                                              max_value=cfg.class_share_ratio_max, meta={"check": "class_balance"})]


def class_balance(labels: pd.Series, classes: list[str] | None = None) -> pd.DataFrame:
    """Per class: its name (column :data:`CLASS_KEY`), label, clips, share of all clips, and share / uniform share
    (1 = perfectly balanced); one row per class, not per clip, so it has no ``clip_id``.

    classes: names in label order (None: classes ``0..max label``, named by their label). Classes absent from
    ``labels`` appear with 0 clips, so a missing class fails the bounds.
    """
    counts = labels.astype(int).value_counts()
    n = len(classes) if classes else (int(counts.index.max()) + 1 if len(counts) else 0)
    counts = counts.reindex(range(n), fill_value=0)
    total = max(int(counts.sum()), 1)
    share = counts / total
    names = [str(c) for c in classes] if classes else [str(i) for i in range(n)]
    return pd.DataFrame({CLASS_KEY: names, "label": range(n), "clips": counts.values, "share": share.values,
                         "share_ratio": (share * n).values})


def run_suite(df: pd.DataFrame, suite_name: str, expectations: list[Any], docs_dir: Path | None,
              context: Any = None) -> tuple[Any, list[Any]]:
    """Validate ``df`` with a fresh ephemeral context (or ``context``); Data Docs HTML under ``docs_dir``.

    Returns (context, list of GX ``ExpectationValidationResult``).
    """
    import great_expectations as gx
    # GX 1.x has no other public way to silence its per-metric tqdm bars: the public ``DataContextVariables``
    # .progress_bars takes this type, which lives (not re-exported) beside the public ``DataContextConfig``; a
    # mapping ``project_config`` needs a whole context config, and ``TQDM_DISABLE`` would silence every tqdm of the
    # process (issue 16)
    from great_expectations.data_context.types.base import ProgressBarsConfig

    if context is None:
        context = gx.get_context(mode="ephemeral")
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        if docs_dir is not None:
            site = {"class_name": "SiteBuilder", "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
                    "store_backend": {"class_name": "TupleFilesystemStoreBackend",
                                      "base_directory": str(Path(docs_dir).resolve())}}
            context.add_data_docs_site(site_name="gate", site_config=site)
    source = context.data_sources.add_pandas(f"{suite_name}_source")
    batch_def = source.add_dataframe_asset(suite_name).add_batch_definition_whole_dataframe("whole")
    suite = context.suites.add(gx.ExpectationSuite(name=suite_name))
    for exp in expectations:
        suite.add_expectation(exp)
    vd = context.validation_definitions.add(gx.ValidationDefinition(name=suite_name, data=batch_def, suite=suite))
    actions = [gx.checkpoint.UpdateDataDocsAction(name="docs", site_names=["gate"])] if docs_dir is not None else []
    cp = context.checkpoints.add(gx.Checkpoint(name=suite_name, validation_definitions=[vd], actions=actions,
                                               result_format={"result_format": "COMPLETE"}))
    run = cp.run(batch_parameters={"dataframe": df})
    return context, [r for vr in run.run_results.values() for r in vr.results]


def _bounds(kw: dict[str, Any]) -> str:
    lo, hi = kw.get("min_value"), kw.get("max_value")
    if lo is not None and hi is not None:
        return f"outside [{lo:g}, {hi:g}]"
    return f"below {lo:g}" if lo is not None else f"above {hi:g}"


def _distance(v: Any, kw: dict[str, Any]) -> float:
    """How far a value lies outside the bounds (NaN counts as infinitely far)."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return math.inf
    lo, hi = kw.get("min_value"), kw.get("max_value")
    return max(lo - v if lo is not None else 0.0, v - hi if hi is not None else 0.0)


def to_checks(df: pd.DataFrame, results: list[Any], names: list[str], worst: int, key: str = CLIP_KEY,
              unit: str = "clips") -> list[CheckResult]:
    """Fold GX results into one :class:`CheckResult` per check name in ``names`` (in that order).

    key: the ``df`` column naming a row (:data:`CLIP_KEY` or :data:`CLASS_KEY`); each worst offender is recorded as
    ``{key: name, "column": ..., "value": ...}``, so a class is never reported as a clip. unit: rows, in the detail.
    """
    out = []
    for name in names:
        mine = [r for r in results if (r.expectation_config.meta or {}).get("check") == name]
        failed = [r for r in mine if not r.success]
        exp_types = sorted({r.expectation_config.type for r in (failed or mine)})
        details, offenders, bad_rows = [], {}, set()
        for r in failed:
            kw, res = r.expectation_config.kwargs, r.result or {}
            col = kw.get("column")
            if "observed_value" in res:  # table- or column-level (row count, mean)
                what = "row count" if col is None else f"mean {col}"
                details.append(f"{what} {res['observed_value']:.4g} {_bounds(kw)}")
                continue
            idx = [i for i in (res.get("unexpected_index_list") or []) if isinstance(i, int)]
            bad_rows.update(idx)
            verb = "null" if r.expectation_config.type == "expect_column_values_to_not_be_null" else _bounds(kw)
            details.append(f"{res.get('unexpected_count', len(idx))}/{len(df)} {unit} with {col} {verb}")
            for i in idx:
                v = df[col].iloc[i]
                # plain Python values: pandas hands out numpy scalars (int64 frame counts), which json cannot write
                v = None if pd.isna(v) else (v.item() if isinstance(v, np.generic) else v)
                v = float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v
                d = _distance(v, kw) if verb != "null" else math.inf
                rid = str(df[key].iloc[i])
                if rid not in offenders or d > offenders[rid][0]:
                    offenders[rid] = (d, {key: rid, "column": col, "value": v})
        top = [o for _, o in sorted(offenders.values(), key=lambda t: -t[0])[:worst]]
        out.append(CheckResult(name=name, status=FAIL if failed else PASS, expectation=", ".join(exp_types),
                               detail="; ".join(details) if failed else "ok", unexpected=len(bad_rows),
                               total=len(df), worst=top))
    return out

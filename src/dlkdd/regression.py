"""Metric-regression gate: is a new student significantly worse than the committed one on the same test clips?

Top-1 on ~100 test clips moves by a few clips whenever the CPU kernels change (AVX-512 vs AVX2 train other
weights from the same seed), more than any fixed tolerance small enough to catch a real regression. So the verdict
is a paired test on per-clip correctness (the ``evaluate`` stage's ``metrics/predictions.csv``): McNemar's exact
test, i.e. a one-sided binomial test on the discordant clips (right before and wrong now vs the reverse), which
asks whether the new model loses more clips than chance would explain. A floor on the new top-1 catches a model
broken beyond doubt. ``dvc metrics diff --json`` is still parsed into a markdown table for people to read.

Pure functions only (no DVC, no git): CI (``.ci/metrics_gate.py``) and the retrain flow's promotion call the same
:func:`compare_with_rev` and read ``dvc metrics diff --json`` with the same :func:`parse_metrics_diff`; the
flow's promotion rule (paired test + tolerance) is :func:`promotion_verdict`.
"""
from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from math import comb
from pathlib import Path
from typing import Any

# metrics/predictions.csv: one row per test clip; a model column holds that model's predicted class name
PREDICTION_KEYS = ["clip_id", "video_id", "label"]
PREDICTION_MODELS = ["teacher", "baseline", "student", "two_stream"]


class PredictionsError(ValueError):
    """Predictions that cannot be compared (missing file/column, different test clips); the message is one line."""


class MissingPredictions(PredictionsError):
    """One side has no predictions at all: ``side`` is ``"old"`` (none committed at the rev) or ``"new"`` (no file)."""

    def __init__(self, message: str, side: str):
        super().__init__(message)
        self.side = side


@dataclass(frozen=True)
class PairedResult:
    """Per-clip comparison of two models on the same ``n`` clips.

    worse: clips the old model got right and the new one wrong; better: the reverse (the discordant pairs).
    p_value: one-sided exact McNemar p of "the new model is worse" (P[X >= worse], X ~ Bin(worse + better, 1/2)).
    """

    n: int
    old_top1: float
    new_top1: float
    worse: int
    better: int
    p_value: float


def mcnemar_worse_p(worse: int, better: int) -> float:
    """One-sided exact McNemar p-value: P[X >= worse] for X ~ Binomial(worse + better, 1/2); 1.0 with no discordant
    pair (nothing to say). Exact integer arithmetic: no scipy needed, no float underflow for n in the thousands."""
    n = worse + better
    if n == 0:
        return 1.0
    return sum(comb(n, k) for k in range(worse, n + 1)) / 2 ** n


def paired_result(old_correct: Sequence[bool], new_correct: Sequence[bool]) -> PairedResult:
    """Discordant counts and p-value of two (N,) per-clip correctness vectors over the same clips, in the same order."""
    if len(old_correct) != len(new_correct):
        raise PredictionsError(f"paired test needs the same clips: {len(old_correct)} old vs {len(new_correct)} new")
    pairs = [(bool(o), bool(n)) for o, n in zip(old_correct, new_correct)]
    n = len(pairs)
    worse = sum(o and not w for o, w in pairs)
    better = sum(w and not o for o, w in pairs)
    acc = lambda xs: sum(xs) / n if n else 0.0  # noqa: E731
    return PairedResult(n, acc([o for o, _ in pairs]), acc([w for _, w in pairs]), worse, better,
                        mcnemar_worse_p(worse, better))


def _not_a_share(**values: float) -> str | None:
    """The first of ``values`` that is not a finite number in [0, 1], as ``name=value``, or None.

    NaN compares False with everything: a NaN alpha would find no regression significant and a NaN floor no top-1
    too low, so a caller that bypasses the params schema must still get no pass out of one."""
    bad = [f"{k}={v!r}" for k, v in values.items() if not (isinstance(v, (int, float)) and 0 <= v <= 1)]
    return bad[0] if bad else None


def verdict(r: PairedResult, alpha: float, floor: float = 0.0) -> tuple[bool, str]:
    """Fail when the new model is significantly worse (p < alpha) or its top-1 is below ``floor``; fail, too, when
    alpha or floor is not a finite number in [0, 1] (no verdict can be drawn from it)."""
    head = (f"top-1 {r.old_top1:.4f} → {r.new_top1:.4f} on {r.n} clips; {r.worse} clips lost, {r.better} gained; "
            f"McNemar exact one-sided p = {r.p_value:.4g}")
    bad = _not_a_share(alpha=alpha, floor=floor)
    if bad:
        return False, f"{head}; no verdict: {bad} is not a finite number in [0, 1]"
    if r.n == 0:
        return False, "no test clips to compare"
    if r.new_top1 < floor:
        return False, f"{head}; top-1 below the floor {floor:g}"
    if r.p_value < alpha:
        return False, f"{head} < alpha {alpha:g}: significantly worse"
    return True, f"{head} >= alpha {alpha:g}: not significantly worse"


def paired_verdict(old_correct: Sequence[bool], new_correct: Sequence[bool], alpha: float,
                   floor: float = 0.0) -> tuple[bool, str]:
    """(ok, reason) for two per-clip correctness vectors of the same clips: see :func:`verdict`."""
    return verdict(paired_result(old_correct, new_correct), alpha, floor)


def parse_predictions(text: str, source: str = "predictions") -> dict[str, dict[str, str]]:
    """``metrics/predictions.csv`` text → ``{clip_id: row}``; one clear error for a missing column or a duplicate."""
    reader = csv.DictReader(text.splitlines())
    missing = [c for c in PREDICTION_KEYS if c not in (reader.fieldnames or [])]
    if missing:
        raise PredictionsError(f"{source}: missing column(s) {missing}; re-run the evaluate stage (dvc repro evaluate)")
    rows: dict[str, dict[str, str]] = {}
    for row in reader:
        if row["clip_id"] in rows:
            raise PredictionsError(f"{source}: clip {row['clip_id']} appears twice")
        rows[row["clip_id"]] = row
    return rows


def correctness(old: dict[str, dict[str, str]], new: dict[str, dict[str, str]], model: str = "student"
                ) -> tuple[list[bool], list[bool]]:
    """Per-clip correctness of ``model`` in two parsed predictions tables, aligned on ``clip_id``.

    Both must cover the same clips with the same labels: a paired test on different test sets means nothing."""
    for name, t in (("old", old), ("new", new)):
        if t and model not in next(iter(t.values())):
            raise PredictionsError(f"{name} predictions have no column '{model}' (known: {PREDICTION_MODELS})")
    if set(old) != set(new):
        only_old, only_new = sorted(set(old) - set(new)), sorted(set(new) - set(old))
        raise PredictionsError(f"the test clips differ ({len(only_old)} only in the old predictions, e.g. "
                               f"{only_old[:3]}; {len(only_new)} only in the new, e.g. {only_new[:3]}): the data "
                               "changed, so there is no paired comparison; commit the new predictions on purpose")
    relabelled = [c for c in old if old[c]["label"] != new[c]["label"]]
    if relabelled:
        raise PredictionsError(f"{len(relabelled)} test clips changed label (e.g. {relabelled[:3]}): no paired test")
    ids = sorted(old)
    return ([old[c][model] == old[c]["label"] for c in ids], [new[c][model] == new[c]["label"] for c in ids])


def compare_predictions(old_text: str, new_text: str, alpha: float, floor: float = 0.0, model: str = "student"
                        ) -> tuple[bool, str, PairedResult]:
    """The gate on two predictions CSV texts (e.g. ``git show HEAD:metrics/predictions.csv`` and the workspace's):
    (ok, reason, the paired figures). Raises :class:`PredictionsError` when they cannot be paired."""
    oc, nc = correctness(parse_predictions(old_text, "old predictions"), parse_predictions(new_text, "new predictions"),
                         model)
    r = paired_result(oc, nc)
    ok, reason = verdict(r, alpha, floor)
    return ok, f"{model}: {reason}", r


def compare_prediction_files(old: str | Path, new: str | Path, alpha: float, floor: float = 0.0,
                             model: str = "student") -> tuple[bool, str, PairedResult]:
    """:func:`compare_predictions` on two files (the retrain flow: production's vs the candidate's predictions)."""
    texts = []
    for p in (Path(old), Path(new)):
        if not p.is_file():
            raise PredictionsError(f"{p} not found: run the evaluate stage (dvc repro evaluate)")
        texts.append(p.read_text())
    return compare_predictions(texts[0], texts[1], alpha, floor, model)


def compare_with_rev(old_text: str | None, new: str | Path, rev: str, alpha: float, floor: float = 0.0,
                     model: str = "student") -> tuple[bool, str, PairedResult]:
    """The comparison the CI gate and the retrain flow's promotion both make: the predictions committed at ``rev``
    against the workspace's ``new`` file (the same path). ``old_text`` is the caller's ``git show <rev>:<new>``, None
    when nothing is committed there (this library runs no git). Raises :class:`MissingPredictions` when a side is
    absent (old side first), :class:`PredictionsError` when the two cannot be paired."""
    if old_text is None:
        raise MissingPredictions(f"no {new} committed at {rev}", "old")
    if not Path(new).is_file():
        raise MissingPredictions(f"{new} not found", "new")
    return compare_predictions(old_text, Path(new).read_text(), alpha, floor, model)


@dataclass
class MetricRow:
    file: str
    metric: str  # dotted path inside the file, e.g. "student.top1"
    old: float | None
    new: float | None

    @property
    def change(self) -> float | None:
        return None if self.old is None or self.new is None else self.new - self.old


def _numeric(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def parse_metrics_diff(diff: dict[str, Any]) -> list[MetricRow]:
    """``{file: {metric: {"old": x, "new": y, "diff": d}}}`` (DVC 3 format) → rows sorted by file and metric.

    Only numbers are kept: metric files also hold strings and booleans (the quality gate's statuses)."""
    rows = []
    for file, metrics in diff.items():
        for name, vals in metrics.items():
            old, new = vals.get("old"), vals.get("new")
            if not (_numeric(old) or _numeric(new)):  # statuses, names, lists: not something to diff
                continue
            rows.append(MetricRow(file, name, old if _numeric(old) else None, new if _numeric(new) else None))
    return sorted(rows, key=lambda r: (r.file, r.metric))


def metric_values(diff: dict[str, Any], path: str, metric: str) -> tuple[float | None, float | None]:
    """(old, new) of one numeric ``metric`` of ``path`` in a ``dvc metrics diff --json`` dict (parsed by
    :func:`parse_metrics_diff`, as the CI table is); ``(None, None)`` when the diff does not have it."""
    row = next((r for r in parse_metrics_diff({path: diff.get(path) or {}}) if r.metric == metric), None)
    return (None, None) if row is None else (row.old, row.new)


def promotion_verdict(production: float | None, candidate: float | None, tolerance: float, metric: str,
                      paired: tuple[bool | None, str] | None = None) -> tuple[bool, str]:
    """The retrain flow's promotion rule: promote iff the candidate is (a) not significantly worse than production on
    the same test clips (``paired``: the verdict of :func:`compare_predictions`, the CI gate's test; ``None`` verdict
    = could not be paired, which does not block) and (b) not worse than production beyond ``tolerance`` (< 0: it must
    beat production by that much). (a) tells a real regression from the few clips a seed moves; (b) bounds the drop
    a person accepts without a significant difference. A NaN or infinite metric or tolerance promotes nothing (a
    caller that bypasses the params schema included)."""
    if candidate is None:
        return False, f"the new run has no {metric}"
    given = {"candidate": candidate, "production": production, "tolerance": tolerance}
    bad = [f"{k}={v!r}" for k, v in given.items() if v is not None and not _finite(v)]
    if bad:  # NaN compares False with everything: never promote on one
        return False, f"not promoted: {bad[0]} is not a finite number"
    if paired is not None and paired[0] is False:
        return False, f"significantly worse than production: {paired[1]}"
    if production is None:
        return True, f"no production {metric} to beat"
    if candidate >= production - tolerance:
        return True, f"{metric} {candidate:.4f} >= production {production:.4f} - tolerance {tolerance}"
    return False, f"{metric} {candidate:.4f} is worse than production {production:.4f} beyond tolerance {tolerance}"


def _finite(v: Any) -> bool:
    return _numeric(v) and math.isfinite(v)


def to_markdown(rows: list[MetricRow]) -> str:
    """The diff as a markdown table (empty diff → one line)."""
    if not rows:
        return "_No metric changed._"
    fmt = lambda v: "—" if v is None else f"{v:.4f}"  # noqa: E731
    lines = ["| file | metric | old | new | change |", "|---|---|---:|---:|---:|"]
    lines += [f"| {r.file} | {r.metric} | {fmt(r.old)} | {fmt(r.new)} | {fmt(r.change)} |" for r in rows]
    return "\n".join(lines)

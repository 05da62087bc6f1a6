"""Metric-regression gate for CI: read a ``dvc metrics diff --json`` result, fail when a watched metric drops.

``dvc metrics diff`` never fails by itself; this turns its JSON into a markdown table and a verdict.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


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


def check_regression(rows: list[MetricRow], metric: str, tolerance: float) -> tuple[bool, str]:
    """Pass unless ``metric`` fell by more than ``tolerance`` (absolute) or disappeared. Returns (ok, reason)."""
    watched = [r for r in rows if r.metric == metric]
    if not watched:
        return True, f"{metric} unchanged"
    for r in watched:
        if r.new is None:
            return False, f"{metric} is missing from the new metrics ({r.file})"
        if r.old is not None and r.change is not None and r.change < -tolerance:
            return False, f"{metric} dropped {r.old:.4f} → {r.new:.4f} ({r.change:+.4f}, tolerance {tolerance})"
    return True, f"{metric} within tolerance {tolerance}"


def to_markdown(rows: list[MetricRow]) -> str:
    """The diff as a markdown table (empty diff → one line)."""
    if not rows:
        return "_No metric changed._"
    fmt = lambda v: "—" if v is None else f"{v:.4f}"  # noqa: E731
    lines = ["| file | metric | old | new | change |", "|---|---|---:|---:|---:|"]
    lines += [f"| {r.file} | {r.metric} | {fmt(r.old)} | {fmt(r.new)} | {fmt(r.change)} |" for r in rows]
    return "\n".join(lines)

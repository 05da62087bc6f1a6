"""Result types of the data-quality gate: one :class:`CheckResult` per named check, gathered in a
:class:`GateResult`."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

PASS, FAIL, WARN, SKIPPED = "pass", "fail", "warn", "skipped"


class GateInputError(ValueError):
    """Input the gate cannot judge (missing columns, unknown check or method names); the message is one line."""


@dataclass
class CheckResult:
    """One named check (e.g. ``luma_mean``) and what it found.

    ``expectation`` names the GX expectation (or Evidently test) behind it, ``unexpected`` counts offending clips (or
    drifted columns), ``total`` what they are counted out of, ``worst`` lists the worst offenders as
    ``{"clip_id": ..., "column": ..., "value": ...}`` for the per-clip checks, ``{"class": ..., "column": ...,
    "value": ...}`` for ``class_balance`` (a class name, not a clip) and ``{"column": ..., "score": ...}`` for drift.
    """

    name: str
    status: str
    expectation: str
    detail: str
    unexpected: int = 0
    total: int = 0
    worst: list[dict[str, Any]] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return self.status == FAIL


@dataclass
class GateResult:
    """All checks of one gate run; ``passed`` is False when any check failed (warnings do not fail)."""

    clips: int
    checks: list[CheckResult]
    reports: dict[str, str] = field(default_factory=dict)  # name -> path of the HTML/JSON reports written

    @property
    def passed(self) -> bool:
        return not any(c.failed for c in self.checks)

    def by_name(self, name: str) -> CheckResult:
        return next(c for c in self.checks if c.name == name)

    @property
    def failed_checks(self) -> list[str]:
        return [c.name for c in self.checks if c.status == FAIL]

    @property
    def warned_checks(self) -> list[str]:
        return [c.name for c in self.checks if c.status == WARN]

    def to_json(self) -> dict[str, Any]:
        """The DVC metric: the numbers a person compares run to run (pass flag and counts), nothing else; the checks,
        offenders and report paths are in :meth:`details`."""
        return {"passed": self.passed, "clips": int(self.clips), "failed": len(self.failed_checks),
                "warnings": len(self.warned_checks)}

    def details(self) -> dict[str, Any]:
        """Everything about the run (``details.json``, not a metric): the metric's numbers, the failed and warned
        check names, every check and the reports written; plain Python values only, so ``json.dumps`` never meets a
        numpy scalar (a frame count read from the stats table is an ``int64``)."""
        return _plain({
            **self.to_json(), "failed_checks": self.failed_checks, "warned_checks": self.warned_checks,
            # GX names its validation pages by run time: leave them out so the file only changes with the data
            "reports": {k: v for k, v in self.reports.items() if not k.startswith("data_docs_")},
            "checks": {c.name: {k: v for k, v in asdict(c).items() if k != "name"} for c in self.checks},
        })

    def summary(self) -> str:
        """One readable block: verdict, then a line per failed or warned check with its worst offenders."""
        main = self.reports.get("index") or self.reports.get("data_docs") or ""
        where = f"; report: {main}" if main else ""
        if self.passed:
            head = f"validate: PASSED {len(self.checks)} checks on {self.clips} clips"
        else:
            head = f"validate: FAILED {len(self.failed_checks)} of {len(self.checks)} checks on {self.clips} clips"
        lines = [head + where]
        for c in self.checks:
            if c.status not in (FAIL, WARN):
                continue
            tag = "FAIL" if c.status == FAIL else "WARNING (downgraded by validate.warn_only)"
            worst = ", ".join(offender(w) for w in c.worst)
            lines.append(f"  {tag} {c.name} [{c.expectation}]: {c.detail}" + (f"; worst: {worst}" if worst else ""))
        if "drift" in self.reports:
            lines.append(f"  drift report: {self.reports['drift']}")
        return "\n".join(lines)


def _plain(obj: Any) -> Any:
    """``obj`` with numpy scalars (``np.int64``, ``np.float32``, ``np.bool_``) turned into Python ones, recursively
    through dicts, lists and tuples (numpy's ``.item()``; duck-typed so this module needs no numpy import)."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if type(obj).__module__ == "numpy" and hasattr(obj, "item"):
        return obj.item()
    return obj


def offender(w: dict[str, Any], sep: str = "=") -> str:
    """One worst-offender record as text: ``clip=value``, ``class Name=value`` or ``column=score`` (drift)."""
    if "clip_id" in w:
        name = str(w["clip_id"])
    elif "class" in w:
        name = f"class {w['class']}"
    else:
        name = str(w.get("column"))
    return f"{name}{sep}{_fmt(w.get('value', w.get('score')))}"


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)

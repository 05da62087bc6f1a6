"""Data-quality gate on per-clip brightness statistics: GX expectations + Evidently drift (imported lazily)."""
from dlkdd.quality.gate import CHECKS, GateInputError, check_footage
from dlkdd.quality.result import CheckResult, GateResult

__all__ = ["CHECKS", "CheckResult", "GateInputError", "GateResult", "check_footage"]

"""Data-quality gate on per-clip brightness statistics: GX expectations + Evidently drift (imported lazily);
:func:`gate_batch` turns its result on a batch of landed clips into per-clip rejections."""
from dlkdd.quality.batch import BatchVerdict, gate_batch
from dlkdd.quality.gate import CHECKS, GateInputError, check_footage
from dlkdd.quality.result import CheckResult, GateResult

__all__ = ["CHECKS", "BatchVerdict", "CheckResult", "GateInputError", "GateResult", "check_footage", "gate_batch"]

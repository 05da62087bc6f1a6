"""dvc.yaml owns the pipeline's paths; dlkdd.paths names them for the code outside it: each name there must be an
out or dep of a stage (or lie inside one), so renaming an output in dvc.yaml without dlkdd.paths fails here."""
from __future__ import annotations

from pathlib import Path

import yaml

from dlkdd import paths

ROOT = Path(__file__).resolve().parents[1]


def _listed(stages: dict) -> set[str]:
    """Every path a stage lists as a dep, out, metric or plot (``- path`` or ``- path: {options}``)."""
    found = set()
    for stage in stages.values():
        for key in ("deps", "outs", "metrics", "plots"):
            for item in stage.get(key, []):
                found.update(item if isinstance(item, dict) else [item])
    return found


def test_every_named_path_is_a_dvc_yaml_out_or_dep():
    listed = _listed(yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"])
    names = {k: v for k, v in vars(paths).items() if k.isupper() and isinstance(v, str)}
    assert len(names) >= 8, names
    for name, path in names.items():
        if path in paths.FLOW_OWNED:
            assert path not in listed, f"{name}={path} is in dvc.yaml now: drop it from FLOW_OWNED"
            continue
        assert any(path == p or path.startswith(p.rstrip("/") + "/") for p in listed), \
            f"paths.{name} = {path!r} is no out or dep of any dvc.yaml stage"


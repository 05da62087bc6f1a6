"""Atomic writes: the target appears whole or not at all, and a failed write leaves no temp file."""
import pytest

from dlkdd.atomic import atomic_path, write_text_atomic


def test_success_replaces_target_and_failure_leaves_it_untouched(tmp_path):
    target = tmp_path / "sub" / "m.json"
    write_text_atomic(target, "old")
    assert target.read_text() == "old"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert [p.name for p in target.parent.iterdir()] == ["m.json"]  # no temp file left behind

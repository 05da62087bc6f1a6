"""No function in src/ or flows/ runs over 60 lines (issue 21): a long body mixes steps a reader must pull apart."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 60


def long_functions(root: Path, folders: tuple[str, ...] = ("src", "flows"), limit: int = MAX_LINES) -> list[str]:
    """``path:line name (N lines)`` for each function or method over ``limit`` lines, decorators included."""
    found = []
    for folder in folders:
        for f in sorted((root / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(f.read_text())):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    lines = node.end_lineno - min([node.lineno, *(d.lineno for d in node.decorator_list)]) + 1
                    if lines > limit:
                        found.append(f"{f.relative_to(root)}:{node.lineno} {node.name} ({lines} lines)")
    return found


def test_no_function_over_60_lines():
    assert long_functions(ROOT) == []


@pytest.mark.parametrize("decorated", [False, True])
def test_the_counter_sees_a_long_method_with_its_decorator(tmp_path, decorated):
    (tmp_path / "src").mkdir()
    body = "\n".join(f"        x{i} = {i}" for i in range(59 if decorated else 60))
    (tmp_path / "src" / "m.py").write_text("class C:\n" + ("    @staticmethod\n" if decorated else "")
                                           + f"    def f():\n{body}\n")
    assert long_functions(tmp_path, ("src",)) == [f"src/m.py:{3 if decorated else 2} f (61 lines)"]
    assert long_functions(tmp_path, ("src",), limit=61) == []

"""dvc.yaml lists every input of every stage, so `dvc repro` never skips a stage whose inputs changed.

Two static checks per stage, from the script its ``cmd`` runs:
- code: every module file the script imports, transitively through ``src/dlkdd`` and ``stages/_common.py`` (package
  ``__init__.py`` files included: Python runs them), lies under one of the stage's ``deps``, and every module file
  the deps list (a folder: every ``.py`` under it) is one the script imports: no stage re-runs for code it never runs;
- params: every params key the stage's code reads is covered by its ``params`` list (a section covers its keys) or
  by a ``${...}`` interpolation in its cmd/deps (DVC tracks those). Keys are found by following ``params.a.b``
  attribute chains and aliases (``f = params.frames``) through the script and the ``_common.py`` helpers it hands
  ``params`` to; a section handed whole to any other function counts as read whole (conservative). A script shared
  by stages (``--role X`` in the cmd) counts only the ``... if args.role == "X" else ...`` branch of its role.

Below them, the layering those deps rest on: the stages that read a frame cache import its index
(:mod:`dlkdd.data.frame_index`), never the decoder that writes it, and the import graph of ``src/``, ``flows/`` and
``stages/`` has no cycle.
"""
from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path

import pytest
import yaml

from dlkdd.config import Params

ROOT = Path(__file__).resolve().parents[1]

# A section handed whole to a library function of which some keys are, by design, not read: (stage, key) → why.
NOT_READ = {
    ("enhance", "enhance.zerodce"): "enhance_clip never reads the Zero-DCE training params; they reach the stage "
                                    "through models/zerodce.pt (a dep)",
}


def _script(stage: dict, root: Path = ROOT) -> Path:
    m = re.search(r"\b(stages/\w+\.py)\b", stage["cmd"])
    assert m, f"no stages/*.py in cmd {stage['cmd']!r}"
    return root / m.group(1)


def _module_file(name: str, root: Path) -> Path | None:
    """The file of module ``name`` (dlkdd.x.y or _common) inside this project, or None if it is a third party's."""
    if name == "_common":
        return root / "stages" / "_common.py"
    if name != "dlkdd" and not name.startswith("dlkdd."):
        return None
    base = root / "src" / Path(*name.split("."))
    for cand in (base.with_suffix(".py"), base / "__init__.py"):
        if cand.is_file():
            return cand
    return None


def _imported_modules(tree: ast.AST, skip: set[ast.AST] = frozenset()) -> set[str]:
    """Module names a file imports anywhere (function-level too, except inside ``skip``); ``from a import b`` adds a
    and a.b (b may be a submodule), and every parent package (Python runs each ``__init__``)."""
    skipped = {n for f in skip for n in ast.walk(f)}
    names: set[str] = set()
    for node in ast.walk(tree):
        if node in skipped:
            continue
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}
    return {".".join(n.split(".")[:i]) for n in names for i in range(1, n.count(".") + 2)}


def code_files(script: Path, root: Path = ROOT) -> set[Path]:
    """The script and every project module file it runs, transitively.

    ``stages/_common.py`` is a bag of helpers with lazy imports: only the helpers the script imports from it count.
    """
    script_tree = ast.parse(script.read_text())
    used = {a.name for n in ast.walk(script_tree) if isinstance(n, ast.ImportFrom) and n.module == "_common"
            for a in n.names}
    seen, todo = set(), [script]
    while todo:
        f = todo.pop()
        if f in seen:
            continue
        seen.add(f)
        tree = ast.parse(f.read_text())
        skip = set()
        if f.name == "_common.py":
            skip = {n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name not in used}
        for name in _imported_modules(tree, skip):
            mf = _module_file(name, root)
            if mf is not None and mf not in seen:
                todo.append(mf)
    return seen


def _is_section(key: tuple[str, ...]) -> bool:
    """Whether ``key`` names a section of the schema (the root included) rather than a value."""
    obj: object = Params
    for part in key:
        if not dataclasses.is_dataclass(obj) or part not in {f.name for f in dataclasses.fields(obj)}:
            return False
        obj = _resolve(obj, part)  # type: ignore[arg-type]
    return dataclasses.is_dataclass(obj)


def _resolve(cls: type, name: str) -> object:
    default = next(f for f in dataclasses.fields(cls) if f.name == name)
    if default.default_factory is not dataclasses.MISSING:  # sections are built by their default factory
        return type(default.default_factory())
    return type(default.default)


class _ParamsReads:
    """Walks functions, following where a Params object (or a section of it) flows; collects the keys read."""

    def __init__(self, functions: dict[str, ast.FunctionDef]):
        self.functions, self.keys, self.done = functions, set(), set()

    def scan(self, body: ast.AST, roots: dict[str, tuple[str, ...]]) -> None:
        parents = {c: p for p in ast.walk(body) for c in ast.iter_child_nodes(p)}
        for node in ast.walk(body):  # aliases first: x = params.a (and x = params_or_exit())
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                v = node.value
                if isinstance(v, ast.Call) and isinstance(v.func, ast.Name) and v.func.id in ("params_or_exit",
                                                                                              "load_params"):
                    roots[node.targets[0].id] = ()
        for node in ast.walk(body):
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                key = self._chain(node.value, roots)
                if key is not None and _is_section(key):
                    roots[node.targets[0].id] = key
        for node in ast.walk(body):
            if not isinstance(node, (ast.Name, ast.Attribute)) or isinstance(parents.get(node), ast.Attribute):
                continue  # only maximal chains
            key = self._chain(node, roots)
            if key is None:
                continue
            parent = parents.get(node)
            if isinstance(parent, ast.Assign) and key is not None and _is_section(key):
                continue  # an alias, followed above
            if not _is_section(key):
                self.keys.add(".".join(key))
            elif isinstance(parent, ast.Call) and node in parent.args + [k.value for k in parent.keywords]:
                self._into_call(parent, node, key)
            elif isinstance(node, ast.Name) and isinstance(parent, ast.FunctionDef | ast.arguments):
                continue
            else:
                self.keys.add(".".join(key) if key else "*")

    def _chain(self, node: ast.AST, roots: dict[str, tuple[str, ...]]) -> tuple[str, ...] | None:
        attrs = []
        while isinstance(node, ast.Attribute):
            attrs.append(node.attr)
            node = node.value
        if isinstance(node, ast.Name) and node.id in roots:
            return roots[node.id] + tuple(reversed(attrs))
        return None

    def _into_call(self, call: ast.Call, arg: ast.AST, key: tuple[str, ...]) -> None:
        """A Params object or section passed to a function: follow it into a project helper, else it is read whole."""
        fn = self.functions.get(call.func.id) if isinstance(call.func, ast.Name) else None
        if fn is None:
            self.keys.add(".".join(key) if key else "*")
            return
        names = [a.arg for a in fn.args.args]
        if arg in call.args:
            pname = names[call.args.index(arg)]
        else:
            pname = next(k.arg for k in call.keywords if k.value is arg)
        if (fn.name, pname, key) in self.done:
            return
        self.done.add((fn.name, pname, key))
        self.scan(fn, {pname: key})


class _PickRole(ast.NodeTransformer):
    """Replaces ``a if args.role == "X" else b`` by the branch this stage's role takes."""

    def __init__(self, role: str):
        self.role = role

    def visit_IfExp(self, node: ast.IfExp) -> ast.AST:
        t = node.test
        if isinstance(t, ast.Compare) and isinstance(t.left, ast.Attribute) and t.left.attr == "role" \
                and len(t.ops) == 1 and isinstance(t.ops[0], ast.Eq) and isinstance(t.comparators[0], ast.Constant):
            return self.visit(node.body if t.comparators[0].value == self.role else node.orelse)
        return self.generic_visit(node)


def _role(stage: dict) -> str | None:
    m = re.search(r"--role[ =](\w+)", stage["cmd"])
    return m.group(1) if m else None


def params_read(script: Path, root: Path = ROOT, role: str | None = None) -> set[str]:
    """Dotted params keys (or whole sections) the stage script reads, through the _common helpers it calls; with
    ``role``, only that role's branches (see :class:`_PickRole`)."""
    tree = ast.parse(script.read_text())
    if role is not None:
        tree = ast.fix_missing_locations(_PickRole(role).visit(tree))
    trees = [tree, ast.parse((root / "stages" / "_common.py").read_text())]
    functions = {n.name: n for t in trees for n in ast.walk(t) if isinstance(n, ast.FunctionDef)}
    reads = _ParamsReads(functions)
    main = functions.get("main")
    reads.scan(main if main is not None else trees[0], {})
    return reads.keys


def _covered(key: str, entries: list[str]) -> bool:
    return any(key == e or key.startswith(e + ".") for e in entries)


def _listed_code(deps: list[str], root: Path) -> list[Path]:
    """The project's Python files that ``deps`` list: ``src/`` and ``stages/`` files, and those under a folder."""
    files = []
    for d in deps:
        if "${" in d or not d.startswith(("src/", "stages/")):
            continue
        path = root / d
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path] if path.suffix == ".py" else []
    return files


def code_problems(name: str, stage: dict, root: Path = ROOT) -> list[str]:
    """One line per module file the stage runs that its deps do not list, and per listed one it does not run (an
    edit to a module the stage never imports must not re-run it: a decoder edit must not retrain a model)."""
    deps = [str(d) for d in stage.get("deps", [])]
    dep_paths = [(root / d).resolve() for d in deps if "${" not in d]
    runs = {f.resolve() for f in code_files(_script(stage, root), root)}
    problems = [f"{name}: runs {f.relative_to(root)} but deps do not list it" for f in sorted(runs)
                if not any(f == d or d in f.parents for d in dep_paths)]
    return problems + [f"{name}: lists {f.relative_to(root)} but does not run it" for f in _listed_code(deps, root)
                       if f.resolve() not in runs]


def stage_problems(dvc_yaml: dict, root: Path = ROOT) -> list[str]:
    """One line per input a stage reads that dvc.yaml does not list, and per module it lists but does not run."""
    problems = []
    for name, stage in dvc_yaml["stages"].items():
        deps = [str(d) for d in stage.get("deps", [])]
        text = " ".join([stage["cmd"], *deps])
        interpolated = re.findall(r"\$\{\s*([\w.]+)\s*\}", text)
        params = [p if isinstance(p, str) else next(iter(p)) for p in stage.get("params", [])] + interpolated
        script = _script(stage, root)
        problems += code_problems(name, stage, root)
        for key in sorted(params_read(script, root, _role(stage))):
            if _covered(key, params):
                continue
            if key != "*" and _is_section(tuple(key.split("."))) and \
                    all(_covered(k, params) or (name, k) in NOT_READ for k in _leaves(key)):
                continue
            problems.append(f"{name}: reads params {key} but its params list does not cover it")
    return problems


def _leaves(key: str) -> list[str]:
    """The sub-sections/keys of section ``key``, one level down (for a section partly listed key by key)."""
    obj: object = Params
    for part in key.split("."):
        obj = _resolve(obj, part)  # type: ignore[arg-type]
    return [f"{key}.{f.name}" for f in dataclasses.fields(obj)]


PARAMS_OK = "data/params.ok"  # stage check_params' stamp: params.yaml is valid


def params_gate_problems(dvc_yaml: dict) -> list[str]:
    """One line per way `dvc repro` could run a stage before check_params: DVC deletes a stage's outs before running
    it, so every stage must wait for the params check (DVC orders stages by their deps), and the check must read
    params.yaml as a file (any edit) and write the stamp the others depend on."""
    stages = dvc_yaml["stages"]
    gate = stages.get("check_params")
    if gate is None:
        return ["no check_params stage"]
    problems = []
    if PARAMS_OK not in gate.get("outs", []):
        problems.append(f"check_params: does not write {PARAMS_OK}")
    if "params.yaml" not in gate.get("deps", []):
        problems.append("check_params: does not list params.yaml as a file dep")
    for name, stage in stages.items():
        if name != "check_params" and PARAMS_OK not in [str(d) for d in stage.get("deps", [])]:
            problems.append(f"{name}: deps do not list {PARAMS_OK}: it could run (and lose its outs) before "
                            "params.yaml is checked")
    return problems


def _dvc() -> dict:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())


def test_dvc_yaml_lists_every_module_and_param_each_stage_reads():
    assert stage_problems(_dvc()) == []


@pytest.mark.parametrize("stage, key", [("frames", "seed"), ("evaluate", "train.threads"),
                                        ("teacher_logits", "train.threads"), ("train_student", "kd"),
                                        ("train_teacher", "teacher"), ("train_baseline", "student")])
def test_checker_catches_a_param_removed_from_a_stage(stage, key):
    dvc = _dvc()
    params = dvc["stages"][stage]["params"]
    assert key in params, f"{stage} no longer lists {key}: pick another key for this test"
    params.remove(key)
    problems = stage_problems(dvc)
    assert any(p.startswith(f"{stage}: reads params {key}") for p in problems), problems


def test_checker_catches_a_library_module_removed_from_a_stage():
    dvc = _dvc()
    deps = dvc["stages"]["frames"]["deps"]
    deps.remove("src/dlkdd/data/clipstats.py")
    assert "frames: runs src/dlkdd/data/clipstats.py but deps do not list it" in stage_problems(dvc)


def test_checker_follows_aliases_and_helpers(tmp_path):
    """A key read through an alias inside a _common helper is found; a sibling key that is not read is not."""
    (tmp_path / "stages").mkdir()
    (tmp_path / "stages" / "_common.py").write_text(
        "def helper(p):\n    t = p.train\n    return t.threads\n")
    script = tmp_path / "stages" / "x.py"
    script.write_text("from _common import params_or_exit, helper\n\ndef main():\n    params = params_or_exit()\n"
                      "    helper(params)\n    print(params.kd.alpha)\n")
    assert params_read(script, tmp_path) == {"train.threads", "kd.alpha"}


@pytest.mark.parametrize("stage, other", [("train_teacher", "student"), ("train_baseline", "teacher")])
def test_a_shared_script_counts_only_its_roles_branch(stage, other):
    """stages/train.py serves both train stages: each reads its own model section, not the other role's."""
    dvc = _dvc()
    assert _role(dvc["stages"][stage]) is not None
    keys = params_read(_script(dvc["stages"][stage]), ROOT, _role(dvc["stages"][stage]))
    assert other not in keys and not any(k.startswith(other + ".") for k in keys), keys


def test_training_stages_keep_dvcs_run_cache():
    """DVC saves no run-cache entry for a stage with a ``cache: false`` out that is neither a metric nor a plot
    (``no_cache_outs`` in dvc/stage/__init__.py), so every experiment would retrain teacher and baseline even at
    params run before. The training curves are therefore declared as stage ``plots``, and enhance's luma summary is a
    cached report. Only the two stages that run in seconds keep such outs: validate (the gate's counts in git) and
    evaluate (metrics/predictions.csv for the CI gate, the details, cost and timings in git): the one DVC metric is
    the headline, so that `dvc metrics show` fits a terminal."""
    from dvc.repo import Repo

    with Repo(str(ROOT)) as repo:
        off = {s.addressing: [o.def_path for o in s.outs if not o.use_cache and not (o.is_metric or o.is_plot)]
               for s in repo.index.stages}
    assert {name: outs for name, outs in off.items() if outs} == {
        "validate": ["metrics/validate.json"],
        "evaluate": ["metrics/predictions.csv", "reports/evaluate/details.json", "metrics/cost.json",
                     "metrics/timings.json"]}


# ---------------------------------------------------------------- layering: no decoder under training, no cycle

# the decoder and its isolated workers: what the frames stage (and the landing gate) runs on a video file
DECODER = {"src/dlkdd/data/frames.py", "src/dlkdd/data/untrusted.py", "src/dlkdd/data/video.py",
           "src/dlkdd/data/stream.py", "src/dlkdd/isolated.py", "src/dlkdd/faults.py"}
# the stages that read a frame cache or a model, never a video file
READERS = ("validate", "train_zerodce", "enhance", "train_teacher", "teacher_logits", "train_baseline",
           "train_student", "export", "evaluate")


@pytest.mark.parametrize("stage", READERS)
def test_training_stages_neither_import_nor_list_the_decoder(stage):
    """A decoder edit re-runs the frames stage only: the stages after it import the frame index, not the decoder."""
    spec = _dvc()["stages"][stage]
    runs = {str(f.relative_to(ROOT)) for f in code_files(_script(spec))}
    listed = {str(f.relative_to(ROOT)) for f in _listed_code([str(d) for d in spec["deps"]], ROOT)}
    assert "src/dlkdd/data/frame_index.py" in runs or stage == "export"
    assert runs & DECODER == set() and listed & DECODER == set()


def test_checker_catches_a_module_a_stage_lists_but_does_not_run():
    dvc = _dvc()
    dvc["stages"]["train_teacher"]["deps"].append("src/dlkdd/data/video.py")
    dvc["stages"]["evaluate"]["deps"].append("src/dlkdd/data")
    problems = stage_problems(dvc)
    assert "train_teacher: lists src/dlkdd/data/video.py but does not run it" in problems
    assert "evaluate: lists src/dlkdd/data/untrusted.py but does not run it" in problems


def module_name(path: Path, root: Path = ROOT) -> str:
    """The name a file is imported by: ``src/dlkdd/a/b.py`` → ``dlkdd.a.b``, ``flows/x.py`` → ``flows.x``, and a
    stage script by its bare name (the stages put ``stages/`` on ``sys.path``: ``_common``)."""
    rel = path.relative_to(root).with_suffix("")
    parts = rel.parts[1:] if rel.parts[0] in ("src", "stages") else rel.parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """Module → the project modules it imports, at module level or inside a function. ``from a.b import c`` names
    ``a``, ``a.b`` and ``a.b.c`` (when a module): Python runs each package's ``__init__``, except the importer's own
    packages (those already run before it)."""
    files = {module_name(f, root): f for d in ("src", "flows", "stages") for f in (root / d).rglob("*.py")}
    graph = {}
    for name, f in files.items():
        own = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
        graph[name] = {m for m in _imported_modules(ast.parse(f.read_text())) if m in files} - own - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle ``[a, b, ..., a]`` in ``graph``, or None (depth-first, three colours)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    return next((c for n in sorted(graph) if n not in state and (c := visit(n))), None)


def test_the_import_graph_has_no_cycle():
    """Before: dlkdd.data.frames imported dlkdd.data.untrusted, which imported frames back inside a function."""
    graph = import_graph()
    assert {"dlkdd.data.frames", "flows.retrain", "_common", "train"} <= set(graph)  # all three trees are read
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_cycle_finder_sees_function_level_imports(tmp_path):
    for d in ("src/pkg", "flows", "stages"):
        (tmp_path / d).mkdir(parents=True)
    (tmp_path / "src/pkg/__init__.py").write_text("")
    (tmp_path / "src/pkg/a.py").write_text("from pkg.b import f\n")
    (tmp_path / "src/pkg/b.py").write_text("def f():\n    from pkg import a\n")
    (tmp_path / "flows/x.py").write_text("import pkg.a\n")
    (tmp_path / "stages/s.py").write_text("from _common import y\n")
    (tmp_path / "stages/_common.py").write_text("import flows.x\n")
    graph = import_graph(tmp_path)
    assert graph["s"] == {"_common"} and graph["flows.x"] == {"pkg", "pkg.a"}
    assert find_cycle(graph) == ["pkg.a", "pkg.b", "pkg.a"]
    (tmp_path / "src/pkg/b.py").write_text("def f():\n    pass\n")
    assert find_cycle(import_graph(tmp_path)) is None


def test_every_stage_waits_for_the_params_check():
    assert params_gate_problems(_dvc()) == []


def test_params_gate_checker_catches_a_stage_that_does_not_wait():
    dvc = _dvc()
    dvc["stages"]["train_student"]["deps"].remove(PARAMS_OK)
    dvc["stages"]["check_params"]["deps"].remove("params.yaml")
    assert params_gate_problems(dvc) == [
        "check_params: does not list params.yaml as a file dep",
        f"train_student: deps do not list {PARAMS_OK}: it could run (and lose its outs) before params.yaml is checked"]

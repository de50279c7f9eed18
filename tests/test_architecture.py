"""The package's structure: no import cycles, and emitters that only print a plan.

Imports are read from the source with ``ast`` (every ``import`` statement, at module level, in a
function or under ``TYPE_CHECKING``), so a cycle hidden in a lazy import counts too.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "codegen"
MODULES = {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"}


def imports(module: str) -> set[str]:
    """The codegen modules that ``codegen/<module>.py`` imports (the package itself aside:
    ``from . import __version__`` reads the package's attribute, not a module)."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text(encoding="utf-8"))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 and node.module:
                out.add(node.module.split(".")[0])
            elif node.level == 1:
                out.update(a.name for a in node.names if a.name in MODULES)
            elif node.level == 0 and node.module and node.module.startswith("codegen."):
                out.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            out.update(a.name.split(".")[1] for a in node.names
                       if a.name.startswith("codegen.") and a.name.count(".") >= 1)
    return out & MODULES


def graph() -> dict[str, set[str]]:
    return {m: imports(m) for m in sorted(MODULES)}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every elementary cycle found by a depth-first walk (one representative per cycle)."""
    found: set[tuple[str, ...]] = set()

    def walk(path: list[str]) -> None:
        for nxt in sorted(edges[path[-1]]):
            if nxt == path[0]:
                found.add(tuple(path))
            elif nxt not in path and nxt > path[0]:  # each cycle once, from its smallest module
                walk(path + [nxt])

    for start in sorted(edges):
        walk([start])
    return [list(c) + [c[0]] for c in sorted(found)]


def test_the_import_walker_sees_lazy_and_relative_imports():
    edges = graph()
    assert "planner" in edges["compiler"]  # module level
    assert "emit_numba" in edges["compiler"]  # inside a function


def test_cycles_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]


def test_no_import_cycles_within_codegen():
    found = cycles(graph())
    assert not found, "import cycles: " + "; ".join(" -> ".join(c) for c in found)


def test_emitters_print_a_plan_and_run_no_stage():
    """Lowering, fusion and memory planning are passes that ``compiler.py`` runs; the emitters
    receive their results in the plan (``plan.py``) and import none of them."""
    stages = {"lower", "fusion", "memory", "planner", "passes"}
    for emitter in ("emit", "emit_numba", "emit_xp"):
        assert not imports(emitter) & stages, (emitter, imports(emitter) & stages)
    assert {"lower", "fusion", "memory"} <= imports("compiler")


def test_the_base_emitter_knows_no_backend_by_name():
    """The NumPy emitter's special cases are hooks its subclasses override, never tests of
    ``self.backend``; shared templates test no backend either (their variables come from each
    emitter's ``template_vars``)."""
    tree = ast.parse((PACKAGE / "emit.py").read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        assert not (isinstance(node, ast.Attribute) and node.attr == "backend"), node.lineno
        assert not (isinstance(node, ast.Constant) and node.value == "numba"), node.lineno
        assert not (isinstance(node, ast.keyword) and node.arg == "numba"), node.lineno
    templates = PACKAGE.parent / "templates"
    for path in [templates / "module.py.j2", templates / "helpers" / "checks.py.j2"]:
        assert "numba %}" not in path.read_text(encoding="utf-8"), path.name


def test_no_stage_asks_an_emitter_for_its_backend_name():
    """What differs between backends is an emitter's attribute or hook (``fuses``, ``blocks``,
    ``render_body``, ...), so a new backend overrides what differs and no stage needs editing:
    nothing in codegen/ reads an emitter's ``backend`` name (it only names the module's file)."""
    for path in sorted(PACKAGE.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr == "backend":
                assert isinstance(node.value, ast.Name) and node.value.id == "args", (
                    f"{path.name}:{node.lineno} reads .backend")

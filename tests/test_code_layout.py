"""The shape of the code (docs/design.md, "Code layout"): layers, stages as siblings, no
import cycles, dali_pipes used through its public names, files and functions kept small.

Every import counts, also those inside functions (a lazy import is still a dependency);
imports under ``if TYPE_CHECKING:`` do not (they never run).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("vcp", "dali_pipes", "backbones")
STAGES = {"vcp.tensorize", "vcp.extract", "vcp.stream", "vcp.merge"}
# What stands on the stages: the CLI, the Python API, --dry-run, the package itself.
ABOVE = {"vcp", "vcp.__main__", "vcp.api", "vcp.plan"} | {f"vcp.{p.stem}" for p in (ROOT / "vcp").glob("cli*.py")}
MAX_FILE_LINES, MAX_FUNCTION_LINES = 300, 60


def _module_name(path: Path) -> str:
    pkg = path.parent.name
    return pkg if path.stem == "__init__" else f"{pkg}.{path.stem}"


def _is_type_checking(node: ast.If) -> bool:
    return isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def _imports(tree: ast.AST, pkg: str) -> set[str]:
    found: set[str] = set()
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level:  # relative: inside the same package
                found |= {f"{pkg}.{a.name}" for a in node.names} if node.module is None else {f"{pkg}.{node.module}"}
            elif node.module and node.module.split(".")[0] in PACKAGES:
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] in PACKAGES}
        stack.extend(ast.iter_child_nodes(node))
    return found


def _graph() -> dict[str, set[str]]:
    graph = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).glob("*.py")):
            name = _module_name(path)
            graph[name] = {d for d in _imports(ast.parse(path.read_text()), pkg) if d != name}
    return graph


GRAPH = _graph()


def test_lower_packages_never_import_higher_ones():
    for name, deps in GRAPH.items():
        top = name.split(".")[0]
        if top in ("dali_pipes", "backbones"):
            others = {d for d in deps if d.split(".")[0] != top}
            assert not others, f"{name} imports {others}: dali_pipes and backbones stand on their own"


def test_vcp_uses_dali_pipes_through_its_public_names_only():
    for name, deps in GRAPH.items():
        if name.startswith("vcp"):
            private = {d for d in deps if d.startswith("dali_pipes.")}
            assert not private, f"{name} imports {private}: use the names in dali_pipes/__init__.py"


def test_stages_are_siblings_and_nothing_below_them_imports_them():
    for name, deps in GRAPH.items():
        if name in ABOVE:
            continue
        if name in STAGES:
            assert not deps & (STAGES | ABOVE), f"stage {name} imports {deps & (STAGES | ABOVE)}"
        elif name.startswith("vcp"):
            assert not deps & (STAGES | ABOVE), f"{name} (below the stages) imports {deps & (STAGES | ABOVE)}"


def test_no_import_cycles():
    internal = {n: {d for d in deps if d in GRAPH} for n, deps in GRAPH.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for dep in sorted(internal[node]):
            if state.get(dep) == 1:
                cycle = path[path.index(dep):] + [dep] if dep in path else [node, dep]
                pytest.fail(f"import cycle: {' -> '.join(cycle)}")
            if dep not in state:
                visit(dep, [*path, dep])
        state[node] = 2

    for node in sorted(internal):
        if node not in state:
            visit(node, [node])


def test_the_import_reader_counts_lazy_imports_and_skips_type_checking_ones():
    """The rules above must be able to fail: a lazy import inside a function counts."""
    code = "def f():\n    from .extract import extract\n"
    assert _imports(ast.parse(code), "vcp") == {"vcp.extract"}
    hidden = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .stream import x\n"
    assert _imports(ast.parse(hidden), "vcp") == set()


def test_files_and_functions_stay_small():
    long_files, long_functions = [], []
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).glob("*.py")):
            text = path.read_text()
            doc = ast.get_docstring(ast.parse(text)) or ""
            if text.count("\n") > MAX_FILE_LINES and "longer than" not in doc:
                long_files.append(f"{path.relative_to(ROOT)} ({text.count(chr(10))} lines, no reason stated at its top)")
            for node in ast.walk(ast.parse(text)):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    n = node.end_lineno - node.lineno + 1
                    if n > MAX_FUNCTION_LINES:
                        long_functions.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({n} lines)")
    assert not long_files and not long_functions, long_files + long_functions

"""The shape of the code (docs/design.md, "Code layout"): layers, stages as siblings, no
import cycles, dali_pipes used through its public names, files and functions kept small.

Every import counts, also those inside functions (a lazy import is still a dependency);
imports under ``if TYPE_CHECKING:`` do not (they never run).
"""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("vcp", "dali_pipes", "backbones")
STAGES = {"vcp.stages.tensorize", "vcp.stages.extract", "vcp.stages.stream", "vcp.stages.merge"}
# What each folder of vcp may import from vcp (dali_pipes and backbones are below them all):
# cli -> stages -> inputs -> store -> common; outputs -> store -> common. The package's own
# modules (vcp/__init__, __main__, api, data) stand on top, beside cli.
MAY_IMPORT = {
    "vcp.common": {"vcp.common"},
    "vcp.store": {"vcp.common", "vcp.store"},
    "vcp.inputs": {"vcp.common", "vcp.store", "vcp.inputs"},
    "vcp.stages": {"vcp.common", "vcp.store", "vcp.inputs", "vcp.stages"},
    "vcp.outputs": {"vcp.common", "vcp.store", "vcp.outputs"},
}
MAX_FILE_LINES, MAX_FUNCTION_LINES = 300, 60


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    return isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def _sources() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


MODULES = {_module_name(p) for p in _sources()}
SUBPACKAGES = {_module_name(p) for p in _sources() if p.name == "__init__.py"}


def _imports(tree: ast.AST, package: str) -> set[str]:
    """The modules of vcp, dali_pipes and backbones that ``tree`` imports; ``package`` is the
    package relative imports are resolved against."""
    found: set[str] = set()
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level:  # relative
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                found |= {f"{base}.{a.name}" for a in node.names} if node.module is None else {f"{base}.{node.module}"}
            elif node.module and node.module.split(".")[0] in PACKAGES:
                submodules = {f"{node.module}.{a.name}" for a in node.names} & MODULES
                # `from vcp.stages import stage` imports vcp.stages.stage (as `from vcp.stages.stage import x` does)
                found |= submodules or {node.module}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] in PACKAGES}
        stack.extend(ast.iter_child_nodes(node))
    return found


def _graph() -> dict[str, set[str]]:
    graph = {}
    for path in _sources():
        name = _module_name(path)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        graph[name] = {d for d in _imports(ast.parse(path.read_text()), package) if d != name}
    return graph


GRAPH = _graph()


def _folder(name: str) -> str | None:
    """``vcp.stages.tensorize`` -> ``vcp.stages``; None for the package's own modules."""
    parts = name.split(".")
    return ".".join(parts[:2]) if len(parts) >= 2 and ".".join(parts[:2]) in SUBPACKAGES else None


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


def test_each_folder_of_vcp_imports_only_the_folders_below_it():
    for name, deps in GRAPH.items():
        folder = _folder(name)
        if folder is None or folder == "vcp.cli" or not name.startswith("vcp"):
            continue
        outside = {d for d in deps if d.startswith("vcp") and (_folder(d) or d) not in MAY_IMPORT[folder]}
        assert not outside, f"{name} ({folder}) imports {outside}: it may import from {sorted(MAY_IMPORT[folder])}"


def test_stages_are_siblings_and_nothing_below_them_imports_them():
    for name, deps in GRAPH.items():
        if not name.startswith("vcp") or _folder(name) in (None, "vcp.cli"):
            continue
        assert not deps & STAGES, f"{name} imports {deps & STAGES}: stages never import each other, nor does what they stand on"


def test_the_folder_rules_can_fail():
    assert _folder("vcp.store.pt_writer") == "vcp.store" and _folder("vcp.api") is None
    assert "vcp.stages.stage" in _imports(ast.parse("def f():\n    from vcp.stages import stage\n"), "vcp.store")
    assert _imports(ast.parse("from .pair import x\n"), "vcp.store") == {"vcp.store.pair"}


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
    code = "def f():\n    from vcp.stages.extract import extract\n"
    assert _imports(ast.parse(code), "vcp.stages") == {"vcp.stages.extract"}
    hidden = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .stream import x\n"
    assert _imports(ast.parse(hidden), "vcp.stages") == set()


def test_files_and_functions_stay_small():
    long_files, long_functions = [], []
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
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


NOT_MODULES = {"vcp.backbones", "vcp.lock"}  # the entry-point group, the lock file's name


def _unresolved(text: str) -> set[str]:
    """The dotted ``vcp.`` names in ``text`` that name no module or attribute."""
    import importlib
    import re

    bad = set()
    for name in set(re.findall(r"(?<![\w/.])vcp(?:\.\w+)+", text)) - NOT_MODULES:
        parts, found = name.split("."), False
        for k in range(len(parts), 1, -1):
            try:
                obj = importlib.import_module(".".join(parts[:k]))
            except ImportError:
                continue
            found = all(hasattr(obj, a) and (obj := getattr(obj, a)) is not None for a in parts[k:])
            break
        if not found:
            bad.add(name)
    return bad


LOWER_FLOORS_OWN = ("vcp.store", "vcp.common", "vcp.outputs")  # on-disk contract and readers: no DALI, no backbones


def _outside_imports(tree: ast.AST, package: str) -> set[str]:
    return {m for m in _imports(tree, package) if m.split(".")[0] in ("backbones", "dali_pipes")}


def test_store_common_and_outputs_import_neither_dali_pipes_nor_backbones():
    bad = {f"{_module_name(p)}: {m}" for p in _sources() if _module_name(p).startswith(LOWER_FLOORS_OWN)
           for m in _outside_imports(ast.parse(p.read_text()), _module_name(p))}
    assert not bad, sorted(bad)
    lazy = "def f():\n    from backbones.spec import IMAGENET\n"
    assert _outside_imports(ast.parse(lazy), "vcp.store") == {"backbones.spec"}  # the check can fail (lazy imports count)


def test_every_dotted_name_in_code_and_docs_resolves():
    files = [p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")] + sorted((ROOT / "docs").glob("*.md"))
    files.append(ROOT / "README.md")
    bad = {f"{p.relative_to(ROOT)}: {n}" for p in files for n in _unresolved(p.read_text())}
    assert not bad, sorted(bad)
    assert _unresolved("see :mod:`vcp.interrupt` and vcp.stages.interrupt") == {"vcp.interrupt"}  # the check can fail


def _private_imports(tree: ast.AST, module: str) -> set[str]:
    """``from other.module import _name``: a private name taken across modules (a package
    importing its own private submodule, ``from . import _x`` / ``from ._x import y``, is
    how a package hides its parts, and is allowed)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and not node.level and node.module and node.module.split(".")[0] in PACKAGES:
            if node.module != module:
                found |= {f"{node.module}.{a.name}" for a in node.names if a.name.startswith("_")}
    return found


def test_no_private_name_is_imported_across_modules():
    bad = {f"{_module_name(p)}: {name}" for p in _sources() for name in _private_imports(ast.parse(p.read_text()), _module_name(p))}
    assert not bad, sorted(bad)
    assert _private_imports(ast.parse("from vcp.store.pt_reader import _group_name"), "vcp.outputs.loaders") == {
        "vcp.store.pt_reader._group_name"}  # the check can fail


def test_the_stored_normalization_is_backbones_imagenet():
    from backbones.spec import IMAGENET as MODEL_IMAGENET
    from vcp.store.contract import IMAGENET

    assert (IMAGENET.mean, IMAGENET.std) == (MODEL_IMAGENET.mean, MODEL_IMAGENET.std)


def test_the_public_python_surface_is_one_place_and_import_vcp_stays_light():
    import subprocess
    import sys

    code = ("import sys, vcp\nlight = 'torch' not in sys.modules\n"
            "print(light, all(getattr(vcp, n) is not None for n in vcp.__all__ if n != '__version__'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert out.split() == ["True", "True"]
    import vcp
    from vcp.data import ClipDataset, FeatureDataset

    assert (vcp.FeatureDataset, vcp.ClipDataset) == (FeatureDataset, ClipDataset)


def test_listing_the_backbones_imports_no_torch():
    """``vcp backbones`` (and ``backbones.default_registry().specs()``) read the built-ins'
    written-down facts: no torch, no torchvision (the listing took 1.6 s with them, 0.4 s without);
    building one, or asking for ``backbones.Backbone``, imports torch then."""
    import subprocess
    import sys

    code = textwrap.dedent("""
        import os, sys
        from backbones import default_registry
        specs = default_registry().specs()
        listed = 'torch' in sys.modules
        sys.argv = ['vcp', 'backbones']
        real = os._exit
        os._exit = lambda code: (print(listed, 'torch' in sys.modules, code, len(specs), file=sys.stderr), real(0))
        import vcp.cli
        vcp.cli.main()
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    listed, after_cli, code_, count = out.stderr.split()[-4:]
    assert (listed, after_cli, code_) == ("False", "False", "0") and int(count) >= 13, out.stderr[-500:]
    assert "r2plus1d_18" in out.stdout and "resnet50" in out.stdout
    import backbones
    from backbones.module import Backbone

    assert backbones.Backbone is Backbone

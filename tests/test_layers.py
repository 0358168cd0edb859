"""The package's layers: each imports only from the layers before it, and packages import each other in no cycle.

The order (docs/design.md, "Layers"): util -> records -> selection -> index -> train -> features -> engine ->
selectors -> api -> eval -> report -> cli. ``tasksift/__init__.py`` and ``__main__.py`` sit above them all.
Every import counts, at module top, inside a function or under ``if TYPE_CHECKING:``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

import tasksift

LAYERS = ("util", "records", "selection", "index", "train", "features", "engine", "selectors", "api", "eval",
          "report", "cli")
TOP = ("__init__", "__main__")
SRC = Path(tasksift.__file__).parent
MAX_LINES = 500


def module_name(rel: Path) -> str:
    """``selectors/tsds/solver.py`` -> ``tasksift.selectors.tsds.solver`` (a package's ``__init__`` is the
    package)."""
    parts = list(rel.with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(["tasksift", *parts])


def imported_modules(module: str, source: str, is_package: bool) -> Iterator[str]:
    """Every ``tasksift`` module that ``source`` imports (relative imports resolved)."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.split(".")[0] == "tasksift")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            if name.split(".")[0] == "tasksift":
                yield name


def layer_of(module: str) -> str:
    """The layer a module belongs to: its first name below ``tasksift`` (``api`` for ``tasksift.api``)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def package_of(module: str, packages: set[str]) -> str:
    """The innermost package holding ``module`` (a package is its own package; a module right under
    ``tasksift``, such as ``tasksift.api``, is a unit of its own)."""
    if module in packages:
        return module
    parent = module.rsplit(".", 1)[0]
    return module if parent == "tasksift" else parent


def read_tree(root: Path) -> dict[str, tuple[str, bool]]:
    """``{module: (source, is_package)}`` for every ``.py`` file under ``root``."""
    return {module_name(p.relative_to(root)): (p.read_text(encoding="utf-8"), p.name == "__init__.py")
            for p in sorted(root.rglob("*.py"))}


def layer_violations(tree: Mapping[str, tuple[str, bool]]) -> list[str]:
    """Imports of a later layer, and of a layer not in the list at all."""
    out = []
    for module, (source, is_package) in tree.items():
        here = layer_of(module)
        if here in TOP:
            continue
        for target in imported_modules(module, source, is_package):
            there = layer_of(target)
            if here not in LAYERS or there not in LAYERS:
                out.append(f"{module} -> {target}: a layer outside {LAYERS}")
            elif LAYERS.index(there) > LAYERS.index(here):
                out.append(f"{module} ({here}) imports {target} ({there}), a later layer")
    return out


def package_cycles(tree: Mapping[str, tuple[str, bool]]) -> list[list[str]]:
    """Groups of two or more packages that import each other round in a cycle (Tarjan's strongly connected
    components over the package graph)."""
    packages = {m for m, (_, is_package) in tree.items() if is_package}
    edges: dict[str, set[str]] = {}
    for module, (source, is_package) in tree.items():
        a = package_of(module, packages)
        for target in imported_modules(module, source, is_package):
            b = package_of(target, packages)
            if a != b:
                edges.setdefault(a, set()).add(b)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(set(edges) | {w for ws in edges.values() for w in ws}):
        if v not in index:
            visit(v)
    return groups


def test_every_import_goes_to_an_earlier_layer() -> None:
    assert layer_violations(read_tree(SRC)) == []


def test_no_cycle_between_packages() -> None:
    assert package_cycles(read_tree(SRC)) == []


def test_no_source_file_over_the_ceiling() -> None:
    long = {str(p.relative_to(SRC)): n for p in SRC.rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert long == {}


# -- the checks themselves catch what they must ------------------------------------------------------------
PLANTED = {
    "tasksift": ("from tasksift.api import select\n", True),
    "tasksift.util": ("", True),
    "tasksift.util.io": ("import os\n", False),
    "tasksift.records": ("from tasksift.records.read import load\n", True),
    "tasksift.records.read": ("from tasksift.util.io import os\n", False),
    "tasksift.selection": ("from tasksift.selection.writers import write\n", True),
    "tasksift.selection.writers": ("from tasksift.records import load\n", False),
}


def test_the_checks_pass_a_clean_tree() -> None:
    assert layer_violations(PLANTED) == []
    assert package_cycles(PLANTED) == []


@pytest.mark.parametrize("how", ["top", "function", "type-checking"])
def test_the_checks_catch_a_planted_cycle(how: str) -> None:
    """records importing selection (a later layer, which imports records) is found however it is written."""
    line = {"top": "from tasksift.selection import writers\n",
            "function": "def f():\n    from tasksift.selection.writers import write\n",
            "type-checking": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                             "    from tasksift.selection import writers\n"}[how]
    tree = dict(PLANTED)
    tree["tasksift.records.read"] = (PLANTED["tasksift.records.read"][0] + line, False)
    assert any("a later layer" in v for v in layer_violations(tree))
    assert package_cycles(tree) == [["tasksift.records", "tasksift.selection"]]


def test_the_checks_catch_a_cycle_inside_a_layer() -> None:
    """Two sub-packages of one layer importing each other form a cycle even though no layer is crossed."""
    tree = {
        "tasksift.selectors": ("", True),
        "tasksift.selectors.a": ("from tasksift.selectors.b import x\n", True),
        "tasksift.selectors.b": ("from tasksift.selectors.a import y\n", True),
    }
    assert layer_violations(tree) == []
    assert package_cycles(tree) == [["tasksift.selectors.a", "tasksift.selectors.b"]]


def test_relative_imports_are_resolved() -> None:
    assert list(imported_modules("tasksift.records.read", "from ..selection import x\n", False)) == \
        ["tasksift.selection"]
    assert list(imported_modules("tasksift.records", "from .read import x\n", True)) == ["tasksift.records.read"]

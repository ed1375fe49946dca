"""The package's layering, read from the source with ``ast``: no import runs upward and no modules import
each other in a loop.

The layers, bottom to top (docs/architecture.md draws them). A module may import its own layer and the
layers below it, never one above. Imports inside functions count (a lazy import is still a dependency);
imports under ``if TYPE_CHECKING:`` do not (they never run). Plugin tables that name modules as strings
(``importlib.import_module``) are how a lower layer finds the methods registered above it, and are not
imports.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mrrecon"

LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("foundation", ("mrrecon", "mrrecon._runtime", "mrrecon.errors", "mrrecon.utils")),
    ("physics and networks", ("mrrecon.physics", "mrrecon.nn", "mrrecon.diffusion")),
    ("data and metrics", ("mrrecon.data", "mrrecon.metrics")),
    ("core", ("mrrecon.core",)),
    ("classical", ("mrrecon.classical",)),
    ("training", ("mrrecon.train",)),
    ("methods", ("mrrecon.methods",)),
    ("evaluation", ("mrrecon.eval",)),
    ("entry points", ("mrrecon.cli", "mrrecon.__main__", "mrrecon.train.cli", "mrrecon.train.__main__")),
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer_of(module: str) -> int:
    """Index in LAYERS of the longest prefix that names ``module``'s package or the module itself."""
    best, best_len = None, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = index, len(prefix)
    if best is None:
        raise AssertionError(f"module {module} is in no layer: add it to LAYERS in tests/test_layers.py")
    return best


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST):
    """(lineno, imported name) of every import statement outside ``if TYPE_CHECKING:`` blocks."""
    stack = [tree]
    while stack:
        node = stack.pop()
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                stack.extend(child.orelse)
                continue
            if isinstance(child, ast.Import):
                for alias in child.names:
                    yield child.lineno, alias.name, ()
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                yield child.lineno, child.module, tuple(a.name for a in child.names)
            stack.append(child)


def import_graph() -> dict[str, list[tuple[str, int]]]:
    """module -> [(imported mrrecon module, line)]; ``from a.b import c`` means a.b.c where that is a module."""
    modules = all_modules()
    graph: dict[str, list[tuple[str, int]]] = {}
    for name, path in modules.items():
        edges = []
        for lineno, target, names in _imports(ast.parse(path.read_text(), str(path))):
            if target != "mrrecon" and not target.startswith("mrrecon."):
                continue
            subs = [f"{target}.{n}" for n in names if f"{target}.{n}" in modules]
            for dep in subs or [target]:
                if dep != name:
                    edges.append((dep, lineno))
        graph[name] = edges
    return graph


def upward_imports(graph) -> list[str]:
    found = []
    for module, edges in graph.items():
        for dep, lineno in edges:
            if layer_of(dep) > layer_of(module):
                found.append(f"{module}:{lineno} imports {dep} ({LAYERS[layer_of(module)][0]} -> "
                             f"{LAYERS[layer_of(dep)][0]})")
    return sorted(found)


def circles(graph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w, _ in graph.get(v, []):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_every_module_has_a_layer():
    for module in all_modules():
        layer_of(module)


def test_no_import_runs_upward():
    assert upward_imports(import_graph()) == []


def test_no_circles():
    assert circles(import_graph()) == []


# -- the checker itself catches what it should --------------------------------------------------------------
def test_checker_finds_an_upward_import_and_a_circle():
    graph = {"mrrecon.physics.fft": [("mrrecon.methods.unet", 3)], "mrrecon.methods.unet": [],
             "mrrecon.data.a": [("mrrecon.data.b", 1)], "mrrecon.data.b": [("mrrecon.data.a", 2)]}
    assert upward_imports(graph) == ["mrrecon.physics.fft:3 imports mrrecon.methods.unet (physics and networks "
                                     "-> methods)"]
    assert circles(graph) == [["mrrecon.data.a", "mrrecon.data.b"]]


@pytest.mark.parametrize("source, expected", [
    ("import mrrecon.methods\n", ["mrrecon.methods"]),
    ("def f():\n    from mrrecon.eval import benchmark\n", ["mrrecon.eval.benchmark"]),
    ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from mrrecon.eval import benchmark\n", []),
])
def test_checker_reads_lazy_imports_but_not_type_checking_blocks(source, expected):
    names = [(t, n) for _, t, n in _imports(ast.parse(source))]
    modules = all_modules()
    resolved = [f"{t}.{n[0]}" if n and f"{t}.{n[0]}" in modules else t for t, n in names if t.startswith("mrrecon")]
    assert resolved == expected

"""The package's import picture: no circles (type-only and function-local imports counted),
and the core imports nothing from the edges. Read from the source with ``ast``; nothing is
imported to find out."""

from __future__ import annotations

import ast
from pathlib import Path

import logosq_os_scheduler

PACKAGE = Path(logosq_os_scheduler.__file__).parent
ROOT = PACKAGE.name

# What the sans-I/O core may import outside itself: the task model, settings, errors, the
# clock and the input coercion rules; nothing that performs I/O or drives it.
CORE_MAY_IMPORT = {"_task", "_config", "_errors", "_clock", "_coerce"}


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports, by any import statement anywhere in it."""
    mods = modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package[: len(package) - (node.level - 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    # `from . import x` imports the submodule x when there is one.
                    graph[name].add(sub if sub in mods else target)
            elif isinstance(node, ast.Import):
                graph[name].update(a.name for a in node.names)
        graph[name] = {t for t in graph[name] if t in mods and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
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


def test_the_scanner_sees_the_imports() -> None:
    graph = import_graph()
    assert f"{ROOT}._scheduler" in graph[f"{ROOT}._blocking"]
    assert f"{ROOT}.core._core" in graph[f"{ROOT}.core"]
    # A circle made on purpose is found.
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_module_imports_a_module_that_imports_it() -> None:
    assert cycles(import_graph()) == []


def test_the_core_imports_nothing_from_the_edges() -> None:
    graph = import_graph()
    allowed = {f"{ROOT}.{m}" for m in CORE_MAY_IMPORT}
    for name, targets in graph.items():
        if name == f"{ROOT}.core" or name.startswith(f"{ROOT}.core."):
            outside = {t for t in targets if not t.startswith(f"{ROOT}.core")} - allowed
            assert not outside, f"{name} imports {sorted(outside)}"

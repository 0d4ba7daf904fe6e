"""The shape of the code base, checked from its source (no database, no imports):
no import cycles, no function over 80 lines, and the layering of the apps.

Read with `ast`, so an import inside a function counts as much as one at the top:
a cycle hidden in a function body still makes the two modules impossible to read
(or load) one without the other.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
APPS = ("etl", "batchimport", "corrections", "enrichment", "mytrader")
# Feature apps build on etl and never import each other (docs/ARCHITECTURE.md).
FEATURE_APPS = ("batchimport", "corrections", "enrichment")
# Code that is not the product: its long functions are scenarios, not logic.
NOT_PRODUCT = {"migrations", "tests", "bench", "browser_tests", "api_fuzz", ".venv", "var", "node_modules"}
MAX_FUNCTION_LINES = 80


@dataclass(frozen=True, slots=True)
class ImportEdge:
    importer: str
    imported: str
    line: int


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def project_modules() -> dict[str, Path]:
    """Every module of the project's apps (tests and migrations included)."""
    modules = {}
    for app in APPS:
        for path in sorted((ROOT / app).rglob("*.py")):
            modules[_module_name(path)] = path
    return modules


def _resolve(importer: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = importer.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _imported_modules(importer: str, path: Path) -> Iterator[tuple[str, int]]:
    """(project module, line) for every import in the file, wherever it is written.
    `from package import name` points at `package.name` when that is a module."""
    modules = project_modules()
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(importer, path.name == "__init__.py", node)
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != importer:
                yield target, node.lineno


@cache
def import_edges() -> tuple[ImportEdge, ...]:
    edges = {}
    for name, path in project_modules().items():
        for target, line in _imported_modules(name, path):
            edges.setdefault((name, target), ImportEdge(name, target, line))
    return tuple(edges.values())


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative; components of two or more modules."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        components.append(sorted(component))
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph.get(child, ())))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return components


def _one_cycle(component: list[str], edges: dict[tuple[str, str], ImportEdge]) -> list[ImportEdge]:
    """A shortest cycle through the component's first module, as the imports that make it."""
    members = set(component)
    start = component[0]
    paths: dict[str, list[ImportEdge]] = {start: []}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for (importer, imported), edge in sorted(edges.items()):
                if importer != node or imported not in members:
                    continue
                if imported == start:
                    return [*paths[node], edge]
                if imported not in paths:
                    paths[imported] = [*paths[node], edge]
                    following.append(imported)
        frontier = following
    return []


def test_no_import_cycle_between_project_modules():
    graph: dict[str, set[str]] = {name: set() for name in project_modules()}
    by_pair = {(e.importer, e.imported): e for e in import_edges()}
    for importer, imported in by_pair:
        graph[importer].add(imported)
    cycles = []
    for component in _strongly_connected(graph):
        chain = " -> ".join(f"{e.importer} (line {e.line})" for e in _one_cycle(component, by_pair))
        cycles.append(f"{len(component)} modules {component}: {chain} -> {component[0]}")
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def _product_files() -> Iterator[Path]:
    for path in sorted(ROOT.rglob("*.py")):
        relative = path.relative_to(ROOT)
        if NOT_PRODUCT & set(relative.parts[:-1]) or relative.name == "conftest.py":
            continue
        if relative.name.startswith("test_"):
            continue
        yield path


def test_no_function_over_80_lines_outside_tests_and_migrations():
    long = []
    for path in _product_files():
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({length} lines)")
    assert not long, "functions over 80 lines:\n" + "\n".join(long)


def _app(module: str) -> str:
    return module.partition(".")[0]


def _is_test(module: str) -> bool:
    return ".tests" in f".{module}" or ".migrations." in module


def test_etl_imports_no_other_app():
    wrong = [
        f"{e.importer}:{e.line} imports {e.imported}"
        for e in import_edges()
        if _app(e.importer) == "etl" and _app(e.imported) != "etl" and not _is_test(e.importer)
    ]
    assert not wrong, "etl is the core and imports no app:\n" + "\n".join(wrong)


def test_feature_apps_do_not_import_each_other():
    wrong = [
        f"{e.importer}:{e.line} imports {e.imported}"
        for e in import_edges()
        if _app(e.importer) in FEATURE_APPS
        and _app(e.imported) in FEATURE_APPS
        and _app(e.importer) != _app(e.imported)
    ]
    assert not wrong, "batchimport, corrections and enrichment never import each other:\n" + "\n".join(wrong)


def test_the_cycle_finder_reports_a_cycle_and_its_imports():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    edges = {(x, y): ImportEdge(x, y, 1) for x, ys in graph.items() for y in ys}
    assert _strongly_connected(graph) == [["a", "b", "c"]]
    assert [e.importer for e in _one_cycle(["a", "b", "c"], edges)] == ["a", "b", "c"]


def test_the_import_graph_counts_imports_inside_functions(tmp_path):
    source = tmp_path / "module.py"
    source.write_text("import json\n\ndef later():\n    from etl import locks\n    from .errors import DomainError\n")
    assert list(_imported_modules("etl.module", source)) == [("etl.locks", 4), ("etl.errors", 5)]

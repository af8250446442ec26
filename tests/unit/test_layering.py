"""The project's layers, read from its imports with ``ast`` (module level and inside functions alike):

    cli → deployments → flows → tasks → drillbit (the core)        infra/sandbox (the system under test) apart

Imports point down only; no cycles anywhere; the core never imports Prefect; the sandbox never imports Drillbit;
flow modules stay thin. See docs/ARCHITECTURE.md.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {"cli": ROOT / "cli", "deployments": ROOT / "deployments", "flows": ROOT / "flows"}
PACKAGES |= {"tasks": ROOT / "tasks", "drillbit": ROOT / "drillbit", "vesandbox": ROOT / "infra/sandbox/vesandbox"}
LAYER = {"cli": 5, "deployments": 4, "flows": 3, "tasks": 2, "drillbit": 1}
FLOW_MODULE_MAX_LINES = 120


def module_name(package: str, path: Path) -> str:
    rel = path.relative_to(PACKAGES[package]).with_suffix("")
    parts = [package, *rel.parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    found = {}
    for package, folder in PACKAGES.items():
        for path in sorted(folder.rglob("*.py")):
            found[module_name(package, path)] = path
    return found


MODULES = modules()


def _type_checking(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")
    )


def _walk(tree: ast.AST):
    """Every node, except what sits under ``if TYPE_CHECKING:`` (annotations only, never imported at run time)."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        todo += [child for child in ast.iter_child_nodes(node) if not _type_checking(child)]


def imported(name: str, path: Path) -> set[str]:
    """Every module ``name`` imports (absolute names; relative imports resolved), at any depth of the file."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in _walk(tree):
        if isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            out.add(base)
            out |= {f"{base}.{alias.name}" for alias in node.names}  # `from pkg import module`
    return out


def project_edges() -> dict[str, set[str]]:
    """module → the project modules it imports (a `from a.b import c` counts as importing a.b, and a.b.c if c is a
    module)."""
    edges = {}
    for name, path in MODULES.items():
        edges[name] = {m for m in imported(name, path) if m in MODULES and m != name}
    return edges


EDGES = project_edges()


def top(module: str) -> str:
    return module.split(".")[0]


def test_the_walker_sees_the_project():
    assert "drillbit.runner" in MODULES and "tasks.runner" in MODULES and "vesandbox.launcher" in MODULES
    assert "drillbit.runner" in EDGES["tasks.runner"]


def find_cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each as a sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
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
                cycles.append(sorted(group))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return cycles


def test_find_cycles_finds_a_cycle():
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    assert find_cycles(EDGES) == []


@pytest.mark.parametrize("module", sorted(m for m in MODULES if top(m) in LAYER))
def test_imports_point_down(module):
    """A layer imports only its own or lower layers: the core nothing above it, tasks no flow, flows no CLI."""
    up = sorted(m for m in EDGES[module] if top(m) in LAYER and LAYER[top(m)] > LAYER[top(module)])
    assert up == [], f"{module} imports a higher layer: {up}"


def test_the_core_has_no_prefect_import():
    offenders = {
        name: sorted(m for m in imported(name, path) if top(m) == "prefect")
        for name, path in MODULES.items()
        if top(name) == "drillbit"
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_sandbox_never_imports_drillbit():
    offenders = {
        name: sorted(m for m in imported(name, path) if top(m) in LAYER)
        for name, path in MODULES.items()
        if top(name) == "vesandbox"
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_drillbit_never_imports_the_sandbox():
    offenders = {
        name: sorted(m for m in imported(name, path) if top(m) == "vesandbox")
        for name, path in MODULES.items()
        if top(name) in LAYER
    }
    assert {k: v for k, v in offenders.items() if v} == {}


@pytest.mark.parametrize("module", sorted(m for m in MODULES if top(m) == "flows"))
def test_flow_modules_are_thin(module):
    lines = MODULES[module].read_text().count("\n")
    assert lines <= FLOW_MODULE_MAX_LINES, f"{module}: {lines} lines (library code belongs in drillbit/scenarios)"

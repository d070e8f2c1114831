"""The shape of the code: wings without cycles, a small core, tools outside the images, algorithms apart."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PRODUCT = ("common", "algorithms", "tools")
CORE_LIMIT = 15


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    found = {}
    for top in PRODUCT:
        for path in (REPO / top).rglob("*.py"):
            if "compat" not in path.parts:  # the vendored sagemaker_xgboost_container shims import as users do
                found[_module_name(path)] = path
    return found


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """Modules of ours that `path` imports, at any depth (lazy imports inside functions count)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            submodules = [f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in modules]
            out.update(submodules if len(submodules) == len(node.names) else [node.module, *submodules])
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return {name for name in out if name in modules}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(path, modules) - {name} for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles() -> None:
    assert _cycles(_graph()) == []


def test_the_core_of_common_stays_small() -> None:
    core = sorted(p.name for p in (REPO / "common").glob("*.py") if p.name != "__init__.py")
    assert len(core) <= CORE_LIMIT, core


def test_the_images_never_import_developer_tools() -> None:
    graph = _graph()
    offenders = {m: sorted(t for t in targets if t.startswith("tools"))
                 for m, targets in graph.items() if not m.startswith("tools")}
    assert {m: t for m, t in offenders.items() if t} == {}


def test_no_algorithm_reaches_into_another_or_common_into_an_algorithm() -> None:
    problems = []
    for module, targets in _graph().items():
        if module.startswith("tools"):
            continue
        own = module.split(".")[1] if module.startswith("algorithms.") else None
        for target in targets:
            if target.startswith("algorithms.") and (own is None or target.split(".")[1] != own):
                problems.append(f"{module} -> {target}")
    assert problems == []

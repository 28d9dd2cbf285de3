"""The flow package imports in one direction: no module of it reaches back to a module
that imports it, not even for type checking (a cycle kept apart by TYPE_CHECKING still
makes every reader hold both modules in mind at once)."""

from __future__ import annotations

import ast
from pathlib import Path

import purpose_agent.flow

FLOW_DIR = Path(purpose_agent.flow.__file__).parent


def _flow_imports(path: Path) -> set[str]:
    """Every flow module ``path`` imports anywhere (TYPE_CHECKING blocks and functions
    included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "purpose_agent.flow":
                found |= {alias.name for alias in node.names
                          if (FLOW_DIR / f"{alias.name}.py").exists()}
            elif node.module.startswith("purpose_agent.flow."):
                found.add(node.module.split(".")[2])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[2] for a in node.names
                      if a.name.startswith("purpose_agent.flow.")}
    return found


def _graph() -> dict[str, set[str]]:
    return {p.stem: _flow_imports(p) for p in FLOW_DIR.glob("*.py") if p.stem != "__init__"}


def test_the_flow_modules_import_each_other_without_a_cycle() -> None:
    graph = _graph()
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        if name in path:
            cycle = [*path[path.index(name):], name]
            raise AssertionError(f"import cycle in purpose_agent/flow: {' -> '.join(cycle)}")
        if name in done:
            return
        for target in sorted(graph.get(name, ())):
            visit(target, [*path, name])
        done.add(name)

    for module in sorted(graph):
        visit(module, [])


def test_the_context_variable_and_the_signals_sit_at_the_bottom() -> None:
    graph = _graph()
    assert graph["current"] == set()
    assert graph["signals"] == set()
    assert graph["plan"] <= {"reducers"}
    # The engine reaches the running node's context through functions, not private names.
    engine = (FLOW_DIR / "engine.py").read_text()
    assert "_current" not in engine and "ctx._abandoned" not in engine

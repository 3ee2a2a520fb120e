"""No import cycle inside trio_netstack: every layer builds on the ones below it.

Walks every module's imports (top level, in functions and under TYPE_CHECKING alike,
so that a cycle cannot hide in a local import) and looks for a cycle between modules.
"""

from __future__ import annotations

import ast
import pathlib

import trio_netstack

ROOT = pathlib.Path(trio_netstack.__file__).parent
PACKAGE = "trio_netstack"


def module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in ROOT.rglob("*.py")}


def imports_of(name: str, path: pathlib.Path) -> set[str]:
    is_package = path.name == "__init__.py"
    base = name.split(".") if is_package else name.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base[: len(base) - (node.level - 1)]
                module = ".".join(anchor + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            submodules = [f"{module}.{alias.name}" for alias in node.names]
            # ``from . import _netdev`` needs the submodule, not the package's names.
            if not all(m in MODULES for m in submodules):
                targets.append(module)
            targets += submodules
        found.update(t for t in targets if t in MODULES and t != name)
    return found


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def graph() -> dict[str, set[str]]:
    return {name: imports_of(name, path) for name, path in MODULES.items()}


def test_modules_found() -> None:
    assert f"{PACKAGE}._runtime.stack" in MODULES and len(MODULES) > 40


def test_no_import_cycle() -> None:
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_walk_finds_a_cycle() -> None:
    # The check itself works: a graph with a cycle is caught, with its path.
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_runtime_layers_import_downwards() -> None:
    # Transports see the IP layer through transport.Network only, never the stack.
    edges = graph()
    for layer in ("ip", "icmp", "udp", "tcp", "interface"):
        assert f"{PACKAGE}._runtime.stack" not in edges[f"{PACKAGE}._runtime.{layer}"], layer
    for transport in ("udp", "tcp"):
        assert f"{PACKAGE}._runtime.ip" not in edges[f"{PACKAGE}._runtime.{transport}"], transport

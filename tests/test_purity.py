"""wire/ and proto/ are the pure core: no Trio, clock, sockets, randomness or threads."""

from __future__ import annotations

import ast
import pathlib

import pytest

import trio_netstack

FORBIDDEN = {"trio", "time", "socket", "random", "threading", "asyncio", "os", "select"}
ROOT = pathlib.Path(trio_netstack.__file__).parent
MODULES = sorted(p for d in ("wire", "proto") for p in (ROOT / d).rglob("*.py"))


def imported_roots(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.level > 0 and node.module:
            # Relative imports must stay inside the pure core.
            top = node.module.split(".")[0]
            if node.level >= 2 and top not in ("wire", "proto"):
                roots.add(f"trio_netstack.{top}")
    return roots


def test_core_modules_found() -> None:
    assert len(MODULES) >= 8


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_module_is_pure(path: pathlib.Path) -> None:
    bad = imported_roots(path) & (
        FORBIDDEN | {f"trio_netstack.{m}" for m in ("_runtime", "link", "tools", "testing")}
    )
    assert not bad, f"{path.name} imports {sorted(bad)}"


MAX_LINES = 500  # proto/ modules stay short, with one purpose each


@pytest.mark.parametrize(
    "path", sorted((ROOT / "proto").rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT))
)
def test_proto_module_is_short(path: pathlib.Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.name} has {lines} lines: split it by concern"

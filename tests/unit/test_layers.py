"""The package's layers, checked on every import (docs/design.md, module map).

A module may import from its own package and from the layers below it, never above:

    cli -> watch -> fleet -> health, infra -> operations -> facts -> release -> runner -> config -> commands, errors

(`release` renders and validates; `facts` read what the target shows; `operations` change
it.) Imports of the standard library and third-party packages are not restricted here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

LAYERS = [
    "cli",
    "watch",
    "fleet",
    "health|infra",
    "operations",
    "facts",
    "release",
    "runner",
    "config",
    "commands|errors",
]
RANK = {pkg: i for i, layer in enumerate(LAYERS) for pkg in layer.split("|")}
MODULES = sorted(p for p in (ROOT / "tasks").rglob("*.py") if p.parent != ROOT / "tasks")


def package_of(path: Path) -> str:
    rel = path.relative_to(ROOT / "tasks")
    return rel.parts[0].removesuffix(".py")


def imported_packages(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
        names += [a.name for a in node.names] if isinstance(node, ast.Import) else []
        found |= {n.split(".")[1] for n in names if n.startswith("tasks.") and len(n.split(".")) > 1}
    return found


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_go_down_the_layers_only(path):
    own = package_of(path)
    upward = sorted(p for p in imported_packages(path) if p != own and RANK.get(p, 99) <= RANK[own])
    assert not upward, f"{path.relative_to(ROOT)} ({own}) imports from the same or a higher layer: {upward}"


def test_every_package_has_a_layer():
    packages = {package_of(p) for p in MODULES}
    assert packages <= set(RANK), packages - set(RANK)


def test_health_and_infra_do_not_import_operations():
    for path in MODULES:
        if package_of(path) in ("health", "infra"):
            assert "operations" not in imported_packages(path), path

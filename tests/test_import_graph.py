"""The package's layers point down only, and no module imports its way back to itself.

The graph is read from the source (ast), not by importing: an edge a -> b for every `import` of a segkit
module b anywhere in module a, at the top or inside a function (a lazy import still ties a to b). Floors,
from the ground up (README "Layout"):

    ground   segkit (the package itself), errors, lazy, registry, paths, config, models, losses, metrics,
             optim, data
    middle   inference, trainer, build, hooks
    top      search, competition, course, viz, cli, __main__

A module may import its own floor and the floors below it, never one above.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "segkit"

FLOORS = {
    "ground": ["segkit", "segkit.errors", "segkit.lazy", "segkit.registry", "segkit.paths", "segkit.config",
               "segkit.models",
               "segkit.losses", "segkit.metrics", "segkit.optim", "segkit.data"],
    "middle": ["segkit.inference", "segkit.trainer", "segkit.build", "segkit.hooks"],
    "top": ["segkit.search", "segkit.competition", "segkit.course", "segkit.viz", "segkit.cli",
            "segkit.__main__"],
}
ORDER = ["ground", "middle", "top"]
# What the issue names explicitly: the ground-floor packages never reach the upper ones.
FORBIDDEN = {
    ("segkit.models", "segkit.losses", "segkit.metrics", "segkit.optim", "segkit.data"):
        ("segkit.trainer", "segkit.search", "segkit.competition", "segkit.cli"),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@functools.cache
def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The segkit modules `name` imports anywhere in its source (relative imports resolved)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")
                parent = parent[: len(parent) - (node.level - 1)]
                base = ".".join(parent + ([base] if base else []))
            # `from pkg import name`: name may be a submodule of pkg
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                       for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:  # `import a.b.c` where c is an attribute
                target = target.rpartition(".")[0]
            if target.startswith("segkit") and target != name:
                found.add(target)
    return found


@functools.cache
def graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports_of(name, path, set(found)) for name, path in found.items()}


def floor_of(name: str) -> str:
    best, floor = "", None
    for level, prefixes in FLOORS.items():
        for prefix in prefixes:
            if (name == prefix or name.startswith(prefix + ".")) and len(prefix) > len(best):
                best, floor = prefix, level
    assert floor is not None, f"{name} is on no floor: add it to FLOORS (and to the README's map)"
    return floor


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """A cycle of the graph as a list of modules (first == last), or None (depth-first search)."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for target in sorted(edges.get(node, ())):
            if state.get(target) == "open":
                return stack[stack.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_reader_sees_the_imports_it_should():
    """The parser itself: known edges of the package are found (a broken parser would pass everything)."""
    edges = graph()
    assert "segkit.metrics" in edges["segkit.inference"]
    assert "segkit.inference" in edges["segkit.trainer.trainer"]
    assert "segkit.models.deeplabv3" in edges["segkit.models.autodeeplab.network"]  # a relative-free edge
    assert "segkit.models.autodeeplab.cell" in edges["segkit.models.autodeeplab.network"]  # `from .cell`
    assert "segkit.build" in edges["segkit.cli.run"]  # an import inside a function counts


def test_no_import_cycles():
    assert find_cycle(graph()) is None, " -> ".join(find_cycle(graph()))


def test_the_cycle_finder_finds_a_planted_cycle():
    edges = {name: set(targets) for name, targets in graph().items()}
    edges["segkit.models.unet"].add("segkit.trainer.trainer")  # with trainer -> ... -> models.unet: a loop
    edges["segkit.trainer.trainer"].add("segkit.models.unet")
    assert find_cycle(edges) is not None


@pytest.mark.parametrize("name", sorted(modules()))
def test_layers_point_down(name):
    edges = graph()[name]
    mine = ORDER.index(floor_of(name))
    upward = sorted(target for target in edges if ORDER.index(floor_of(target)) > mine)
    assert not upward, f"{name} ({floor_of(name)} floor) imports from a higher floor: {upward}"
    for low, high in FORBIDDEN.items():
        if name.startswith(low):
            assert not [t for t in edges if t.startswith(high)], f"{name} imports {edges}"

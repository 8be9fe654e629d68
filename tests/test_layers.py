"""The packages form layers: no top-level package imports one that imports it back, directly
or through others. Read from the source with ``ast`` (every import, lazy ones inside functions
included), so a cycle fails here before it can fail at import time."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("schemas", "kernels", "sinks", "sim", "streams", "zhichao", "bench")
# bottom to top: a package may import those before it only
LAYERS = ("schemas", "kernels", "sinks", "sim", "streams", "zhichao", "bench")


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return {n.split(".")[0] for n in names} & set(PACKAGES)


def package_graph(root: Path = ROOT) -> dict[str, dict[str, list[str]]]:
    """package -> imported package -> the files that import it. Parsed in a fresh interpreter:
    CPython 3.11's ``ast`` can fail with "AST constructor recursion depth mismatch" late in a
    process that has run deep recursions (the test suite's), which says nothing of the code."""
    out = subprocess.run(  # noqa: S603 - this file, run as a script
        [sys.executable, __file__, str(root)], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)


def _package_graph(root: Path) -> dict[str, dict[str, list[str]]]:
    graph: dict[str, dict[str, list[str]]] = {p: {} for p in PACKAGES}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            for other in imported_packages(path) - {package}:
                graph[package].setdefault(other, []).append(str(path.relative_to(root)))
    return graph


def cycles(graph: dict[str, dict[str, list[str]]]) -> list[list[str]]:
    """Every elementary cycle's packages, found by a depth-first search from each package."""
    found: list[list[str]] = []
    seen: set[tuple[str, ...]] = set()

    def walk(start: str, node: str, path: list[str]) -> None:
        for nxt in sorted(graph.get(node, {})):
            if nxt == start:
                i = path.index(min(path))
                key = tuple(path[i:] + path[:i])
                if key not in seen:
                    seen.add(key)
                    found.append([*path, start])
            elif nxt not in path:
                walk(start, nxt, [*path, nxt])

    for package in graph:
        walk(package, package, [package])
    return found


def test_no_cycle_between_packages():
    graph = package_graph()
    found = cycles(graph)
    described = [
        " -> ".join(c) + "  (" + "; ".join(graph[a][b][0] for a, b in zip(c, c[1:])) + ")"
        for c in found
    ]
    assert not found, "package import cycles:\n" + "\n".join(described)


@pytest.mark.parametrize("package", LAYERS)
def test_packages_import_only_lower_layers(package):
    allowed = set(LAYERS[: LAYERS.index(package)])
    upward = {
        other: files for other, files in package_graph()[package].items() if other not in allowed
    }
    assert not upward, f"{package} imports a higher layer: {upward}"


def test_the_check_sees_a_cycle(tmp_path):
    """The detector itself: a sinks module importing streams again is a cycle."""
    for package in PACKAGES:
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "streams" / "app.py").write_text("from sinks import redis_sink\n")
    (tmp_path / "sinks" / "order_sink.py").write_text(
        "def f():\n    from streams.dispatch import UnitState\n"
    )
    found = cycles(package_graph(tmp_path))
    assert ["sinks", "streams", "sinks"] in found


if __name__ == "__main__":
    print(json.dumps(_package_graph(Path(sys.argv[1]))))

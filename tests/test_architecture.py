"""The package's layers point one way, and no module imports itself round a
cycle (issue 11, docs/architecture.md).

Imports are read from the source (every ``import`` and ``from ... import``,
at module level or inside a function: a lazy import is still an edge), so the
check needs no import of the package. Imports under ``if TYPE_CHECKING:``
are left out: they never run, and exist only to name a type.
"""

from __future__ import annotations

import ast
import os
import textwrap
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "occasional"

# Each layer may import only from the layers below it and from itself. ports
# and durable stand side by side: neither imports the other. The top-level
# package (`occasional`, the facade that re-exports the contract) stands
# above the libraries; the commands and the test plugin stand above it.
LAYERS: dict[str, int] = {
    "sck": 0,
    "core": 1,
    "behaviours": 2,
    "ports": 3,
    "durable": 3,
    "dist": 3,  # nodes: beside ports and durable, on core
    "net": 3,  # sockets owned by processes (issue 14)
    "http": 4,  # HTTP in and out of durable processes, on durable (issue 16)
    "up": 5,
    "": 6,  # occasional/__init__.py
    "cli": 7,
    "__main__": 8,  # python -m occasional: runs the cli
    "testing": 7,
}


def _module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the package's modules it imports, for every module under ``root``."""
    top = root.name
    paths = {_module_name(root, p): p for p in root.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges: set[str] = set()
        for node in _imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    origin = ".".join(base + ([node.module] if node.module else []))
                else:
                    origin = node.module or ""
                # `from pkg import mod` imports the module pkg.mod; `from pkg import name`, pkg.
                targets = [f"{origin}.{a.name}" if f"{origin}.{a.name}" in paths else origin for a in node.names]
            edges.update(t for t in targets if (t == top or t.startswith(top + ".")) and t in paths and t != name)
        graph[name] = edges
    return graph


def layer_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def back_edges(graph: dict[str, set[str]], layers: dict[str, int]) -> list[str]:
    """Every import that points up, or sideways between two different layers of one level."""
    bad = []
    for module, targets in sorted(graph.items()):
        mine = layer_of(module)
        for target in sorted(targets):
            theirs = layer_of(target)
            if theirs != mine and layers[theirs] >= layers[mine]:
                bad.append(f"{module} -> {target}")
    return bad


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                connect(w)
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
            connect(v)
    return sorted(found)


def test_every_package_of_occasional_has_a_layer():
    packages = {layer_of(m) for m in import_graph(PACKAGE)}
    assert packages - set(LAYERS) == set()


def test_no_module_of_occasional_imports_a_layer_above_its_own():
    assert back_edges(import_graph(PACKAGE), LAYERS) == []


def test_no_modules_of_occasional_import_one_another_in_a_cycle():
    assert cycles(import_graph(PACKAGE)) == []


# -- the check itself, on a package made to break it ------------------------------------


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


@pytest.fixture
def broken(tmp_path: Path) -> Path:
    root = tmp_path / "occasional"
    _write(
        root,
        {
            "__init__.py": "",
            "core/__init__.py": "",
            "core/a.py": """
                def later():
                    from ..behaviours import b  # a lazy back-edge
                """,
            "core/c.py": "from . import d\n",
            "core/d.py": "from .c import something\n",
            "core/e.py": """
                from typing import TYPE_CHECKING
                if TYPE_CHECKING:
                    from ..behaviours.b import Thing
                """,
            "behaviours/__init__.py": "",
            "behaviours/b.py": "from ..core import a\nimport os\n",
            "sck/__init__.py": "",
        },
    )
    return root


def test_the_check_finds_a_lazy_import_of_a_layer_above(broken: Path):
    assert back_edges(import_graph(broken), LAYERS) == ["occasional.core.a -> occasional.behaviours.b"]


def test_the_check_finds_two_modules_that_import_each_other(broken: Path):
    assert cycles(import_graph(broken)) == [
        ["occasional.behaviours.b", "occasional.core.a"],
        ["occasional.core.c", "occasional.core.d"],
    ]


def test_the_check_leaves_out_imports_made_only_for_type_checking(broken: Path):
    assert import_graph(broken)["occasional.core.e"] == set()


def test_the_package_checked_is_the_one_the_tests_run_against():
    import occasional

    assert Path(os.path.dirname(occasional.__file__)).resolve() == PACKAGE

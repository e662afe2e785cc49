"""The layers of mnist_core import downwards only: no module imports one that imports it back.

The graph is read from the source with `ast`, imports inside functions included (a function-level
import defers a cycle to run time, it does not remove it); imports under `if TYPE_CHECKING:` are left
out, since they never run. `from .pkg import name` counts as an import of `pkg.name` when that is a
module, else of `pkg` itself.
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

PACKAGE = "mnist_core"
PACKAGE_DIR = Path(__file__).resolve().parent.parent / PACKAGE


def module_files(package_dir: Path = PACKAGE_DIR, package: str = PACKAGE) -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its __init__.py)."""
    found = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = list(path.relative_to(package_dir).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join([package, *parts])] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST):
    """Every Import / ImportFrom node that can run (anywhere in the file, not under TYPE_CHECKING)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def import_graph(modules: dict[str, Path], package: str = PACKAGE) -> nx.DiGraph:
    """module -> the modules of the package it imports."""
    graph = nx.DiGraph()
    graph.add_nodes_from(modules)
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        here = name.split(".") if is_package else name.split(".")[:-1]  # what a relative import starts from
        for node in _imports(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = here[:len(here) - (node.level - 1)] if node.level else []
                source = ".".join(base + ([node.module] if node.module else []))
                targets = [f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules else source
                           for alias in node.names]
            for target in targets:
                while target and target not in modules and target.startswith(package + "."):
                    target = target.rsplit(".", 1)[0]  # `import pkg.mod.attr`-style names: the module that holds it
                if target in modules and target != name:
                    graph.add_edge(name, target)
    return graph


def test_mnist_core_has_no_import_cycle_function_level_imports_included():
    graph = import_graph(module_files())
    cycles = sorted(" -> ".join(c + [c[0]]) for c in nx.simple_cycles(graph))
    assert not cycles, "import cycles in mnist_core:\n" + "\n".join(cycles[:20])


def test_the_import_graph_sees_function_level_and_relative_imports(tmp_path):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("def later():\n    from .sub import b\n")
    (package / "sub" / "__init__.py").write_text("from .b import thing\n")
    (package / "sub" / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..a import x\n"
                                          "thing = 1\n\ndef f():\n    from .. import a\n")
    graph = import_graph(module_files(package, "pkg"), "pkg")
    assert set(graph.edges) == {("pkg.a", "pkg.sub.b"), ("pkg.sub", "pkg.sub.b"), ("pkg.sub.b", "pkg.a")}
    assert list(nx.simple_cycles(graph))  # a -> sub.b -> a, seen although both imports sit in functions

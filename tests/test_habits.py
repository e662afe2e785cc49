"""Habits the package keeps, read from its source: an import inside a function says why it is not at
the top (a heavy library one feature needs, a process that must stay without torch), since without a
reason it only hides how modules depend on each other."""

from __future__ import annotations

import ast

from mnist_core.paths import REPO_ROOT

PACKAGE_DIR = REPO_ROOT / "mnist_core"


def function_level_imports_without_a_reason(source: str) -> list[int]:
    """Line numbers of the imports inside functions that carry no comment. A comment on the import's
    own lines, on the line above, or on the import just before it (a group of imports) counts."""
    lines = source.splitlines()
    missing = []

    def said(node: ast.stmt, previous: ast.stmt | None) -> bool:
        if any("#" in line for line in lines[node.lineno - 1:node.end_lineno]):
            return True
        above = lines[node.lineno - 2].strip() if node.lineno > 1 else ""
        if above.startswith("#"):
            return True
        return (isinstance(previous, (ast.Import, ast.ImportFrom)) and previous.end_lineno == node.lineno - 1
                and said(previous, None))

    def walk(node: ast.AST, in_function: bool) -> None:
        previous = None
        for child in ast.iter_child_nodes(node):
            if in_function and isinstance(child, (ast.Import, ast.ImportFrom)) and not said(child, previous):
                missing.append(child.lineno)
            walk(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))
            previous = child

    walk(ast.parse(source), False)
    return missing


def test_every_function_level_import_in_mnist_core_says_why():
    missing = [f"{path.relative_to(REPO_ROOT)}:{line}" for path in sorted(PACKAGE_DIR.rglob("*.py"))
               for line in function_level_imports_without_a_reason(path.read_text())]
    assert not missing, "function-level imports with no reason given:\n" + "\n".join(missing)


def test_the_check_sees_an_import_inside_a_function_and_its_reason():
    source = '''
import os


def plain():
    import json
    return json


def heavy():
    import onnx  # here: seconds to load, for export only
    import onnxruntime
    return onnx, onnxruntime


class Holder:
    def method(self):
        # the drawing set's code loads only for these commands
        from . import drawings
        from .errors import DataError
        return drawings, DataError
'''
    assert function_level_imports_without_a_reason(source) == [6]

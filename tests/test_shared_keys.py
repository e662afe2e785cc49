"""The session-state keys pages hand each other are spelled in one place, app_pages/_keys.py.

A page that wrote st.session_state["watch_run"] while another read keys.WATCH_RUN would work until
someone renamed one of them. Read from the source with `ast`: any subscript or get/pop/setdefault
of st.session_state (or `ss`, the pages' short name for it) whose key is a literal naming a shared
key, or an f-string that builds a form field's key ("cfg_..."), outside _keys.py.
"""

from __future__ import annotations

import ast
from pathlib import Path

from app_pages import _keys

ROOT = Path(__file__).resolve().parent.parent
SOURCES = [ROOT / "app.py", *sorted((ROOT / "app_pages").glob("*.py"))]
SHARED = {value for name, value in vars(_keys).items() if name.isupper() and isinstance(value, str)}
FIELD_PREFIX = _keys.field_key("")


def _is_session_state(node: ast.expr) -> bool:
    return (isinstance(node, ast.Attribute) and node.attr == "session_state") or \
        (isinstance(node, ast.Name) and node.id == "ss")


def _spelled_key(node: ast.expr) -> str | None:
    """The shared key that `node` spells out, if it does."""
    if isinstance(node, ast.Constant) and node.value in SHARED:
        return node.value
    if isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.Constant) \
            and str(node.values[0].value).startswith(FIELD_PREFIX):
        return f"{FIELD_PREFIX}..."
    return None


def spelled_keys(source: str) -> list[tuple[int, str]]:
    """(line, key) for each use of a shared key by its literal spelling in `source`."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Subscript) and _is_session_state(node.value):
            key = _spelled_key(node.slice)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args \
                and node.func.attr in ("get", "pop", "setdefault") and _is_session_state(node.func.value):
            key = _spelled_key(node.args[0])
        else:
            continue
        if key:
            found.append((node.lineno, key))
    return found


def test_the_check_finds_a_shared_key_spelled_out():
    page = 'import streamlit as st\nst.session_state["watch_run"] = 1\nss = st.session_state\nss.get(f"cfg_{n}")\n'
    assert spelled_keys(page) == [(2, "watch_run"), (4, "cfg_...")]


def test_pages_name_the_keys_they_share_through_the_keys_module():
    spelled = {f"{path.relative_to(ROOT)}:{line} {key}"
               for path in SOURCES if path.name != "_keys.py"
               for line, key in spelled_keys(path.read_text())}
    assert not spelled, "use app_pages._keys for these: " + ", ".join(sorted(spelled))

"""This browser's class membership: which class it is in, and the name it goes by there.

A teacher shares a link with `?class=CODE` (to any page; the Class page's is the useful one), or a
student types the code on Home or the Class page. Joining is for this browser: the membership is kept
in session_state for the session and in a cookie, so another page, a refresh or a new tab stays in
the class (like the owner token, app_pages._frame.visitor_token). Leaving clears both. The display
name is chosen inside the class (free text, cleaned and capped by mnist_core.classes.clean_name);
names belong to one class, so joining another class asks again.

The Train page calls `membership()` at Start and tags the run with it (Executor.submit(class_code=,
student=)). Nothing here grants anything: cancelling or deleting still takes the run's owner token.
"""

from __future__ import annotations

from typing import Optional

import streamlit as st

from mnist_core import classes
from mnist_core.errors import MnistLabError
from app_pages._frame import set_cookie

CLASS_COOKIE = "mnist_lab_class"
CLASS_COOKIE_DAYS = 180
QUERY_PARAM = "class"
_CODE, _NAME = "class_code", "class_student"
_RESTORED, _LINK_SEEN = "class_restored", "class_link_seen"
_COOKIE_SENT, _LINK_ERROR = "class_cookie", "class_link_error"


def membership() -> tuple[Optional[str], Optional[str]]:
    """(class code, display name) of this browser's session; (None, None) outside any class. The name is
    None until the student has chosen one."""
    _restore()
    return st.session_state.get(_CODE), st.session_state.get(_NAME)


def join(code: str, name: Optional[str] = None) -> str:
    """Join a class (ClassError for a bad code or name); returns the code as stored. A name already
    chosen is kept when the class is the same, dropped for another class."""
    _restore()
    code = classes.check_code(code)
    cleaned = classes.clean_name(name) if name is not None and name.strip() else None
    if code != st.session_state.get(_CODE):
        st.session_state[_NAME] = None
    st.session_state[_CODE] = code
    if cleaned is not None:
        st.session_state[_NAME] = cleaned
    return code


def set_name(name: str) -> str:
    """Choose this browser's display name in its class (ClassError when it is empty after cleaning)."""
    st.session_state[_NAME] = cleaned = classes.clean_name(name)
    return cleaned


def leave() -> None:
    """Leave the class: this session, the cookie (on the next draw) and the link's parameter."""
    st.session_state[_CODE] = st.session_state[_NAME] = None
    st.session_state.pop(_LINK_SEEN, None)
    if QUERY_PARAM in st.query_params:
        del st.query_params[QUERY_PARAM]


def _restore() -> None:
    """Once per session: the membership the cookie remembers (untrusted: anything invalid is ignored)."""
    if st.session_state.get(_RESTORED):
        return
    st.session_state[_RESTORED] = True
    sent = st.context.cookies.get(CLASS_COOKIE)
    st.session_state[_COOKIE_SENT] = sent or ""
    code, name = classes.read_membership_cookie(sent)
    st.session_state.setdefault(_CODE, code)
    st.session_state.setdefault(_NAME, name)


def _from_link() -> None:
    """Join the class a link names (?class=CODE), once per link value in a session: so leaving while the
    parameter is still in the address bar does not join again on the next click."""
    wanted = st.query_params.get(QUERY_PARAM)
    if wanted is None or wanted == st.session_state.get(_LINK_SEEN):
        return
    st.session_state[_LINK_SEEN] = wanted
    try:
        join(wanted)
    except MnistLabError as exc:
        st.session_state[_LINK_ERROR] = str(exc)
    else:
        st.session_state.pop(_LINK_ERROR, None)


def _remember(code: Optional[str], name: Optional[str]) -> None:
    """Have the browser keep (or forget) the membership when it differs from what the cookie holds."""
    value = classes.membership_cookie(code, name)
    if value == st.session_state.get(_COOKIE_SENT):
        return
    st.session_state[_COOKIE_SENT] = value
    set_cookie(CLASS_COOKIE, value, CLASS_COOKIE_DAYS if value else 0)  # percent-encoded: safe in the script


def sidebar() -> None:
    """On every page: join from a link, keep the cookie in step, and say which class this browser is in."""
    _restore()
    _from_link()
    code, name = membership()
    with st.sidebar:
        _remember(code, name)
        if problem := st.session_state.pop(_LINK_ERROR, None):
            st.error(f"The link's class code was not used: {problem}")
        if code:
            with st.container(border=True, key="class_badge"):
                st.markdown(f"Class **{code}**" + (f" · as **{as_markdown(name)}**" if name else " · no name yet"))
                st.page_link("app_pages/classroom.py", label="Open the class", icon=":material/groups:")


def as_markdown(text: str) -> str:
    """A display name as Markdown shows it: literally (no links, emphasis or HTML from a name)."""
    return "".join("\\" + ch if ch in "\\`*_{}[]()<>#+-.!|~$:" else ch for ch in text)

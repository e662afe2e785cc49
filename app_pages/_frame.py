"""The frame around every page: the sidebar, who the visitor is, and the ways from one page to another.

app.py draws the frame on every rerun, before the page (Streamlit's entry file is the picture frame
around the pages):

- `sidebar()`: whether MNIST is on disk (fetched once per server on a hosted demo) and the runs in
  progress, live while any is; it also gives a first-time browser its owner cookie.
- `visitor_token()`: this browser's owner token, kept in a cookie. Runs it starts carry it, and only it
  may cancel or delete them; `run_heavy` bounds the heavy computations it asks for. `set_cookie` is
  how the frame (this token, and _class's membership) has the browser keep a cookie.
- `open_in_inside()`: the button that sends an image to the Inside the network page.
"""

from __future__ import annotations

import os
import re
import secrets

import streamlit as st
# The check every st call makes for a stop or rerun request, without drawing anything (Streamlit's own
# cache waits with it): a heavy job's wait polls it, so a closed tab stops the job at once.
from streamlit.runtime.scriptrunner_utils.script_run_context import get_run_yield_check

from mnist_core import data, heavy, live, registry
from mnist_core.errors import MnistLabError
from mnist_core.records import LIVE
from app_pages import _keys as keys
from app_pages._data import auto_fetch

SIDEBAR_POLL_SECONDS = 2.0
INSIDE_PAGE = "app_pages/inside.py"


# --- the sidebar ---------------------------------------------------------------------------------

def sidebar() -> None:
    """The shared sidebar: whether data is present, and runs in progress, live while any run is.

    It also gives a first-time browser its owner cookie (see visitor_token)."""
    with st.sidebar:
        st.caption("MNIST Lab · train and look inside small networks")
        _remember_visitor(visitor_token())
        if not data.is_present() and os.environ.get("MNIST_AUTO_FETCH") == "1":
            problem = auto_fetch()
            if problem:
                st.error(problem)
        if not data.is_present():
            st.warning("MNIST not downloaded", icon=":material/cloud_off:")
        try:
            any_live = bool(registry.list_runs(status=LIVE, limit=1))
        except MnistLabError as exc:
            st.error(live.for_visitor(str(exc)))
            return
        _sidebar_runs(any_live)


def _sidebar_runs(polling: bool) -> None:
    """Runs in progress with their progress bars. While any is live they sit in a fragment that redraws
    only itself every couple of seconds, and the whole page once when the last run ends (which stops
    the polling)."""

    @st.fragment(run_every=SIDEBAR_POLL_SECONDS if polling else None)
    def bars() -> None:
        try:
            in_progress = registry.list_runs(status=LIVE)  # all a place in line needs: the queue caps bound them
        except MnistLabError as exc:
            st.error(live.for_visitor(str(exc)))
            return
        for r in in_progress:
            p = live.short_progress(r, in_progress)
            st.progress(p.fraction, text=p.text)
        if polling and not in_progress:
            st.rerun()

    bars()


# --- who is this visitor -------------------------------------------------------------------------

VISITOR_COOKIE = "mnist_lab_visitor"
_TOKEN_FORMAT = re.compile(r"[A-Za-z0-9_-]{32}")  # what secrets.token_urlsafe(24) makes
VISITOR_COOKIE_DAYS = 365
_COOKIE_SAFE = re.compile(r"[A-Za-z0-9%._~-]*")  # what urllib.parse.quote(..., safe="") leaves, and our tokens


def visitor_token() -> str:
    """This browser's owner token: the runs it starts are recorded with it, and only it may cancel or
    delete them.

    A Streamlit session ends with the tab (and with every refresh), so the token lives in a cookie: a
    refresh or a new tab of the same browser sends it back, and another browser has its own. The
    cookie is untrusted input: anything but the format we make is ignored and replaced. Kept in
    session_state for the session.
    """
    token = st.session_state.get(keys.VISITOR_TOKEN)
    if token:
        return token
    sent = st.context.cookies.get(VISITOR_COOKIE)
    token = sent if isinstance(sent, str) and _TOKEN_FORMAT.fullmatch(sent) else secrets.token_urlsafe(24)
    st.session_state[keys.VISITOR_TOKEN] = token
    return token


def _remember_visitor(token: str) -> None:
    """Set the owner cookie in the browser when it did not send this token (a first visit)."""
    if st.context.cookies.get(VISITOR_COOKIE) == token:
        return
    set_cookie(VISITOR_COOKIE, token, VISITOR_COOKIE_DAYS)


def set_cookie(name: str, value: str, days: int) -> None:
    """Have the browser keep the cookie `name` for `days` (0 removes it).

    st.context.cookies is read-only: the browser sets the cookie itself, from a script. The value goes
    into that script's string, so it must be letters, digits and `%._~-` only (a token, or text through
    urllib.parse.quote(..., safe="")): anything else raises ValueError rather than reach the page.
    SameSite=Lax keeps the cookie off other sites' requests; Secure where the app is served over https.
    """
    if not _COOKIE_SAFE.fullmatch(value):
        raise ValueError(f"cookie {name}: the value must be percent-encoded")
    st.html(f"""<script>
document.cookie = "{name}={value}; Path=/; Max-Age={days * 86400}; SameSite=Lax"
  + (location.protocol === "https:" ? "; Secure" : "");
</script>""", unsafe_allow_javascript=True)


def run_heavy(fn, *args, **kwargs):
    """fn(*args, **kwargs) as this visitor's heavy computation (mnist_core.heavy): in a child process,
    at most one of theirs and MNIST_MAX_HEAVY on the server at once; BusyError, one line, over either.
    The wait checks for Streamlit's stop or rerun request, so when the visitor leaves or reruns the
    page the child is killed then and there (safe inside st.cache_data: nothing is drawn)."""
    return heavy.run(visitor_token(), fn, *args, poll=get_run_yield_check() or (lambda: None), **kwargs)


# --- from one page to another --------------------------------------------------------------------

def open_in_inside(source: dict, *, place=None, key: str | None = None, primary: bool = False) -> None:
    """The "Open in Inside the network" button (in `place`, a column or container; else where the page
    is): a click leaves `source` under keys.INSPECT_SOURCE ({"kind": "dataset", "split", "index"} or
    {"kind": "drawing"}) and switches to that page, which shows it."""
    if (place or st).button("Open in Inside the network", icon=":material/visibility:", key=key,
                            type="primary" if primary else "secondary"):
        st.session_state[keys.INSPECT_SOURCE] = source
        st.switch_page(INSIDE_PAGE)

"""A browser tab without a browser: Streamlit's websocket protocol, spoken from Python, for tests and benchmarks.

    async with Visitor(server.url, cookies={"mnist_lab_visitor": token}) as tab:
        view = await tab.open("train")                    # a page by its url path ("" = the default page)
        view.seconds, view.status, view.exceptions, view.alerts, view.widgets
        view = await tab.rerun(omit_widgets=True)         # the same page, sending no widget state at all
        view = await tab.rerun(forged={"cfg_epochs": 10**6, "Start training": True})  # by key or label
        await tab.dwell(5)                                # sit on the page 5 s, answering its polling fragments

What a Streamlit 1.67 browser does, and so does this client: it opens /_stcore/stream with the
subprotocol "streamlit" (a second entry, an XSRF token, only unlocks st.login's cookie, which this
app does not use), its cookies and its Origin; asks for a page with a BackMsg rerun_script, a
ClientState holding the query string, the page (its url path on the first load, its
page_script_hash, from the navigation message, after that), every widget's current value
(WidgetStates) and the tab's context (url, timezone, locale); then reads ForwardMsgs until
script_finished. A widget's current value is the one the server last drew (the client echoes it
back, as the browser's widget manager does), unless the caller forges it or omits them all. A
fragment with run_every (ForwardMsg auto_rerun) is rerun by the browser on a timer: dwell() does the
same, one request at a time. Custom components (the Draw canvas) have no frontend here, so they keep
their default value; forging one is forging its WidgetState.

A ForwardMsg the server would only reference by hash is never asked for: the client reports no
cached messages, so every run arrives whole. Nothing here depends on pytest.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from dataclasses import dataclass, field
from typing import Any

import websockets
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ClientState_pb2 import ClientState
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.proto.WidgetStates_pb2 import WidgetState

TIMEOUT_S = 120.0
DONE = {"FINISHED_SUCCESSFULLY", "FINISHED_FRAGMENT_RUN_SUCCESSFULLY", "FINISHED_WITH_COMPILE_ERROR"}
TEXT_ELEMENTS = ("markdown", "heading", "alert", "exception", "toast", "text", "code")


@dataclass
class Widget:
    id: str
    kind: str                  # the element's type: number_input, selectbox, button, ...
    label: str
    key: str | None            # the key= the page gave it
    state: WidgetState | None  # its value as drawn, None where this client cannot tell (or a button)


@dataclass
class PageView:
    """What one run of a page sent: how long it took and what a visitor would see."""
    page: str
    seconds: float = 0.0
    status: str = ""
    deltas: int = 0
    bytes: int = 0
    exceptions: list[str] = field(default_factory=list)       # "KeyError: <message>", one per exception box
    alerts: list[tuple[str, str]] = field(default_factory=list)  # (ERROR/WARNING/INFO/SUCCESS, body)
    texts: list[str] = field(default_factory=list)            # markdown, headings, captions, alerts, toasts
    widgets: dict[str, Widget] = field(default_factory=dict)  # by id

    def widget(self, name: str) -> Widget:
        """The widget with this key, else this label, else this id."""
        for w in self.widgets.values():
            if name in (w.key, w.label, w.id):
                return w
        raise KeyError(f"no widget {name!r} on {self.page or 'the default page'}")

    def shows(self, text: str) -> bool:
        return any(text in t for t in self.texts)


class Visitor:
    """One tab on a live server (http://host:port)."""

    def __init__(self, base_url: str, *, cookies: dict[str, str] | None = None, query_string: str = "",
                 timeout: float = TIMEOUT_S):
        self.base_url = base_url.rstrip("/")
        self.cookies = dict(cookies or {})
        self.query_string = query_string
        self.timeout = timeout
        self.pages: dict[str, str] = {}          # url path -> page_script_hash, from the navigation message
        self.titles: dict[str, str] = {}         # url path -> title
        self.page = ""                           # the url path of the page shown
        self.fragments: dict[str, float] = {}    # run_every fragments on the page shown: id -> seconds
        self.widgets: dict[str, Widget] = {}     # what the last full run drew
        self._ws = None

    async def __aenter__(self) -> "Visitor":
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())} if self.cookies else None
        self._ws = await websockets.connect(
            self.base_url.replace("http", "ws", 1) + "/_stcore/stream", subprotocols=["streamlit"],
            origin=self.base_url, additional_headers=headers, max_size=None, open_timeout=self.timeout)
        return self

    async def __aexit__(self, *exc) -> None:
        await self._ws.close()

    # --- what a visitor does ------------------------------------------------------------------

    async def open(self, page: str = "", *, forged: dict[str, Any] | None = None,
                   omit_widgets: bool = False) -> PageView:
        """Ask for a page (url path or title; "" = the default) as a click in the sidebar does.

        forged: widget values to send instead of the drawn ones, by key, label or id (a WidgetState
        is sent as it is); omit_widgets: send no widget state at all. On a server nobody has visited
        yet, open "" first: until the root page has run once, Streamlit 1.67 runs a deep-linked page
        on its own, without app.py's navigation."""
        page = self._url_path(page)
        state = self._client_state(page, forged, omit_widgets)
        self.page = page
        return await self._run(state, page)

    async def rerun(self, *, forged: dict[str, Any] | None = None, omit_widgets: bool = False) -> PageView:
        """Run the page shown again: a widget change (forged) or any rerun the browser asks for."""
        return await self._run(self._client_state(self.page, forged, omit_widgets), self.page)

    async def dwell(self, seconds: float) -> list[PageView]:
        """Stay on the page: rerun each run_every fragment when it is due, as the browser's timers do."""
        due = {fid: time.monotonic() + every for fid, every in self.fragments.items()}
        views, end = [], time.monotonic() + seconds
        while due:
            fid, at = min(due.items(), key=lambda item: item[1])
            if at > end:
                break
            await asyncio.sleep(max(0.0, at - time.monotonic()))
            state = self._client_state(self.page, None, False)
            state.fragment_id, state.is_auto_rerun = fid, True
            views.append(await self._run(state, self.page))
            now = time.monotonic()  # a full rerun (a fragment's st.rerun) may have changed the fragments
            due = {f: due.get(f, now + every) for f, every in self.fragments.items()}
            if fid in due:
                due[fid] = time.monotonic() + self.fragments[fid]
        await asyncio.sleep(max(0.0, end - time.monotonic()))
        return views

    # --- the protocol -------------------------------------------------------------------------

    def _url_path(self, page: str) -> str:
        for path, title in self.titles.items():
            if page == title:
                return path
        return page

    def _client_state(self, page: str, forged: dict[str, Any] | None, omit_widgets: bool) -> ClientState:
        state = ClientState(query_string=self.query_string)
        if page in self.pages:
            state.page_script_hash = self.pages[page]
        else:
            state.page_name = page  # the first load: the server finds the page by its url path
        url = f"{self.base_url}/{page}" + (f"?{self.query_string}" if self.query_string else "")
        state.context_info.url, state.context_info.timezone, state.context_info.locale = url, "UTC", "en-US"
        if omit_widgets:
            return state
        # Every widget drawn last, even on a page switch (the browser sends the page it leaves; Streamlit
        # drops what the new page does not draw).
        sent = {wid: w.state for wid, w in self.widgets.items() if w.state is not None}
        for name, value in (forged or {}).items():
            if isinstance(value, WidgetState):  # sent as it is: any id, any field
                sent[value.id] = value
                continue
            w = next((w for w in self.widgets.values() if name in (w.key, w.label, w.id)), None)
            sent[w.id if w else name] = widget_state(w.id if w else name, value, w.kind if w else "")
        state.widget_states.widgets.extend(sent.values())
        return state

    async def _run(self, state: ClientState, page: str) -> PageView:
        view = PageView(page=page)
        started = time.perf_counter()
        await self._ws.send(BackMsg(rerun_script=state).SerializeToString())
        drawn: dict[str, Widget] = {}
        full_run = not state.fragment_id  # a fragment's st.rerun makes it one
        while True:
            raw = await asyncio.wait_for(self._ws.recv(), timeout=self.timeout)
            msg = ForwardMsg()
            msg.ParseFromString(raw)
            view.bytes += len(raw)
            kind = msg.WhichOneof("type")
            if kind == "navigation":
                self.pages = {p.url_pathname: p.page_script_hash for p in msg.navigation.app_pages}
                self.titles = {p.url_pathname: p.page_name for p in msg.navigation.app_pages}
                self.fragments.clear()  # a full run: the page's fragments register again
                full_run = True
            elif kind == "auto_rerun":
                self.fragments[msg.auto_rerun.fragment_id] = msg.auto_rerun.interval
            elif kind == "delta" and msg.delta.WhichOneof("type") == "new_element":
                view.deltas += 1
                _read_element(msg.delta.new_element, view, drawn)
            elif kind == "delta":
                view.deltas += 1
            elif kind == "script_finished":
                view.status = ForwardMsg.ScriptFinishedStatus.Name(msg.script_finished)
                if view.status in DONE:
                    break  # FINISHED_EARLY_FOR_RERUN (st.rerun, or a newer request): the next run answers
        view.seconds = time.perf_counter() - started
        view.widgets = drawn
        if full_run:
            self.widgets = drawn
        else:
            self.widgets.update(drawn)
        return view


def _read_element(element, view: PageView, drawn: dict[str, Widget]) -> None:
    kind = element.WhichOneof("type")
    body = getattr(element, kind)
    if kind == "exception":
        view.exceptions.append(f"{body.type}: {body.message}")
    if kind == "alert":
        view.alerts.append((type(body).Format.Name(body.format), body.body))
    if kind in TEXT_ELEMENTS:
        view.texts.extend(str(getattr(body, f)) for f in ("body", "message", "type") if hasattr(body, f))
    widget_id = getattr(body, "id", "")
    if isinstance(widget_id, str) and widget_id.startswith("$$ID-"):
        key = widget_id.split("-", 2)[2]
        drawn[widget_id] = Widget(widget_id, kind, getattr(body, "label", ""), None if key == "None" else key,
                                  _drawn_state(kind, body))


def _drawn_state(kind: str, w) -> WidgetState | None:
    """The value a browser holds for a widget it has just drawn (its set value, else its default)."""
    s = WidgetState(id=w.id)
    if kind == "number_input":
        if not (w.set_value and w.HasField("value")) and not w.HasField("default"):
            return None
        value = w.value if w.set_value and w.HasField("value") else w.default
        if w.data_type == type(w).DataType.INT:
            s.int_value = int(value)
        else:
            s.double_value = value
    elif kind in ("selectbox", "radio"):
        if w.set_value and w.HasField("raw_value"):
            s.string_value = w.raw_value
        elif w.HasField("default") and 0 <= w.default < len(w.options):
            s.string_value = w.options[w.default]
        else:
            return None
    elif kind in ("text_input", "text_area"):
        if not (w.HasField("value") or w.HasField("default")):
            return None
        s.string_value = w.value if w.set_value and w.HasField("value") else w.default
    elif kind == "checkbox":
        s.bool_value = w.value if w.set_value else w.default
    elif kind == "multiselect":
        s.string_array_value.data.extend(w.raw_values if w.set_value else [w.options[i] for i in w.default])
    elif kind == "slider" and not w.options:
        s.double_array_value.data.extend(w.value if w.set_value else w.default)
    else:
        return None  # buttons (no value between clicks), tables, charts, custom components
    return s


def widget_state(widget_id: str, value: Any, kind: str = "") -> WidgetState:
    """A forged WidgetState: a click for a button, else the value in the field its Python type names."""
    if isinstance(value, WidgetState):
        return value
    s = WidgetState(id=widget_id)
    if kind == "button":
        s.trigger_value = bool(value)
    elif isinstance(value, bool):
        s.bool_value = value
    elif isinstance(value, int):
        s.int_value = value
    elif isinstance(value, float):
        s.double_value = value
    elif isinstance(value, str):
        s.string_value = value
    elif isinstance(value, bytes):
        s.bytes_value = value
    elif isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        s.string_array_value.data.extend(value)
    elif isinstance(value, (list, tuple)):
        s.double_array_value.data.extend(float(v) for v in value)
    else:
        raise TypeError(f"cannot send a {type(value).__name__} as a widget value")
    return s


async def visit(base_url: str, pages: list[str], **visitor_args) -> list[PageView]:
    """One visitor opening each page in turn."""
    async with Visitor(base_url, **visitor_args) as tab:
        return [await tab.open(p) for p in pages]


def run_sync(coroutine):
    """asyncio.run(coroutine) from synchronous code, in a thread of its own when this thread already
    runs an event loop (Playwright's sync API leaves one running in a test session that used it)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def visit_sync(base_url: str, pages: list[str], **visitor_args) -> list[PageView]:
    return run_sync(visit(base_url, pages, **visitor_args))


__all__ = ["PageView", "Visitor", "Widget", "visit", "visit_sync", "widget_state"]

"""A hostile client on the websocket: forged or missing widget states never put an error box on a page.

The client is harness/ws_visitor.py: it speaks Streamlit's own protocol to a live
server as a browser does, but sends the widget states it likes: none at all, a value under a made-up
id (a widget's key instead of its id), a value in another field than its widget reads, a Preset no
browser offers. Each test does what the attacker did after a first visit to Train, then asks for the
page again with no widget states (the attacker's next request); every answer must be the whole page,
with no exception box and no KeyError anywhere.
"""

from __future__ import annotations

import secrets

import pytest
from streamlit.proto.WidgetStates_pb2 import WidgetState

from harness.ws_visitor import PageView, Visitor, run_sync

CUSTOM = "(custom)"  # the Preset box's first choice: the form as it is


@pytest.fixture(scope="module")
def server(live_app):
    """conftest's live server, visited once at its root: until the root page has run, Streamlit 1.67
    would run a deep-linked page without app.py's navigation."""
    run_sync(_visit(live_app.url, ""))
    return live_app


async def _visit(url: str, page: str) -> PageView:
    async with Visitor(url) as tab:
        return await tab.open(page)


def attack(server, *forged: dict, then: str | None = None) -> list[PageView]:
    """A visitor opens Train, sends each forged request, then reruns with no widget states (and opens
    `then`, another page, with none either). Every page view, the first included."""
    async def go() -> list[PageView]:
        cookie = {"mnist_lab_visitor": secrets.token_urlsafe(24)}  # a token of the form the app makes
        async with Visitor(server.url, cookies=cookie) as tab:
            views = [await tab.open("train")]
            for request in forged:
                views.append(await tab.rerun(forged=request))
            views.append(await tab.rerun(omit_widgets=True))
            if then is not None:
                views.append(await tab.open(then, omit_widgets=True))
            return views
    return run_sync(go())


def assert_whole(view: PageView, widget: str = "Start training") -> None:
    assert view.status == "FINISHED_SUCCESSFULLY"
    assert view.exceptions == [], f"{view.page}: an exception box: {view.exceptions}"
    assert not [t for t in view.texts if "KeyError" in t], view.page
    view.widget(widget)  # drawn to the end, not cut short by an error


def test_a_client_that_omits_widget_states_sees_the_whole_train_page(server):
    first, again = attack(server)
    assert_whole(first)
    assert_whole(again)
    assert again.widget("preset").state.string_value == CUSTOM


def test_a_preset_no_browser_offers_leaves_the_form_as_it_was(server):
    first, forged, again = attack(server, {"preset": "no-such-recipe"})
    for view in (forged, again):
        assert_whole(view)
        assert view.widget("preset").state.string_value == CUSTOM
        assert view.widget("cfg_lr").state == first.widget("cfg_lr").state


def test_a_widget_state_under_a_made_up_id_breaks_no_page(server):
    # A client that names widgets by their key ("preset"), or by anything but Streamlit's "$$ID-..." ids.
    made_up = {"preset": WidgetState(id="preset", string_value="fast"),
               "x": WidgetState(id="x' OR 1=1", int_value=1)}
    *views, home = attack(server, made_up, then="")
    for view in views:
        assert_whole(view)
    assert_whole(home, widget="home_join")  # Home's last widget


def test_a_value_in_another_field_than_its_widget_reads_is_ignored(server):
    # A string for the learning rate (a number input), a number for the Preset (a selectbox).
    first, forged, again = attack(server, {"cfg_lr": "0.1; DROP TABLE runs", "preset": 3})
    for view in (forged, again):
        assert_whole(view)
        assert view.widget("cfg_lr").state == first.widget("cfg_lr").state
        assert view.widget("preset").state.string_value == CUSTOM

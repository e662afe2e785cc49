"""Your runs stay yours: after a refresh and in a new tab of the same browser you can still cancel the
run you started, and another visitor (another browser) cannot.

Each test starts a long run and cancels it (train_page.LONG), so none depends on how fast the
machine trains.
"""

import re
import time

import pytest
from playwright.sync_api import expect

from train_page import LONG, cancel, cancel_button, no_run_left_going, run_heading, run_ids, start  # noqa: F401 (no_run_left_going: a fixture)

pytestmark = [pytest.mark.timeout(300), pytest.mark.usefixtures("no_run_left_going")]


def test_after_a_refresh_you_can_still_cancel_your_run(app):
    app.goto("train")
    run_id = start(app, LONG)
    expect(cancel_button(app, run_id)).to_be_enabled()

    app.page.reload()  # F5: a new Streamlit session
    app.wait_idle(timeout=60_000)
    expect(run_heading(app, run_id, "(queued|starting|running)")).to_be_visible()
    expect(cancel_button(app, run_id)).to_be_enabled()
    cancel(app, run_id)
    app.assert_no_exception()


def test_a_new_tab_of_the_same_browser_can_cancel_your_run(app):
    app.goto("train")
    run_id = start(app, LONG)

    tab = app.new_tab()
    tab.goto("train")
    expect(run_heading(tab, run_id, "(queued|starting|running)")).to_be_visible()
    expect(cancel_button(tab, run_id)).to_be_enabled()
    cancel(tab, run_id)
    tab.assert_no_exception()


def test_another_visitor_cannot_cancel_your_run(app, new_app, app_server):
    app.goto("train")
    run_id = start(app, LONG)

    stranger = new_app(app_server)  # another browser: its own cookies
    stranger.goto("train")
    expect(run_heading(stranger, run_id, "(queued|starting|running)")).to_be_visible()  # anyone may watch it
    expect(cancel_button(stranger, run_id)).to_be_disabled()

    cancel(app, run_id)  # the owner still can
    stranger.assert_no_exception()


def test_a_browser_gets_a_lasting_owner_cookie_and_a_malformed_one_is_replaced(app):
    context = app.page.context
    context.add_cookies([{"name": "mnist_lab_visitor", "value": "..%2F..%2Fforged%22token", "url": app.base_url}])
    app.goto("train")

    def owner_cookie():
        return next((c for c in context.cookies(app.base_url) if c["name"] == "mnist_lab_visitor"), None)

    cookie = app.wait_for(lambda: (c := owner_cookie()) and re.fullmatch(r"[A-Za-z0-9_-]{32}", c["value"]) and c,
                          "a well-formed owner cookie")
    assert cookie["path"] == "/" and cookie["sameSite"] == "Lax"
    assert cookie["expires"] - time.time() > 300 * 86400  # survives closing the browser, for a year
    app.assert_no_exception()


def test_a_new_tab_does_not_get_around_the_per_visitor_queue_cap(app):
    # MNIST_MAX_QUEUED_PER_OWNER is 3 by default: the cap counts this browser's runs, not this tab's
    app.goto("train")
    started = [start(app, LONG)]
    for _ in range(2):  # one trains, the others wait in line (one training slot)
        app.button("Start training").click()
        app.wait_for(lambda started=started: len(set(run_ids(app)) - set(started)) == 1,
                     "the next run's live panel", 60)
        started += list(set(run_ids(app)) - set(started))

    tab = app.new_tab()
    tab.goto("train")
    tab.button("Start training").click()
    # (the Sweep tab beside the form says in its own words why no sweep fits either)
    expect(tab.page.get_by_test_id("stAlertContentError").filter(has_text="run(s) queued or running")).to_contain_text(
        "you already have 3 run(s) queued or running")
    tab.assert_no_exception()

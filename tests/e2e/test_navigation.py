"""Every page opens from the sidebar navigation, draws its title and shows no exception box; Home's
status columns and page links are there."""

import re

import pytest
from playwright.sync_api import expect

EXPECTED_PAGES = ["Home", "Dataset", "Train", "Inside the network", "Draw"]

pytestmark = pytest.mark.timeout(240)


def test_every_page_opens_from_the_sidebar(app):
    app.goto()
    expect(app.title("MNIST Lab")).to_be_visible()
    app.assert_no_exception()

    links = app.page.get_by_test_id("stSidebarNavLink")
    expect(links.first).to_be_visible()
    labels = [t.split("\n")[-1].strip() for t in links.all_inner_texts()]
    missing = [p for p in EXPECTED_PAGES if p not in labels]
    assert not missing, f"pages missing from the sidebar: {missing} (it has {labels})"

    # Every page but Home, then back Home; each one checked by App.nav (URL, title, no stException).
    for label in [*labels[1:], labels[0]]:
        app.nav(label)
        expect(app.nav_link(label)).to_have_attribute("aria-current", "page")


def test_home_shows_status_and_links(app):
    app.goto()
    expect(app.title("MNIST Lab")).to_be_visible()
    expect(app.heading("^Status$")).to_be_visible()
    main = app.page.get_by_test_id("stMain")
    expect(main.get_by_text("MNIST is downloaded")).to_be_visible()
    expect(main.get_by_text(re.compile(r"\d+ checkpoint\(s\) ready"))).to_be_visible()
    # a committed default checkpoint, listed (exactly: a run's own lenet5-<run id> may be listed too)
    expect(main.get_by_text("lenet5", exact=True)).to_be_visible()
    expect(main.get_by_text(re.compile(r"No run in progress|run\(s\) in progress"))).to_be_visible()

    page_links = main.get_by_test_id("stPageLink")
    expect(page_links).to_have_count(7)  # every page but Home itself
    app.assert_no_exception()
    app.screenshot("home")

    # A "Where to go" link opens its page.
    page_links.filter(has_text="Draw").get_by_role("link").click()
    expect(app.page).to_have_url(re.compile(r"/draw/?$"))
    expect(app.title("Draw")).to_be_visible(timeout=60_000)
    app.wait_idle()
    app.assert_no_exception()


def test_deep_link_on_a_fresh_server(new_app, fresh_server):
    """A bookmark to /train, the first request after a server start, still gets the app's navigation."""
    app = new_app(fresh_server)
    app.goto("train")
    expect(app.title("Train")).to_be_visible()
    links = app.page.get_by_test_id("stSidebarNavLink")
    expect(links.first).to_be_visible()
    labels = [t.split("\n")[-1].strip() for t in links.all_inner_texts()]
    assert labels[:len(EXPECTED_PAGES)] == EXPECTED_PAGES, f"the sidebar lists {labels}"

"""Home, in a browser: /home opens it (a link or bookmark to it must not say "Page not found"), and its
"Where to go" links every other page."""

import re

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.timeout(180)


def test_the_home_address_opens_home(app):
    app.goto("home")
    expect(app.title("MNIST Lab")).to_be_visible()
    expect(app.page.get_by_text("Page not found")).to_have_count(0)
    expect(app.nav_link("Home")).to_have_attribute("aria-current", "page")
    app.assert_no_exception()


def test_where_to_go_links_every_other_page(app):
    app.goto()
    links = app.page.get_by_test_id("stMain").get_by_test_id("stPageLink")
    expect(links).to_have_count(7)
    assert [t.split("\n")[-1].strip() for t in links.all_inner_texts()] == [
        "Dataset", "Train", "Inside the network", "Draw", "Evaluate", "Explain", "Class"]
    links.filter(has_text="Explain").get_by_role("link").click()
    expect(app.page).to_have_url(re.compile(r"/explain/?$"))
    expect(app.title("Explain")).to_be_visible(timeout=60_000)

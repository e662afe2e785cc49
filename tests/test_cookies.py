"""Cookies the app has the browser keep (app_pages._frame.set_cookie: the owner token, the class
membership). The browser sets them from a script the page sends, so the value is written into that
script's string: only percent-encoded text may get there."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from app_pages._frame import set_cookie


def _page_keeping_a_cookie():
    from app_pages._frame import set_cookie  # AppTest runs this function's body alone, as a script

    set_cookie("mnist_lab_class", "%7B%22code%22%3A%20%22ab12%22%7D", 2)


def test_the_browser_is_told_to_keep_the_cookie_for_its_days_on_this_site_only():
    at = AppTest.from_function(_page_keeping_a_cookie, default_timeout=30).run()
    assert not at.exception
    script = at.get("html")[0].proto.body
    assert 'document.cookie = "mnist_lab_class=%7B%22code%22%3A%20%22ab12%22%7D; Path=/; Max-Age=172800; ' \
           'SameSite=Lax"' in script


@pytest.mark.parametrize("value", ['x"; document.location = "//elsewhere', "two words", "</script>"])
def test_a_value_that_could_leave_the_script_string_is_refused(value):
    with pytest.raises(ValueError):
        set_cookie("mnist_lab_class", value, 1)

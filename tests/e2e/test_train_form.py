"""The Train form, in a browser: a wrong value is kept as typed, explained next to its field and blocks
Start; once fixed, the run uses exactly what the form shows. On a phone the fields that matter come
first and Start is near the top."""

import re

import pytest
from playwright.sync_api import expect

from mnist_core import registry
from mnist_core.training import TrainConfig

from train_page import (LONG, cancel, cancel_button, fill, no_run_left_going,  # noqa: F401 (a fixture)
                        run_heading, start)

pytestmark = [pytest.mark.timeout(300), pytest.mark.usefixtures("no_run_left_going")]
RUNS_PAGE = 25  # rows of the Train page's runs table


@pytest.fixture
def others(server_runs_dir):
    """Run ids a test adds to the server's registry; deleted after it."""
    made = []
    yield made
    for run_id in made:
        registry.delete_run(run_id, root=server_runs_dir)


def test_typing_learning_rate_0_blocks_start_until_fixed_and_the_run_uses_the_form(app):
    app.goto("train")
    app.number("learning rate", 0)
    app.wait_idle()
    lr_box = app.widget("stNumberInput", "learning rate").locator("input")
    expect(lr_box).to_have_value("0")  # kept as typed, not put back to the last valid value
    expect(app.page.get_by_text("learning rate must be above 0", exact=True)).to_be_visible()
    expect(app.button("Start training")).to_be_disabled()

    fill(app, {"learning rate": 0.01})
    expect(app.page.get_by_text("learning rate must be above 0", exact=True)).to_have_count(0)
    run_id = start(app, LONG)
    config = app.page.get_by_text(re.compile(r"^Config: model lenet5"))
    expect(config).to_contain_text("Config: model lenet5 · learning rate 0.01 · epochs 50 · batch size 32 · ")
    expect(config).to_contain_text("· CPU threads 1 ·")
    cancel(app, run_id)
    app.assert_no_exception()


def test_the_form_shows_its_values_when_its_first_run_is_cut_short_by_another(app):
    """A page's first run can be replaced by a second before it has drawn the form: a polling
    fragment's rerun crossing the page switch does that (arriving from the Class page, say). The form
    must still show its values, not the widgets' blank defaults (model mlp-50, learning rate 0, Start
    disabled)."""
    app.goto("")
    for _ in range(3):
        app.nav_while_rerunning("Train")
        expect(app.widget("stSelectbox", "model").locator("input")).to_have_value("lenet5")
        expect(app.widget("stNumberInput", "learning rate").locator("input")).to_have_value("0.003")
        expect(app.widget("stNumberInput", "batch size").locator("input")).to_have_value("32")
        expect(app.button("Start training")).to_be_enabled()
        app.nav("Home")
    app.assert_no_exception()


def test_on_a_phone_the_train_form_puts_the_main_fields_and_start_first(phone_app, server_runs_dir, others):
    app = phone_app
    app.goto("train")
    expect(app.title("Train")).to_be_visible()
    order = [app.widget("stSelectbox", "Preset"), app.widget("stSelectbox", "model"),
             app.widget("stNumberInput", "learning rate"), app.widget("stNumberInput", "epochs"),
             app.widget("stNumberInput", "batch size"), app.button("Start training")]
    tops = [locator.bounding_box()["y"] for locator in order]
    assert tops == sorted(tops), f"top edges down the page: {tops}"
    viewport = app.page.viewport_size["height"]
    assert tops[-1] < 2 * viewport, f"Start is {tops[-1] / viewport:.1f} screens down"
    # the rest waits, folded, under "Advanced"
    expect(app.widget("stNumberInput", "validation images")).to_be_hidden()

    # after Start the run's heading is at the top of the screen with its Cancel and progress under it, none
    # of them under Streamlit's header bar or the "Started run" toast, which on a phone sit over the top of
    # the screen. (A page long enough below the run to scroll it to the very top: a page of runs.)
    for _ in range(RUNS_PAGE):
        others.append(registry.create_run(TrainConfig(epochs=1, train_size=1000).to_dict(), root=server_runs_dir))
        registry.finish_run(others[-1], "cancelled", root=server_runs_dir)
    app.goto("train")
    run_id = start(app, LONG)
    head, cancel_it = run_heading(app, run_id, "(queued|starting|running)"), cancel_button(app, run_id)
    progress = app.page.locator(".st-key-live_panel").get_by_test_id("stProgress").first
    expect(head).to_be_in_viewport(ratio=1)
    app.wait_for(lambda: head.bounding_box()["y"] < 0.25 * viewport, "the run heading at the top of the screen")
    # (the page puts the heading back when the toast appears: wait for it to settle, then check)
    covers = lambda: [app.page.get_by_test_id("stHeader"), *app.page.get_by_test_id("stToast").all()]  # noqa: E731
    app.wait_for(lambda: not any(overlap(head.bounding_box(), c.bounding_box()) for c in covers()),
                 "the run heading clear of the header bar and the toast")
    for what, locator in (("the run heading", head), ("Cancel", cancel_it), ("the progress", progress)):
        expect(locator).to_be_in_viewport(ratio=1)
        for cover in covers():
            assert not overlap(locator.bounding_box(), cover.bounding_box()), \
                f"{what} is under {cover.get_attribute('data-testid')}"
    cancel(app, run_id)
    app.assert_no_exception()


def overlap(a: dict | None, b: dict | None) -> bool:
    """Whether two bounding boxes (Playwright's: x, y, width, height) share any area."""
    return bool(a and b and a["x"] < b["x"] + b["width"] and b["x"] < a["x"] + a["width"]
                and a["y"] < b["y"] + b["height"] and b["y"] < a["y"] + a["height"])


def test_a_wrong_value_under_advanced_is_shown_and_fixing_it_keeps_advanced_open(app):
    """A sentence next to a field must never hide in a closed expander while Start stays disabled, and
    fixing the field must not fold the section away under the person's cursor."""
    app.goto("train")
    app.page.get_by_text("Advanced: optimizer, schedule, data, validation, device").click()
    val_box = app.widget("stNumberInput", "validation images").locator("input")
    expect(val_box).to_be_visible()
    app.number("validation images", 60000)
    app.wait_idle()
    # the red sentence next to the field (the Sweep tab, hidden beside the form, says it in its own words)
    said = app.page.locator(".stMarkdownColoredText").filter(has_text=re.compile("validation images must be at most"))
    expect(said).to_be_visible()
    expect(app.button("Start training")).to_be_disabled()

    app.number("validation images", 2000)
    app.wait_idle()
    expect(said).to_have_count(0)
    expect(val_box).to_be_visible()  # Advanced is still open
    expect(app.button("Start training")).to_be_enabled()
    app.assert_no_exception()

"""The visitors' drawing set in a browser: a digit drawn with the mouse, its label corrected, added to the
set, seen in Dataset as "mine" and removed from there; and a second browser (its own owner cookie) that
sees the drawing but cannot remove it."""

import re

import pytest
from playwright.sync_api import expect

from mnist_core import drawings

pytestmark = pytest.mark.timeout(240)

SIZE = 280  # the canvas, in its own pixels


def one() -> list[tuple[float, float]]:
    """A vertical stroke down the middle."""
    return [(SIZE / 2, 40 + 10 * i) for i in range(21)]


def seven() -> list[tuple[float, float]]:
    """A seven in one stroke: across the top, then down to the left."""
    return [(70 + 7 * i, 60) for i in range(21)] + [(210 - 5 * i, 60 + 9 * i) for i in range(1, 21)]


def give(app, points, digit: int) -> None:
    """Draw with the mouse, say which digit it really is, and add it to the set."""
    app.goto("draw")
    expect(app.metric_value("Prediction")).to_have_text("–")
    app.draw(points)
    expect(app.metric_value("Prediction")).not_to_have_text("–")
    app.wait_idle()
    app.page.get_by_test_id("stButtonGroup").locator("button").filter(
        has_text=re.compile(rf"^\s*(Yes, )?{digit}\s*$")).click()
    app.wait_idle()
    app.button("Add to the drawing set").click()
    expect(app.page.get_by_text(f"Added to the drawing set as a {digit}")).to_be_visible()
    app.assert_no_exception()


def open_the_drawings(app, mine: bool = False) -> None:
    app.nav("Dataset")
    app.page.get_by_test_id("stRadio").get_by_text("visitors' drawings").click()
    app.wait_idle()
    if mine:
        app.page.get_by_test_id("stCheckbox").filter(has_text="Mine").locator("label").click()
        app.wait_idle()
    app.assert_no_exception()


def test_a_mouse_drawing_corrected_and_added_is_mine_in_dataset_and_i_can_remove_it(app, server_runs_dir):
    give(app, one(), digit=7)  # a "one" the visitor says is a 7: the label is the visitor's
    [kept] = [d for d in drawings.list_drawings(server_runs_dir) if d.digit == 7 and d.predicted == 1]
    assert kept.pointer == "mouse"
    times = [t for stroke in kept.strokes for _, _, t in stroke]
    assert len(kept.strokes) == 1 and len(times) >= 10 and times == sorted(times)
    assert all(0 <= x <= SIZE and 0 <= y <= SIZE for stroke in kept.strokes for x, y, _ in stroke)

    open_the_drawings(app, mine=True)
    expect(app.heading(rf"Drawing {kept.id} · a 7")).to_be_visible()
    expect(app.page.get_by_text(re.compile(r"of 1 drawings from this browser"))).to_be_visible()
    app.button("Remove my drawing").click()
    expect(app.page.get_by_text(f"Drawing {kept.id} is removed from the set.")).to_be_visible()
    app.assert_no_exception()
    assert kept.id not in [d.id for d in drawings.list_drawings(server_runs_dir)]


def test_another_browser_sees_my_drawing_but_cannot_remove_it(app, new_app, app_server, server_runs_dir):
    give(app, seven(), digit=7)
    newest = drawings.list_drawings(server_runs_dir, newest_first=True, limit=1)[0]

    stranger = new_app(app_server)  # another browser: its own owner cookie
    stranger.goto("")
    open_the_drawings(stranger)
    expect(stranger.heading(rf"Drawing {newest.id} · a 7")).to_be_visible()  # the newest is shown first
    expect(stranger.button("Remove my drawing")).to_have_count(0)
    stranger.page.get_by_test_id("stCheckbox").filter(has_text="Mine").locator("label").click()
    expect(stranger.page.get_by_text("No drawings from this browser yet", exact=False)).to_be_visible()
    stranger.assert_no_exception()

    open_the_drawings(app, mine=True)  # the giver still can
    expect(app.heading(rf"Drawing {newest.id} · a 7")).to_be_visible()
    app.button("Remove my drawing").click()
    expect(app.page.get_by_text(f"Drawing {newest.id} is removed from the set.")).to_be_visible()
    assert newest.id not in [d.id for d in drawings.list_drawings(server_runs_dir)]


def test_a_drawing_kept_while_another_page_was_open_is_given_with_its_strokes(app, server_runs_dir):
    app.goto("draw")
    app.draw(seven())
    expect(app.metric_value("Prediction")).not_to_have_text("–")
    app.wait_idle()
    app.nav("Inside the network")
    app.nav("Draw")
    expect(app.metric_value("Prediction")).not_to_have_text("–")  # the drawing came back with the canvas
    app.page.get_by_test_id("stButtonGroup").locator("button").filter(has_text=re.compile(r"^\s*4\s*$")).click()
    app.wait_idle()
    app.button("Add to the drawing set").click()
    expect(app.page.get_by_text("Added to the drawing set as a 4")).to_be_visible()
    [kept] = [d for d in drawings.list_drawings(server_runs_dir) if d.digit == 4]
    assert len(kept.strokes) == 1 and len(kept.strokes[0]) >= 10 and kept.pointer == "mouse"
    drawings.delete_drawing(kept.id, root=server_runs_dir)  # the operator tidies up: the next test draws a seven too

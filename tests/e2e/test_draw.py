"""Draw: a vertical stroke reads 1, a loop reads 0, and Clear empties the canvas and the prediction."""

import math

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.timeout(240)

SIZE = 280  # the canvas, in CSS pixels


def one() -> list[tuple[float, float]]:
    """A vertical stroke down the middle."""
    return [(SIZE / 2, 40 + 10 * i) for i in range(21)]


def zero() -> list[tuple[float, float]]:
    """An upright ellipse, closed with a little overlap."""
    n = 40
    return [(SIZE / 2 + 70 * math.sin(2 * math.pi * k / n), SIZE / 2 - 100 * math.cos(2 * math.pi * k / n))
            for k in range(n + 3)]


def ink(app) -> int:
    """How many pixels of the drawing canvas hold ink (fabric.js draws the strokes on the lower canvas)."""
    return app.page.locator("canvas.dc-canvas.lower-canvas").evaluate(
        """c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                  let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0 && d[i - 1] > 128) n++; return n; }""")


def test_draw_one_then_zero_and_clear(app):
    app.goto("draw")
    expect(app.title("Draw")).to_be_visible()
    expect(app.widget("stSelectbox", "Model").locator("input")).to_have_value("lenet5")
    prediction = app.metric_value("Prediction")
    expect(prediction).to_have_text("–")
    expect(app.canvas()).to_be_visible()

    app.draw(one())
    expect(prediction).to_have_text("1")
    app.wait_idle()
    app.assert_no_exception()
    expect(app.page.get_by_test_id("stMetric").filter(has_text="Prediction")).to_contain_text("confidence")

    app.button("Clear").click()
    expect(prediction).to_have_text("–")
    app.wait_idle()
    expect(app.canvas()).to_have_count(1)
    assert ink(app) == 0, "Clear left ink on the canvas"

    app.draw(zero())
    expect(prediction).to_have_text("0")
    app.wait_idle()
    app.assert_no_exception()
    assert ink(app) > 0
    app.screenshot("draw")

    app.button("Clear").click()
    expect(prediction).to_have_text("–")
    app.wait_idle()
    assert ink(app) == 0, "Clear left ink on the canvas"
    app.assert_no_exception()

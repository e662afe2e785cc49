"""On a phone (Pixel 7: touch, mobile viewport) a tap on a chart selects what a click there selects: a digit
of the Dataset grid, a cell of the confusion matrix, a point of the Explain map.

Each tap is a real touch (touchstart, touchend: no mouse, so no hover before it), at a place computed from
plotly.js's own axis mapping, after the chart is scrolled into view.
"""

import re

import numpy as np
import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.timeout(300)

CELL = 29  # the Dataset grid: a 28-pixel digit and its one-pixel seam, in the figure's data coordinates


def on_screen(chart, x: float, y: float) -> tuple[float, float]:
    """Where the data point (x, y) of the chart's first subplot is in the viewport."""
    return tuple(chart.evaluate("""(g, [x, y]) => {
        const xa = g._fullLayout.xaxis, ya = g._fullLayout.yaxis, box = g.getBoundingClientRect();
        return [box.left + xa._offset + xa.l2p(x), box.top + ya._offset + ya.l2p(y)]; }""", [x, y]))


def tap(app, chart, x: float, y: float) -> None:
    """Scroll the chart to the middle of the screen, then tap the data point (x, y) with a finger."""
    chart.evaluate("g => g.scrollIntoView({block: 'center'})")
    app.page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
    px, py = on_screen(chart, x, y)
    under = chart.evaluate("(g, [x, y]) => g.contains(document.elementFromPoint(x, y))", [px, py])
    assert under, f"the chart is not what a finger at ({px:.0f}, {py:.0f}) touches"
    app.page.touchscreen.tap(px, py)


def captions(app):
    return app.page.get_by_test_id("stImageCaption")


def test_on_a_phone_tapping_a_dataset_digit_shows_it_large(phone_app):
    app = phone_app
    app.goto("dataset")
    grid = app.page.locator(".st-key-ds_grid .js-plotly-plot")
    expect(grid).to_be_visible(timeout=60_000)
    expect(app.heading(r"^train image 0 · label 5$")).to_be_visible()
    cells = app.wait_for(lambda: len(c := app.plotly_data(grid)[1]["customdata"]) == 100 and c, "the grid's 100 cells")
    index, label = (int(v) for v in cells[23])

    tap(app, grid, 3 * CELL + 13.5, 2 * CELL + 13.5)  # cell 23: row 2, column 3
    expect(app.heading(rf"^train image {index:,} · label {label}$")).to_be_visible(timeout=60_000)
    frame = [[3 * CELL - 0.5, 2 * CELL - 0.5]]
    app.wait_for(lambda: grid.evaluate("g => (g.layout.shapes || []).map(s => [s.x0, s.y0])") == frame,
                 "the red selection frame around cell 23")
    app.assert_no_exception()


def test_on_a_phone_tapping_a_confusion_cell_shows_its_images(phone_app):
    app = phone_app
    app.goto("evaluate")
    chart = app.page.locator(".st-key-confusion .js-plotly-plot")
    expect(chart).to_be_visible(timeout=120_000)
    app.wait_idle()
    true, predicted = 7, 2
    gallery = app.heading(rf"^True {true}, predicted {predicted}: \d+ image\(s\)$")
    expect(app.heading(r"^True \d, predicted \d: \d+ image\(s\)$")).to_be_visible()  # the most confused pair
    expect(gallery).to_have_count(0)

    tap(app, chart, predicted, true)
    expect(gallery).to_be_visible(timeout=60_000)
    app.wait_idle()
    expect(captions(app).first).to_be_visible()
    shown = captions(app).all_inner_texts()
    assert all(f"{true} → {predicted}" in c for c in shown), shown
    app.assert_no_exception()


def test_on_a_phone_tapping_a_point_of_the_explain_map_shows_that_image(phone_app):
    app = phone_app
    app.goto("explain")
    chart = app.page.locator(".st-key-explain_map .js-plotly-plot")
    expect(chart).to_be_visible(timeout=120_000)
    expect(app.page.get_by_text(re.compile("^Select points on the map"))).to_be_visible()
    app.wait_idle()
    # Every image's point (the mistakes' rings sit on digit points): its test index, data and screen position.
    chart.evaluate("g => g.scrollIntoView({block: 'center'})")
    points = app.wait_for(lambda: len(p := chart.evaluate("""g => {
        const xa = g._fullLayout.xaxis, ya = g._fullLayout.yaxis, box = g.getBoundingClientRect(), out = [];
        g._fullData.filter(t => t.name !== 'mistake').forEach(t => { for (let k = 0; k < t.x.length; k++)
            out.push([Number(t.customdata[k][0]), t.x[k], t.y[k],
                      box.left + xa._offset + xa.l2p(t.x[k]), box.top + ya._offset + ya.l2p(t.y[k])]); });
        return out; }""")) >= 250 and p, "the map's points")
    # The point farthest on screen from any other, away from the plot's edges: a tap there can only mean it.
    screen = np.array([p[3:] for p in points])
    gaps = np.hypot(screen[:, None, 0] - screen[None, :, 0], screen[:, None, 1] - screen[None, :, 1])
    np.fill_diagonal(gaps, np.inf)
    area = chart.locator(".nsewdrag").first.bounding_box()
    inside = ((screen[:, 0] > area["x"] + 10) & (screen[:, 0] < area["x"] + area["width"] - 10)
              & (screen[:, 1] > area["y"] + 10) & (screen[:, 1] < area["y"] + area["height"] - 10))
    index, x, y = points[int(np.argmax(np.where(inside, gaps.min(axis=1), -1.0)))][:3]

    tap(app, chart, x, y)
    expect(app.heading(r"^1 selected image\(s\)$")).to_be_visible(timeout=60_000)
    expect(captions(app)).to_have_text([re.compile(rf"^#{index} · \d → \d \(\d+%\)$")])
    app.assert_no_exception()

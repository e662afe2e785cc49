"""Explain: points selected on the embedding map (a click, a box, a lasso; PCA and t-SNE) show those test
images, and one of them opens in Inside the network.

Where each point lies on the screen comes from plotly.js's own axis mapping, so the test knows which
test images a gesture covers before it makes it.
"""

import itertools
import math
import re

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.timeout(300)

EDGE_PX = 3  # a point this close to a box's or lasso's outline may fall either side of it


def map_chart(app):
    return app.page.locator(".st-key-explain_map .js-plotly-plot")


def points_on_screen(app) -> list[dict]:
    """Every marker on the map: its trace, its test index (customdata[0]) and its screen position."""
    return map_chart(app).evaluate("""g => {
        const xa = g._fullLayout.xaxis, ya = g._fullLayout.yaxis, box = g.getBoundingClientRect(), out = [];
        g._fullData.forEach(t => { for (let k = 0; k < t.x.length; k++) out.push({trace: t.name,
            index: Number(t.customdata[k][0]),
            x: box.left + xa._offset + xa.l2p(t.x[k]), y: box.top + ya._offset + ya.l2p(t.y[k])}); });
        return out; }""")


def plot_area(app) -> dict:
    return map_chart(app).locator(".nsewdrag").first.bounding_box()


def shown_images(app) -> dict[int, str]:
    """The gallery under the map: test index -> caption."""
    captions = app.page.get_by_test_id("stImageCaption").all_inner_texts()
    return {int(re.match(r"#(\d+) ", c).group(1)): c for c in captions}


def expect_gallery(app, sure: set[int], maybe: set[int] = frozenset()) -> dict[int, str]:
    """The gallery shows every test image in `sure`, perhaps some of `maybe`, nothing else; each caption
    reads index · true → predicted (confidence)."""
    expect(app.heading(r"^\d+ selected image\(s\)$")).to_be_visible(timeout=60_000)
    app.wait_idle()
    shown = app.wait_for(lambda: (s := shown_images(app)) and sure <= set(s) and s, f"the images {sorted(sure)}")
    assert set(shown) <= sure | maybe, f"images outside the selection: {sorted(set(shown) - sure - maybe)}"
    expect(app.heading(f"^{len(shown)} selected image\\(s\\)$")).to_be_visible()
    for caption in shown.values():
        assert re.fullmatch(r"#\d+ · \d → \d \(\d+%\)", caption), caption
    app.assert_no_exception()
    return shown


def inside_polygon(x: float, y: float, poly: list[tuple[float, float]]) -> bool:
    hit = False
    for (x1, y1), (x2, y2) in zip(poly, poly[1:] + poly[:1]):
        if (y1 > y) != (y2 > y) and x < x1 + (y - y1) * (x2 - x1) / (y2 - y1):
            hit = not hit
    return hit


def near_outline(x: float, y: float, poly: list[tuple[float, float]]) -> bool:
    for (x1, y1), (x2, y2) in zip(poly, poly[1:] + poly[:1]):
        dx, dy = x2 - x1, y2 - y1
        t = max(0.0, min(1.0, ((x - x1) * dx + (y - y1) * dy) / (dx * dx + dy * dy or 1.0)))
        if math.hypot(x - x1 - t * dx, y - y1 - t * dy) < EDGE_PX:
            return True
    return False


def covered(points: list[dict], poly: list[tuple[float, float]]) -> tuple[set[int], set[int]]:
    """(test images surely inside the outline, those too close to it to tell)."""
    sure, maybe = set(), set()
    for p in points:
        if near_outline(p["x"], p["y"], poly):
            maybe.add(p["index"])
        elif inside_polygon(p["x"], p["y"], poly):
            sure.add(p["index"])
    return sure - maybe, maybe


def region(app, points: list[dict], digit: str, most: int = 40) -> tuple[float, float, float]:
    """A circle (centre x, y, radius in pixels) inside the plot area, centred on one of `digit`'s points as
    near its cluster's middle as allows, holding a few points but fewer than the gallery shows."""
    own = [p for p in points if p["trace"] == digit]
    mx = sorted(p["x"] for p in own)[len(own) // 2]
    my = sorted(p["y"] for p in own)[len(own) // 2]
    area = plot_area(app)
    for radius, c in itertools.product((25, 15, 10), sorted(own, key=lambda p: math.hypot(p["x"] - mx, p["y"] - my))):
        room = min(c["x"] - area["x"], area["x"] + area["width"] - c["x"],
                   c["y"] - area["y"], area["y"] + area["height"] - c["y"])
        inside = sum(math.hypot(p["x"] - c["x"], p["y"] - c["y"]) < radius * 1.5 for p in points)
        if room > radius + 5 and 3 <= inside <= most:
            return c["x"], c["y"], radius
    pytest.fail(f"no small region around digit {digit}'s cluster")


def click_a_lone_point(app, points: list[dict]) -> dict:
    """Click the digit point farthest from any other marker (so the click can only mean that one)."""
    area = plot_area(app)

    def clearance(p):
        if not (area["x"] + 10 < p["x"] < area["x"] + area["width"] - 10
                and area["y"] + 10 < p["y"] < area["y"] + area["height"] - 10):
            return -1.0
        return min((math.hypot(p["x"] - q["x"], p["y"] - q["y"]) for q in points if q["index"] != p["index"]),
                   default=0.0)

    lone = max((p for p in points if p["trace"] != "mistake"), key=clearance)
    app.page.mouse.move(lone["x"], lone["y"])
    app.page.mouse.click(lone["x"], lone["y"])
    return lone


def pick_tool(app, title: str) -> None:
    """Click a tool in the chart's toolbar (Streamlit shows it while the pointer is over the chart)."""
    chart = map_chart(app)
    chart.hover()
    chart.locator(f'.modebar-btn[data-title="{title}"]').click()


def box_select(app, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    """Pick the box tool and drag a square of half-side r around (cx, cy); returns its corners."""
    pick_tool(app, "Box Select")
    corners = [(cx - r, cy - r), (cx + r, cy - r), (cx + r, cy + r), (cx - r, cy + r)]
    app.drag([corners[0], (cx, cy), corners[2]])
    return corners


def test_selecting_points_on_the_map_shows_those_images_and_opens_one_inside(app):
    app.goto("explain")
    expect(app.title("Explain")).to_be_visible()
    expect(map_chart(app)).to_be_visible(timeout=120_000)
    expect(app.page.get_by_text(re.compile("^Select points on the map"))).to_be_visible()
    points = app.wait_for(lambda: len(p := points_on_screen(app)) >= 2000 and p, "the map's 2,000 points")
    map_chart(app).scroll_into_view_if_needed()
    points = points_on_screen(app)

    # A click on one point: that image alone.
    lone = click_a_lone_point(app, points)
    shown = expect_gallery(app, {lone["index"]})
    assert list(shown) == [lone["index"]]

    # A lasso around part of the 0s: exactly the images inside it.
    cx, cy, r = region(app, points, "0")
    pick_tool(app, "Lasso Select")
    outline = [(cx + r * math.cos(2 * math.pi * k / 24), cy + r * math.sin(2 * math.pi * k / 24)) for k in range(24)]
    app.drag(outline + outline[:1])
    sure, maybe = covered(points, outline)
    expect_gallery(app, sure, maybe)  # the lasso replaces the click's selection

    # A box around part of the 3s.
    cx, cy, r = region(app, points, "3")
    corners = box_select(app, cx, cy, r)
    sure, maybe = covered(points, corners)
    boxed = expect_gallery(app, sure, maybe)  # the box replaces the lasso's selection
    app.screenshot("explain")

    # One of them opens in Inside the network (the first shown, which the chooser offers first).
    pick = next(iter(boxed))
    label = int(re.match(r"#\d+ · (\d) →", boxed[pick]).group(1))
    expect(app.widget("stSelectbox", "Image").locator("input")).to_have_value(f"test #{pick}")
    app.button("Open in Inside the network").click()
    expect(app.title("Inside the network")).to_be_visible(timeout=60_000)
    app.wait_idle()
    expect(app.widget("stNumberInput", "Index").locator("input")).to_have_value(str(pick))
    expect(app.page.locator(".gtitle").filter(has_text=f"test image {pick:,} · label {label}")).to_be_visible()
    app.assert_no_exception()


def test_selecting_points_on_a_tsne_map_shows_those_images(app):
    app.goto("explain")
    expect(map_chart(app)).to_be_visible(timeout=120_000)
    slider = app.page.get_by_test_id("stSlider").filter(has_text="Test images").get_by_role("slider")
    slider.focus()
    slider.press("Home")  # the smallest sample (250): t-SNE in a few seconds
    expect(app.metric_value("Images")).to_have_text("250", timeout=60_000)
    app.page.get_by_test_id("stRadio").get_by_text("t-SNE", exact=True).click()
    titles = map_chart(app).locator(".gtitle")
    app.wait_for(lambda: (texts := titles.all_text_contents()) and all("t-SNE" in t for t in texts),
                 "the t-SNE map in place of the PCA one", timeout=180)
    app.wait_idle()
    points = app.wait_for(lambda: len(p := points_on_screen(app)) >= 250 and p, "the map's 250 points")
    map_chart(app).scroll_into_view_if_needed()
    points = points_on_screen(app)

    cx, cy, r = region(app, points, "7")
    corners = box_select(app, cx, cy, r)
    sure, maybe = covered(points, corners)
    expect_gallery(app, sure, maybe)

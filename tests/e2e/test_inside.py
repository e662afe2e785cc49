"""Inside the network: kernels and feature maps of LeNet-5 for a dataset digit, and for a drawing made on
the Draw page (reached through the sidebar, so the session state carries the drawing)."""

import math
import re

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.timeout(240)

FEATURE_MAPS = ["C1 · 6 x 28 x 28", "S2 · 6 x 14 x 14", "C3 · 16 x 10 x 10", "S4 · 16 x 5 x 5", "C5 · 120 x 1 x 1"]
KERNELS = ["C1 · 6 kernels of 1x5x5", "C3 · 16 kernels of 6x5x5", "C5 · 120 kernels of 16x5x5"]


def chart_after(app, subheader: str) -> dict:
    """The first trace of the Plotly chart drawn right after the subheader `subheader` (type, z or y)."""
    return app.page.evaluate("""text => {
        const h = Array.from(document.querySelectorAll('[data-testid=stMain] h3'))
            .find(e => e.innerText.trim() === text);
        if (!h) return null;
        let box = h.closest('[data-testid=stElementContainer]').nextElementSibling;
        while (box && !box.querySelector('.js-plotly-plot')) box = box.nextElementSibling;
        const g = box && box.querySelector('.js-plotly-plot');
        if (!g || !g._fullData || !g._fullData.length) return null;
        const t = g._fullData[0];
        return {type: t.type, z: t.z ? Array.from(t.z, r => Array.from(r)) : null, y: t.y ? Array.from(t.y) : null};
    }""", subheader)


def input_chart(app) -> dict:
    """The input digit's heatmap: its title and its 28x28 values."""
    return app.page.evaluate("""() => {
        const title = g => (g.querySelector('.gtitle') || {}).textContent || '';
        const g = Array.from(document.querySelectorAll('[data-testid=stMain] .js-plotly-plot'))
            .find(g => g._fullData && g._fullData[0] && g._fullData[0].type === 'heatmap' && title(g));
        return g ? {title: title(g), z: Array.from(g._fullData[0].z, r => Array.from(r))} : null;
    }""")


def check_network_drawn(app) -> None:
    main = app.page.get_by_test_id("stMain")
    expect(app.heading("^Kernels$")).to_be_visible()
    expect(app.heading("^Feature maps$")).to_be_visible()
    for name in KERNELS + FEATURE_MAPS:
        expect(app.heading(f"^{re.escape(name)}$")).to_be_visible()
    c1 = app.wait_for(lambda: chart_after(app, FEATURE_MAPS[0]), "the C1 feature maps")
    assert c1["type"] == "heatmap"
    assert len(c1["z"]) == 28 and len(c1["z"][0]) == 6 * 29 - 1, "six 28x28 maps side by side, with seams"
    c5 = app.wait_for(lambda: chart_after(app, FEATURE_MAPS[-1]), "the C5 activations")
    assert c5["type"] == "bar" and len(c5["y"]) == 120
    charts = 2 + len(KERNELS) + len(FEATURE_MAPS)  # input, output, one per kernel and feature-map layer
    app.wait_for(lambda: main.locator(".js-plotly-plot").count() >= charts, f"at least {charts} charts")
    app.assert_no_exception()


def test_inside_dataset_digit(app):
    app.goto("inside")
    expect(app.title("Inside the network")).to_be_visible()
    expect(app.widget("stSelectbox", "Checkpoint").locator("input")).to_have_value("lenet5")
    expect(app.page.get_by_role("radio", name="Dataset image")).to_be_checked()

    # The default input: test image 0, a 7.
    first = app.wait_for(lambda: (c := input_chart(app)) and c["title"] == "test image 0 · label 7" and c,
                         "the input digit test image 0")
    expect(app.page.get_by_text(re.compile(r"^Predicts 7 with [\d.]+% probability \(correct\)\.$"))).to_be_visible()
    check_network_drawn(app)
    c1_first = chart_after(app, FEATURE_MAPS[0])["z"]
    app.screenshot("inside")

    # Another digit: the input, the answer and the feature maps follow.
    app.number("Index", 1)
    second = app.wait_for(lambda: (c := input_chart(app)) and c["title"] == "test image 1 · label 2" and c,
                          "the input digit test image 1")
    assert second["z"] != first["z"]
    expect(app.page.get_by_text(re.compile(r"^Predicts 2 with [\d.]+% probability \(correct\)\.$"))).to_be_visible()
    app.wait_for(lambda: (c := chart_after(app, FEATURE_MAPS[0])) and c["z"] != c1_first, "new C1 feature maps")
    check_network_drawn(app)


def test_inside_drawing_from_the_draw_page(app):
    app.goto("draw")
    expect(app.title("Draw")).to_be_visible()
    n = 40  # a 0: an upright ellipse
    app.draw([(140 + 70 * math.sin(2 * math.pi * k / n), 140 - 100 * math.cos(2 * math.pi * k / n))
              for k in range(n + 3)])
    expect(app.metric_value("Prediction")).to_have_text("0")
    seen = app.wait_for(lambda: app.plotly_data(app.page.locator(".st-key-draw_seen .js-plotly-plot"))[0]["z"],
                        "the Draw page's 28x28 view of the drawing")

    app.nav("Inside the network")  # the sidebar: same session, so the drawing is still in session_state
    app.page.get_by_test_id("stRadio").get_by_text("My drawing", exact=True).click()
    expect(app.page.get_by_role("radio", name="My drawing")).to_be_checked()
    drawn = app.wait_for(lambda: (c := input_chart(app)) and c["title"] == "your drawing, as the model sees it"
                         and c, "the drawing as the input")
    assert len(drawn["z"]) == 28 and len(drawn["z"][0]) == 28
    worst = max(abs(a - b) for row_a, row_b in zip(drawn["z"], seen) for a, b in zip(row_a, row_b))
    assert worst < 1e-3, f"Inside's input differs from what Draw showed the model (by up to {worst})"
    expect(app.page.get_by_text(re.compile(r"^Predicts 0 with [\d.]+% probability\.$"))).to_be_visible()
    check_network_drawn(app)


def test_playing_how_it_learned_steps_through_training_to_the_end(app):
    """The default lenet5's training replay (shipped beside the checkpoint): Play steps frame by frame
    and stops at the last; started three frames before the end so the test waits for three frames only."""
    app.goto("inside")
    expect(app.heading("^How it learned$")).to_be_visible(timeout=60_000)
    slider = app.page.get_by_test_id("stSlider").filter(has_text="Training step").get_by_role("slider")
    expect(slider).to_be_visible()
    slider.scroll_into_view_if_needed()
    last = slider.get_attribute("aria-valuetext")
    assert re.fullmatch(r"step [\d,]+ · epoch 8\.00", last), last
    slider.focus()
    for _ in range(3):
        before = slider.get_attribute("aria-valuetext")
        slider.press("ArrowLeft")
        app.wait_for(lambda before=before: slider.get_attribute("aria-valuetext") != before,
                     "the slider one frame back")
        app.wait_idle()
    start = slider.get_attribute("aria-valuetext")
    kernels = app.page.locator(".st-key-inside_replay_kernels .js-plotly-plot")

    def kernels_drawn():  # plotly.js draws after the element appears: empty until then
        traces = app.plotly_data(kernels)
        return traces[0]["z"] if traces else None

    first = app.wait_for(kernels_drawn, "the replay's kernels drawn")

    app.button("Play").click()
    expect(app.button("Pause")).to_be_visible()
    seen = [start]

    def at_the_end():
        value = slider.get_attribute("aria-valuetext")
        if value != seen[-1]:
            seen.append(value)
        return value == last

    app.wait_for(at_the_end, "the replay to play to the last frame", timeout=60)
    expect(app.button("Play")).to_be_visible()  # it stopped by itself
    app.wait_idle()
    assert len(seen) >= 3, f"frames seen while playing: {seen}"
    app.wait_for(lambda: (kernels_drawn() or first) != first, "the kernels moved on with the frames")
    app.assert_no_exception()

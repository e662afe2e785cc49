"""The Train page's Sweep tab in a browser: a 2x2 sweep of tiny runs launched, all four seen to finish,
the parallel-coordinates chart drawn with a line per run, and one run opened from the chart of test
accuracy (a click on its dot) and watched in the live panel."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from mnist_core import registry
from train_page import fill

TINY = {"epochs": 1, "batch size": 100, "training images (0 = all)": 1000, "validation images": 500,
        "validate every N steps (0 = once per epoch)": 0, "CPU threads (0 = one per core that others leave free)": 1}
FINISH_S = 300  # four tiny runs, two at a time, on a busy 2-core machine


@pytest.fixture
def roomy_server(monkeypatch, request):
    """A server of its own whose visitors may queue four runs (the default is three), two running at once."""
    monkeypatch.setenv("MNIST_MAX_QUEUED_PER_OWNER", "8")
    monkeypatch.setenv("MNIST_MAX_CONCURRENT", "2")
    return request.getfixturevalue("fresh_server")


def _values(app, row: int, text: str) -> None:
    box = app.page.get_by_test_id("stTextInput").filter(
        has=app.page.get_by_test_id("stWidgetLabel").get_by_text(re.compile(r"^Values of ")))
    field = box.nth(row).locator("input")
    field.fill(text)
    field.press("Enter")
    expect(field).to_have_value(text)
    app.wait_idle()


def _chart(app, title: str):
    return app.page.get_by_test_id("stPlotlyChart").filter(has_text=title).locator(".js-plotly-plot")


def test_a_two_by_two_sweep_finishes_draws_its_parallel_coordinates_and_opens_a_run(new_app, roomy_server, tmp_path):
    app = new_app(roomy_server)
    app.goto("")
    app.nav("Train")
    app.select("model", "mlp-128-64")
    fill(app, TINY)  # the One run form: every run of the sweep starts from it

    app.page.get_by_role("tab", name=re.compile("Sweep")).click()
    _values(app, 0, "0.001, 0.01")
    app.select("Vary field 2", "batch size")
    _values(app, 1, "50, 100")
    expect(app.page.get_by_text(re.compile(r"^4 runs × ~"))).to_be_visible()
    app.button("Launch sweep").click()

    expect(app.page.get_by_text(re.compile(r"4 done of 4 runs$"))).to_be_visible(timeout=FINISH_S * 1000)
    app.assert_no_exception()
    runs_root = tmp_path / "fresh" / "runs"  # fresh_server's
    sweep_runs = [r for r in registry.list_runs(root=runs_root) if r.sweep]
    assert len(sweep_runs) == 4 and all(r.status == "completed" for r in sweep_runs)

    parcoords = app.page.get_by_test_id("stPlotlyChart").locator(".js-plotly-plot").filter(
        has=app.page.locator(".parcoords"))
    expect(parcoords).to_have_count(1)
    drawn = app.wait_for(lambda: parcoords.evaluate(
        "g => g._fullData[0].type === 'parcoords'"
        " && g._fullData[0].dimensions.map(d => d.label + ':' + d.values.length)"),
        "the parallel-coordinates chart drawn with its axes")
    assert drawn == ["learning rate (log):4", "batch size (log):4", "test accuracy:4"]

    # Open one run: click its dot on the chart of test accuracy against the learning rate.
    against = _chart(app, "Test accuracy against learning rate")
    # the dots are the trace that carries run ids (the mean line is drawn under them, first)
    app.wait_for(lambda: against.evaluate(
        "g => !!g._fullData && g._fullData.some(t => t.customdata && t.x.length === 4)"),
                 "the dots drawn")
    spot = against.evaluate("""g => { const L = g._fullLayout, t = g._fullData.find(t => t.customdata);
        return {x: L.xaxis._offset + L.xaxis.c2p(t.x[0]), y: L.yaxis._offset + L.yaxis.c2p(t.y[0]),
                id: t.customdata[0]}; }""")
    box = against.bounding_box()
    app.page.mouse.click(box["x"] + spot["x"], box["y"] + spot["y"])
    opened = app.page.locator(".st-key-sweep_opened")
    expect(opened).to_contain_text(f"Run {spot['id']}")
    app.wait_idle()
    app.button("Watch it in the live panel").click()
    expect(app.heading(rf"^Run {spot['id']} · mlp-128-64 · completed$")).to_be_visible()
    app.assert_no_exception()


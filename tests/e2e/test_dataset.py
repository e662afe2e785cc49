"""Dataset: the 10x10 grid shows, the label filter changes it, paging moves on, a click shows a digit large."""

import re

import pytest
from playwright.sync_api import expect

from mnist_core.data import load_mnist

pytestmark = pytest.mark.timeout(240)

CELL = 29  # a 28-pixel digit and its one-pixel seam, in the grid figure's data coordinates


def grid_cells(app) -> list[tuple[int, int]]:
    """(dataset index, label) of each cell of the grid, in order, from the clickable markers' customdata."""
    traces = app.plotly_data(app.page.locator(".st-key-ds_grid .js-plotly-plot"))
    assert [t["type"] for t in traces] == ["image", "scatter"], traces
    return [(int(i), int(label)) for i, label in traces[1]["customdata"]]


def grid_source(app) -> str:
    return app.plotly_data(app.page.locator(".st-key-ds_grid .js-plotly-plot"))[0]["source"]


def click_cell(app, cell: int) -> None:
    """Click the centre of a grid cell, placed with plotly.js's own axis mapping."""
    grid = app.page.locator(".st-key-ds_grid .js-plotly-plot")
    row, col = divmod(cell, 10)
    x, y = grid.evaluate("""(g, [x, y]) => {
        const xa = g._fullLayout.xaxis, ya = g._fullLayout.yaxis, box = g.getBoundingClientRect();
        return [box.left + xa._offset + xa.l2p(x), box.top + ya._offset + ya.l2p(y)]; }""",
                         [col * CELL + 13.5, row * CELL + 13.5])
    app.page.mouse.move(x, y)
    app.page.mouse.click(x, y)


def big_digit(app) -> list[list[float]] | None:
    """The values of the large heatmap of the selected digit (the page's first heatmap)."""
    return app.page.evaluate("""() => {
        const g = Array.from(document.querySelectorAll('[data-testid=stMain] .js-plotly-plot'))
            .find(g => g._fullData && g._fullData[0] && g._fullData[0].type === 'heatmap');
        return g ? Array.from(g._fullData[0].z, r => Array.from(r)) : null; }""")


def test_dataset_grid_filter_paging_and_zoom(app):
    app.goto("dataset")
    expect(app.title("Dataset")).to_be_visible()
    caption = app.page.get_by_text(re.compile(r"^Showing [\d,]+-[\d,]+ of "))
    expect(caption).to_have_text("Showing 1-100 of 60,000 images in the train split.")

    grid = app.page.locator(".st-key-ds_grid .js-plotly-plot")
    expect(grid).to_be_visible(timeout=60_000)
    expect(grid.locator(".layer-subplot image, .imagelayer image").first).to_be_attached()
    cells = grid_cells(app)
    assert len(cells) == 100
    assert [i for i, _ in cells] == list(range(100)), "unfiltered, unshuffled: the first page is images 0..99"
    assert len({label for _, label in cells}) == 10, "the first 100 training images hold every digit"
    source_all = grid_source(app)
    expect(app.heading(r"^train image 0 · label 5$")).to_be_visible()  # image 0 is selected at first
    app.assert_no_exception()

    # The label filter: only 7s, a different picture.
    app.select("Label", "7")
    expect(caption).to_have_text(re.compile(r"^Showing 1-100 of [\d,]+ images with label 7 in the train split\.$"))
    cells = app.wait_for(lambda: (c := grid_cells(app)) and {label for _, label in c} == {7} and c,
                         "the grid to hold only 7s")
    assert len(cells) == 100
    assert grid_source(app) != source_all, "the grid picture did not change with the filter"
    first_page = cells

    # Paging: the next hundred 7s.
    app.page.locator(".st-key-ds_next button:visible").click()
    expect(caption).to_have_text(re.compile(r"^Showing 101-200 of [\d,]+ images with label 7 "))
    expect(app.widget("stNumberInput", "Page (of 63)").locator("input")).to_have_value("2")
    cells = app.wait_for(lambda: (c := grid_cells(app)) != first_page and c, "the grid to show page 2")
    assert len(cells) == 100 and {label for _, label in cells} == {7} and not set(cells) & set(first_page)

    # Selecting a digit: a click on a cell shows it large and frames it in the grid.
    index, label = cells[23]
    click_cell(app, 23)
    expect(app.heading(rf"^train image {index:,} · label {label}$")).to_be_visible()
    pixels = load_mnist("train")[0][index].tolist()
    app.wait_for(lambda: big_digit(app) == pixels, f"the large heatmap to show train image {index}'s pixels")
    frame = [[3 * CELL - 0.5, 2 * CELL - 0.5]]
    app.wait_for(lambda: grid.evaluate("g => (g.layout.shapes || []).map(s => [s.x0, s.y0])") == frame,
                 "the red selection frame around cell 23")
    app.assert_no_exception()
    app.screenshot("dataset")

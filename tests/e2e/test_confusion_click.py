"""Evaluate: a click on a confusion-matrix cell shows a gallery of exactly those test images."""

import re

import pytest
from playwright.sync_api import expect

from mnist_core import evaluate as ev
from mnist_core.checkpoints import default_checkpoint, load_checkpoint
from mnist_core.data import load_mnist

pytestmark = pytest.mark.timeout(240)


def click_cell(app, true: int, predicted: int) -> None:
    """Click the centre of a cell, placed with plotly.js's own axis mapping (x: predicted, y: true)."""
    chart = app.page.locator(".st-key-confusion .js-plotly-plot")
    chart.scroll_into_view_if_needed()  # the mouse clicks in the viewport: the matrix may sit below the fold
    x, y = chart.evaluate("""(g, [x, y]) => {
        const xa = g._fullLayout.xaxis, ya = g._fullLayout.yaxis, box = g.getBoundingClientRect();
        return [box.left + xa._offset + xa.l2p(x), box.top + ya._offset + ya.l2p(y)]; }""", [predicted, true])
    app.page.mouse.move(x, y)
    app.page.mouse.click(x, y)


def test_clicking_a_confusion_cell_shows_its_images(app):
    model, _ = load_checkpoint(default_checkpoint("lenet5"))
    images, labels = load_mnist("test")
    preds = ev.predictions(model, images.numpy(), labels.numpy())
    cm = ev.confusion_matrix(preds.labels, preds.predicted)
    true, predicted = 7, 2
    expected = ev.cell_indices(preds, true, predicted)

    app.goto("evaluate")
    expect(app.title("Evaluate")).to_be_visible()
    chart = app.page.locator(".st-key-confusion .js-plotly-plot")
    expect(chart).to_be_visible(timeout=90_000)
    app.assert_no_exception()

    click_cell(app, true, predicted)
    expect(app.heading(rf"^True {true}, predicted {predicted}: {cm[true, predicted]} image\(s\)$")).to_be_visible(
        timeout=60_000)
    app.wait_idle()
    captions = app.page.get_by_test_id("stImageCaption").all_inner_texts()
    shown = [int(re.match(r"#(\d+) ", c).group(1)) for c in captions]
    assert shown == expected[:40].tolist()
    assert all(f"{true} → {predicted}" in c for c in captions)
    app.assert_no_exception()
    app.screenshot("evaluate")

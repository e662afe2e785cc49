"""Train: a run started from the form shows live progress and charts that grow, keeps going while the
tab is on another page, completes with its test accuracy; a second run is cancelled from the page.

The first run is sized to last a while even on a fast machine (2 epochs of 24,000 images, batches of
20, one thread: 2,400 steps, about 20 s of training on two busy cores) and to stay under 3,000 steps,
where the page starts thinning the loss curve (train.py `_thin`), so the curve's points only grow.
"""

import re

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.timeout(420)

RUN = {"epochs": 2, "train size": 24000, "batch size": 20, "eval every": 400, "val size": 1000, "threads": 1}
STEPS = 2 * 24000 // 20


def progress_step(app) -> tuple[int, int] | None:
    """(step, total) from the live panel's progress text, or None while it shows none."""
    texts = app.page.get_by_test_id("stMain").get_by_test_id("stProgress").all_inner_texts()
    for text in texts:
        m = re.search(r"step (\d+) / (\d+)", text)
        if m:
            return int(m.group(1)), int(m.group(2))
    return None


def chart(app, title: str):
    return (app.page.get_by_test_id("stMain").locator('[data-testid=stElementContainer][data-stale="false"]')
            .locator(".js-plotly-plot").filter(has=app.page.locator(".gtitle", has_text=re.compile(rf"^{title}$"))))


def trace(app, title: str, name: str) -> list | None:
    """The x values (steps) of one named trace of a live chart, or None if the chart or trace is not there."""
    charts = chart(app, title)
    if charts.count() == 0:
        return None
    for t in app.plotly_data(charts.first):
        if t["name"] == name:
            return t["x"]
    return None


def run_cells(table):
    """The cells of the runs table: glide-data-grid's accessible mirror of its canvas (hidden, so not by role)."""
    return table.locator("[role=gridcell]")


def test_train_live_leave_and_return_complete_and_cancel(app):
    page = app.page
    app.goto("train")
    expect(app.title("Train")).to_be_visible()
    expect(app.widget("stSelectbox", "model").locator("input")).to_have_value("lenet5")
    for label, value in RUN.items():
        app.number(label, value)
    app.wait_idle()

    # --- start: the live panel appears, then progress and a loss chart that gain points
    app.button("Start training").click()
    head = app.heading(r"^Run \S+ · lenet5 · (queued|running)$")
    expect(head).to_be_visible(timeout=60_000)
    run_id = re.match(r"Run (\S+) ·", head.inner_text()).group(1)
    running = app.heading(rf"^Run {re.escape(run_id)} · lenet5 · running$")

    step1, total = app.wait_for(lambda: (p := progress_step(app)) and p[0] > 0 and p, "the first steps", 150)
    assert total == STEPS
    expect(page.get_by_test_id("stMain").get_by_test_id("stProgress")).to_have_text(
        re.compile(rf"^epoch \d+\.\d\d / 2 · step \d+ / {STEPS} · ETA (\d+m )?\d+s · [\d,]+ images/s$"))
    loss1 = app.wait_for(lambda: (x := trace(app, "Loss", "loss (per step)")) and len(x) >= 2 and x,
                         "the loss chart", 90)
    expect(chart(app, "Accuracy").first).to_be_visible()
    expect(app.button("Cancel")).to_be_visible()
    expect(running).to_be_visible()
    app.assert_no_exception()

    # --- leave the page mid-run: Home and the sidebar show it running
    app.nav("Home")
    main = page.get_by_test_id("stMain")
    expect(main.get_by_text("1 run(s) in progress.")).to_be_visible()
    expect(page.get_by_test_id("stSidebar").get_by_test_id("stProgress")).to_contain_text("lenet5 · running")

    # --- come back: the same run, still running; the progress and the loss curve have moved on
    app.nav("Train")
    expect(running).to_be_visible()
    step2 = app.wait_for(lambda: (p := progress_step(app)) and p[0] > max(step1, loss1[-1]) and p[0],
                         "the progress to move on")
    loss2 = app.wait_for(lambda: (x := trace(app, "Loss", "loss (per step)")) and x[-1] > loss1[-1] and x,
                         "the loss curve to reach further steps")
    assert len(loss2) > len(loss1), f"the loss curve went from {len(loss1)} to {len(loss2)} points"
    assert step2 < STEPS, "the run got to its end before it could be watched: make it longer"

    # --- it completes and shows its test accuracy; the runs table lists it
    expect(app.heading(rf"^Run {re.escape(run_id)} · lenet5 · completed$")).to_be_visible(timeout=240_000)
    success = main.get_by_test_id("stAlertContentSuccess").filter(has_text="Test accuracy")
    expect(success).to_have_text(re.compile(r"Test accuracy \d+\.\d\d% \(best validation \d+\.\d\d%\)"))
    accuracy = float(re.search(r"Test accuracy (\d+\.\d\d)%", success.inner_text()).group(1))
    assert accuracy > 50, f"test accuracy {accuracy}% after two epochs of 24,000 images for LeNet-5"
    app.wait_idle()
    expect(app.button("Cancel")).to_have_count(0)
    assert progress_step(app) is None
    final = app.wait_for(lambda: (x := trace(app, "Loss", "loss (per step)")) and x[-1] == STEPS and x,
                         "the loss chart to reach the last step")
    assert len(final) == STEPS
    val = trace(app, "Loss", "validation loss")
    assert val and len(val) >= STEPS // RUN["eval every"], f"validation points: {val}"
    table = main.get_by_test_id("stDataFrame").filter(has_text=run_id)
    expect(table).to_be_visible()
    expect(run_cells(table).filter(has_text=re.compile(r"^completed$"))).to_have_count(1)
    expect(run_cells(table).filter(has_text="lenet5, adamw lr 0.003, batch 20, 2 ep, 24000 imgs")).to_have_count(1)
    app.assert_no_exception()
    app.screenshot("train")

    # --- a second, long run, cancelled from the page
    app.number("train size", 0)
    app.wait_idle()
    app.button("Start training").click()
    head2 = app.heading(rf"^Run (?!{re.escape(run_id)})\S+ · lenet5 · (queued|running)$")
    expect(head2).to_be_visible(timeout=60_000)
    run2 = re.match(r"Run (\S+) ·", head2.inner_text()).group(1)
    app.wait_for(lambda: (p := progress_step(app)) and p[0] > 0, "the second run's first steps", 150)
    page.locator(f".st-key-cancel-{run2} button:visible").click()
    expect(app.heading(rf"^Run {re.escape(run2)} · lenet5 · cancelled$")).to_be_visible(timeout=60_000)
    expect(main.get_by_test_id("stAlertContentWarning")).to_contain_text("This run was cancelled.")
    app.wait_idle()
    expect(app.button("Cancel")).to_have_count(0)
    table = main.get_by_test_id("stDataFrame").filter(has_text=run2)
    expect(run_cells(table).filter(has_text=re.compile(r"^cancelled$"))).to_have_count(1)
    app.assert_no_exception()


def test_train_form_keeps_its_values_across_pages(app):
    app.goto("train")
    app.number("epochs", 1)
    app.number("batch size", 8)
    app.wait_idle()
    app.nav("Home")
    app.nav("Train")
    expect(app.widget("stNumberInput", "epochs").locator("input")).to_have_value("1", timeout=5_000)
    expect(app.widget("stNumberInput", "batch size").locator("input")).to_have_value("8", timeout=5_000)

"""Train, in a browser: a run you watch shows progress and a loss curve that grows, with readable axis
labels; leaving the page leaves it going while the sidebar and Home keep moving; a short run ends
with its test accuracy and a row in the runs table; the form keeps its values across pages.

Each test paces its run itself (train_page.LONG runs are cancelled by the test, SHORT ones finish in
seconds), so none depends on how fast the machine trains.
"""

import math
import re

import pytest
from playwright.sync_api import expect

from mnist_core import registry
from mnist_core.training import TrainConfig

from train_page import (LONG, SHORT, cancel, cancel_button, chart, fill, no_run_left_going,  # noqa: F401 (a fixture)
                        progress_step, run_cells, run_heading, start, trace)

pytestmark = [pytest.mark.timeout(300), pytest.mark.usefixtures("no_run_left_going")]


def test_a_watched_run_shows_live_progress_and_a_growing_loss_curve(app):
    app.goto("train")
    run_id = start(app, LONG)
    panel = app.page.locator(".st-key-live_panel")  # (the Sweep tab beside the form has bars of its own)
    # the live panel is on screen right after Start, not below the fold
    expect(run_heading(app, run_id, "(queued|starting|running)")).to_be_in_viewport()

    step1, total = app.wait_for(lambda: (p := progress_step(app)) and p[0] > 0 and p, "the first steps", 150)
    line = re.compile(rf"^epoch \d+\.\d\d / 50 · step [\d,]+ / {total:,} · ETA (\d+m )?\d+s · [\d,]+ images/s$")
    # one progress line (while the page reruns as the run starts, the old bar lingers a moment beside it)
    app.wait_for(lambda: len(t := panel.get_by_test_id("stProgress").all_inner_texts()) == 1 and line.match(t[0]),
                 "one progress line: epoch, step, ETA, images/s", 60)
    loss1 = app.wait_for(lambda: (x := trace(app, "Loss", "loss (per step)")) and len(x) >= 2 and x,
                         "the loss chart", 90)
    loss2 = app.wait_for(lambda: (x := trace(app, "Loss", "loss (per step)")) and x[-1] > loss1[-1] and x,
                         "the loss curve to reach further steps")
    assert len(loss2) > len(loss1)
    assert app.wait_for(lambda: (p := progress_step(app)) and p[0] > step1, "the progress to move on")

    cancel(app, run_id)
    expect(panel.get_by_test_id("stAlertContentWarning")).to_contain_text("This run was cancelled.")
    expect(cancel_button(app, run_id)).to_have_count(0)
    app.assert_no_exception()


def test_the_loss_chart_labels_say_what_each_tick_is_worth_and_has_no_toolbar(app, server_runs_dir):
    # a finished run whose loss fell from 2.3 to 0.06: three decades, so Plotly labels 0.2 and 0.5 too
    run_id = registry.create_run(TrainConfig(epochs=1, train_size=1000).to_dict(), root=server_runs_dir)
    registry.mark_running(run_id, total_steps=40, root=server_runs_dir)
    registry.add_metrics(run_id, [{"split": "train", "step": s, "epoch": s / 40, "loss": 2.3 / s, "accuracy": 0.5,
                                   "images_per_s": 1000.0} for s in range(1, 41)], root=server_runs_dir)
    registry.finish_run(run_id, "cancelled", root=server_runs_dir)
    app.goto("train")
    expect(run_heading(app, run_id, "cancelled")).to_be_visible()  # a first visit shows the newest run
    loss = chart(app, "Loss").first
    expect(loss).to_be_visible()
    ticks = loss.evaluate("g => g._fullLayout.yaxis._vals.map(t => [t.x, t.text])")
    labelled = [(x, text) for x, text in ticks if text]
    assert len(labelled) > 4, ticks
    for x, text in labelled:  # 0.5 reads "0.5", never a bare "5"
        assert math.isclose(float(text), 10 ** x, rel_tol=1e-6), f"the tick at {10 ** x:g} reads {text!r}"
    loss.hover()
    expect(loss.locator(".modebar-btn")).to_have_count(0)  # no Plotly toolbar, even on hover


def _finished_run(root, loss_at_end: float) -> str:
    """A completed LeNet-5 run of 40 steps whose loss falls to `loss_at_end`, validated at steps 20 and 40."""
    run_id = registry.create_run(TrainConfig(epochs=1, train_size=1000).to_dict(), root=root)
    registry.mark_running(run_id, total_steps=40, root=root)
    falling = [2.3 - (2.3 - loss_at_end) * s / 40 for s in range(1, 41)]
    registry.add_metrics(run_id, [{"split": "train", "step": s, "epoch": s / 40, "loss": loss, "accuracy": 0.5,
                                   "images_per_s": 1000.0} for s, loss in enumerate(falling, start=1)], root=root)
    registry.add_metrics(run_id, [{"split": "val", "step": s, "epoch": s / 40, "loss": loss_at_end, "accuracy": 0.9}
                                  for s in (20, 40)], root=root)
    registry.finish_run(run_id, "completed", root=root, test_accuracy=0.9)
    return run_id


def test_ticking_runs_in_the_table_overlays_their_curves(app, server_runs_dir):
    older, newer = _finished_run(server_runs_dir, 0.3), _finished_run(server_runs_dir, 0.1)
    app.goto("train")
    table = app.page.get_by_test_id("stMain").get_by_test_id("stDataFrame").filter(has_text=newer)
    expect(table).to_be_visible()
    expect(table.locator("[role=row]").nth(1)).to_contain_text(newer)  # newest first: the two top rows
    expect(table.locator("[role=row]").nth(2)).to_contain_text(older)
    for row in (1, 2):  # the tick box at the start of each row, drawn on glide-data-grid's canvas (rows of 35 px)
        table.click(position={"x": 18, "y": 35 * row + 17})
        app.wait_idle()
    labels = {f"{newer[-6:]} lenet5", f"{older[-6:]} lenet5"}
    loss = chart(app, re.escape("Training loss (smoothed)"))
    app.wait_for(lambda: loss.count() and {t["name"] for t in app.plotly_data(loss.first)} == labels,
                 "a smoothed loss line for each ticked run", 30)
    accuracy = app.plotly_data(chart(app, "Validation accuracy").first)
    assert {t["name"]: t["x"] for t in accuracy} == {label: [20, 40] for label in labels}
    app.assert_no_exception()


def _step(locator) -> int:
    m = re.search(r"step ([\d,]+)$", locator.inner_text())
    return int(m.group(1).replace(",", "")) if m else 0


def test_right_after_start_the_sidebar_shows_the_run_and_its_progress_moves(app):
    """Without leaving the page or touching it: the sidebar was drawn before Start created the run."""
    app.goto("train")
    run_id = start(app, LONG)
    bar = app.page.get_by_test_id("stSidebar").get_by_test_id("stProgress")
    expect(bar).to_contain_text("lenet5 · running", timeout=90_000)
    first = _step(bar)
    app.wait_for(lambda: _step(bar) > first, "the sidebar's progress to move", 90)
    cancel(app, run_id)
    app.assert_no_exception()


def test_leaving_the_page_mid_run_keeps_it_going_and_the_sidebar_and_home_move(app):
    app.goto("train")
    run_id = start(app, LONG)
    app.wait_for(lambda: (p := progress_step(app)) and p[0] > 0, "the first steps", 150)

    app.nav("Home")
    main, sidebar = app.page.get_by_test_id("stMain"), app.page.get_by_test_id("stSidebar")
    expect(main.get_by_text("1 run(s) in progress.")).to_be_visible()
    bar = sidebar.get_by_test_id("stProgress")
    expect(bar).to_contain_text("lenet5 · running")

    step = _step
    home_bar = main.get_by_test_id("stProgress")
    first_sidebar, first_home = step(bar), step(home_bar)
    # nobody touches the page: the bars move by themselves
    app.wait_for(lambda: step(bar) > first_sidebar, "the sidebar's progress to move", 90)
    app.wait_for(lambda: step(home_bar) > first_home, "Home's progress to move", 90)

    app.nav("Train")
    expect(run_heading(app, run_id, "running")).to_be_visible()
    cancel(app, run_id)
    app.assert_no_exception()


def test_a_short_run_ends_with_its_test_accuracy_and_a_row_in_the_table(app):
    app.goto("train")
    run_id = start(app, SHORT)
    main = app.page.get_by_test_id("stMain")
    expect(run_heading(app, run_id, "completed")).to_be_visible(timeout=240_000)
    # (.first: the page redraws once when the run ends, and both copies can be there for a moment)
    success = main.get_by_test_id("stAlertContentSuccess").filter(has_text="Test accuracy").first
    expect(success).to_have_text(re.compile(
        r"Test accuracy \d+\.\d\d% \(best validation \d+\.\d\d%\) in (\d+m )?\d+s\. "
        rf"Checkpoint: lenet5-{re.escape(run_id)}\.safetensors$"))
    accuracy = float(re.search(r"Test accuracy (\d+\.\d\d)%", success.inner_text()).group(1))
    assert accuracy > 50, f"test accuracy {accuracy}% after an epoch of 2,000 images for LeNet-5"
    app.wait_idle()
    assert progress_step(app) is None
    final = app.wait_for(lambda: (x := trace(app, "Loss", "loss (per step)")) and x[-1] == 63 and x,
                         "the loss chart to reach the last step")
    assert len(final) == 63
    table = main.get_by_test_id("stDataFrame").filter(has_text=run_id)
    expect(table).to_be_visible()
    row = table.locator("[role=row]").filter(has_text=run_id)  # other tests' runs share the server's table
    expect(row).to_have_count(1)
    expect(run_cells(row).filter(has_text=re.compile(r"^completed$"))).to_have_count(1)
    expect(run_cells(row).filter(has_text="lenet5, adamw lr 0.003, batch 32, 1 ep, 2000 imgs")).to_have_count(1)
    expect(run_cells(table).filter(has_text=re.compile(r"^None$"))).to_have_count(0)
    app.assert_no_exception()
    app.screenshot("train")


def test_train_form_keeps_its_values_across_pages(app):
    app.goto("train")
    fill(app, {"epochs": 1, "batch size": 8})
    app.nav("Home")
    app.nav("Train")
    expect(app.widget("stNumberInput", "epochs").locator("input")).to_have_value("1", timeout=5_000)
    expect(app.widget("stNumberInput", "batch size").locator("input")).to_have_value("8", timeout=5_000)

"""What the Train page's browser tests share: filling the form, starting a run, reading the live panel.

Runs are paced by the test, never by the machine: a LONG run is one the test cancels (it cannot end
by itself while a test watches it), a SHORT one finishes in seconds and the test waits for its end.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from mnist_core import registry

# Far longer than any test watches (50 epochs of LeNet-5): the test cancels it. One thread, to leave
# the other core to the server and the browser.
LONG = {"epochs": 50, "CPU threads (0 = one per core that others leave free)": 1}
# A few seconds even on a busy 2-core machine: 2,000 images, one epoch of 63 steps.
THREADS = "CPU threads (0 = one per core that others leave free)"
SHORT = {"epochs": 1, "training images (0 = all)": 2000, "validation images": 500, THREADS: 1}


@pytest.fixture
def no_run_left_going(server_runs_dir):
    """Cancel whatever run a test left live (one that failed before its own Cancel), so the next test
    does not share the machine with it."""
    yield
    for r in registry.list_runs(root=server_runs_dir):
        if r.is_live:
            registry.request_cancel(r.id, root=server_runs_dir)


ADVANCED = "Advanced: optimizer, schedule, data, validation, device"
ADVANCED_FIELDS = {"training images (0 = all)", "validation images", THREADS,
                   "validate every N steps (0 = once per epoch)", "random seed"}


def open_advanced(app) -> None:
    """Unfold the form's "Advanced" expander (once)."""
    details = app.page.get_by_test_id("stExpander").filter(has_text=ADVANCED).locator("details")
    if details.get_attribute("open") is None:
        details.locator("summary").click()
        expect(details).to_have_attribute("open", "")


def fill(app, fields: dict) -> None:
    if ADVANCED_FIELDS & set(fields):
        open_advanced(app)
    for label, value in fields.items():
        app.number(label, value)
    app.wait_idle()


def start(app, fields: dict, model: str = "lenet5") -> str:
    """Fill the form, press Start, wait for the live panel to show the new run; its id."""
    fill(app, fields)
    expect(app.button("Start training")).to_be_enabled()
    before = set(run_ids(app))
    app.button("Start training").click()
    head = app.heading(rf"^Run \S+ · {re.escape(model)} · (queued|starting|running)$")
    app.wait_for(lambda: head.count() == 1 and head_id(head) not in before, "the new run's live panel", 60)
    return head_id(head)


def head_id(head) -> str:
    return re.match(r"Run (\S+) ·", head.inner_text()).group(1)


def run_ids(app) -> list[str]:
    heads = app.heading(r"^Run \S+ · ")
    return [head_id(heads.nth(i)) for i in range(heads.count())]


def run_heading(app, run_id: str, status: str):
    """The live panel's heading for a run in a status (a regex); the first, as the page redraws once
    when a run ends and both copies can be there for a moment."""
    return app.heading(rf"^Run {re.escape(run_id)} · \S+ · {status}$").first


def cancel_button(app, run_id: str):
    """The run's Cancel button (a button with a tooltip is drawn twice, one copy hidden)."""
    return app.page.locator(f".st-key-cancel-{run_id} button:visible")


def cancel(app, run_id: str) -> None:
    """Press Cancel on the watched run and wait until it reads cancelled."""
    cancel_button(app, run_id).click()
    expect(run_heading(app, run_id, "cancelled")).to_be_visible(timeout=60_000)


def progress_step(app) -> tuple[int, int] | None:
    """(step, total) from the live panel's progress text, or None while it shows none."""
    texts = app.page.locator(".st-key-live_panel").get_by_test_id("stProgress").all_inner_texts()
    for text in texts:
        m = re.search(r"step ([\d,]+) / ([\d,]+)", text)  # 1,679 / 3,000
        if m:
            return int(m.group(1).replace(",", "")), int(m.group(2).replace(",", ""))
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

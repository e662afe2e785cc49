"""Train: configure a run, start it in its own process, watch it live, compare runs.

The page is the layout; each part lives in its own module:

1. the form (_train_form): a preset or every knob of TrainConfig. A wrong value is said next to its
   field and keeps Start disabled, so the values Start submits are the ones that were checked;
2. Start registers a queued run owned by this browser (_frame.visitor_token) and the executor starts
   it. The page only reads the registry: leaving the page, refreshing or opening a second tab never
   stops a run;
3. the live panel (_train_live), right under the form: the run being watched, its progress and its
   curves, redrawn while it trains;
4. the table of every run (_runs_table): tick rows to overlay their curves (_run_charts).
"""

from __future__ import annotations

import streamlit as st

from mnist_core import form, registry
from mnist_core.errors import MnistLabError
from app_pages import _run_charts, _runs_table, _sweep_ui, _train_form, _train_live
from app_pages._data import require_data
from app_pages._errors import show_error
from app_pages._figures import CHART_CONFIG
from app_pages._frame import visitor_token

st.title("Train")
st.caption("Pick a recipe or set every knob, press Start, and watch the loss and accuracy as the network learns. "
           "Training runs in its own process: you can leave this page and come back.")
require_data()
token = visitor_token()
try:
    recent = registry.recent_runs()  # the live ones and the newest: never the whole registry
except MnistLabError as exc:
    show_error(exc)
    recent = []

# --- 1. the form ---------------------------------------------------------------------------------
offers = _train_form.restore()
_train_form.start_toast()
values = _train_form.values()
problems = form.problems(values)
tab_one, tab_sweep = st.tabs(["One run", "Sweep"])
with tab_one, st.container(border=True):
    _train_form.preset_row(offers, first_visit=not any(r.owner == token for r in recent))
    _train_form.fields(problems)
    start = _train_form.start_button(problems, recent)
    _train_form.architecture()

# --- 2. Start ------------------------------------------------------------------------------------
if start:  # a disabled Start never reports a click: these values passed form.problems
    _train_form.start(values, token)
with tab_sweep:
    _sweep_ui.sweep_tab()

# --- 3. the run being watched --------------------------------------------------------------------
_train_live.watch(recent, token)

# --- 4. every run --------------------------------------------------------------------------------
st.subheader("Runs")
try:
    shown = _runs_table.runs_page()
except MnistLabError as exc:
    show_error(exc)
    shown = _runs_table.RunsPage([], 1, 0)
if not shown.runs:
    st.caption("Runs you start appear here.")
else:
    if shown.total > len(shown.runs):
        last_row = shown.first_row + len(shown.runs) - 1
        st.caption(f"Runs {shown.first_row:,}-{last_row:,} of {shown.total:,}, newest first.")
    st.caption("Select runs (tick the rows) to overlay their curves.")
    event = st.dataframe(_runs_table.table(shown.runs, token), hide_index=True, on_select="rerun",
                         selection_mode="multi-row",
                         key=f"runs_table_{shown.first_row}")  # a selection belongs to its page's rows
    picked = [shown.runs[i] for i in event.selection.rows] if event and event.selection else []
    if picked:
        loss, acc = _run_charts.overlaid_curves(_runs_table.series(picked))
        left, right = st.columns(2)
        left.plotly_chart(loss, key="compare_loss", config=CHART_CONFIG)
        right.plotly_chart(acc, key="compare_acc", config=CHART_CONFIG)

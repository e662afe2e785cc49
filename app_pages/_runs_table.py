"""The Train page's table of every run: a page of rows at a time, newest first, one row per run.

`runs_page()` reads one page of the registry (SQL LIMIT/OFFSET: a host with thousands of runs never
reads them all), with a page number field once there is more than one page; `table(page, token)`
says each run in a row; `series(picked)` gives the ticked runs' curves to _run_charts.overlaid_curves.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import streamlit as st

from mnist_core import live, registry
from mnist_core.errors import MnistLabError
from mnist_core.training import TrainConfig
from app_pages._figures import percent

RUNS_PAGE = 25  # rows a page


@dataclass(frozen=True)
class RunsPage:
    runs: list          # this page's runs, newest first
    first_row: int      # the number of its first row, from 1
    total: int          # how many runs in all


def runs_page() -> RunsPage:
    """The page of runs the page number field points at (no field while one page holds them all)."""
    total = registry.count_runs()
    pages = max(1, -(-total // RUNS_PAGE))
    page = 1
    if pages > 1:
        held = st.session_state.get("runs_page", 1)
        if not isinstance(held, int) or not 1 <= held <= pages:  # runs were removed since it was set
            st.session_state["runs_page"] = min(max(1, held), pages) if isinstance(held, int) else 1
        page = st.number_input("Page", min_value=1, max_value=pages, step=1, key="runs_page",
                               help=f"{RUNS_PAGE} runs a page, newest first")
        page = min(max(1, int(page or 1)), pages)
    first = (page - 1) * RUNS_PAGE
    return RunsPage(registry.list_runs(newest_first=True, limit=RUNS_PAGE, offset=first), first + 1, total)


def table(shown: list[registry.Run], token: str) -> pd.DataFrame:
    """A row per run: its id, status, model and config, how well and how long it trained, where, whose,
    and its error in the visitor's words."""
    return pd.DataFrame([{
        "run": r.id, "status": r.state, "model": r.config.get("model") or "–",
        "config": _summary(r.config),
        "best validation": percent(r.best_val_accuracy), "test accuracy": percent(r.test_accuracy),
        "duration": live.fmt_seconds(r.duration), "ran on": r.node or r.host or "–",
        "yours": "yes" if r.owner == token else "",
        "error": live.for_visitor(r.error),
    } for r in shown])


def series(picked: list[registry.Run]) -> list[dict]:
    """The ticked runs for _run_charts.overlaid_curves: each labelled by the end of its id and its model."""
    return [{"label": f"{r.id[-6:]} {r.config.get('model')}", "rows": registry.get_metrics(r.id)} for r in picked]


def _summary(config: dict) -> str:
    try:
        return TrainConfig.from_dict(config).summary()
    except MnistLabError:
        return "(invalid config)"

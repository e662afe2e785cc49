"""Ranking runs by their accuracy on the visitors' drawings, beside their MNIST test accuracy: the Sweep
tab's results and the Class page's leaderboard offer "Rank by" either.

Each completed run's model is measured on the set (mnist_core.drawings) as Evaluate measures one:
the pictures read here, the predictions of every model in one heavy job (mnist_core.heavy), at most
MAX_RANKED runs (the best by test accuracy): a sweep or a class of hundreds asks for one bounded job.
Which part: the whole set, unless one of the runs ranked trained on the drawings (drawings_weight
above 0), then every run on the held-out givers' drawings only, the one part none of them trained on:
runs compared on the same drawings, fairly.
"""

from __future__ import annotations

import streamlit as st

from mnist_core import drawings
from mnist_core import evaluate as ev
from mnist_core.artifacts import load_run_model
from mnist_core.errors import MnistLabError
from app_pages._frame import run_heavy

RANK_BY = {"test": "MNIST test accuracy", "drawings": "accuracy on the drawings"}
MAX_RANKED = 50  # runs measured on the drawings at once: one heavy job holds each run's model
PART_WORDS = {"all": "every drawing in the set", "held-out": "the held-out givers' drawings (some runs trained "
                                                             "on the others)"}


def rank_by(key: str) -> str:
    """The "Rank by" choice: "test" or "drawings"."""
    return st.segmented_control("Rank by", list(RANK_BY), default="test", format_func=RANK_BY.get, key=key) or "test"


def fair_part(runs) -> str:
    """The part every one of `runs` is measured on (see the module docstring)."""
    return "held-out" if any((r.config or {}).get("drawings_weight") for r in runs) else "all"


def _set_state() -> tuple[int, int]:
    newest = drawings.list_drawings(newest_first=True, limit=1)
    return drawings.count_drawings(), newest[0].id if newest else 0


@st.cache_data(show_spinner="Measuring the runs on the drawings...", max_entries=16)
def _accuracies(run_ids: tuple[str, ...], part: str, state: tuple[int, int]) -> dict[str, float]:
    images, labels, _ = drawings.drawing_set(part=part)
    if not len(labels):
        return {}
    loaded = {}
    for run_id in run_ids:
        try:
            loaded[run_id] = load_run_model(run_id)[0]
        except MnistLabError:
            continue  # a run whose checkpoint is gone is left unranked
    if not loaded:
        return {}
    return dict(zip(loaded, run_heavy(ev.accuracies, list(loaded.values()), images, labels)))


def on_drawings(runs) -> tuple[dict[str, float], str]:
    """({run id: accuracy on the drawings} of the completed runs among `runs`, the part measured on)."""
    part = fair_part(runs)
    done = sorted((r for r in runs if r.status == "completed"), key=lambda r: -(r.test_accuracy or 0))
    return _accuracies(tuple(sorted(r.id for r in done[:MAX_RANKED])), part, _set_state()), part


def said(part: str, measured: dict) -> None:
    """One caption: what the drawings accuracy was measured on, or that there is nothing to measure on."""
    if measured:
        st.caption(f"Accuracy on the drawings: each completed run's model on {PART_WORDS[part]}"
                   + (f" (the best {MAX_RANKED} by test accuracy)." if len(measured) >= MAX_RANKED else "."))
    else:
        st.info("No run could be measured on the drawings: the set has no drawings" +
                (" by held-out givers" if part == "held-out" else "") + " yet, or no run has finished.",
                icon=":material/draw:")

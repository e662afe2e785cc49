"""Class: one class's runs for its teacher and its students, live.

A teacher shares this page's link with `?class=CODE`; whoever opens it is in the class for that
browser (app_pages._class) and picks a display name. The page shows only that class's runs
(mnist_core.classes): the runs in progress (a fragment polling while any is live), the leaderboard
(ranked by test accuracy or by accuracy on the visitors' drawings: _drawings_rank),
the curves of chosen students overlaid, every run on one parallel-coordinates chart, and a CSV.

No teacher key: the teacher's view is everyone's view. Seeing is all a class code gives (a student
sees the leaderboard anyway, and the curves are of the same runs), so a key would guard nothing;
the one power that matters, cancelling or deleting a run, already takes the run's owner token, and
the hosting bounds (queue caps per browser and for everyone) hold for a class like for anyone. The
code is the class's only secret: "New class code" makes one nobody guesses.
"""

from __future__ import annotations

import html
import urllib.parse

import pandas as pd
import streamlit as st

from mnist_core import classes, executors, form, live, registry
from mnist_core.errors import MnistLabError
from app_pages import _class, _run_charts
from app_pages import _drawings_rank as drawings_rank
from app_pages._errors import show_error
from app_pages._figures import CHART_CONFIG, percent
from app_pages._frame import visitor_token

POLL_SECONDS = 2.0       # while a run of the class is live
IDLE_POLL_SECONDS = 5.0  # while none is: only to notice a new run
MAX_STUDENTS_OVERLAID = 8  # more students than this on one chart are a tangle
CURVES_PER_STUDENT = 5     # each student's newest runs: every curve is read from the registry on each redraw

st.title("Class")
token = visitor_token()
code, name = _class.membership()


# --- joining --------------------------------------------------------------------------------------

def _join() -> None:
    try:
        _class.join(st.session_state["join_code"], st.session_state.get("join_name"))
    except MnistLabError as exc:
        st.session_state["join_problem"] = str(exc)


def _suggest_code() -> None:
    st.session_state["join_code"] = classes.new_code(st.session_state.get("join_code") or "class")


if code is None:
    st.caption("A teacher gives the class a code and shares this page's link with it; everyone who opens the "
               "link is in the class and sees its runs and leaderboard. No account, no email: students pick a "
               "display name that only their class sees.")
    with st.form("join_class"):
        c1, c2 = st.columns(2)
        c1.text_input("Class code", key="join_code", max_chars=classes.CODE_MAX, placeholder="period-3",
                      help="3 to 32 letters, digits and dashes. Anyone who knows the code sees the class.")
        c2.text_input("Your display name (students)", key="join_name", max_chars=classes.NAME_MAX,
                      help="Shown only inside this class. A teacher may leave it empty.")
        b1, b2 = st.columns(2)
        b1.form_submit_button("Join the class", type="primary", icon=":material/login:", on_click=_join)
        b2.form_submit_button("New class code", icon=":material/casino:", on_click=_suggest_code,
                              help="A code with a random part, so nobody outside the class guesses it.")
    if problem := st.session_state.pop("join_problem", None):
        st.error(problem)
    st.stop()


# --- who am I in this class -----------------------------------------------------------------------

def _set_name() -> None:
    try:
        _class.set_name(st.session_state["class_name_field"])
    except MnistLabError as exc:
        st.session_state["name_problem"] = str(exc)


def share_link(class_code: str) -> str:
    """This page's address with the class in it (as the teacher's browser sees the server)."""
    here = urllib.parse.urlsplit(st.context.url or "")
    return urllib.parse.urlunsplit((here.scheme or "http", here.netloc, here.path or "/class",
                                    urllib.parse.urlencode({"class": class_code}), ""))


st.subheader(f"Class {code}")
head = st.columns([3, 2])
with head[0]:
    st.caption("Share this link with the class (students open it, then pick a name):")
    st.code(share_link(code), language=None)
with head[1]:
    if name:
        st.markdown(f"You are **{_class.as_markdown(name)}** in this class.")
    with st.popover("Change your name" if name else "Choose your display name", icon=":material/badge:"):
        with st.form("class_name_form", border=False):
            st.text_input("Display name", key="class_name_field", max_chars=classes.NAME_MAX, value=name or "")
            st.form_submit_button("Save", key="save_name", on_click=_set_name)
    st.button("Leave the class", icon=":material/logout:", on_click=_class.leave)
if not name:
    st.info("Choose a display name before you train: your runs are shown under it on the leaderboard "
            "(a teacher watching the class needs none).", icon=":material/badge:")
if problem := st.session_state.pop("name_problem", None):
    st.error(problem)


# --- runs in progress -----------------------------------------------------------------------------

def _cancel(run_id: str) -> None:
    try:
        executors.for_host().cancel(run_id, by=token)
    except MnistLabError as exc:
        st.session_state["class_action_problem"] = live.for_visitor(str(exc))


def draw_live(class_runs: list[registry.Run]) -> None:
    """Each live run of the class: who, progress, and Cancel for the browser that started it."""
    in_progress = [r for r in class_runs if r.is_live]
    if not in_progress:
        st.caption("No run in progress in this class.")
        return
    everyone = registry.list_runs(status=("queued", "running")) if any(r.status == "queued" for r in in_progress) \
        else in_progress  # a place in line counts the live runs of everyone
    for r in in_progress:
        row = st.columns([5, 1], vertical_alignment="center")
        p = live.short_progress(r, everyone)
        who = _class.as_markdown(classes.student_of(r))  # progress text and tooltips are Markdown
        row[0].progress(p.fraction, text=f"{who} · {p.text}")
        mine = live.can_change(r, token)
        row[1].button("Cancel", key=f"class-cancel-{r.id}", icon=":material/stop:", disabled=not mine,
                      on_click=_cancel, args=(r.id,),
                      help=None if mine else f"Only {who}'s browser can cancel this run.")


try:
    class_runs = classes.class_runs(code)
except MnistLabError as exc:
    show_error(exc)
    st.stop()

st.subheader("In progress")


def _shape(class_runs: list[registry.Run]) -> tuple:
    """What the page as a whole shows of the runs' states: which runs there are and which are live."""
    return tuple((r.id, r.is_live) for r in class_runs)


@st.fragment(run_every=POLL_SECONDS if any(r.is_live for r in class_runs) else IDLE_POLL_SECONDS)
def live_panel(drawn: tuple) -> None:
    """Redraws itself every couple of seconds while a run of the class is live, and checks for new runs
    less often while none is (a teacher's page waits for the students' first runs). The whole page is
    drawn again when a run is added, starts or ends: the leaderboard and the tables follow."""
    try:
        now = classes.class_runs(code)
    except MnistLabError as exc:
        show_error(exc)
        return
    draw_live(now)
    if problem := st.session_state.pop("class_action_problem", None):  # a Cancel pressed here, refused
        st.error(problem)
    if _shape(now) != drawn:
        st.rerun()


live_panel(_shape(class_runs))
if problem := st.session_state.pop("class_action_problem", None):
    st.error(problem)


# --- the leaderboard ------------------------------------------------------------------------------

SETTING_COLUMNS = {name: form.LABELS[name] for name in classes.KEY_SETTINGS}

st.subheader("Leaderboard")
try:  # each best run's validation rows: a run whose training collapsed is marked
    board = classes.leaderboard(class_runs, metrics=lambda run_id: registry.get_metrics(run_id, split="val"))
except MnistLabError as exc:
    show_error(exc)
    st.stop()
leaderboard_place = st.container(key="class_leaderboard")
if board and drawings_rank.rank_by("class_rank_by") == "drawings":
    # each student's best run (by test accuracy, as above) measured on the drawings, and ranked by that
    measured, part = drawings_rank.on_drawings(class_runs)
    for row in board:
        row["drawings_accuracy"] = measured.get(row["run"])
    board.sort(key=lambda row: -(row["drawings_accuracy"] if row["drawings_accuracy"] is not None else -1.0))
    for place, row in enumerate(board, start=1):
        row["rank"] = place if row["drawings_accuracy"] is not None else None
    drawings_rank.said(part, measured)
if not board:
    st.caption("Nobody in this class has started a run yet. Runs started on the Train page while you are in the "
               "class appear here.")
else:
    ranked = pd.DataFrame([{
        "rank": row["rank"], "student": row["student"], "test accuracy": percent(row["test_accuracy"]),
        **({"on the drawings": percent(row["drawings_accuracy"])} if "drawings_accuracy" in row else {}),
        **{label: row.get(name) for name, label in SETTING_COLUMNS.items()}, "runs": row["runs"],
        "best run": row["run"], "note": row["note"],  # a best run whose training collapsed says so
    } for row in board]).astype({"rank": "Int64"})  # whole places, empty for a student with no finished run
    leaderboard_place.dataframe(ranked, hide_index=True, key="leaderboard")


# --- curves and the chart of every run ------------------------------------------------------------

def student_curves(chosen: dict[str, list[registry.Run]]) -> None:
    """The chosen students' newest runs, loss and validation accuracy, a colour per student."""
    # Plotly reads tags in trace names and tick labels (<a href>, <b>): a name is escaped to show as typed.
    series = [{"label": f"{html.escape(student)} · run {r.id}", "rows": registry.get_metrics(r.id),
               "value": html.escape(student)}
              for student, theirs in chosen.items()
              for r in [r for r in theirs if r.status != "queued"][-CURVES_PER_STUDENT:]]
    if not series:
        st.caption("No curves yet: their runs have not started.")
        return
    loss_fig, acc_fig = _run_charts.overlaid_curves(series, colour_field="student")
    c1, c2 = st.columns(2)
    c1.plotly_chart(loss_fig, key="class_loss", config=CHART_CONFIG)
    c2.plotly_chart(acc_fig, key="class_acc", config=CHART_CONFIG)


by_student = classes.students(class_runs)
if by_student:
    st.subheader("Curves")
    # Until the visitor picks, the two best students are shown (kept up to date as the leaderboard changes:
    # a widget's `default` would be fixed by the first draw, often before any run had finished).
    if not st.session_state.get("class_students_picked"):
        st.session_state["class_students"] = [row["student"] for row in board[:2] if row["test_accuracy"] is not None]
    picked = st.multiselect("Students to compare", list(by_student), key="class_students",
                            max_selections=MAX_STUDENTS_OVERLAID, placeholder="Choose students",
                            on_change=lambda: st.session_state.update(class_students_picked=True))
    if picked:
        student_curves({student: by_student[student] for student in picked if student in by_student})
    axes, chart_rows = classes.parallel_rows(class_runs)
    if chart_rows:
        st.subheader("Every finished run on one chart")
        st.caption("One line per run, coloured by its test accuracy. Drag along an axis to keep only the runs "
                   "that pass through that range.")
        chart_rows = [{**row, "student": html.escape(row["student"])} for row in chart_rows]
        st.plotly_chart(_run_charts.parallel_coordinates(chart_rows, axes), key="class_parallel",
                        config=CHART_CONFIG)


# --- every run ------------------------------------------------------------------------------------

def _delete(run_id: str) -> None:
    try:
        registry.delete_run(run_id, by=token)
    except MnistLabError as exc:
        st.session_state["class_action_problem"] = live.for_visitor(str(exc))


if class_runs:
    st.subheader("Every run")
    table = classes.runs_table(class_runs)
    st.dataframe(pd.DataFrame([{
        "run": row["run"], "student": row["student"], "status": row["status"],
        **{label: row[name] for name, label in SETTING_COLUMNS.items()},
        "best validation": percent(row["best_val_accuracy"]), "test accuracy": percent(row["test_accuracy"]),
        "duration": live.fmt_seconds(row["duration_s"]),
    } for row in table]), hide_index=True, key="class_runs_table")
    own_ended = [r for r in reversed(class_runs) if live.can_change(r, token) and not r.is_live]
    if own_ended:
        with st.popover("Delete one of your runs", icon=":material/delete:"):
            chosen = st.selectbox("Your finished run", [r.id for r in own_ended], key="class_delete_pick")
            st.button("Yes, delete it", type="primary", key="class_delete", on_click=_delete, args=(chosen,))
    st.download_button("Download the class's runs (CSV)", classes.runs_csv(class_runs),
                       file_name=f"{code}-runs.csv", mime="text/csv", icon=":material/download:")

"""The Train page's Sweep tab: launch many runs that differ in one to three knobs, watch them, and
read what the knob did.

Three parts, top to bottom:

- Build: up to three fields to vary (a list of values, or a range: the learning rate on a log
  scale), grid or random, "repeat each with k seeds". Each run starts from the One run form's
  values. Before Launch the tab shows "N runs x ~T s ~= total" (mnist_core.sweeps.plan) or, above a
  cap or with a value a run cannot take, one line saying why, and Launch stays disabled.
- Watch: the chosen sweep's runs in a live table (queued / running / done / failed) and their curves
  overlaid, coloured by the varied value; Cancel stops the whole sweep (its owner only). The table
  ranks by test accuracy or by accuracy on the visitors' drawings (_drawings_rank).
- Understand: parallel coordinates (brushing filters), test accuracy against each varied field
  (clicking a dot opens that run), the summary in words. An opened run can be watched in the live
  panel below or made the default model on Draw and Inside for this visitor ("use this model").

The maths is mnist_core.sweeps'; the charts are _run_charts' (shared with the class view).
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from mnist_core import form, registry, sweeps
from mnist_core.errors import MnistLabError
from mnist_core.live import RunRows, for_visitor
from mnist_core.training import TrainConfig
from app_pages import _class, _train_form
from app_pages import _drawings_rank as drawings_rank
from app_pages import _run_charts as charts
from app_pages import _keys as keys
from app_pages._errors import show_error
from app_pages._figures import CHART_CONFIG, percent
from app_pages._frame import visitor_token
from app_pages._selectable import selectable_chart

POLL_SECONDS = 2.0
NONE = "(none)"
FIELDS = {f.name: f for f in TrainConfig.fields()}
VARYABLE = [name for name in FIELDS if name not in ("seed", "device", "backend", "threads")]
STATUS_WORDS = {"queued": "queued", "running": "running", "completed": "done", "failed": "failed",
                "cancelled": "cancelled"}


# --- build -------------------------------------------------------------------------------------------

def _param_row(i: int, default: form.SweepDefault) -> sweeps.Param | None:
    """One varied field's widgets (the first row starts as the default sweep here); its Param, or None
    when the row varies nothing. Raises ConfigError."""
    default_name, default_values = ((default.name, ", ".join(f"{v:g}" for v in default.values)) if i == 0
                                    else (NONE, ""))
    cols = st.columns([2, 1, 4])
    options = [NONE, *VARYABLE]
    name = cols[0].selectbox(f"Vary field {i + 1}", options, index=options.index(default_name), key=f"sweep_field_{i}",
                             format_func=lambda n: n if n == NONE else form.label(n))
    if name == NONE:
        return None
    if FIELDS[name].metadata["choices"] is not None:  # optimizer, model...: pick among the allowed values
        offered = list(form.choices(name))
        picked = cols[2].multiselect(f"Values of {form.noun(name)}", offered, default=offered[:2],
                                     key=f"sweep_pick_{i}_{name}")
        return sweeps.Param(name, values=tuple(picked))  # none picked: ConfigError "give at least one value"
    how = cols[1].radio("as", ["list", "range"], key=f"sweep_how_{i}", horizontal=True,
                        help="A list of values, or a range spaced evenly (on a log scale for the learning rate, "
                             "weight decay and batch size).")
    if how == "list":
        text = cols[2].text_input(f"Values of {form.noun(name)}", value=default_values if name == default_name else "",
                                  key=f"sweep_values_{i}_{name}", placeholder="e.g. 0.001, 0.01, 0.1",
                                  max_chars=sweeps.MAX_PARAM_TEXT - len(name) - 1)  # parse_param refuses more
        return sweeps.parse_param(f"{name}={text}")
    low, high, points = cols[2].columns(3)
    lo = low.number_input("from", value=None, format="%g", key=f"sweep_low_{i}_{name}")
    hi = high.number_input("to", value=None, format="%g", key=f"sweep_high_{i}_{name}")
    n = points.number_input("points", min_value=2, max_value=12, value=4, key=f"sweep_points_{i}_{name}")
    if lo is None or hi is None:
        raise MnistLabError(f"{form.noun(name)}: give the range's two ends")
    return sweeps.Param(name, low=float(lo), high=float(hi), points=int(n))


def _build(token: str, all_runs: list) -> None:
    st.caption("Each run starts from the One run form's values: " + form.config_line(_train_form.saved_values()))
    params, problem = [], None
    default = form.sweep_default()  # as many values as a visitor may queue here
    if default.note and st.session_state.get("sweep_field_0", default.name) == default.name:
        st.caption(f"The first sweep here: {default.note}.")
    for i in range(sweeps.MAX_PARAMS):
        try:
            param = _param_row(i, default)
        except MnistLabError as exc:
            problem = problem or live_words(exc)
            continue
        if param is not None:
            params.append(param)
    cols = st.columns(3)
    mode = cols[0].radio("Points", ["grid", "random"], horizontal=True, key="sweep_mode",
                         help="grid: every combination of the values; random: N points drawn from them (a range is "
                              "sampled evenly, on a log scale for the learning rate), the same N for the same seed.")
    samples = cols[1].number_input("random points", min_value=1, max_value=200, value=8, key="sweep_samples",
                                   disabled=mode == "grid")
    seeds = cols[2].number_input("repeat each with k seeds", min_value=1, max_value=5, value=1, key="sweep_seeds",
                                 help="The same point trained with seeds 0, 1, ...: the spread a seed alone causes.")
    plan = None
    if problem is None and not params:
        problem = "choose at least one field to vary"
    if problem is None:
        spec = sweeps.SweepSpec(_train_form.saved_values(), tuple(params),
                                random=int(samples) if mode == "random" else 0, seeds=int(seeds))
        try:
            plan = sweeps.plan(spec, owner=token, all_runs=all_runs)
        except MnistLabError as exc:
            problem = live_words(exc)
    if plan is not None:
        st.info(plan.estimate.text(), icon=":material/schedule:")
    else:
        st.error(problem)
    if st.button("Launch sweep", type="primary", icon=":material/rocket_launch:", disabled=plan is None,
                 key="sweep_launch"):
        try:
            class_code, student = _class.membership()  # inside a class, the sweep's runs show on its page too
            sweep_id, run_ids = sweeps.submit(plan.runs, owner=token, class_code=class_code, student=student)
        except MnistLabError as exc:
            show_error(exc)
        else:
            st.session_state["sweep_watch"] = sweep_id
            st.toast(f"Sweep launched: {len(run_ids)} runs", icon=":material/rocket_launch:")
            st.rerun()


def live_words(exc: Exception) -> str:
    return for_visitor(str(exc))


# --- watch and understand ----------------------------------------------------------------------------

def _label(sweep_id: str, its_runs: list, token: str) -> str:
    fields = sweeps.varied_fields([r.config for r in its_runs])
    live = sum(r.is_live for r in its_runs)
    return (f"{sweep_id} · {len(its_runs)} runs · {', '.join(form.noun(f) for f in fields) or 'one point'}"
            + (f" · {live} live" if live else "") + (" · yours" if its_runs[0].owner == token else ""))


def _pick_sweep(all_runs: list, token: str) -> str | None:
    listed = sweeps.list_sweeps(all_runs)
    if not listed:
        return None
    by_id = dict(listed)
    wanted = st.session_state.get("sweep_watch")
    if wanted not in by_id:  # the visitor's newest sweep, else the newest
        wanted = next((s for s, rs in listed if rs[0].owner == token), listed[0][0])
    st.session_state["sweep_pick"] = wanted
    st.selectbox("Sweep", list(by_id), key="sweep_pick", format_func=lambda s: _label(s, by_id[s], token),
                 on_change=lambda: st.session_state.update(sweep_watch=st.session_state["sweep_pick"]))
    return wanted


def _results_table(analysis: sweeps.Analysis, progress: dict) -> pd.DataFrame:
    return pd.DataFrame([{
        "run": r.run_id, **{form.noun(f): sweeps.fmt_value(r.values[f]) for f in analysis.fields}, "seed": r.seed,
        "status": STATUS_WORDS.get(r.status, r.status), "progress": progress.get(r.run_id, 0.0),
        "test accuracy": percent(r.test_accuracy), "best validation": percent(r.best_val_accuracy),
        "last validation": percent(r.last_val_accuracy), "note": r.problem or "",
    } for r in analysis.results])


def _open_run(result: sweeps.RunResult) -> None:
    """The opened run: its values and scores, a link to the live panel, and "use this model"."""
    with st.container(border=True, key="sweep_opened"):
        st.markdown(f"**Run {result.run_id}** · {sweeps.describe(result.values) or 'the base config'} · seed "
                    f"{result.seed} · {STATUS_WORDS.get(result.status, result.status)}"
                    + (f" · test accuracy {result.test_accuracy:.2%}" if result.test_accuracy is not None else ""))
        if result.collapse:  # its accuracy is a model saved before the collapse: say so, not just the number
            st.warning(result.collapse.text(), icon=":material/warning:")
        cols = st.columns(2)
        if cols[0].button("Watch it in the live panel", icon=":material/monitoring:", key="sweep_watch_run"):
            st.session_state[keys.WATCH_RUN] = result.run_id
            st.session_state[keys.SCROLL_TO_RUN] = True
            st.rerun()
        if cols[1].button("Use this model on Draw and Inside", icon=":material/check:", key="sweep_use_model",
                          disabled=result.status != "completed",
                          help="Makes this run's trained model the one Draw and Inside the network start with, "
                               "for this browser."):
            st.session_state[keys.DEFAULT_MODEL] = f"run:{result.run_id}"
            st.toast(f"Draw and Inside the network now start with run {result.run_id}", icon=":material/check:")


def _understand(analysis: sweeps.Analysis) -> None:
    finished = [r for r in analysis.results if r.test_accuracy is not None or r.diverged]
    if not finished:
        return
    st.markdown("#### What the sweep showed")
    st.markdown("\n".join(f"- {s}" for s in analysis.summary))
    if analysis.fields:
        rows = [{**r.values, charts.ACCURACY: r.test_accuracy} for r in analysis.results
                if r.status not in ("queued", "running")]
        st.caption("One line per run. Drag along an axis to keep only the runs inside that range.")
        st.plotly_chart(charts.parallel_coordinates(rows, analysis.fields), key="sweep_parcoords",
                        config=CHART_CONFIG)
    for name in analysis.fields:
        points = [{"run_id": r.run_id, "value": r.values[name], "accuracy": r.test_accuracy}
                  for r in analysis.results]
        groups = [{"value": p.values[name], "mean": p.mean, "spread": p.spread}
                  for p in sweeps.by_value(analysis.groups, name)]
        event = selectable_chart(charts.accuracy_against(points, name, groups), key=f"sweep_against_{name}",
                                 config=CHART_CONFIG)
        clicked = [p.get("customdata") for p in (event.selection.points if event and event.selection else [])]
        if clicked and isinstance(clicked[0], str) and clicked[0] != st.session_state.get("sweep_clicked"):
            st.session_state["sweep_clicked"] = st.session_state["sweep_opened_run"] = clicked[0]  # a new click
    if len(analysis.groups) < len(analysis.results):
        st.caption("Mean ± spread (standard deviation) over seeds, per point:")
        st.dataframe(pd.DataFrame([{**{form.noun(f): sweeps.fmt_value(g.values[f]) for f in analysis.fields},
                                    "runs": len(g.run_ids),
                                    "mean test accuracy": percent(g.mean),
                                    "spread": f"±{g.spread:.2%}" if g.spread is not None else "–"}
                                   for g in analysis.groups]), hide_index=True)


def _rows(run_id: str) -> list[dict]:
    """A run's metric rows, topped up with only the rows newer than those this session holds (the
    table and curves redraw every POLL_SECONDS while the sweep runs)."""
    held = st.session_state.setdefault("sweep_rows", {})
    if run_id not in held:
        held[run_id] = RunRows(run_id)
    return held[run_id].top_up(registry.get_metrics)


def _watch(sweep_id: str, token: str) -> None:
    try:
        its_runs = sweeps.sweep_runs(sweep_id)
        metrics = {r.id: _rows(r.id) for r in its_runs if r.status != "queued"}
    except MnistLabError as exc:
        show_error(exc)
        return
    analysis = sweeps.analyse(its_runs, lambda run_id: metrics.get(run_id, []))
    counts = analysis.counts
    done = sum(counts.get(s, 0) for s in ("completed", "failed", "cancelled"))
    st.progress(done / len(its_runs), text=" · ".join(
        f"{counts.get(s, 0)} {STATUS_WORDS[s]}" for s in ("queued", "running", "completed", "failed", "cancelled")
        if counts.get(s) or s in ("queued", "running", "completed")) + f" of {len(its_runs)} runs")
    live = [r for r in its_runs if r.is_live]
    mine = its_runs[0].owner is not None and its_runs[0].owner == token
    if live and st.button("Cancel the whole sweep", icon=":material/stop:", key="sweep_cancel", disabled=not mine,
                          help=None if mine else "Only the browser that launched this sweep can cancel it."):
        try:
            asked = sweeps.cancel(sweep_id, by=token)
        except MnistLabError as exc:
            show_error(exc)
        else:
            st.toast(f"Cancelling {asked} run(s)...", icon=":material/stop:")
    table = _results_table(analysis, {r.id: r.progress for r in its_runs})
    if drawings_rank.rank_by("sweep_rank_by") == "drawings":  # best on the drawings first; unmeasured runs last
        measured, part = drawings_rank.on_drawings(its_runs)
        table.insert(table.columns.get_loc("test accuracy") + 1, "on the drawings",
                     [percent(measured.get(run_id)) for run_id in table["run"]])
        table = table.iloc[sorted(range(len(table)), key=lambda i: -measured.get(table["run"].iloc[i], -1.0))]
        drawings_rank.said(part, measured)
    st.dataframe(table, hide_index=True, key="sweep_table",
                 column_config={"progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0)})
    colour = analysis.fields[0] if analysis.fields else None
    series = [{"label": f"{r.id[-6:]} {sweeps.describe({f: r.config.get(f) for f in analysis.fields})}",
               "value": r.config.get(colour) if colour else None, "rows": metrics.get(r.id, [])} for r in its_runs]
    if any(s["rows"] for s in series):
        loss_fig, acc_fig = charts.overlaid_curves(series, colour)
        c1, c2 = st.columns(2)
        c1.plotly_chart(loss_fig, key="sweep_loss", config=CHART_CONFIG)
        c2.plotly_chart(acc_fig, key="sweep_acc", config=CHART_CONFIG)
    _understand(analysis)
    by_id = {r.run_id: r for r in analysis.results}
    if st.session_state.get("sweep_opened_run") not in by_id:
        st.session_state["sweep_opened_run"] = analysis.results[0].run_id
    st.selectbox("Open a run", list(by_id), key="sweep_opened_run",
                 format_func=lambda run_id: f"{run_id} · {sweeps.describe(by_id[run_id].values) or 'base'} · seed "
                                            f"{by_id[run_id].seed} · {STATUS_WORDS.get(by_id[run_id].status, '')}",
                 help="Or click a dot on a chart of test accuracy.")
    _open_run(by_id[st.session_state["sweep_opened_run"]])


def sweep_tab() -> None:
    """The whole tab: build, then the chosen sweep live (redrawn every POLL_SECONDS while any run of it
    is live; the page once more when the last one ends, which stops the polling)."""
    token = visitor_token()
    try:
        all_runs = registry.recent_runs()  # the live runs and the newest, whatever the registry holds
    except MnistLabError as exc:
        show_error(exc)
        return
    with st.container(border=True):
        _build(token, all_runs)
    sweep_id = _pick_sweep(all_runs, token)
    if sweep_id is None:
        st.caption("Sweeps you launch appear here: their runs live, then what the knob did.")
        return
    polling = any(r.is_live for r in all_runs if r.sweep == sweep_id)

    @st.fragment(run_every=POLL_SECONDS if polling else None)
    def watched(sweep_id: str, was_live: bool) -> None:
        _watch(sweep_id, token)
        if was_live:
            try:
                still = any(r.is_live for r in sweeps.sweep_runs(sweep_id))
            except MnistLabError:
                return
            if not still:
                st.rerun()  # the last run ended: the whole page once more, which stops the polling

    watched(sweep_id, polling)

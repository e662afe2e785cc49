"""Train: configure a run, launch it as its own process, watch it live, compare runs.

The form is generated from TrainConfig's fields (the same list the CLI's flags come from), in the
reader's words and in the order a phone shows them (mnist_core.form). Every field keeps what was
typed; a wrong value gets a sentence next to it and blocks Start, so a run never differs from the
form. *Start* registers a queued run owned by this browser (app_pages._common.visitor_token) and the
executor starts it (a worker forked by a local runner, or a Ray job); the page only reads the registry, so
leaving the page, refreshing or opening a second tab never stops a run. The live panel sits right
under Start: a fragment redraws the status and progress about once a second and another the charts
every two seconds, reading only the rows after the last ones it has (mnist_core.live does the maths).
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from mnist_core import form, kernels, limits, live, registry, sweeps, worker
from mnist_core.errors import MnistLabError
from mnist_core.models import count_parameters, create_model, layer_table, model_info
from mnist_core.records import LIVE
from mnist_core.training import PRESETS, TrainConfig
from app_pages import _class, _sweep_ui
from app_pages._common import require_data, show_error, visitor_token
from app_pages._explain_ui import replay_section

POLL_SECONDS = 1.0   # the live panel (status, progress) while a run trains
CHART_SECONDS = 2.0  # the live charts: each redraw costs the browser CPU, which a worker on a small
                     # machine feels (benchmarks/app_training, BENCHMARKS.md)
CUSTOM = "(custom)"
FIELDS = {f.name: f for f in TrainConfig.fields()}
CHART_CONFIG = {"displayModeBar": False}  # Plotly's toolbar only clutters these (and costs a tap on a phone)

st.title("Train")
st.caption("Pick a recipe or set every knob, press Start, and watch the loss and accuracy as the network learns. "
           "Training runs in its own process: you can leave this page and come back.")
require_data()
token = visitor_token()


# --- the form ----------------------------------------------------------------------------------

# Streamlit forgets a widget's value while its page is not shown, so the form's values are also kept
# under a key no widget owns ("train_form") and put back when the page is drawn again.

def _set_fields(values: dict) -> None:
    for name, f in FIELDS.items():
        st.session_state[f"cfg_{name}"] = values.get(name, f.default)


def _form_values() -> dict:
    return {name: st.session_state[f"cfg_{name}"] for name in FIELDS}


def _remember() -> None:
    values = _form_values()
    preset = st.session_state.get("preset", CUSTOM)
    if preset != CUSTOM and (preset not in PRESETS or values != form.preset(preset, keep=values).values):
        st.session_state["preset"] = preset = CUSTOM  # the form is no longer that recipe: don't name it so
    st.session_state["train_form"] = values
    st.session_state["train_form_preset"] = preset


# The Advanced section is drawn open once a field in it was changed or had a problem, and stays so. Drawn open
# only while a problem lasted, it folded away under the visitor's hand as the value was fixed.
ADVANCED_OPEN = "train_advanced_open"


def _remember_advanced() -> None:
    st.session_state[ADVANCED_OPEN] = True
    _remember()


def _apply_preset() -> None:
    name = st.session_state["preset"]
    if name not in PRESETS:  # not a recipe's name (a forged request): the form stays as it is
        st.session_state["preset"] = name = CUSTOM
    if name != CUSTOM:
        _set_fields(form.preset(name, keep=_form_values()).values)  # the recipe fitted to this host's bounds
    _remember()


# The starting values and the presets as this host admits them (fitted to its bounds, or unavailable).
first_run = form.first_run()
offers = {name: form.preset(name) for name in PRESETS}
if "cfg_model" not in st.session_state:
    _set_fields(st.session_state.get("train_form", first_run.values))
    st.session_state["preset"] = st.session_state.get("train_form_preset", CUSTOM)
offer = offers.get(st.session_state["preset"])
if st.session_state["preset"] != CUSTOM and (offer is None or offer.unavailable):
    st.session_state["preset"] = CUSTOM  # chosen under other bounds, or never offered (forged): not offered now


def _field_widget(name: str, problem: str | None) -> None:
    """One field: a widget that keeps whatever was typed (no min/max to clamp to), and its problem.

    Its default is the value it holds. The browser is told a value that code put in session state only
    in the run that put it there; when a second run replaced that one before it drew the form (a
    polling fragment's rerun crossing the page switch does), the browser drew each widget at its
    default, which was blank (model mlp-50, learning rate 0, Start disabled) while the page held the
    real values. (Streamlit logs that such a widget has both a default and a session-state value.)"""
    f, key = FIELDS[name], f"cfg_{name}"
    value = st.session_state[key]
    common = dict(key=key, help=form.help_text(name),
                  on_change=_remember_advanced if name in form.ADVANCED else _remember)
    if f.metadata["choices"] is not None:
        options = list(form.choices(name))
        if value not in options:  # e.g. a device this server lacks: shown, and refused below
            options.append(value)
        st.selectbox(form.label(name), options, index=options.index(value), **common)
    else:  # a float widget even for a whole number (0 weight decay): its value's type sets the widget's. For a
        # whole-number field (epochs) too: an int widget made a typed 2.5 into 2 without a word, where this one
        # keeps the 2.5 and form.problems says "epochs must be a whole number"
        st.number_input(form.label(name), format="%g", step=1.0 if isinstance(f.default, int) else None,
                        value=None if value is None else float(value), **common)
    if problem:
        st.markdown(f":red[{problem}]")


@st.cache_data(show_spinner=False)
def architecture_table(name: str) -> tuple[pd.DataFrame, int, bool]:
    """The layer table, the parameter count, and whether LeNet-5's fused CPU kernels fit the model."""
    model = create_model(name)
    return pd.DataFrame(layer_table(model)), count_parameters(model), kernels.fits(model)


try:
    all_runs = registry.recent_runs()  # the live ones and the newest: never the whole registry
except MnistLabError as exc:
    show_error(exc)
    all_runs = []

if toast := st.session_state.pop("train_toast", None):  # said after the rerun that follows Start
    st.toast(toast[0], icon=toast[1])
problems = form.problems(_form_values())
tab_one, tab_sweep = st.tabs(["One run", "Sweep"])
with tab_one, st.container(border=True):
    top = st.columns([2, 3])
    with top[0]:
        presets = [CUSTOM, *(name for name, o in offers.items() if not o.unavailable)]
        st.selectbox("Preset", presets, index=presets.index(st.session_state["preset"]), key="preset",
                     on_change=_apply_preset,
                     help="Each tutorial's recipe, plus fast and best. Choosing one fills in the form.")
    with top[1]:
        chosen = st.session_state["preset"]
        if chosen != CUSTOM:
            p = PRESETS[chosen]
            st.caption(p.description + (f" **Article's result:** {p.reported}." if p.reported else "")
                       + (f" *{offers[chosen].fitted_text()}.*" if offers[chosen].notes else ""))
        elif not any(r.owner == token for r in all_runs):
            st.caption(form.first_run_tip(first_run.values)
                       + (f" *{first_run.fitted_text()}.*" if first_run.notes else ""))
        unavailable = [f"{name} ({o.unavailable})" for name, o in offers.items() if o.unavailable]
        if unavailable:
            st.caption("Not on this server: " + "; ".join(unavailable) + ".")
    # One row of the fields that matter most: on a phone the columns stack in this order.
    for col, name in zip(st.columns(len(form.PRIMARY)), form.PRIMARY):
        with col:
            _field_widget(name, problems.get(name))
    # A problem inside opens it: a sentence next to a field must never sit in a closed expander while
    # Start stays disabled. It stays open after the fix (ADVANCED_OPEN).
    if any(name in problems for name in form.ADVANCED):
        st.session_state[ADVANCED_OPEN] = True
    with st.expander("Advanced: optimizer, schedule, data, validation, device",
                     expanded=st.session_state.get(ADVANCED_OPEN, False), icon=":material/tune:"):
        for i in range(0, len(form.ADVANCED), 3):  # row by row, so a phone keeps the order
            for col, name in zip(st.columns(3), form.ADVANCED[i:i + 3]):
                with col:
                    _field_widget(name, problems.get(name))
    if st.session_state["cfg_backend"] == "numpy":
        st.info("The NumPy engine trains the MLPs from scratch (hand-written forward and backward passes) with "
                "sgd or sgd-momentum and no augmentation: the presets tutorial-numpy-2layer and "
                "tutorial-numpy-mlp90 are set up for it.", icon=":material/calculate:")
    if "" in problems:
        st.error(problems[""])
    if not problems:  # how long it will take, reckoned as the Sweep tab reckons each of its runs
        try:
            estimate = sweeps.estimate_one(TrainConfig.from_dict(_form_values()), all_runs)
        except MnistLabError:
            estimate = None
        if estimate is not None:
            st.caption(f"Training time: {estimate.text()}, once it starts.")
    start = st.button("Start training", type="primary", icon=":material/play_arrow:", disabled=bool(problems),
                      help="Fix the fields marked in red first." if problems else None)

    model_name = st.session_state["cfg_model"]
    if model_name in FIELDS["model"].metadata["choices"]:
        table, n_params, fused = architecture_table(model_name)
        info = model_info(model_name)
        with st.expander(f"Architecture: {model_name} · {n_params:,} parameters · {info.description}"):
            st.caption(f"Provenance: {info.provenance}. Output shapes are for one 28x28 input.")
            st.dataframe(table, hide_index=True, width="stretch")
            if fused:
                st.caption("In training on the CPU, C1 + ReLU + S2 and C3 + ReLU + S4 each run as one fused C kernel "
                           f"(mnist_core/kernels, BENCHMARKS.md): {kernels.status()}.")

if start:  # (a disabled Start never reports a click: the values here passed form.problems)
    try:
        class_code, student = _class.membership()  # a run started inside a class shows on its page
        run_id = worker.submit(TrainConfig.from_dict(_form_values()).to_dict(), owner=token, class_code=class_code,
                               student=student)
        all_runs = registry.recent_runs()
    except MnistLabError as exc:
        st.error(live.for_visitor(str(exc)))
    else:
        st.session_state["watch_run"] = run_id
        st.session_state["scroll_to_run"] = True
        place = live.places_in_line(all_runs).get(run_id)
        st.session_state["train_toast"] = ((f"Queued run {run_id}: number {place} in line", ":material/schedule:")
                                           if place else (f"Started run {run_id}", ":material/play_arrow:"))
        st.rerun()  # the sidebar, drawn before the run existed, starts following it too


with tab_sweep:
    _sweep_ui.sweep_tab()

# --- charts ------------------------------------------------------------------------------------

LOG_TICKS = "~g"  # 0.5 as "0.5" (Plotly's log axis otherwise labels 0.5 as a bare "5")
TITLE_ROW, LEGEND_ROW = 34, 22  # pixels: a chart's title (17 px and its padding), a row of its legend
LEGEND_ENTRIES = 3              # the most a live chart has: the loss per step, smoothed, on validation


def curves(rows: list[dict], total_steps: int | None = None) -> tuple[go.Figure, go.Figure]:
    """The loss and accuracy charts. The axes are fixed (x from 0 to the run's last step, the loss in
    whole decades) and so are the margins, so a live update does not lay the axes out again: that was
    half of the browser's work per update (benchmarks/app_training, BENCHMARKS.md)."""
    train = [m for m in rows if m["split"] == "train"]
    val = [m for m in rows if m["split"] == "val"]
    loss, acc = go.Figure(), go.Figure()
    if train:
        weight = live.smoothing_weight(len(train))  # grows with the run so far: early points stay close
        raw_loss, raw_acc = [m["loss"] for m in train], [m["accuracy"] for m in train]
        columns = zip([m["step"] for m in train], raw_loss, live.smooth(raw_loss, weight, log=True),
                      live.smooth(raw_acc, weight))
        s, raw_l, sm_l, sm_a = (list(col) for col in zip(*live.thin(list(columns))))
        loss.add_scatter(x=s, y=raw_l, name="loss (per step)", mode="lines",
                         line=dict(width=1, color="rgba(255, 75, 75, 0.35)"))
        loss.add_scatter(x=s, y=sm_l, name="loss (smoothed)", mode="lines", line=dict(width=2.5, color="#ff4b4b"))
        acc.add_scatter(x=s, y=sm_a, name="batch accuracy (smoothed)", mode="lines",
                        line=dict(width=2, color="#7f8ea3"))
    if val:
        loss.add_scatter(x=[m["step"] for m in val], y=[m["loss"] for m in val], name="validation loss",
                         mode="lines+markers", line=dict(color="#1f77b4"))
        acc.add_scatter(x=[m["step"] for m in val], y=[m["accuracy"] for m in val], name="validation accuracy",
                        mode="lines+markers", line=dict(color="#1f77b4"))
    last = max((m["step"] for m in rows), default=1)
    x_range = [0, max(total_steps or 0, last, 1)]
    # The legend sits above the plot, under the title, in a top margin with a row for each entry: a phone's
    # width wraps it to a row per entry or two, and the margins are fixed, so below the plot the rows after the
    # first were cut off (the validation series).
    layout = dict(height=370, margin=dict(l=60, r=20, t=TITLE_ROW + LEGEND_ROW * LEGEND_ENTRIES, b=50,
                                          autoexpand=False),
                  legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="left", x=0))
    on_top = dict(y=1.0, yref="container", yanchor="top", pad=dict(t=8))
    loss.update_layout(title=dict(text="Loss", **on_top), xaxis=dict(title="step", range=x_range),
                       yaxis=dict(type="log", range=live.decades(m["loss"] for m in rows), tickformat=LOG_TICKS),
                       **layout)
    acc.update_layout(title=dict(text="Accuracy", **on_top), xaxis=dict(title="step", range=x_range),
                      yaxis=dict(range=[0, 1.01]), **layout)
    return loss, acc


def run_rows(run_id: str) -> list[dict]:
    """The run's metric rows, topped up with only the rows after the last this session holds."""
    held = st.session_state.get("live_rows")
    if not isinstance(held, live.RunRows) or held.run_id != run_id:
        held = st.session_state["live_rows"] = live.RunRows(run_id)
    return held.top_up(registry.get_metrics)


def _summary(config: dict) -> str:
    try:
        return TrainConfig.from_dict(config).summary()
    except MnistLabError:
        return "(invalid config)"


# --- the run being watched ---------------------------------------------------------------------

NOT_YOURS = "Only the browser that started this run can cancel or delete it."
OPERATORS = "This run was started from the command line: only the server's operator can change it."


def draw_run(run: registry.Run, all_runs: list[registry.Run]) -> None:
    with st.container(key="live_run_head"):  # (SCROLL_TO_RUN brings it to the top of the screen)
        head = st.columns([3, 1])
    head[0].subheader(f"Run {run.id} · {run.config.get('model')} · {run.status}")
    mine = live.can_change(run, token)
    why_not = None if mine else (OPERATORS if run.owner is None else NOT_YOURS)
    if run.is_live:
        if head[1].button("Cancel", icon=":material/stop:", key=f"cancel-{run.id}", disabled=not mine,
                          help=why_not):
            try:
                worker.cancel(run.id, by=token)
            except MnistLabError as exc:
                show_error(exc)
            else:
                st.toast("Cancelling...")
    else:
        with head[1].popover("Delete run", icon=":material/delete:", disabled=not mine, help=why_not):
            st.markdown(f"Delete run **{run.id}** and its curves? This cannot be undone.")
            if st.button("Yes, delete it", type="primary", key=f"delete-{run.id}"):
                try:
                    registry.delete_run(run.id, by=token)
                except MnistLabError as exc:
                    show_error(exc)
                else:
                    st.session_state.pop("watch_run", None)
                    st.rerun()
    st.caption("Config: " + form.config_line(run.config))
    rows = run_rows(run.id)
    if run.is_live:
        last = next((r for r in reversed(rows) if r["split"] == "train"), None)
        p = live.progress(run, last, all_runs, limits.current().max_concurrent)
        st.progress(p.fraction, text=p.text)
        problem = live.health(run, rows[-50:])
        if problem:
            st.warning(problem, icon=":material/warning:")
        return
    kind, text = live.outcome(run, rows)
    icon = {"success": ":material/check_circle:", "warning": ":material/warning:", "error": ":material/error:"}[kind]
    getattr(st, kind)(text, icon=icon)


def draw_charts(run: registry.Run) -> None:
    rows = run_rows(run.id)
    if rows:
        loss_fig, acc_fig = curves(rows, run.total_steps)
        c1, c2 = st.columns(2)
        c1.plotly_chart(loss_fig, key="live_loss", config=CHART_CONFIG)
        c2.plotly_chart(acc_fig, key="live_acc", config=CHART_CONFIG)


def _watch_label(r: registry.Run) -> str:
    return f"{r.id} · {r.config.get('model')} · {r.status}" + (" · yours" if r.owner == token else "")


def _pick() -> None:
    st.session_state["watch_run"] = st.session_state["watch_pick"]


# After Start, bring the run's heading to the top of the screen, with its progress and Cancel under it (the
# form above is tall on a phone). Not to the very top: Streamlit's header bar covers it, and on a phone the
# "Started run" toast too, which hid the heading and Cancel. The page is still being drawn: the heading
# comes a moment later (a fragment draws it), what is above it can change height and the toast comes and
# goes, so the heading is put back at the top whenever the page's height changes or a toast appears, until
# the visitor scrolls, touches, clicks or presses a key (two minutes at most).
SCROLL_TO_RUN = """<script>
(() => {
  const page = document.querySelector('[data-testid="stMainBlockContainer"]');
  const covered = () => {  // the bottom of what is fixed over the top of the screen
    let bottom = 0;
    for (const el of document.querySelectorAll('[data-testid="stHeader"], [data-testid="stToast"]')) {
      const box = el.getBoundingClientRect();
      if (box.height > 0 && box.top < window.innerHeight / 3) bottom = Math.max(bottom, box.bottom);
    }
    return bottom;
  };
  const align = () => {
    const head = document.querySelector(".st-key-live_run_head");
    if (!head) return;
    head.style.scrollMarginTop = `${covered() + 8}px`;
    head.scrollIntoView({block: "start"});
  };
  const resized = new ResizeObserver(align);
  let queued = false;  // one align a frame, however many nodes a render adds
  const added = new MutationObserver(() => {
    if (queued || !document.querySelector('[data-testid="stToast"]')) return;
    queued = true;
    requestAnimationFrame(() => { queued = false; align(); });
  });
  const visitor = new AbortController();
  const done = () => { resized.disconnect(); added.disconnect(); visitor.abort(); };
  for (const kind of ["wheel", "touchstart", "pointerdown", "keydown"])
    window.addEventListener(kind, done, {capture: true, signal: visitor.signal});
  if (page) resized.observe(page);
  added.observe(document.body, {childList: true, subtree: true});
  setTimeout(done, 120000);
  align();
})();
</script>"""

choices = live.watch_choices(all_runs, token, keep=st.session_state.get("watch_run"))
current = live.pick_watched(choices, st.session_state.get("watch_run"), token)
with st.container(key="live_panel"):
    if st.session_state.pop("scroll_to_run", False):
        st.html(SCROLL_TO_RUN, unsafe_allow_javascript=True)
    if current is None:
        st.info("No runs yet. Press **Start training** to launch one.", icon=":material/info:")
    else:
        if len(choices) > 1:
            st.session_state["watch_pick"] = current.id
            st.selectbox("Watching", [r.id for r in choices], key="watch_pick", on_change=_pick,
                         format_func=lambda run_id: _watch_label(next(r for r in choices if r.id == run_id)),
                         help="Every run in progress, and the runs this browser started.")
        polling = current.is_live

        @st.fragment(run_every=POLL_SECONDS if polling else None)
        def live_panel(run_id: str, was_status: str) -> None:
            try:
                everything = registry.list_runs(status=LIVE)  # all a place in line needs
                run = next((r for r in everything if r.id == run_id), None) or registry.get_run(run_id)
                draw_run(run, everything)
            except MnistLabError as exc:
                show_error(exc)
                return
            if run.status != was_status:  # it started or ended: redraw the whole page once (the runs
                st.rerun()                # table's status, polling on or off)

        @st.fragment(run_every=CHART_SECONDS if polling else None)
        def live_charts(run_id: str) -> None:
            try:
                draw_charts(registry.get_run(run_id))
            except MnistLabError as exc:
                show_error(exc)

        live_panel(current.id, current.status)
        live_charts(current.id)
        with st.expander("How the network learned: replay its kernels and feature maps", icon=":material/replay:"):
            st.caption("Recorded about 30 times a run and at every validation. Press Play, or move the slider "
                       "(during a run it picks up the newest frames).")
            replay_section(current.id, key="train_replay")


# --- all runs ----------------------------------------------------------------------------------

def _percent(x: float | None) -> str:
    return f"{x:.2%}" if x is not None else "–"


RUNS_PAGE = 25  # rows of the runs table: a page at a time, read with SQL LIMIT/OFFSET


def runs_page() -> tuple[list[registry.Run], int, int]:
    """(this page's runs newest first, the page's first row's number, how many runs in all)."""
    total = registry.count_runs()
    pages = max(1, -(-total // RUNS_PAGE))
    page = 1
    if pages > 1:
        held = st.session_state.get("runs_page", 1)
        if not isinstance(held, int) or not 1 <= held <= pages:
            st.session_state["runs_page"] = min(max(1, held), pages) if isinstance(held, int) else 1  # runs removed
        page = st.number_input("Page", min_value=1, max_value=pages, step=1, key="runs_page",
                               help=f"{RUNS_PAGE} runs a page, newest first")
        page = min(max(1, int(page or 1)), pages)
    return registry.list_runs(newest_first=True, limit=RUNS_PAGE, offset=(page - 1) * RUNS_PAGE), \
        (page - 1) * RUNS_PAGE + 1, total


st.subheader("Runs")
try:
    ordered, first_row, total_runs = runs_page()
except MnistLabError as exc:
    show_error(exc)
    ordered, first_row, total_runs = [], 1, 0
if not ordered:
    st.caption("Runs you start appear here.")
else:
    if total_runs > len(ordered):
        st.caption(f"Runs {first_row:,}-{first_row + len(ordered) - 1:,} of {total_runs:,}, newest first.")
    table = pd.DataFrame([{
        "run": r.id, "status": r.status, "model": r.config.get("model") or "–",
        "config": _summary(r.config),
        "best validation": _percent(r.best_val_accuracy), "test accuracy": _percent(r.test_accuracy),
        "duration": live.fmt_seconds(r.duration), "ran on": r.node or r.host or "–",
        "yours": "yes" if r.owner == token else "",
        "error": live.for_visitor(r.error),
    } for r in ordered])
    st.caption("Select runs (tick the rows) to overlay their curves.")
    event = st.dataframe(table, hide_index=True, on_select="rerun", selection_mode="multi-row",
                         key=f"runs_table_{first_row}")  # a selection belongs to its page's rows
    picked = [ordered[i] for i in event.selection.rows] if event and event.selection else []
    if picked:
        loss_fig, acc_fig = go.Figure(), go.Figure()
        for r in picked:
            metrics = registry.get_metrics(r.id)
            train = [m for m in metrics if m["split"] == "train"]
            val = [m for m in metrics if m["split"] == "val"]
            label = f"{r.id[-6:]} {r.config.get('model')}"
            smoothed = live.smooth([m["loss"] for m in train], live.smoothing_weight(len(train)), log=True)
            thinned = live.thin(list(zip([m["step"] for m in train], smoothed)))
            loss_fig.add_scatter(x=[s for s, _ in thinned], y=[v for _, v in thinned], name=label, mode="lines")
            acc_fig.add_scatter(x=[m["step"] for m in val], y=[m["accuracy"] for m in val], name=label,
                                mode="lines+markers")
        loss_fig.update_layout(title="Training loss (smoothed)", xaxis_title="step", height=340,
                               yaxis=dict(type="log", tickformat=LOG_TICKS))
        acc_fig.update_layout(title="Validation accuracy", xaxis_title="step", height=340)
        c1, c2 = st.columns(2)
        c1.plotly_chart(loss_fig, key="compare_loss", config=CHART_CONFIG)
        c2.plotly_chart(acc_fig, key="compare_acc", config=CHART_CONFIG)

"""Train: configure a run, launch it as its own process, watch it live, compare runs.

The form is generated from TrainConfig's fields (the same list the CLI's flags come from). *Start*
registers a queued run and launches the worker (`python -m mnist_core train --run-id ID`); the page
only reads the registry, so leaving the page, refreshing or opening a second tab never stops a run.
While something runs, a fragment polls the registry about once a second for the status and progress,
and another redraws the charts every two seconds.
"""

from __future__ import annotations

import math
import time
import uuid

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from mnist_core import kernels, limits, runs, worker
from mnist_core.errors import MnistLabError
from mnist_core.models import count_parameters, create_model, layer_table, model_info
from mnist_core.training import PRESETS, TrainConfig
from app_pages._common import require_data, show_error
from app_pages._explain_ui import replay_section

POLL_SECONDS = 1.0   # the live panel (status, progress) while a run trains
CHART_SECONDS = 2.0  # the live charts: each redraw costs the browser ~0.1 s of CPU, which a 2-thread
                     # worker on a 2-core machine feels (benchmarks/app_training, BENCHMARKS.md)
CUSTOM = "(custom)"
FIELDS = TrainConfig.fields()

st.title("Train")
st.caption("Pick a recipe or set every knob, press Start, and watch the loss and accuracy as the network learns. "
           "Training runs in its own process: you can leave this page and come back.")
require_data()

# A browser session's id, recorded as the owner of the runs it starts.
st.session_state.setdefault("visitor_id", uuid.uuid4().hex[:12])


# --- the form ----------------------------------------------------------------------------------

# Streamlit forgets a widget's value while its page is not shown, so the form's values are also kept
# under a key no widget owns ("train_form") and put back when the page is drawn again.

def _set_fields(values: dict) -> None:
    for f in FIELDS:
        st.session_state[f"cfg_{f.name}"] = values.get(f.name, f.default)


def _remember() -> None:
    st.session_state["train_form"] = {f.name: st.session_state[f"cfg_{f.name}"] for f in FIELDS}
    st.session_state["train_form_preset"] = st.session_state.get("preset", CUSTOM)


def _apply_preset() -> None:
    name = st.session_state["preset"]
    if name != CUSTOM:
        _set_fields(PRESETS[name].overrides)
    _remember()


if "cfg_model" not in st.session_state:
    _set_fields(st.session_state.get("train_form", {}))
    st.session_state["preset"] = st.session_state.get("train_form_preset", CUSTOM)


def _field_widget(f) -> None:
    key, meta, label = f"cfg_{f.name}", f.metadata, f.name.replace("_", " ")
    if meta["choices"] is not None:
        st.selectbox(label, meta["choices"], key=key, help=meta["help"], on_change=_remember)
    elif isinstance(f.default, int):
        st.number_input(label, min_value=meta["min"], max_value=meta["max"], step=1, key=key, help=meta["help"],
                        on_change=_remember)
    else:
        st.number_input(label, min_value=float(meta["min"]), max_value=float(meta["max"]), key=key,
                        help=meta["help"], format="%g", step=None, on_change=_remember)


@st.cache_data(show_spinner=False)
def architecture_table(name: str) -> tuple[pd.DataFrame, int, bool]:
    """The layer table, the parameter count, and whether the model has fused CPU kernels."""
    model = create_model(name)
    return pd.DataFrame(layer_table(model)), count_parameters(model), hasattr(model, "fused_on_cpu")


with st.container(border=True):
    top = st.columns([2, 3])
    with top[0]:
        st.selectbox("Preset", [CUSTOM, *PRESETS], key="preset", on_change=_apply_preset,
                     help="Each tutorial's recipe, plus fast and best. Choosing one fills in the form.")
    with top[1]:
        chosen = st.session_state["preset"]
        if chosen != CUSTOM:
            p = PRESETS[chosen]
            st.caption(p.description + (f" **Article's result:** {p.reported}." if p.reported else ""))
    cols = st.columns(4)
    for i, f in enumerate(FIELDS):
        with cols[i % 4]:
            _field_widget(f)

    model_name = st.session_state["cfg_model"]
    table, n_params, fused = architecture_table(model_name)
    info = model_info(model_name)
    with st.expander(f"Architecture: {model_name} · {n_params:,} parameters · {info.description}"):
        st.caption(f"Provenance: {info.provenance}. Output shapes are for one 28x28 input.")
        st.dataframe(table, hide_index=True, width="stretch")
        if fused:
            st.caption("On the CPU, C1 + ReLU + S2 and C3 + ReLU + S4 each run as one fused C kernel "
                       f"(mnist_core/kernels, BENCHMARKS.md): {kernels.status()}.")

    if st.session_state["cfg_backend"] == "numpy":
        st.info("The NumPy backend trains the MLPs from scratch (hand-written forward and backward passes) with "
                "sgd or sgd-momentum and no augmentation: the presets tutorial-numpy-2layer and "
                "tutorial-numpy-mlp90 are set up for it.", icon=":material/calculate:")
    start = st.button("Start training", type="primary", icon=":material/play_arrow:")

if start:
    try:
        config = TrainConfig.from_dict({f.name: st.session_state[f"cfg_{f.name}"] for f in FIELDS})
        run_id = worker.submit(config.to_dict(), owner=st.session_state["visitor_id"])
    except MnistLabError as exc:
        show_error(exc)
    else:
        st.session_state["watch_run"] = run_id
        st.toast(f"Started run {run_id}", icon=":material/play_arrow:")


# --- charts ------------------------------------------------------------------------------------

def _ema(values: list[float], alpha: float = 0.05) -> list[float]:
    out, acc = [], None
    for v in values:
        acc = v if acc is None else (1 - alpha) * acc + alpha * v
        out.append(acc)
    return out


def _thin(rows: list[dict], limit: int = 1500) -> list[dict]:
    """Plot at most ~limit points: a long run's every step would only slow the browser."""
    step = max(1, len(rows) // limit)
    return rows[::step]


def _decades(values: list[float]) -> list[float]:
    """A log axis' range in whole decades around the values (log10 units), so it rarely changes."""
    positive = [v for v in values if v and v > 0 and math.isfinite(v)]
    if not positive:
        return [-2.0, 1.0]
    return [math.floor(math.log10(min(positive))), math.ceil(math.log10(max(positive)))]


def curves(metrics: list[dict], total_steps: int | None = None) -> tuple[go.Figure, go.Figure]:
    """The loss and accuracy charts. The axes are fixed (x from 0 to the run's last step, the loss in
    whole decades) and so are the margins, so a live update does not lay the axes out again: that was
    half of the browser's work per update, and Plotly's share of it about halved
    (benchmarks/app_training, BENCHMARKS.md)."""
    train = [m for m in metrics if m["split"] == "train"]
    val = [m for m in metrics if m["split"] == "val"]
    loss, acc = go.Figure(), go.Figure()
    if train:
        steps = [m["step"] for m in train]
        smoothed_loss, smoothed_acc = _ema([m["loss"] for m in train]), _ema([m["accuracy"] for m in train])
        thin = _thin(list(zip(steps, [m["loss"] for m in train], smoothed_loss, [m["accuracy"] for m in train],
                              smoothed_acc)))
        s, raw_l, sm_l, raw_a, sm_a = (list(col) for col in zip(*thin))
        loss.add_scatter(x=s, y=raw_l, name="loss (per step)", mode="lines", line=dict(width=1, color="#c7cdd6"))
        loss.add_scatter(x=s, y=sm_l, name="loss (smoothed)", mode="lines", line=dict(width=2.5, color="#ff4b4b"))
        acc.add_scatter(x=s, y=sm_a, name="batch accuracy (smoothed)", mode="lines", line=dict(width=2, color="#7f8ea3"))
    if val:
        loss.add_scatter(x=[m["step"] for m in val], y=[m["loss"] for m in val], name="validation loss",
                         mode="lines+markers", line=dict(color="#1f77b4"))
        acc.add_scatter(x=[m["step"] for m in val], y=[m["accuracy"] for m in val], name="validation accuracy",
                        mode="lines+markers", line=dict(color="#1f77b4"))
    last = max((m["step"] for m in metrics), default=1)
    x_range = [0, max(total_steps or 0, last, 1)]
    layout = dict(height=340, margin=dict(l=60, r=20, t=40, b=80, autoexpand=False),
                  legend=dict(orientation="h", y=-0.25))
    loss.update_layout(title="Loss", xaxis=dict(title="step", range=x_range),
                       yaxis=dict(type="log", range=_decades([m["loss"] for m in metrics])), **layout)
    acc.update_layout(title="Accuracy", xaxis=dict(title="step", range=x_range), yaxis=dict(range=[0, 1.01]),
                      **layout)
    return loss, acc


def _summary(config: dict) -> str:
    try:
        return TrainConfig.from_dict(config).summary()
    except MnistLabError:
        return "(invalid config)"


def _fmt_seconds(s: float | None) -> str:
    if s is None:
        return "–"
    s = int(s)
    return f"{s // 60}m {s % 60:02d}s" if s >= 60 else f"{s}s"


# --- the run being watched ---------------------------------------------------------------------

def watched_run() -> runs.Run | None:
    """The run this tab follows: the one it started while live, else the newest live one, else the
    one it started, else the newest run."""
    all_runs = runs.list_runs()
    by_id = {r.id: r for r in all_runs}
    mine = st.session_state.get("watch_run")
    if mine in by_id and by_id[mine].is_live:
        return by_id[mine]
    live = [r for r in all_runs if r.is_live]
    if live:
        return live[-1]
    return by_id.get(mine) or (all_runs[-1] if all_runs else None)


def draw_run(run: runs.Run) -> None:
    metrics = runs.get_metrics(run.id)
    steps = [m for m in metrics if m["split"] == "train"]
    last = steps[-1] if steps else None
    head = st.columns([3, 1])
    head[0].subheader(f"Run {run.id} · {run.config.get('model')} · {run.status}")
    mine = run.owner in (None, st.session_state["visitor_id"])
    not_mine = "Only the browser session that started a run can change it"
    if run.is_live:
        if head[1].button("Cancel", icon=":material/stop:", key=f"cancel-{run.id}", disabled=not mine,
                          help=None if mine else not_mine):
            runs.request_cancel(run.id, by=st.session_state["visitor_id"])
            st.toast("Cancelling...")
    elif head[1].button("Delete run", icon=":material/delete:", key=f"delete-{run.id}", disabled=not mine,
                        help="Removes the run and its curves (its checkpoint file stays)" if mine else not_mine):
        runs.delete_run(run.id, by=st.session_state["visitor_id"])
        st.session_state.pop("watch_run", None)
        st.rerun()
    position = runs.queue_positions(runs.list_runs()).get(run.id)
    if position:
        st.progress(0.0, text=f"Queued: number {position} in line. It starts by itself when a training slot frees "
                              f"({limits.current().max_concurrent} at a time).")
    elif run.status == "queued":
        st.progress(0.0, text="Starting: loading data and building the model...")
    elif run.is_live and last:
        total = last.get("total_steps") or run.total_steps
        done = last["step"]
        elapsed = time.time() - (run.started_at or time.time())
        eta = elapsed / done * (total - done) if total and done else None
        frac = done / total if total else 0.0
        st.progress(min(frac, 1.0), text=f"epoch {last['epoch']:.2f} / {run.config.get('epochs')} · step {done}"
                    + (f" / {total}" if total else "") + f" · ETA {_fmt_seconds(eta)} · "
                    f"{last['images_per_s'] or 0:,.0f} images/s")
    elif run.is_live:
        st.progress(0.0, text="Starting...")
    if run.status == "completed":
        st.success(f"Test accuracy **{run.test_accuracy:.2%}** (best validation "
                   f"{(run.best_val_accuracy or 0):.2%}) in {_fmt_seconds(run.duration)}. "
                   f"Checkpoint: `{run.checkpoint}`", icon=":material/check_circle:")
    elif run.status == "failed":
        st.error(f"This run failed: {run.error}", icon=":material/error:")
    elif run.status == "cancelled":
        st.warning("This run was cancelled." + (f" {run.error}" if run.error else ""), icon=":material/stop:")


def draw_charts(run: runs.Run) -> None:
    metrics = runs.get_metrics(run.id)
    if metrics:
        loss_fig, acc_fig = curves(metrics, run.total_steps)
        c1, c2 = st.columns(2)
        c1.plotly_chart(loss_fig, key="live_loss")
        c2.plotly_chart(acc_fig, key="live_acc")


st.divider()
try:
    current = watched_run()
except MnistLabError as exc:
    show_error(exc)
    current = None

if current is None:
    st.info("No runs yet. Press **Start training** to launch one.", icon=":material/info:")
else:
    polling = current.is_live

    @st.fragment(run_every=POLL_SECONDS if polling else None)
    def live_panel(run_id: str, was_live: bool) -> None:
        try:
            worker.start_queued()  # moves the queue on if a worker died without starting the next run
            run = runs.get_run(run_id)
            draw_run(run)
        except MnistLabError as exc:
            show_error(exc)
            return
        if was_live and not run.is_live:
            st.rerun()  # the run ended: redraw the whole page (runs table) and stop polling

    @st.fragment(run_every=CHART_SECONDS if polling else None)
    def live_charts(run_id: str) -> None:
        try:
            draw_charts(runs.get_run(run_id))
        except MnistLabError as exc:
            show_error(exc)

    live_panel(current.id, polling)
    live_charts(current.id)
    with st.expander("How the network learned: replay its kernels and feature maps", icon=":material/replay:"):
        st.caption("Recorded before the first step and at every validation. During a run, moving the slider "
                   "picks up the newest frames.")
        replay_section(current.id, key="train_replay")


# --- all runs ----------------------------------------------------------------------------------

st.subheader("Runs")
try:
    all_runs = runs.list_runs()
except MnistLabError as exc:
    show_error(exc)
    all_runs = []
if not all_runs:
    st.caption("Runs you start appear here.")
else:
    ordered = list(reversed(all_runs))  # newest first
    table = pd.DataFrame([{
        "run": r.id, "status": r.status, "model": r.config.get("model"),
        "config": _summary(r.config),
        "best val acc": r.best_val_accuracy, "test acc": r.test_accuracy,
        "duration": _fmt_seconds(r.duration), "error": r.error or "",
    } for r in ordered])
    st.caption("Select runs (tick the rows) to overlay their curves.")
    event = st.dataframe(table, hide_index=True, on_select="rerun", selection_mode="multi-row", key="runs_table",
                         column_config={"best val acc": st.column_config.NumberColumn(format="percent"),
                                        "test acc": st.column_config.NumberColumn(format="percent")})
    picked = [ordered[i] for i in event.selection.rows] if event and event.selection else []
    if picked:
        loss_fig, acc_fig = go.Figure(), go.Figure()
        for r in picked:
            metrics = runs.get_metrics(r.id)
            train = _thin([m for m in metrics if m["split"] == "train"])
            val = [m for m in metrics if m["split"] == "val"]
            label = f"{r.id[-6:]} {r.config.get('model')}"
            loss_fig.add_scatter(x=[m["step"] for m in train], y=_ema([m["loss"] for m in train]), name=label,
                                 mode="lines")
            acc_fig.add_scatter(x=[m["step"] for m in val], y=[m["accuracy"] for m in val], name=label,
                                mode="lines+markers")
        loss_fig.update_layout(title="Training loss (smoothed)", xaxis_title="step", yaxis_type="log", height=340)
        acc_fig.update_layout(title="Validation accuracy", xaxis_title="step", height=340)
        c1, c2 = st.columns(2)
        c1.plotly_chart(loss_fig, key="compare_loss")
        c2.plotly_chart(acc_fig, key="compare_acc")

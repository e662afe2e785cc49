"""Evaluate: a model on the test set (confusion matrix you can click into, the mistakes, per-class
precision and recall, beside a checkpoint on the same images), model cards for every architecture
and checkpoint, and runs compared against a baseline. The model is chosen as on every page: a
checkpoint, a run's model, or an upload (a checkpoint, a bundle or an ONNX file).

Every measure is taken on the MNIST test set or, beside it, on the visitors' drawings
(mnist_core.drawings: the whole set, or its held-out part, the only fair one for a run that trained on
the drawings); the model cards show both accuracies and the gap."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from mnist_core import drawings
from mnist_core import evaluate as ev
from mnist_core import registry
from mnist_core.checkpoints import default_checkpoint, find_checkpoints
from mnist_core.errors import MnistLabError
from mnist_core.scratch import lenet5_speed_table
from app_pages._data import load_model, load_split, require_data
from app_pages._errors import show_error
from app_pages._figures import percent
from app_pages._frame import open_in_inside, run_heavy
from app_pages._models import checkpoint_picker, model_chooser
from app_pages._selectable import selectable_chart

GALLERY_SIZE = 40
CARDS_LIMIT = 12      # checkpoints measured for the model cards: the defaults, then the newest
COMPARE_RUNS = 100    # completed runs offered to compare: the newest, read with SQL LIMIT
KEEP = dict(persist_state="session")  # a widget's value outlives a visit to another page (Streamlit drops it)
MEASURED_ON = {"test": "the MNIST test set", "drawings": "the visitors' drawings"}
PARTS = {"all": "every drawing", "held-out": "the held-out givers"}

st.title("Evaluate")
st.caption("How good is a model, and where does it go wrong? Click a cell of the confusion matrix to see "
           "exactly those test images.")
require_data()


@st.cache_data(show_spinner="Evaluating on the 10,000 test images...", max_entries=16)
def test_predictions(_model, model_key: tuple) -> ev.Predictions:
    images, labels = load_split("test")
    return run_heavy(ev.predictions, _model, images, labels)  # bounded, and dropped if the visitor leaves


def drawing_set_state() -> tuple[int, int]:
    """(how many drawings, the newest id): names the set as it is now, so a cached measure on it is
    taken afresh once a drawing is added or removed."""
    newest = drawings.list_drawings(newest_first=True, limit=1)
    return drawings.count_drawings(), newest[0].id if newest else 0


@st.cache_data(show_spinner="Evaluating on the visitors' drawings...", max_entries=16)
def drawing_predictions(_model, model_key: tuple, part: str, state: tuple[int, int]) -> ev.SetEvaluation | None:
    """The model on the drawings (`part` of the set as it is in `state`); None when that part holds none.
    The set is read here and only the pictures go to the heavy job, which reads no setting."""
    images, labels, ids = drawings.drawing_set(part=part)
    if not len(ids):
        return None
    return ev.SetEvaluation(run_heavy(ev.predictions, _model, images, labels), images, ids)


def compare_with_checkpoint(chosen, preds: ev.Predictions) -> None:
    """The model in use beside a checkpoint on the same 10,000 test images: each one's accuracy, and
    the images on which they disagree."""
    path = checkpoint_picker("Compare with", key="eval_compare_checkpoint")
    if path is None:
        return
    try:
        model, _ = load_model(path)
        other = test_predictions(model, ("file", str(path), path.stat().st_mtime))
    except (MnistLabError, OSError) as exc:
        show_error(exc)
        return
    disagree = int((preds.predicted != other.predicted).sum())
    both_wrong = int(((preds.predicted != preds.labels) & (other.predicted != other.labels)).sum())
    c1, c2, c3, c4 = st.columns(4)
    c1.metric(chosen.name, f"{preds.accuracy:.2%}", help="Test accuracy")
    c2.metric(path.stem, f"{other.accuracy:.2%}", f"{100 * (other.accuracy - preds.accuracy):+.2f} points",
              delta_arrow="off", help="Test accuracy")
    c3.metric("They disagree on", f"{disagree:,}", help="test images given different answers")
    c4.metric("Both wrong on", f"{both_wrong:,}", help="test images neither answers right")


@st.cache_data(show_spinner="Measuring every model...")
def model_cards(paths: tuple[str, ...], mtimes: tuple[float, ...]) -> pd.DataFrame:
    rows = ev.architecture_cards()
    for path in paths:
        try:
            model, meta = load_model(path)
        except MnistLabError:
            continue
        rows.append(ev.model_card(model, Path(path).stem, meta.get("metrics", {}).get("test_accuracy")))
    return pd.DataFrame(rows)


@st.cache_data(show_spinner="Measuring every model on the drawings...")
def drawing_accuracies(paths: tuple[str, ...], mtimes: tuple[float, ...], state: tuple[int, int]) -> dict:
    """{checkpoint name: accuracy on every drawing} for the model cards; {} while the set is empty."""
    images, labels, _ = drawings.drawing_set()
    if not len(labels):
        return {}
    accuracies = {}
    for path in paths:
        try:
            model, _ = load_model(path)
        except MnistLabError:
            continue
        accuracies[Path(path).stem] = run_heavy(ev.predictions, model, images, labels).accuracy
    return accuracies


def with_drawings(table: pd.DataFrame, cards: pd.DataFrame, on_drawings: dict) -> pd.DataFrame:
    """The cards' table with each checkpoint's accuracy on the drawings and its gap to the test accuracy."""
    drawn = [on_drawings.get(name) if kind == "checkpoint" else None
             for name, kind in zip(cards["model"], cards["kind"])]
    gap = [None if d is None or pd.isna(t) else f"{100 * (d - t):+.2f} points"
           for d, t in zip(drawn, cards["test accuracy"])]
    table.insert(5, "on the drawings", [percent(d) for d in drawn])
    table.insert(6, "gap", [g or "–" for g in gap])
    return table


def confusion_figure(cm: np.ndarray) -> go.Figure:
    digits = list(range(10))
    fig = go.Figure(go.Heatmap(z=np.log1p(cm), x=digits, y=digits, colorscale="Blues", showscale=False,
                               text=cm, texttemplate="%{text}", hoverinfo="skip"))
    # An invisible marker on every cell carries the hover and makes the cell clickable: heatmaps send
    # no selection events, markers do.
    ys, xs = np.divmod(np.arange(100), 10)
    fig.add_scatter(x=xs, y=ys, mode="markers", showlegend=False, customdata=cm.ravel(),
                    marker=dict(size=30, symbol="square", opacity=0),
                    hovertemplate="true %{y}, predicted %{x}: %{customdata} images<extra></extra>")
    # Square cells: the plot area shrinks to fit (constrain="domain"), the ranges stay 0-9 (without it
    # plotly widens one range and labels ticks -1 and 10).
    fig.update_xaxes(title="predicted", tickvals=digits, side="top", range=[-0.5, 9.5], fixedrange=True,
                     constrain="domain")
    fig.update_yaxes(title="true", tickvals=digits, range=[9.5, -0.5], scaleanchor="x", fixedrange=True,
                     constrain="domain")
    fig.update_layout(height=520, margin=dict(l=10, r=10, t=60, b=10), clickmode="event+select",
                      dragmode=False)
    return fig


def confusion_tab() -> None:
    """A model on the test set: metrics, the clickable confusion matrix, the cell's gallery."""
    with st.container(width=520):  # the picker, what an upload's check says and the uploader: one column
        chosen = model_chooser("eval_checkpoint")
    if chosen is None:
        return
    c_on, c_part = st.columns([2, 1], vertical_alignment="bottom")
    on = c_on.segmented_control("Measured on", list(MEASURED_ON), default="test", format_func=MEASURED_ON.get,
                                key="eval_on", **KEEP) or "test"
    part = "all"
    if on == "drawings":
        part = c_part.selectbox("Drawn by", list(PARTS), format_func=PARTS.get, key="eval_part", **KEEP,
                                help="A run that trained on the drawings is fairly measured only on the held-out "
                                     "givers: their drawings were never in its training")
    try:
        preds = test_predictions(chosen.model, chosen.key)
        images, ids, what = load_split("test")[0], None, "test images"
        on_set = drawing_predictions(chosen.model, chosen.key, part, drawing_set_state()) if on == "drawings" else None
    except (MnistLabError, OSError) as exc:
        show_error(exc)
        return
    if on == "drawings" and on_set is None:
        st.info("The drawing set has no drawings yet" + ("" if part == "all" else " by held-out givers")
                + ": give some on the Draw page.", icon=":material/draw:")
        st.page_link("app_pages/draw.py", label="Go to Draw", icon=":material/draw:")
        return
    mnist_accuracy = preds.accuracy
    if on_set is not None:
        preds, images, ids, what = on_set.predictions, on_set.images, on_set.ids, "drawings"
    cm = ev.confusion_matrix(preds.labels, preds.predicted)
    wrong = ev.mistakes(preds)
    worst = tuple(int(v) for v in np.unravel_index(np.where(np.eye(10, dtype=bool), -1, cm).argmax(), cm.shape))
    m1, m2, m3 = st.columns(3)
    if ids is None:
        m1.metric("Test accuracy", f"{preds.accuracy:.2%}")
    else:
        m1.metric("Accuracy on the drawings", f"{preds.accuracy:.2%}",
                  f"{100 * (preds.accuracy - mnist_accuracy):+.2f} points vs {mnist_accuracy:.2%} on MNIST test",
                  delta_arrow="off", help=f"{len(preds.labels):,} drawings ({PARTS[part]})")
    m2.metric("Mistakes", f"{len(wrong):,}", help=f"out of {len(preds.labels):,} {what}")
    m3.metric("Most confused", "{} → {}".format(*worst), help="true → predicted")
    if ids is None and st.toggle("Compare with a checkpoint on the same images", key="eval_compare", **KEEP):
        compare_with_checkpoint(chosen, preds)

    left, right = st.columns([1.1, 1])
    with left:
        event = selectable_chart(confusion_figure(cm), key="confusion")
        points = (event or {}).get("selection", {}).get("points", [])
        if points:
            clicked = (int(round(points[0]["y"])), int(round(points[0]["x"])))
            if st.session_state.get("cm_clicked") != clicked:  # a new click drives the selectors
                st.session_state["cm_clicked"] = clicked
                st.session_state["cm_true"], st.session_state["cm_pred"] = clicked
        else:  # nothing selected (deselected, or the page was left): the next click is new, even on that cell
            st.session_state.pop("cm_clicked", None)
    with right:
        st.dataframe(pd.DataFrame(ev.per_class(cm)), hide_index=True, column_config={
            "precision": st.column_config.NumberColumn(format="%.4f", help="Of the images predicted as this digit, "
                                                                          "the share that are this digit"),
            "recall": st.column_config.NumberColumn(format="%.4f", help="Of the images of this digit, the share "
                                                                       "predicted as it"),
            "support": st.column_config.NumberColumn("test images", help="Test images of this digit")})

    st.session_state.setdefault("cm_true", worst[0])
    st.session_state.setdefault("cm_pred", worst[1])
    s1, s2, s3 = st.columns([1, 1, 3])
    # defaults = the values in use, which a browser that missed the run that set them falls back to; kept
    # for the session (persist_state), so "Open in Inside the network" and back finds the same cell
    true = s1.selectbox("True label", range(10), index=st.session_state["cm_true"], key="cm_true", **KEEP)
    pred = s2.selectbox("Predicted label", range(10), index=st.session_state["cm_pred"], key="cm_pred", **KEEP)
    every_mistake = s3.toggle("Every mistake instead of one cell", key="cm_every_mistake", **KEEP)
    if every_mistake:
        idx = wrong
        st.subheader(f"All {len(idx)} mistakes")
    else:
        idx = ev.cell_indices(preds, true, pred)
        st.subheader(f"True {true}, predicted {pred}: {len(idx)} image(s)")
    if len(idx) == 0:
        st.info(f"None of the {what} falls in this cell.")
    else:
        kind = "correct answers" if (true == pred and not every_mistake) else "mistakes"
        name = "test index" if ids is None else "drawing id"
        st.caption(f"Most confident {kind} first; showing {min(len(idx), GALLERY_SIZE)} of {len(idx)}. "
                   f"Each caption: {name} · true → predicted (confidence).")
        cols = st.columns(8)
        for k, i in enumerate(idx[:GALLERY_SIZE]):
            number = i if ids is None else ids[i]
            cols[k % 8].image(images[i], width=72, caption=f"#{number} · {preds.labels[i]} → {preds.predicted[i]} "
                                                            f"({preds.confidence[i]:.0%})")
        if ids is not None:
            return  # Inside the network opens MNIST's images and the canvas's drawing, not the set's
        o1, o2 = st.columns([1, 3])
        chosen = o1.selectbox("Image", idx[:GALLERY_SIZE].tolist(), format_func=lambda i: f"test #{i}",
                              key="cm_open_index", **KEEP)
        open_in_inside({"kind": "dataset", "split": "test", "index": int(chosen)}, place=o2)


def cards_table(cards: pd.DataFrame) -> pd.DataFrame:
    """The cards as the reader wants them: name, accuracy, size, cost, speed first, then the rest;
    words where a value is missing (an untrained architecture has no accuracy)."""
    def accuracy(value, kind: str) -> str:
        if pd.notna(value):
            return f"{value:.2%}"
        return "not recorded" if kind == "checkpoint" else "untrained"

    return pd.DataFrame({
        "name": cards["model"],
        "test accuracy": [accuracy(a, k) for a, k in zip(cards["test accuracy"], cards["kind"])],
        "parameters": cards["parameters"],
        "MFLOPs / image": cards["MFLOPs / image"],
        "latency ms (CPU, 1 thread)": cards["latency ms (CPU, 1 thread)"],
        "the article reports": cards["article reports"].replace("", "–").fillna("–"),
        "kind": cards["kind"],
        "architecture": cards["architecture"],
        "layers": cards["layers"],
        "from": cards["provenance"].fillna("–"),
    })


def cards_tab() -> None:
    """One table over every architecture and checkpoint."""
    st.caption("Every architecture (untrained) and every checkpoint: test accuracy, and beside it the accuracy "
               "on the visitors' drawings with the gap, parameters, FLOPs per image "
               "(torch.utils.flop_counter), single-image CPU latency (median, one thread), and for the tutorial "
               "architectures what the article reports; then the layers with their output shapes.")
    found, how_many = find_checkpoints(limit=CARDS_LIMIT)
    if how_many > len(found):
        st.caption(f"Measured: the defaults and the newest checkpoints, {len(found)} of {how_many:,}.")
    paths = [str(p) for p in found]
    mtimes = tuple(Path(p).stat().st_mtime for p in paths)
    cards = model_cards(tuple(paths), mtimes)
    try:
        on_drawings = drawing_accuracies(tuple(paths), mtimes, drawing_set_state())
    except MnistLabError as exc:
        show_error(exc)
        on_drawings = {}
    # Short headers, the details in their help, and no width narrower than a header: "small" columns cut
    # theirs to "latency ms (C..." and "MFLOPs / i...".
    st.dataframe(with_drawings(cards_table(cards), cards, on_drawings), hide_index=True, column_config={
        "name": st.column_config.TextColumn(pinned=True),
        "on the drawings": st.column_config.TextColumn("drawings", help="Accuracy on every drawing in the "
                                                                        "visitors' set"),
        "gap": st.column_config.TextColumn(help="Accuracy on the drawings minus the test accuracy"),
        "parameters": st.column_config.NumberColumn(format="localized"),
        "MFLOPs / image": st.column_config.NumberColumn(
            "MFLOPs", format="%.2f", help="Millions of floating-point operations for one image "
                                         "(torch.utils.flop_counter)"),
        "latency ms (CPU, 1 thread)": st.column_config.NumberColumn(
            "latency ms", format="%.3f", help="One image on the CPU with one thread: the median time, in "
                                              "milliseconds"),
        "the article reports": st.column_config.TextColumn(
            "article", help="What the tutorial's article reports for this architecture"),
        "layers": st.column_config.TextColumn(width="large")})

    st.subheader("From scratch: NumPy operators against torch (tutorial 4's check)")
    st.caption("LeNet-5's layers written by hand in NumPy (im2col convolution, max and average pooling) on a "
               "batch of 64, with the lenet5 checkpoint's weights: time per batch (best of 5) and the largest "
               "difference from torch's output.")
    lenet = default_checkpoint("lenet5")
    if lenet is None:
        st.info("The lenet5 checkpoint is missing: run `make pretrained`.")
    else:
        st.dataframe(speed_table(str(lenet), lenet.stat().st_mtime), hide_index=True, column_config={
            "numpy ms": st.column_config.NumberColumn(format="%.3f"),
            "torch ms": st.column_config.NumberColumn(format="%.3f"),
            "max abs diff": st.column_config.NumberColumn(format="%.1e")})


@st.cache_data(show_spinner="Timing NumPy and torch layers...")
def speed_table(path: str, mtime: float) -> pd.DataFrame:
    model, _ = load_model(path)
    return pd.DataFrame(lenet5_speed_table(model=model))


def comparison_table(rows: list[dict], baseline_id: str) -> pd.DataFrame:
    """ev.compare_runs' rows in the reader's words: percentages, points, seconds; a dash or a reason
    where a value is missing (no validation set, a run that never started), never "None"."""
    def points(value) -> str:
        return "–" if value is None else f"{100 * value:+.2f} points"

    table = []
    for r in rows:
        base = r["run"] == baseline_id
        best_val = r["best_val_accuracy"]
        table.append({
            "run": r["run"] + (" (baseline)" if base else ""), "model": r["model"] or "–",
            "test accuracy": percent(r["test_accuracy"]),
            "test accuracy vs baseline": "baseline" if base else points(r["Δ test_accuracy"]),
            "best validation accuracy": "no validation set" if best_val is None else f"{best_val:.2%}",
            "validation vs baseline": "baseline" if base else points(r["Δ best_val_accuracy"]),
            "test loss": "–" if r["test_loss"] is None else f"{r['test_loss']:.4f}",
            "test loss vs baseline": "baseline" if base else ("–" if r["Δ test_loss"] is None
                                                              else f"{r['Δ test_loss']:+.4f}"),
            "training time": "–" if r["duration"] is None else f"{r['duration']:,.0f} s",
            "time vs baseline": "baseline" if base else ("–" if r["Δ duration"] is None
                                                         else f"{r['Δ duration']:+,.0f} s"),
        })
    return pd.DataFrame(table)


def runs_tab() -> None:
    """Completed runs against a baseline run, with a CSV download."""
    try:
        finished = registry.list_runs(status="completed", newest_first=True, limit=COMPARE_RUNS)[::-1]  # oldest first
        how_many = registry.count_runs(status="completed") if len(finished) == COMPARE_RUNS else len(finished)
    except MnistLabError as exc:
        show_error(exc)
        finished, how_many = [], 0
    if how_many > len(finished):
        st.caption(f"The newest {len(finished)} of {how_many:,} completed runs.")
    if len(finished) < 2:
        st.info("Compare needs at least two completed runs: start some on the Train page.")
    else:
        labels = {r.id: f"{r.id} · {r.config.get('model')}"
                        + (f" · {r.test_accuracy:.2%}" if r.test_accuracy is not None else "") for r in finished}
        baseline_id = st.selectbox("Baseline run", list(labels), format_func=labels.get, key="baseline_run")
        rest = [i for i in labels if i != baseline_id]
        others_ids = st.multiselect("Compare with", rest, default=rest[-3:], format_func=labels.get,
                                    key="compare_runs")
        by_id = {r.id: r for r in finished}
        rows = ev.compare_runs(by_id[baseline_id], [by_id[i] for i in others_ids])
        st.dataframe(comparison_table(rows, baseline_id), hide_index=True,
                     column_config={"run": st.column_config.TextColumn(pinned=True)})
        st.download_button("Download comparison (CSV)", ev.to_csv(rows), file_name="run-comparison.csv",
                           mime="text/csv", icon=":material/download:",
                           help="The same figures as plain numbers (accuracies as fractions, times in seconds)")
        fig = go.Figure()
        for run_id in [baseline_id, *others_ids]:
            val = registry.get_metrics(run_id, split="val")
            fig.add_scatter(x=[m["epoch"] for m in val], y=[m["accuracy"] for m in val], mode="lines+markers",
                            name=("baseline " if run_id == baseline_id else "") + labels[run_id],
                            line=dict(width=4 if run_id == baseline_id else 2))
        fig.update_layout(title="Validation accuracy", xaxis_title="epoch", height=380)
        st.plotly_chart(fig, key="compare_curves")


# Lazy tabs: only the open tab computes (model cards measure every model).
tab_eval, tab_cards, tab_runs = st.tabs(["Confusion matrix", "Model cards", "Compare runs"], key="eval_tab",
                                        on_change="rerun")
for tab, draw in ((tab_eval, confusion_tab), (tab_cards, cards_tab), (tab_runs, runs_tab)):
    if tab.open:
        with tab:
            draw()

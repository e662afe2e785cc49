"""Charts of training runs: one run as it trains (the Train page's live panel) and many runs at once
(the runs table's ticked rows, the Sweep tab, the class view).

Each function takes plain data (dicts and lists, no Streamlit, no registry) and returns Plotly
figures, so any page can draw them and a test can read them:

- `live_curves(rows, total_steps)`: one run's loss (per step, smoothed, on validation) and accuracy.
  The axes are fixed (x from 0 to the run's last step, the loss in whole decades) and so are the
  margins, so a live update does not lay the axes out again: that was half of the browser's work per
  update (benchmarks/app_training, BENCHMARKS.md).
- `parallel_coordinates(rows, fields)`: one vertical axis per field plus test accuracy, one line per
  run coloured by its accuracy; dragging along an axis (brushing) keeps only the lines that pass
  through the range. Text fields (optimizer, model) get an axis of their values; log fields (the
  learning rate) an axis in decades labelled with the values themselves.
- `overlaid_curves(series)`: the loss and validation accuracy of many runs on one pair of charts,
  each run's line coloured by one value (a continuous scale for numbers, log for the learning rate;
  a palette for text), so the eye sees the learning rate's effect as a gradient.
- `accuracy_against(points, field)`: test accuracy against one field, a dot per run (its run id in
  customdata, so a click can open it) and the mean +/- spread over seeds at each value.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import plotly.graph_objects as go
from plotly.colors import qualitative, sample_colorscale

from mnist_core import form
from mnist_core.live import decades, smooth, smoothing_weight, thin
from mnist_core.sweeps import LOG_FIELDS

ACCURACY = "test accuracy"
SCALE = "Viridis"
LOG_TICKS = "~g"  # 0.5 as "0.5" on a log axis (Plotly otherwise labels 0.5 as a bare "5")
TITLE_ROW, LEGEND_ROW = 34, 22  # pixels: a chart's title (17 px and its padding), a row of its legend
LIVE_ENTRIES = 3                # the most a live chart has: the loss per step, smoothed, on validation


def _words(name: str) -> str:
    return form.noun(name) if name in form.LABELS else name


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _log_ok(name: str, values: Sequence) -> bool:
    return name in LOG_FIELDS and all(_is_number(v) and v > 0 for v in values)


def _fmt(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def parallel_coordinates(rows: Sequence[dict], fields: Sequence[str], color: str = ACCURACY,
                         height: int = 380) -> go.Figure:
    """One axis per field, then `color` (test accuracy), one line per row (a run); lines coloured by
    `color`. Rows without a value for `color` are drawn at the bottom of its axis, in grey."""
    dimensions, span = [], [0.0, 1.0]
    for name in [*fields, color]:
        values = [row.get(name) for row in rows]
        if name == color:
            known = [v for v in values if v is not None]
            floor, top = min(known, default=0.0), max(known, default=1.0)
            pad = max(0.002, (top - floor) * 0.1)  # a tight axis: brushing between 98% and 99% must be easy
            span = [max(0.0, floor - pad), min(1.0, top + pad)]
            dimensions.append(dict(label=_words(name), values=[floor if v is None else v for v in values],
                                   range=span, tickformat=".1%"))
        elif all(_is_number(v) for v in values):
            if _log_ok(name, values):
                ticks = sorted(set(values))
                dimensions.append(dict(label=_words(name) + " (log)", values=[math.log10(v) for v in values],
                                       tickvals=[math.log10(v) for v in ticks], ticktext=[_fmt(v) for v in ticks]))
            else:
                dimensions.append(dict(label=_words(name), values=values))
        else:  # text: one tick per value, in the order first seen
            order = list(dict.fromkeys(map(str, values)))
            dimensions.append(dict(label=_words(name), values=[order.index(str(v)) for v in values],
                                   tickvals=list(range(len(order))), ticktext=order,
                                   range=[-0.5, len(order) - 0.5] if len(order) > 1 else [-1, 1]))
    colors = [row.get(color) for row in rows]
    known = [c for c in colors if c is not None]
    # The colour scale spans the accuracy axis (real accuracies, at most 100%): left to itself, Plotly stretched
    # runs that tie to 60-140%.
    line = dict(color=[c if c is not None else (min(known) if known else 0.0) for c in colors], colorscale=SCALE,
                cmin=span[0], cmax=span[1], showscale=True, colorbar=dict(title=_words(color), tickformat=".1%"))
    fig = go.Figure(go.Parcoords(dimensions=dimensions, line=line, unselected=dict(line=dict(opacity=0.08))))
    fig.update_layout(height=height, margin=dict(l=60, r=40, t=60, b=30))
    return fig


def live_curves(rows: Sequence[dict], total_steps: Optional[int] = None) -> tuple[go.Figure, go.Figure]:
    """(loss, accuracy) of one run from its metric rows, on axes fixed for the whole run.

    The training loss is drawn per step and smoothed (the smoothing grows with the run, so early
    points stay close to the data), the accuracy smoothed, and the validation rows as they are."""
    train = [m for m in rows if m["split"] == "train"]
    val = [m for m in rows if m["split"] == "val"]
    loss, acc = go.Figure(), go.Figure()
    if train:
        weight = smoothing_weight(len(train))
        raw_loss, raw_acc = [m["loss"] for m in train], [m["accuracy"] for m in train]
        columns = zip([m["step"] for m in train], raw_loss, smooth(raw_loss, weight, log=True), smooth(raw_acc, weight))
        s, raw_l, sm_l, sm_a = (list(col) for col in zip(*thin(list(columns))))
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
    # width wraps it to a row per entry or two, and the margins are fixed, so a legend below the plot would
    # lose its later rows (the validation series) to the bottom margin.
    layout = dict(height=370, margin=dict(l=60, r=20, t=TITLE_ROW + LEGEND_ROW * LIVE_ENTRIES, b=50, autoexpand=False),
                  legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="left", x=0))
    on_top = dict(y=1.0, yref="container", yanchor="top", pad=dict(t=8))
    loss.update_layout(title=dict(text="Loss", **on_top), xaxis=dict(title="step", range=x_range),
                       yaxis=dict(type="log", range=decades(m["loss"] for m in rows), tickformat=LOG_TICKS), **layout)
    acc.update_layout(title=dict(text="Accuracy", **on_top), xaxis=dict(title="step", range=x_range),
                      yaxis=dict(range=[0, 1.01]), **layout)
    return loss, acc


def colour_for(values: Sequence, name: str) -> dict:
    """{value: colour} for one varied field: a Viridis gradient over numbers (in log space for the
    learning rate, weight decay and batch size), Plotly's palette over text."""
    distinct = list(dict.fromkeys(values))
    if not distinct:
        return {}
    if all(_is_number(v) for v in distinct):
        keys = [math.log10(v) for v in distinct] if _log_ok(name, distinct) else [float(v) for v in distinct]
        lo, hi = min(keys), max(keys)
        spots = [0.5 if hi == lo else (k - lo) / (hi - lo) for k in keys]
        return dict(zip(distinct, sample_colorscale(SCALE, [0.9 * s for s in spots])))
    palette = qualitative.Plotly
    return {v: palette[i % len(palette)] for i, v in enumerate(distinct)}


def overlaid_curves(series: Sequence[dict], colour_field: Optional[str] = None,
                    height: int = 340) -> tuple[go.Figure, go.Figure]:
    """(loss, validation accuracy) with a line per run. Each item of `series`: label, rows (the run's
    metric rows), and `value` (its value of `colour_field`, which picks its colour)."""
    colours = colour_for([s.get("value") for s in series], colour_field or "") if colour_field else {}
    loss, acc = go.Figure(), go.Figure()
    shown_in_legend, losses = set(), []
    for i, s in enumerate(series):
        colour = colours.get(s.get("value")) or qualitative.Plotly[i % len(qualitative.Plotly)]
        group = _fmt(s.get("value")) if colour_field else s["label"]
        first = group not in shown_in_legend
        shown_in_legend.add(group)
        name = f"{_words(colour_field)} {group}" if colour_field else group
        train = [m for m in s["rows"] if m["split"] == "train" and m.get("loss") is not None]
        val = [m for m in s["rows"] if m["split"] == "val" and m.get("accuracy") is not None]
        common = dict(legendgroup=group, showlegend=first, name=name, line=dict(color=colour, width=2),
                      hovertext=s["label"], hovertemplate="%{hovertext}<br>step %{x}: %{y:.4g}<extra></extra>")
        if train:
            smoothed = smooth([m["loss"] for m in train], smoothing_weight(len(train)), log=True)
            kept = thin(list(zip([m["step"] for m in train], smoothed)), limit=400)
            losses += [k[1] for k in kept]
            loss.add_scatter(x=[k[0] for k in kept], y=[k[1] for k in kept], mode="lines", **common)
        if val:
            acc.add_scatter(x=[m["step"] for m in val], y=[m["accuracy"] for m in val], mode="lines+markers",
                            **common)
    layout = dict(height=height, margin=dict(l=60, r=20, t=40, b=40), xaxis_title="step",
                  legend=dict(orientation="h", y=-0.3))
    # whole decades on the loss axis (live.decades), so Plotly labels 1, 2, 5 per decade, not every minor tick
    loss.update_layout(title="Training loss (smoothed)",
                       yaxis=dict(type="log", range=decades(losses), tickformat=LOG_TICKS), **layout)
    acc.update_layout(title="Validation accuracy", yaxis=dict(tickformat=".0%"), **layout)
    return loss, acc


def accuracy_against(points: Sequence[dict], field: str, groups: Sequence[dict] = (),
                     height: int = 320) -> go.Figure:
    """Test accuracy against one field. `points`: run_id, value, accuracy (a dot each, run id in
    customdata); `groups`: value, mean, spread (a line with error bars: the mean +/- spread over seeds).
    The learning rate, weight decay and batch size get a log x axis.

    A click on a dot selects its run. The mean runs through the dots (with one seed it sits on them), so
    it is drawn under them and takes no hover or click (hoverinfo "skip": plotly.js fires no events for
    it): a click on a dot's centre always reaches the dot."""
    fig = go.Figure()
    shown = [p for p in points if p.get("accuracy") is not None]
    text_axis = not all(_is_number(p["value"]) for p in shown)
    means = [g for g in groups if g.get("mean") is not None]
    if not text_axis:
        means.sort(key=lambda g: g["value"])
    if means:
        fig.add_scatter(x=[_fmt(g["value"]) if text_axis else g["value"] for g in means],
                        y=[g["mean"] for g in means], error_y=dict(array=[g.get("spread") or 0 for g in means]),
                        mode="lines" if not text_axis else "markers", name="mean ± spread over seeds",
                        line=dict(color="#7f8ea3"), hoverinfo="skip")
    fig.add_scatter(x=[_fmt(p["value"]) if text_axis else p["value"] for p in shown],
                    y=[p["accuracy"] for p in shown], customdata=[p["run_id"] for p in shown], mode="markers",
                    name="a run", marker=dict(size=10, opacity=0.75),
                    hovertemplate="run %{customdata}<br>%{x}: %{y:.2%}<extra></extra>")
    log_x = not text_axis and _log_ok(field, [p["value"] for p in shown])
    fig.update_layout(height=height, margin=dict(l=60, r=20, t=40, b=40),
                      title=f"Test accuracy against {_words(field)}",
                      xaxis=dict(title=_words(field), type="log" if log_x else ("category" if text_axis else "-"),
                                 # a tick at each value tried (a narrow log range otherwise labels every minor tick)
                                 tickvals=sorted({p["value"] for p in shown}) if log_x else None,
                                 ticktext=[_fmt(v) for v in sorted({p["value"] for p in shown})] if log_x else None),
                      yaxis=dict(title=ACCURACY, tickformat=".1%"), legend=dict(orientation="h", y=-0.25))
    return fig

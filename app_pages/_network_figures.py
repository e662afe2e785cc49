"""How a network's weights and activations are drawn: one way, for Inside the network and the replay.

- `kernel_figure`: a convolution's kernels [out, in, kh, kw] as one grid of small heatmaps (a row per
  output channel and a column per input channel while that stays readable; past FULL_GRID_MAX kernels,
  one input channel or the mean over them).
- `map_figure`: what a layer makes of one image: feature maps [C, H, W] as a grid, or bars where there
  is one value per channel or unit (1x1 maps, an MLP's hidden layer).
- `diverging`: the colour scale both use for signed values (red positive, blue negative, white zero).

Inside the network draws a checkpoint's weights and one image's maps; the replay (_explain_ui) draws
the same things as they were at each snapshot, scaled over all frames (`over`) so the slider shows
change rather than rescaling.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from app_pages._figures import tiles_heatmap

FULL_GRID_MAX = 256  # kernels of a multi-input layer are all shown up to this many; past it, one view


def diverging(values: np.ndarray, percentile: float = 100.0) -> dict:
    """Colour-scale arguments: red positive, blue negative, white at zero, symmetric about it.

    The bound is the largest |value|, or a high percentile of them where a few outliers would wash
    out everything else (values past it are drawn at full colour).
    """
    bound = float(np.percentile(np.abs(values), percentile)) or 1.0
    return dict(colorscale="RdBu_r", zmid=0.0, zmin=-bound, zmax=bound)


def kernel_figure(w: np.ndarray, scale: dict | None = None, view: int | None = None,
                  max_height: int = 700) -> tuple[go.Figure, str]:
    """The kernels of one convolution, w [out, in, kh, kw], and a line saying what is drawn.

    One input channel: a grid of `out` kernels. Up to FULL_GRID_MAX kernels in all: a row per output
    channel, a column per input channel. Past that: input channel `view`, or the mean over the input
    channels when `view` is None (the caller offers the choice). `scale` defaults to diverging(w).
    """
    out, cin, kh, kw = w.shape
    scale = scale or diverging(w)
    if cin == 1:
        return (tiles_heatmap(w[:, 0], min(out, 16), hover="kernel %{customdata[0]}", max_height=min(max_height, 400),
                              **scale),
                f"{out} kernels of {kh}x{kw}")
    if out * cin <= FULL_GRID_MAX:
        ids = np.stack(np.divmod(np.arange(out * cin), cin), axis=1)
        hover = "output %{customdata[0]}, input %{customdata[1]}"
        return (tiles_heatmap(w.reshape(out * cin, kh, kw), cin, hover=hover,
                              tile_ids=ids, x_ticks=[f"in {i}" for i in range(cin)],
                              y_ticks=[f"out {o}" for o in range(out)], max_height=max_height, **scale),
                f"{out} x {cin} kernels of {kh}x{kw}: a row per output channel, a column per input channel")
    tiles = w.mean(axis=1) if view is None else w[:, view]
    what = (f"{out} kernels, averaged over their {cin} input channels" if view is None
            else f"{out} kernels of {kh}x{kw} on input channel {view}")
    return tiles_heatmap(tiles, 16, hover="output %{customdata[0]}", max_height=max_height, **scale), what


def map_figure(m: np.ndarray, over: np.ndarray | None = None, max_height: int = 700) -> go.Figure:
    """One layer's output for one image: m [C, H, W] feature maps, or [N] hidden units.

    Maps are a grid of small images (Viridis from zero after a ReLU, diverging where values go below
    zero); one value per channel or unit is a bar chart. `over` (all the replay's frames) sets the
    colour scale and the bars' range; it defaults to `m` itself.
    """
    over = m if over is None else over
    top, low = float(over.max()), float(over.min())
    if m.ndim == 1 or m.shape[1:] == (1, 1):
        values = m.reshape(-1)
        unit = "channel" if m.ndim == 3 else "unit"
        fig = go.Figure(go.Bar(x=np.arange(len(values)), y=values, marker_color="#7f8ea3",
                               hovertemplate=f"{unit} %{{x}}: %{{y:.4g}}<extra></extra>"))
        fig.update_layout(height=250, xaxis_title=unit, bargap=0.1, margin=dict(l=10, r=10, t=10, b=10),
                          yaxis=dict(title="activation", range=[min(0.0, low) * 1.05, top * 1.05 or 1.0]))
        return fig
    scale = dict(colorscale="Viridis", zmin=0.0, zmax=top or 1.0) if low >= 0 else diverging(over, 99.5)
    return tiles_heatmap(m, min(len(m), 8 if m.shape[-1] >= 10 else 16), hover="channel %{customdata[0]}",
                         max_height=max_height, **scale)

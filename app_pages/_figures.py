"""How pages draw digits, answers and grids of small images, and how they show an accuracy.

- `digit_heatmap`: one 2-D array (a digit, an attribution map) with square pixels and hover values.
- `probability_bars`: a model's ten probabilities, the top one highlighted.
- `tiles_heatmap`: many small arrays (kernels, feature maps, mean images) as one grid, one trace.
- `CHART_CONFIG`: the Plotly config of the app's charts, and `percent`, an accuracy in a table.

Plain Plotly and NumPy, no Streamlit: any page can draw what these return, and a test can read it.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from mnist_core.inspection import mosaic

CHART_CONFIG = {"displayModeBar": False}  # Plotly's toolbar only covers small charts (and costs a tap on a phone)


def percent(x: float | None) -> str:
    """An accuracy as a table shows it ("98.76%"), or a dash when there is none yet."""
    return f"{x:.2%}" if x is not None else "–"


def digit_heatmap(image: np.ndarray, title: str = "", height: int = 360, colorscale: str = "gray",
                  zmin: float = 0.0, zmax: float | None = None, show_scale: bool = True) -> go.Figure:
    """A 2-D array as a Plotly heatmap with hover values, rows top to bottom, square pixels."""
    fig = go.Figure(go.Heatmap(z=image, colorscale=colorscale, zmin=zmin, zmax=zmax, showscale=show_scale,
                               hovertemplate="row %{y}, col %{x}: %{z}<extra></extra>"))
    fig.update_yaxes(autorange="reversed", scaleanchor="x", showticklabels=False, showgrid=False, zeroline=False,
                     constrain="domain")
    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False, constrain="domain")
    fig.update_layout(title=title or None, height=height, margin=dict(l=10, r=10, t=40 if title else 10, b=10))
    return fig


def probability_bars(probs: np.ndarray, height: int = 300, title: str = "") -> go.Figure:
    """Ten bars, the top class highlighted."""
    probs = np.asarray(probs, dtype=float)
    top = int(probs.argmax())
    colors = ["#ff4b4b" if i == top else "#7f8ea3" for i in range(10)]
    fig = go.Figure(go.Bar(x=[str(i) for i in range(10)], y=probs, marker_color=colors,
                           text=[f"{p:.0%}" if p >= 0.01 else "" for p in probs], textposition="outside",
                           hovertemplate="digit %{x}: %{y:.4f}<extra></extra>"))
    fig.update_xaxes(type="category")  # "0".."9" are labels, not numbers: show all ten
    fig.update_layout(height=height, yaxis=dict(range=[0, 1.1], title="probability"), xaxis_title="digit",
                      title=title or None, margin=dict(l=10, r=10, t=40 if title else 10, b=10))
    return fig


def tiles_heatmap(tiles: np.ndarray, cols: int, *, hover: str = "tile %{customdata[0]}",
                  tile_ids: np.ndarray | None = None, colorscale: str = "gray", zmin: float | None = None,
                  zmax: float | None = None, zmid: float | None = None, x_ticks: list[str] | None = None,
                  y_ticks: list[str] | None = None, cell_px: float | None = None, max_height: int = 900,
                  show_scale: bool = True) -> go.Figure:
    """Many small 2-D arrays [N,H,W] as ONE heatmap: a grid of `cols` columns with thin blank seams.

    One trace instead of N subplots keeps big grids (kernels, feature maps, mean images) fast and
    gives every tile the same colour scale. Hover names the tile (`hover`, formatted with
    customdata[0..k-1] = `tile_ids[i]`, default the tile number) and the pixel's row, column and value.
    x_ticks / y_ticks label the columns / rows of tiles.
    """
    tiles = np.asarray(tiles, dtype=np.float32)
    n, h, w = tiles.shape
    cols = max(1, min(cols, n))
    rows = -(-n // cols)
    ids = np.arange(n)[:, None] if tile_ids is None else np.asarray(tile_ids).reshape(n, -1)
    k = ids.shape[1]
    z = mosaic(tiles, cols)
    # customdata per pixel: the tile's ids, then the row and column inside the tile (-1 on seams).
    per_tile = np.concatenate([np.broadcast_to(ids[:, None, None, :], (n, h, w, k)),
                               np.broadcast_to(np.arange(h)[None, :, None, None], (n, h, w, 1)),
                               np.broadcast_to(np.arange(w)[None, None, :, None], (n, h, w, 1))], axis=3)
    custom = np.stack([mosaic(per_tile[..., j], cols, fill=-1) for j in range(k + 2)], axis=2)
    custom = custom.astype(np.int32 if custom.max(initial=0) > 32_000 else np.int16)
    fig = go.Figure(go.Heatmap(
        z=z, customdata=custom, colorscale=colorscale, zmin=zmin, zmax=zmax, zmid=zmid, showscale=show_scale,
        hoverongaps=False,
        hovertemplate=f"{hover}<br>row %{{customdata[{k}]}}, col %{{customdata[{k + 1}]}}: %{{z:.4g}}<extra></extra>"))
    width_px, height_px = z.shape[1], z.shape[0]
    scale = cell_px or min(24.0, 900.0 / width_px, max_height / height_px)
    centers_x = [c * (w + 1) + (w - 1) / 2 for c in range(cols)]
    centers_y = [r * (h + 1) + (h - 1) / 2 for r in range(rows)]
    fig.update_xaxes(showticklabels=bool(x_ticks), tickvals=centers_x[:len(x_ticks or [])], ticktext=x_ticks,
                     showgrid=False, zeroline=False, constrain="domain", side="top")
    fig.update_yaxes(showticklabels=bool(y_ticks), tickvals=centers_y[:len(y_ticks or [])], ticktext=y_ticks,
                     showgrid=False, zeroline=False, autorange="reversed", scaleanchor="x")
    fig.update_layout(height=int(min(max_height, max(120, height_px * scale + 50))),
                      margin=dict(l=10 if not y_ticks else 50, r=10, t=30 if x_ticks else 10, b=10))
    return fig

"""Dataset: MNIST as a paged 10x10 grid (filter, shuffle, jump), one digit large, and the class statistics.

A third source beside MNIST's train and test splits: the visitors' drawings (mnist_core.drawings), in
the same grid with the same digit filter, plus by pointer type and "mine" (this browser's, which it
may remove); their counts per digit and pointer type, and how they differ from MNIST (mean image per
digit side by side, ink, stroke width, slant).

The grid is one picture (a PNG of the 100-digit mosaic) with an invisible marker over each cell, so
it draws at once and a click on a cell selects that digit. The chosen index lives in the "Index"
input's session state, and under _keys.INSPECT_SOURCE for the Inside the network page.
"""

from __future__ import annotations

import base64
import io
import math
import time

import numpy as np
import plotly.graph_objects as go
import streamlit as st
from PIL import Image

from mnist_core import drawings, inspection
from mnist_core.data import MNIST_MEAN, MNIST_STD, SPLIT_SIZES
from mnist_core.errors import MnistLabError
from app_pages import _keys as keys
from app_pages._data import load_split, require_data
from app_pages._errors import show_error
from app_pages._figures import CHART_CONFIG, digit_heatmap, tiles_heatmap
from app_pages._frame import open_in_inside, visitor_token
from app_pages._selectable import selectable_chart

PER_PAGE = 100
COLS = 10
CELL = 28 + 1          # a digit plus the one-pixel seam after it
SEAM, EMPTY = 110, 40  # grey levels of the seams and of cells past the last image
VALUE_FONT, VALUE_CELL = 12, 34  # pixel values: font size, and a cell's height, room for "255" (pixels)
DRAWINGS = "drawings"  # the third source, beside MNIST's train and test splits
POINTER_WORDS = {"mouse": "a mouse", "touch": "a finger", "pen": "a pen"}

st.title("Dataset")
st.caption("MNIST's handwritten digits, 100 at a time: filter by label, shuffle, click a digit to see its pixels.")
require_data()


# --- cached data and figures ---------------------------------------------------------------------

def pixel_values_figure(image: np.ndarray) -> go.Figure:
    """The image's ink (its bounding box and one pixel of background) as a heatmap with every value
    printed: at most about 22 x 22 cells on a figure as wide as the page, where 784 numbers on the
    small square above would overlap."""
    rows, cols = np.flatnonzero(image.any(axis=1)), np.flatnonzero(image.any(axis=0))
    if len(rows) == 0:  # a blank image: its middle
        rows = cols = np.array([10, 17])
    r0, r1 = max(rows[0] - 1, 0), min(rows[-1] + 2, image.shape[0])
    c0, c1 = max(cols[0] - 1, 0), min(cols[-1] + 2, image.shape[1])
    crop = image[r0:r1, c0:c1]
    fig = go.Figure(go.Heatmap(z=crop, x=np.arange(c0, c1), y=np.arange(r0, r1), colorscale="gray", zmin=0, zmax=255,
                               showscale=False, texttemplate="%{z}", textfont=dict(size=VALUE_FONT),
                               hovertemplate="row %{y}, col %{x}: %{z}<extra></extra>"))
    fig.update_yaxes(autorange="reversed", scaleanchor="x", constrain="domain", showgrid=False, zeroline=False,
                     dtick=1, tickfont=dict(size=9))
    fig.update_xaxes(constrain="domain", showgrid=False, zeroline=False, dtick=1, side="top", tickfont=dict(size=9))
    fig.update_layout(height=VALUE_CELL * len(crop) + 40, margin=dict(l=30, r=10, t=30, b=10))
    return fig


@st.cache_data(show_spinner=False, max_entries=64)
def browse_order(split: str, label: int | None, seed: int | None) -> np.ndarray:
    return inspection.browse_order(load_split(split)[1], label, seed)


@st.cache_data(show_spinner=False, max_entries=256)
def grid_png(split: str, indices: tuple[int, ...]) -> str:
    """The page's digits as one PNG data URI (see mosaic_png)."""
    return mosaic_png(load_split(split)[0][list(indices)])


@st.cache_data(show_spinner=False, max_entries=64)
def mosaic_png(pictures: np.ndarray) -> str:
    """Up to PER_PAGE uint8 pictures [N,28,28] as one PNG data URI: 10x10 cells with grey seams; empty
    cells are dark."""
    tiles = np.full((PER_PAGE, 28, 28), np.nan, np.float32)
    tiles[:len(pictures)] = pictures
    out = np.nan_to_num(inspection.mosaic(tiles, COLS), nan=SEAM)
    # Cells past the last image: fill them darker than the seams so the grid still reads as 10x10.
    for i in range(len(pictures), PER_PAGE):
        r, c = divmod(i, COLS)
        out[r * CELL:r * CELL + 28, c * CELL:c * CELL + 28] = EMPTY
    buf = io.BytesIO()
    Image.fromarray(out.astype(np.uint8), mode="L").save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def grid_figure(png: str, indices: np.ndarray, cell_labels: np.ndarray, selected: int | None,
                what: str = "index") -> go.Figure:
    """The mosaic picture `png` plus one invisible, clickable marker per cell carrying (index, label):
    an MNIST index, or a drawing's id (`what` names it on hover)."""
    cells = np.arange(len(indices))
    rows, cols = np.divmod(cells, COLS)
    fig = go.Figure([
        go.Image(source=png, hoverinfo="skip"),
        go.Scatter(x=cols * CELL + 13.5, y=rows * CELL + 13.5, mode="markers",
                   marker=dict(size=24, opacity=0), customdata=np.stack([indices, cell_labels], axis=1).tolist(),
                   hovertemplate=f"{what} %{{customdata[0]}}<br>label %{{customdata[1]}}<extra></extra>"),
    ])
    hits = np.flatnonzero(indices == selected) if selected is not None else []
    if len(hits):
        r, c = divmod(int(hits[0]), COLS)
        fig.add_shape(type="rect", x0=c * CELL - 0.5, x1=c * CELL + 27.5, y0=r * CELL - 0.5, y1=r * CELL + 27.5,
                      line=dict(color="#ff4b4b", width=3))
    side = COLS * CELL - 1
    fig.update_xaxes(visible=False, range=[-0.5, side - 0.5], fixedrange=True)
    fig.update_yaxes(visible=False, range=[side - 0.5, -0.5], fixedrange=True, scaleanchor="x")
    fig.update_layout(height=640, margin=dict(l=0, r=0, t=0, b=0), hoverdistance=-1, showlegend=False)
    return fig


@st.cache_data(show_spinner="Computing class statistics...")
def class_stats(split: str) -> tuple[np.ndarray, np.ndarray]:
    """(count per class, mean image per class in [0,1])."""
    images, labels = load_split(split)
    return np.bincount(labels, minlength=10), inspection.class_means(images, labels)


@st.cache_data(show_spinner="Computing pixel statistics...")
def pixel_stats(split: str) -> tuple[float, float]:
    return inspection.pixel_stats(load_split(split)[0])


@st.cache_data(show_spinner="Measuring MNIST's digits...")
def mnist_measures(split: str) -> drawings.SetStats:
    return drawings.describe(*load_split(split))


@st.cache_data(show_spinner="Measuring the drawings...", max_entries=8)
def drawing_measures(total: int, newest: int) -> drawings.SetStats:
    """The whole set measured; (total, newest id) names the set's state, so a drawing added or removed
    measures it afresh."""
    images, labels, _ = drawings.drawing_set()
    return drawings.describe(images, labels)


# --- state and callbacks -------------------------------------------------------------------------

ss = st.session_state
ss.setdefault("ds_split", "train")
ss.setdefault("ds_page", 1)
ss.setdefault("ds_index", 0)


def current_order() -> np.ndarray:
    seed = int(ss.get("ds_seed", 0)) if ss.get("ds_shuffle") else None
    return browse_order(ss["ds_split"], ss.get("ds_label"), seed)


def select(index: int) -> None:
    ss["ds_index"] = index
    ss[keys.INSPECT_SOURCE] = {"kind": "dataset", "split": ss["ds_split"], "index": int(index)}


def on_filter_change() -> None:
    ss["ds_page"] = 1


def on_page_step(step: int, n_pages: int | None = None) -> None:
    if n_pages is None:
        n_pages = max(1, math.ceil(len(current_order()) / PER_PAGE))
    ss["ds_page"] = min(max(1, ss["ds_page"] + step), n_pages)


def on_index_change() -> None:
    """Jump: show the page holding this index (if the filter lets it in) and select it. An index past
    either end is brought to the nearest image, with a line saying so: the field has no bounds of its
    own, which only turned it red in the browser, without a reason."""
    split, last = ss["ds_split"], SPLIT_SIZES[ss["ds_split"]] - 1
    index = ss["ds_index"] if ss["ds_index"] is not None else 0
    if not 0 <= index <= last:
        kept = min(max(index, 0), last)
        ss["ds_index_note"] = (f"There is no {split} image {index:,}: the {split} split's indices go from 0 to "
                               f"{last:,}. Showing image {kept:,}.")
        index = ss["ds_index"] = kept
    position = np.flatnonzero(current_order() == index)
    if len(position):
        ss["ds_page"] = int(position[0]) // PER_PAGE + 1
    select(index)


def _clicked(key: str) -> int | None:
    """The index (or drawing id) of the grid cell clicked, from the chart's selection."""
    points = ss[key]["selection"]["points"]
    if not points:
        return None
    custom = points[0]["customdata"]  # [index, label]; a typed-array row would arrive as {"0": .., "1": ..}
    return int(custom["0"] if isinstance(custom, dict) else custom[0])


def on_grid_select() -> None:
    if (index := _clicked("ds_grid")) is not None:
        select(index)


def on_drawing_select() -> None:
    if (drawing_id := _clicked("ds_drawing_grid")) is not None:
        ss["ds_drawing"] = drawing_id


def remove_drawing(drawing_id: int) -> None:
    """Remove this browser's drawing (delete_drawing refuses another browser's, in one line)."""
    try:
        drawings.delete_drawing(drawing_id, by=visitor_token())
    except MnistLabError as exc:
        ss["ds_drawing_error"] = exc
    else:
        ss["ds_drawing_note"] = f"Drawing {drawing_id} is removed from the set."


# --- controls ------------------------------------------------------------------------------------

c_split, c_label, c_shuffle, c_seed, c_index = st.columns([1.6, 1, 0.8, 1, 1.2], vertical_alignment="bottom")
split = c_split.radio("Split", ["train", "test", DRAWINGS], key="ds_split", horizontal=True, on_change=on_filter_change,
                      format_func=lambda s: "visitors' drawings" if s == DRAWINGS else f"{s} ({SPLIT_SIZES[s]:,})",
                      help="MNIST's training and test splits, or the digits this lab's visitors drew and gave on "
                           "the Draw page")
label = c_label.selectbox("Label", [None, *range(10)], key="ds_label", on_change=on_filter_change,
                          format_func=lambda v: "all digits" if v is None else str(v))


def drawings_source(label: int | None, pointer: str | None, mine: bool) -> None:
    """The visitors' drawings: the grid (newest first, a page read from the registry), one drawing large
    with what is known of it (and Remove when this browser gave it), then the set's statistics."""
    token = visitor_token()
    if error := ss.pop("ds_drawing_error", None):
        show_error(error)
    if note := ss.pop("ds_drawing_note", None):
        st.success(note, icon=":material/delete:")
    filters = dict(digit=label, pointer=pointer, mine=token if mine else None)
    total = drawings.count_drawings(**filters)
    n_pages = max(1, math.ceil(total / PER_PAGE))
    ss["ds_page"] = min(max(1, ss["ds_page"]), n_pages)
    left, right = st.columns([3, 2], gap="large")
    with left:
        c_prev, c_page, c_next, c_info = st.columns([0.6, 1, 0.6, 2.4], vertical_alignment="bottom")
        c_prev.button(":material/chevron_left:", key="ds_prev", help="Previous page", on_click=on_page_step,
                      args=(-1, n_pages), disabled=ss["ds_page"] <= 1, width="stretch")
        page = c_page.number_input(f"Page (of {n_pages:,})", min_value=1, max_value=n_pages, key="ds_page")
        c_next.button(":material/chevron_right:", key="ds_next", help="Next page", on_click=on_page_step,
                      args=(1, n_pages), disabled=ss["ds_page"] >= n_pages, width="stretch")
        shown = drawings.list_drawings(**filters, newest_first=True, limit=PER_PAGE, offset=(page - 1) * PER_PAGE)
        what = ("drawings" + ("" if label is None else f" of a {label}")
                + ("" if pointer is None else f" drawn with {POINTER_WORDS[pointer]}")
                + (" from this browser" if mine else ""))
        if not shown:
            st.info(f"No {what} yet: draw a digit on the Draw page and add it to the set.", icon=":material/draw:")
            st.page_link("app_pages/draw.py", label="Go to Draw", icon=":material/draw:")
        else:
            c_info.caption(f"Showing {(page - 1) * PER_PAGE + 1:,}-{(page - 1) * PER_PAGE + len(shown):,} of "
                           f"{total:,} {what}, newest first.")
            ids = np.array([d.id for d in shown])
            if ss.get("ds_drawing") not in ids:
                ss["ds_drawing"] = int(ids[0])
            selectable_chart(grid_figure(mosaic_png(np.stack([d.picture for d in shown])), ids,
                                         np.array([d.digit for d in shown]), ss["ds_drawing"], what="drawing"),
                             key="ds_drawing_grid", on_select=on_drawing_select, config=CHART_CONFIG)
    if shown:
        with right:
            drawing = next(d for d in shown if d.id == ss["ds_drawing"])
            st.subheader(f"Drawing {drawing.id} · a {drawing.digit}")
            fig = digit_heatmap(drawing.picture, height=460, zmax=255)
            fig.update_xaxes(showgrid=False, zeroline=False)
            fig.update_yaxes(showgrid=False, zeroline=False, constrain="domain")
            st.plotly_chart(fig, config=CHART_CONFIG, key="ds_drawing_large")
            answer = "no answer kept" if drawing.predicted is None else f"the model answered {drawing.predicted}"
            points = sum(len(s) for s in drawing.strokes)
            when = time.strftime("%Y-%m-%d", time.gmtime(drawing.created_at))
            st.caption(f"Drawn with {POINTER_WORDS.get(drawing.pointer, drawing.pointer)}: {len(drawing.strokes)} "
                       f"strokes, {points:,} points; {answer}; given on {when}. The 28x28 picture the model saw.")
            if drawing.given_by(token):
                st.button("Remove my drawing", key="ds_remove", icon=":material/delete:", on_click=remove_drawing,
                          args=(drawing.id,), help="Takes it out of the set for good")
    drawings_statistics(token if mine else None)


def drawings_statistics(mine: str | None) -> None:
    """Counts per digit and pointer type, and the drawings beside MNIST's test digits."""
    st.divider()
    st.header("Statistics")
    counted = drawings.counts(mine=mine)
    c_digits, c_pointers = st.columns([3, 2], gap="large")
    with c_digits:
        st.subheader("Drawings per digit")
        fig = go.Figure(go.Bar(x=[str(d) for d in range(10)], y=counted.by_digit, text=counted.by_digit,
                               textposition="outside", hovertemplate="digit %{x}: %{y:,} drawings<extra></extra>"))
        fig.update_xaxes(type="category")
        fig.update_layout(height=300, xaxis_title="digit", yaxis_title="drawings", margin=dict(l=10, r=10, t=10, b=10))
        st.plotly_chart(fig, key="ds_drawings_per_digit")
    with c_pointers:
        st.subheader("Drawn with")
        cols = st.columns(len(counted.by_pointer))
        for col, (pointer, n) in zip(cols, counted.by_pointer.items()):
            col.metric(POINTER_WORDS.get(pointer, pointer), f"{n:,}")
        st.caption("Mine only" if mine else f"{counted.total:,} drawings in all.")
    if not counted.total:
        return
    st.subheader("How the drawings differ from MNIST")
    newest = drawings.list_drawings(newest_first=True, limit=1)
    theirs, ours = mnist_measures("test"), drawing_measures(drawings.count_drawings(), newest[0].id if newest else 0)
    st.plotly_chart(tiles_heatmap(np.concatenate([theirs.mean_image, ours.mean_image]), 10,
                                  hover="digit %{customdata[0]}", tile_ids=np.tile(np.arange(10), 2),
                                  zmin=0, zmax=1, x_ticks=[str(d) for d in range(10)],
                                  y_ticks=["MNIST test", "drawings"], show_scale=False),
                    config=CHART_CONFIG, key="ds_drawings_means")
    st.caption("The mean image of each digit: MNIST's test digits above, every drawing in the set below.")
    m = st.columns(3)
    for col, (name, words, unit) in zip(m, [("ink", "Ink", " px"), ("stroke_width", "Stroke width", " px"),
                                             ("slant", "Slant", "°")]):
        mine_value, mnist_value = ours.overall[name], theirs.overall[name]
        col.metric(f"{words}, drawings", "–" if mine_value is None else f"{mine_value:.1f}{unit}",
                   None if mine_value is None else f"{mine_value - mnist_value:+.1f}{unit} vs MNIST test",
                   delta_color="off")
    rows = [{"digit": d, "drawings": int(ours.count[d]),
             "ink (MNIST)": r1["ink"], "ink (drawings)": r2["ink"],
             "stroke width (MNIST)": r1["stroke width"], "stroke width (drawings)": r2["stroke width"],
             "slant ° (MNIST)": r1["slant"], "slant ° (drawings)": r2["slant"]}
            for d, r1, r2 in zip(range(10), theirs.rows(), ours.rows())]
    st.dataframe(rows, hide_index=True, key="ds_drawings_measures")
    st.caption("Ink: the pixel sum over 255 (pixels' worth of full ink). Stroke width: the ink's area over half "
               "its outline, in pixels. Slant: degrees the digit leans, positive when its top leans right. "
               "Averaged over each digit's pictures.")


if split == DRAWINGS:
    pointer = c_shuffle.selectbox("Drawn with", [None, *drawings.POINTERS], key="ds_pointer",
                                  on_change=on_filter_change,
                                  format_func=lambda p: "anything" if p is None else POINTER_WORDS[p])
    mine = c_seed.toggle("Mine", key="ds_mine", on_change=on_filter_change,
                         help="Only the drawings this browser gave: you can remove them")
    try:
        drawings_source(label, pointer, mine)
    except MnistLabError as exc:  # the registry unreachable, a host setting wrong: one line
        show_error(exc)
    st.stop()
shuffle = c_shuffle.checkbox("Shuffle", key="ds_shuffle", on_change=on_filter_change)
seed = c_seed.number_input("Seed", min_value=0, max_value=2**31 - 1, key="ds_seed", disabled=not shuffle,
                           on_change=on_filter_change)

images, labels = load_split(split)
ss["ds_index"] = min(ss["ds_index"] or 0, len(images) - 1)  # the test split is shorter than train
c_index.number_input(f"Index (0 to {len(images) - 1:,})", key="ds_index", on_change=on_index_change, step=1,
                     help=f"Jump to an image of the {split} split by its index, from 0 to {len(images) - 1:,}")
if note := ss.pop("ds_index_note", None):
    st.warning(note, icon=":material/info:")

order = browse_order(split, label, int(seed) if shuffle else None)
n_pages = max(1, math.ceil(len(order) / PER_PAGE))
ss["ds_page"] = min(max(1, ss["ds_page"]), n_pages)

left, right = st.columns([3, 2], gap="large")

with left:
    c_prev, c_page, c_next, c_info = st.columns([0.6, 1, 0.6, 2.4], vertical_alignment="bottom")
    c_prev.button(":material/chevron_left:", key="ds_prev", help="Previous page", on_click=on_page_step, args=(-1,),
                  disabled=ss["ds_page"] <= 1, width="stretch")
    page = c_page.number_input(f"Page (of {n_pages:,})", min_value=1, max_value=n_pages, key="ds_page")
    c_next.button(":material/chevron_right:", key="ds_next", help="Next page", on_click=on_page_step, args=(1,),
                  disabled=ss["ds_page"] >= n_pages, width="stretch")
    shown = order[(page - 1) * PER_PAGE:page * PER_PAGE]
    what = "images" if label is None else f"images with label {label}"
    order_text = f", shuffled with seed {seed}" if shuffle else ""
    if len(shown):
        c_info.caption(f"Showing {(page - 1) * PER_PAGE + 1:,}-{(page - 1) * PER_PAGE + len(shown):,} "
                       f"of {len(order):,} {what} in the {split} split{order_text}.")
    if len(order) == 0:
        st.info(f"The {split} split has no {what}.")
    else:
        selectable_chart(grid_figure(grid_png(split, tuple(int(i) for i in shown)), shown, labels[shown],
                                     ss["ds_index"]), key="ds_grid", on_select=on_grid_select, config=CHART_CONFIG)
        with st.expander("Labels on this page, row by row"):
            st.code("\n".join(" ".join(str(labels[i]) for i in shown[r:r + COLS])
                              for r in range(0, len(shown), COLS)), language=None)

with right:
    index = int(ss["ds_index"])
    st.subheader(f"{split} image {index:,} · label {labels[index]}")
    fig = digit_heatmap(images[index], height=460, zmax=255)
    fig.update_xaxes(showgrid=False, zeroline=False)
    fig.update_yaxes(showgrid=False, zeroline=False, constrain="domain")
    st.plotly_chart(fig, config=CHART_CONFIG)
    st.caption("Pixels are 0 (background) to 255 (ink); hover for each value. Models see them divided by 255.")
    c_values, c_open = st.columns([1, 1], vertical_alignment="center")
    show_values = c_values.toggle("Show the pixel values", key="ds_values",
                                  help="Every pixel of the digit with its number, large enough to read")
    open_in_inside({"kind": "dataset", "split": split, "index": index}, place=c_open, key="ds_open", primary=True)

if show_values:
    st.subheader(f"Pixel values of {split} image {index:,}")
    st.caption("The digit's ink and one pixel of background around it (the rest of the 28x28 image is 0), each "
               "pixel with its value; row and column numbers as in the full image.")
    st.plotly_chart(pixel_values_figure(images[index]), key="ds_pixel_values", config=CHART_CONFIG)

st.divider()
st.header("Statistics")
counts = {s: class_stats(s)[0] for s in ("train", "test")}
c_counts, c_norm = st.columns([3, 2], gap="large")
with c_counts:
    st.subheader("Images per class")
    fig = go.Figure([go.Bar(name=s, x=[str(d) for d in range(10)], y=counts[s], text=counts[s], textposition="outside",
                            textangle=0, textfont=dict(size=9),
                            hovertemplate=f"{s}: digit %{{x}}, %{{y:,}} images<extra></extra>")
                     for s in ("train", "test")])
    fig.update_xaxes(type="category")
    fig.update_layout(barmode="group", height=320, xaxis_title="digit", yaxis_title="images",
                      margin=dict(l=10, r=10, t=10, b=10), legend=dict(orientation="h", y=1.1))
    st.plotly_chart(fig)
with c_norm:
    st.subheader("Normalization")
    mean, std = pixel_stats("train")
    m1, m2 = st.columns(2)
    m1.metric("Pixel mean (train)", f"{mean:.4f}", help="over all 60,000 x 784 training pixels, scaled to [0,1]")
    m2.metric("Pixel std (train)", f"{std:.4f}")
    m1.metric("Mean the models subtract", f"{MNIST_MEAN:.4f}", help="MNIST_MEAN in mnist_core.data")
    m2.metric("Std the models divide by", f"{MNIST_STD:.4f}", help="MNIST_STD in mnist_core.data")
    st.caption("Every model subtracts the mean and divides by the std inside itself, so its inputs are "
               "centred near 0 with unit spread; the numbers it uses are the training set's, rounded.")

st.subheader(f"Mean image of each class ({split} split)")
means = class_stats(split)[1]
st.plotly_chart(tiles_heatmap(means, 10, hover="digit %{customdata[0]}", zmin=0, zmax=1,
                              x_ticks=[str(d) for d in range(10)], show_scale=False), config=CHART_CONFIG)

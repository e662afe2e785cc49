"""Explain: how a model arranges the test set. Its last hidden representation of a sample of test
images, projected to 2-D (PCA or t-SNE), coloured by true label with the mistakes ringed. Hover a
point for the digit and the prediction; select points (click, box or lasso) to see those images.
The network's pass over the sample and the projection are bounded heavy jobs (run_heavy)."""

from __future__ import annotations

import hashlib

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from mnist_core import explain
from app_pages._data import load_split, require_data
from app_pages._errors import show_error
from app_pages._frame import open_in_inside, run_heavy
from app_pages._models import model_chooser
from app_pages._selectable import selectable_chart

SEED = 0
GALLERY = 48
# Ten distinct colours (Plotly's D3 palette), one per digit.
COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf"]

st.title("Explain")
st.caption("Where does the network put each digit? Every point is a test image, placed by the network's last "
           "hidden layer (what its final layer reads) squeezed to two dimensions. Select points to see the images.")
require_data()


@st.cache_data(show_spinner="Running the sample through the network...", max_entries=16)
def sample_features(_model, model_key: tuple, size: int):
    images, _ = load_split("test")
    idx = explain.sample_indices(len(images), size, SEED)
    return run_heavy(explain.penultimate, _model, images[idx])


@st.cache_data(show_spinner="Projecting to 2-D (t-SNE takes longest, more so the more images)...", max_entries=32)
def embedding(_model, model_key: tuple, size: int, method: str) -> explain.EmbeddingMap:
    _, labels = load_split("test")
    features = sample_features(_model, model_key, size)
    # the features stand in for the images (not sent to the job): the network does not run again
    return run_heavy(explain.embedding_map, None, None, labels, method, size, SEED, features=features)


def traces(emap: explain.EmbeddingMap) -> list[tuple[str, np.ndarray]]:
    """The map's traces in drawing order, each (name, positions in the sample): one per true digit,
    then the mistakes again as rings. A selected point comes back as (trace number, position in
    that trace), so this one list both draws the map and reads a selection."""
    digits = [(str(d), np.flatnonzero(emap.labels == d)) for d in range(10)]
    return digits + [("mistake", np.flatnonzero(emap.mistakes))]


def scatter(emap: explain.EmbeddingMap, title: str) -> go.Figure:
    """The traces of `traces(emap)`; customdata = (index, label, prediction, confidence) for the hover.

    Dragging pans: Streamlit lets a click select a point only while the drag tool is pan or zoom (with
    the box or lasso tool a click selects nothing), and a click is the first thing people try. Box and
    lasso are one click away in the chart's toolbar."""
    custom = np.stack([emap.indices, emap.labels, emap.predicted, emap.confidence], axis=1)
    hover = ("test #%{customdata[0]}<br>digit %{customdata[1]} · predicted %{customdata[2]} "
             "(%{customdata[3]:.0%})<extra></extra>")
    fig = go.Figure()
    for name, on in traces(emap):
        marker = (dict(size=12, symbol="circle-open", color="black", line=dict(width=2)) if name == "mistake"
                  else dict(size=6, color=COLOURS[int(name)], opacity=0.8))
        fig.add_scatter(x=emap.xy[on, 0], y=emap.xy[on, 1], mode="markers", name=name, customdata=custom[on],
                        marker=marker, hovertemplate=hover)
    fig.update_xaxes(showticklabels=False, zeroline=False)
    fig.update_yaxes(showticklabels=False, zeroline=False)
    fig.update_layout(title=title, height=620, legend=dict(title="true digit", itemsizing="constant"),
                      margin=dict(l=10, r=10, t=40, b=10), dragmode="pan")
    return fig


def map_key(model_key: tuple, method: str, size: int) -> str:
    """The map chart's widget key: one per checkpoint (file and version), projection and sample size."""
    return "explain_map_" + hashlib.sha1(repr((model_key, method, size)).encode()).hexdigest()[:12]


def selected_positions(event, emap: explain.EmbeddingMap) -> list[int]:
    """Positions in the sample of the selected points, in selection order, each once (a mistake is
    both a digit's point and a ring).

    Streamlit reports each point as (curve_number, point_index); its customdata arrives as an object
    {"0": ..., "1": ...} rather than a list (plotly.js holds numpy arrays as typed arrays), so the
    points are read by their place in the traces instead."""
    groups = [on for _, on in traces(emap)]
    out = []
    for p in ((event or {}).get("selection") or {}).get("points") or []:
        curve, k = p.get("curve_number"), p.get("point_index")
        if isinstance(curve, int) and isinstance(k, int) and 0 <= curve < len(groups) and 0 <= k < len(groups[curve]):
            out.append(int(groups[curve][k]))
    return list(dict.fromkeys(out))


chosen_cols = st.columns([1, 1, 1.4], vertical_alignment="bottom")
with chosen_cols[0]:
    chosen = model_chooser("explain_checkpoint")
method = chosen_cols[1].radio("Projection", list(explain.PROJECTIONS), format_func=explain.PROJECTIONS.get,
                              key="explain_method", horizontal=True,
                              help="PCA: the two directions of largest variance (linear, instant). t-SNE: keeps "
                                   "neighbours together (non-linear; clusters are meaningful, distances between "
                                   "them are not).")
sizes = explain.map_sizes(method)  # t-SNE on a demo server: only samples it maps in seconds
if st.session_state.get("explain_size", explain.DEFAULT_SAMPLE) not in sizes:
    st.session_state["explain_size"] = min(explain.DEFAULT_SAMPLE, sizes[-1])
size = chosen_cols[2].select_slider("Test images", sizes, key="explain_size",
                                    value=st.session_state.get("explain_size", explain.DEFAULT_SAMPLE),
                                    help="A fixed random sample of the 10,000 test images")
if sizes[-1] < explain.MAP_SIZES[-1]:
    st.caption(f"t-SNE maps at most {sizes[-1]:,} images on this server, so the map comes in seconds; PCA maps "
               f"up to {explain.MAP_SIZES[-1]:,}.")
if chosen is None:
    st.stop()
model, model_name, model_key = chosen.model, chosen.name, chosen.key

try:
    emap = embedding(model, model_key, size, method)
except Exception as exc:  # noqa: BLE001 - one line, never a traceback
    show_error(exc)
    st.stop()

wrong = int(emap.mistakes.sum())
m1, m2, m3 = st.columns(3)
m1.metric("Images", f"{len(emap.indices):,}")
m2.metric("Mistakes", f"{wrong:,}", f"{wrong / len(emap.indices):.1%} of the sample", delta_color="off",
          delta_arrow="off")
m3.metric("Features per image", f"{sample_features(model, model_key, size)[0].shape[1]:,}",
          help="The width of the layer the final Linear reads")

# The chart's key names the map, so a new checkpoint, projection or sample starts with nothing selected
# (a selection is a list of places in the traces, which mean other images on another map).
with st.container(key="explain_map"):
    event = selectable_chart(scatter(emap, f"{model_name} · {explain.PROJECTIONS[method]} of the last hidden layer"),
                             key=map_key(model_key, method, size), selection_mode=("points", "box", "lasso"))
chosen = selected_positions(event, emap)
if not chosen:
    st.info("Select points on the map to see those test images here: click a point, or pick *Box Select* or "
            "*Lasso Select* in the map's toolbar (top right) and drag around some points.",
            icon=":material/touch_app:")
    st.stop()

images, _ = load_split("test")
st.subheader(f"{len(chosen)} selected image(s)")
st.caption(f"Showing {min(len(chosen), GALLERY)}. Each caption: test index · true → predicted (confidence).")
cols = st.columns(8)
for n, k in enumerate(chosen[:GALLERY]):
    cols[n % 8].image(images[emap.indices[k]], width=72, caption=f"#{emap.indices[k]} · {emap.labels[k]} → "
                                                                 f"{emap.predicted[k]} ({emap.confidence[k]:.0%})")
o1, o2 = st.columns([1, 3], vertical_alignment="bottom")
pick = o1.selectbox("Image", [int(emap.indices[k]) for k in chosen[:GALLERY]], format_func=lambda i: f"test #{i}",
                    key="explain_open_index")
open_in_inside({"kind": "dataset", "split": "test", "index": int(pick)}, place=o2)

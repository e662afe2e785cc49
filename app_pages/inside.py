"""Inside the network: one image through one checkpoint; its kernels, feature maps or templates, and its answer.

The input is a dataset image (by index, or the n-th / a random image of a label) or the Draw page's
drawing. st.session_state[_keys.INSPECT_SOURCE] says which ({"kind": "dataset", "split", "index"} or
{"kind": "drawing"}): other pages set it to send an image here (_frame.open_in_inside), and this page
keeps it up to date so coming back shows the same image.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from mnist_core import inspection
from mnist_core.data import SPLIT_SIZES
from mnist_core.models import layer_table, model_info
from app_pages import _keys as keys
from app_pages._data import load_split, require_data
from app_pages._errors import show_error
from app_pages._figures import CHART_CONFIG, digit_heatmap, probability_bars, tiles_heatmap
from app_pages._models import is_imported, model_chooser
from app_pages._explain_ui import attribution_section, export_buttons, replay_section
from app_pages._network_figures import FULL_GRID_MAX, diverging, kernel_figure, map_figure

KINDS = {"dataset": "Dataset image", "drawing": "My drawing"}
# Streamlit forgets a widget's value when its page is left; these keep theirs for the session, so a visit
# to another page comes back to the same input, picked the same way.
KEEP = dict(persist_state="session")

st.title("Inside the network")
st.caption("Feed one image through a trained network: see its kernels, what each layer makes of the image, "
           "and its answer.")

ss = st.session_state


def apply_source(source) -> None:
    """Point the input widgets at `source` (from the Dataset or Draw page), if it makes sense."""
    if not isinstance(source, dict):
        return
    if source.get("kind") == "drawing":
        ss["inside_kind"] = "drawing"
    elif (source.get("kind") == "dataset" and source.get("split") in SPLIT_SIZES
          and isinstance(source.get("index"), (int, np.integer))
          and 0 <= source["index"] < SPLIT_SIZES[source["split"]]):
        ss["inside_kind"] = "dataset"
        ss["inside_split"] = source["split"]
        ss["inside_pick"] = "index"
        ss["inside_index"] = int(source["index"])


# A new source from another page, or the first visit: follow it. (Coming back from a page that sent
# nothing finds the input widgets as they were left: they keep their values, KEEP.)
source = ss.get(keys.INSPECT_SOURCE)
if source is not None and (source != ss.get("_inside_applied") or "inside_kind" not in ss):
    apply_source(source)
ss.setdefault("inside_kind", "dataset")


# --- cached computations (keyed by the checkpoint's file and mtime, or an upload's digest) ---------

@st.cache_data(show_spinner=False, max_entries=256)
def run_image(_model, model_key: tuple, image: np.ndarray):
    return inspection.feature_maps(_model, image)


@st.cache_data(show_spinner=False, max_entries=16)
def model_weights(_model, model_key: tuple):
    if inspection.is_convnet(_model):
        return inspection.conv_kernels(_model)
    return inspection.first_layer_templates(_model)


@st.cache_data(show_spinner=False, max_entries=16)
def layers(_model, model_key: tuple):
    rows = layer_table(_model)
    # an imported graph also holds the nodes that compute shapes and constants: only those an image passes
    return [r for r in rows if r["output shape"]] if model_key[0] == "onnx" else rows


def roll_random_nth(count: int) -> None:
    ss["inside_nth"] = int(np.random.default_rng().integers(1, count + 1))


# --- choose a checkpoint and an input ------------------------------------------------------------

c_ckpt, c_kind, c_pick = st.columns([1, 1, 2.4], vertical_alignment="bottom")
with c_ckpt:
    chosen = model_chooser("inside_checkpoint")
kind = c_kind.radio("Input", list(KINDS), key="inside_kind", format_func=KINDS.get, horizontal=True, **KEEP)

truth = None
if kind == "dataset":
    require_data()
    with c_pick:
        p_split, p_pick, p_which, p_more = st.columns([1.1, 1.1, 1, 1], vertical_alignment="bottom")
        split = p_split.radio("Split", ["test", "train"], key="inside_split", horizontal=True, **KEEP)
        images, labels = load_split(split)
        pick = p_pick.radio("Pick", ["index", "label"], key="inside_pick", horizontal=True,
                            format_func=lambda p: f"by {p}", **KEEP)
        if pick == "index":
            ss["inside_index"] = min(ss.get("inside_index", 0), len(images) - 1)
            index = int(p_which.number_input("Index", min_value=0, max_value=len(images) - 1, key="inside_index",
                                             **KEEP))
        else:
            label = p_which.selectbox("Label", range(10), key="inside_label", **KEEP)
            members = np.flatnonzero(labels == label)
            ss["inside_nth"] = min(max(1, ss.get("inside_nth", 1)), len(members))
            nth = p_more.number_input(f"n-th of {len(members):,}", min_value=1, max_value=len(members),
                                      key="inside_nth", help="1 = the first image with this label in the split", **KEEP)
            st.button("Random image of this label", icon=":material/casino:", key="inside_random",
                      on_click=roll_random_nth, args=(len(members),))
            index = int(members[nth - 1])
    image = images[index].astype(np.float32) / 255.0
    truth = int(labels[index])
    input_title = f"{split} image {index:,} · label {truth}"
    ss[keys.INSPECT_SOURCE] = {"kind": "dataset", "split": split, "index": index}
else:
    drawing = ss.get(keys.DRAWING)
    if drawing is None or np.shape(drawing) != (28, 28):
        st.info("No drawing yet: draw a digit on the Draw page, then come back.", icon=":material/draw:")
        st.page_link("app_pages/draw.py", label="Go to Draw", icon=":material/draw:")
        st.stop()
    image = np.clip(np.asarray(drawing, dtype=np.float32), 0.0, 1.0)
    input_title = "your drawing, as the model sees it"
    ss[keys.INSPECT_SOURCE] = {"kind": "drawing"}
ss["_inside_applied"] = ss[keys.INSPECT_SOURCE]

if chosen is None:
    st.stop()
model, meta, model_name, model_key = chosen.model, chosen.meta, chosen.name, chosen.key
try:
    maps, probs = run_image(model, model_key, image)
    weights = model_weights(model, model_key)
except Exception as exc:  # noqa: BLE001 - a bad checkpoint is the user's to fix: one line, no traceback
    show_error(exc)
    st.stop()

# --- the input, the answer, the model ------------------------------------------------------------

c_input, c_probs, c_model = st.columns([1, 1.3, 1], gap="large")
with c_input:
    st.subheader("Input")
    fig = digit_heatmap(image, title=input_title, height=330, zmax=1.0, show_scale=False)
    fig.update_xaxes(showgrid=False, zeroline=False)
    fig.update_yaxes(showgrid=False, zeroline=False, constrain="domain")
    st.plotly_chart(fig, config=CHART_CONFIG)
with c_probs:
    st.subheader("Output")
    top = int(probs.argmax())
    verdict = "" if truth is None else (" (correct)" if top == truth else f" (the label is {truth})")
    st.markdown(f"Predicts **{top}** with {probs[top]:.1%} probability{verdict}.")
    fig = probability_bars(probs, height=280)
    fig.update_xaxes(type="category")  # every digit gets its tick
    st.plotly_chart(fig, config=CHART_CONFIG)
with c_model:
    st.subheader("Model")
    arch = meta.get("architecture", "")
    if is_imported(chosen):
        st.markdown(f"**{model_name}**: an uploaded ONNX file, opset {meta.get('opset')}, converted layer by layer "
                    "into PyTorch (onnx2torch); the layer names are its graph's.")
    else:
        st.markdown(f"**{model_name}**: {model_info(arch).description}" if arch else f"**{model_name}**")
    accuracy = (meta.get("metrics") or {}).get("test_accuracy")
    if accuracy is not None:
        st.metric("Test accuracy", f"{accuracy:.2%}")
    with st.expander("Layers"):
        st.dataframe(layers(model, model_key), hide_index=True)
    with st.expander("Download this model", icon=":material/download:"):
        export_buttons(chosen, key="inside_export")

st.header("Why this answer")
attribution_section(chosen, image, probs, key="inside_attr")


# --- convolutional networks: kernels and feature maps --------------------------------------------

if inspection.is_convnet(model):
    st.header("Kernels")
    st.caption("Each convolution's weights. Red is positive, blue negative, white zero; one colour scale per layer.")
    for name, w in weights:
        out, cin, kh, kw = w.shape
        st.subheader(f"{name} · {out} kernels of {cin}x{kh}x{kw}")
        view = None
        if out * cin > FULL_GRID_MAX:
            view = st.selectbox(f"{name}: {out * cin:,} kernels; show", [None, *range(cin)], key=f"inside_view_{name}",
                                format_func=lambda v: "the mean over input channels" if v is None
                                else f"input channel {v}", **KEEP)
        fig, _ = kernel_figure(w, view=view)
        if cin > 1 and out * cin <= FULL_GRID_MAX:
            st.caption("A row per output channel, a column per input channel.")
        st.plotly_chart(fig, config=CHART_CONFIG)

    st.header("Feature maps")
    st.caption("What each layer makes of the input: one small image per channel (after ReLU and pooling).")
    ops = getattr(model, "feature_ops", {})  # an imported graph's layers: each one's ONNX op
    for name, fmap in maps:
        op = f" ({ops[name]})" if name in ops else ""
        if fmap.ndim == 3:
            st.subheader(f"{name}{op} · {' x '.join(map(str, fmap.shape))}")
            st.plotly_chart(map_figure(fmap), config=CHART_CONFIG)
        else:  # an activation after the flattening (an imported graph's dense layers): one bar per unit
            st.subheader(f"{name}{op} · {fmap.size} units")
            st.plotly_chart(map_figure(fmap.reshape(-1)), config=CHART_CONFIG)

# --- MLPs: first-layer templates and hidden activations ------------------------------------------

else:
    templates = weights
    hidden = len(templates)
    first = maps[0][1] if maps else np.zeros(hidden)
    st.header("First-layer templates")
    st.caption("Each first-layer unit weighs all 784 pixels; drawn as 28x28, red pixels push the unit up and blue "
               "ones down (one colour scale for all, saturating at the 99.5th percentile of |weight|). A unit's "
               "activation is how well the input matches it, plus its bias, through a ReLU.")
    c_count, c_order = st.columns([1, 2])
    counts = [n for n in (16, 32, 64, 128, 256, 512) if n < hidden] + [hidden]
    count = c_count.select_slider("Units to show", counts, value=min(64, hidden) if 64 in counts else hidden,
                                  key="inside_units", **KEEP)
    order_by = c_order.radio("Order", ["active", "number"], key="inside_units_order", horizontal=True,
                             format_func=lambda o: "most active for this input first" if o == "active"
                             else "by unit number", **KEEP)
    units = np.argsort(-first, kind="stable")[:count] if order_by == "active" else np.arange(count)
    st.plotly_chart(tiles_heatmap(templates[units], 16, hover="unit %{customdata[0]}", tile_ids=units[:, None],
                                  max_height=900, **diverging(templates, 99.5)), config=CHART_CONFIG)

    st.header("Hidden activations")
    st.caption("The output of each hidden layer's ReLU for this input: one bar per unit.")
    for name, values in maps:
        st.subheader(f"{name} · {values.size} units")
        st.plotly_chart(map_figure(values.reshape(-1)), config=CHART_CONFIG)

# --- how it learned: the run's snapshots ---------------------------------------------------------

st.header("How it learned")
st.caption("While this model trained, its run recorded the kernels (an MLP: its first-layer units) and what each "
           "layer made of one fixed test image, about 30 times over the run. Press Play, or slide through it.")
replay_section(chosen.run_id, key="inside_replay")

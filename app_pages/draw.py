"""Draw: draw a digit on a canvas and watch a model's prediction change as you draw."""

import numpy as np
import streamlit as st
from streamlit_drawable_canvas import st_canvas

from mnist_core.checkpoints import list_checkpoints
from mnist_core.errors import ImageError
from mnist_core.predict import predict_proba
from mnist_core.preprocess import canvas_to_mnist, load_image
from app_pages._common import digit_heatmap, load_model, model_chooser, probability_bars, show_error
from app_pages._explain_ui import attribution_section, export_buttons

st.title("Draw")
st.caption("Draw a digit with the mouse (or a finger). The model sees it the way MNIST was made: cropped, "
           "fitted into 20x20 and centred by its centre of mass in 28x28.")

st.session_state.setdefault("canvas_version", 0)

left, right = st.columns([1, 1.3], gap="large")
with left:
    chosen = model_chooser("draw_checkpoint", label="Model")
    if chosen is not None:
        with st.expander("Download this model", icon=":material/download:"):
            export_buttons(*chosen, key="draw_export")
    # Changing the key mounts a fresh, empty canvas: that is how "Clear" works.
    canvas = st_canvas(stroke_width=18, stroke_color="#FFFFFF", background_color="#000000", width=280, height=280,
                       drawing_mode="freedraw", return_image_data=True,
                       key=f"canvas-{st.session_state.canvas_version}")
    if st.button("Clear", icon=":material/ink_eraser:"):
        st.session_state.canvas_version += 1
        st.session_state.pop("drawing", None)
        st.rerun()
    upload = st.file_uploader("...or upload a picture of a digit", type=["png", "jpg", "jpeg", "gif", "bmp", "webp"],
                              key="draw_image_upload", help="Used instead of the canvas while it is here")

rgba = canvas.image_data
if upload is not None:
    try:
        rgba = load_image(upload.getvalue())
    except ImageError as exc:
        with left:
            show_error(exc)
        rgba = None
image = canvas_to_mnist(rgba) if rgba is not None else np.zeros((28, 28), np.float32)
has_ink = bool(image.any())
if has_ink:
    st.session_state["drawing"] = image  # Inside the network reads it

with right:
    if chosen is None:
        st.stop()
    model, meta, model_name, model_key = chosen

    if not has_ink:
        st.metric("Prediction", "–", help="Draw a digit on the black canvas")
        st.info("Draw a digit on the canvas: the prediction updates each time you lift the mouse.")
        st.stop()

    probs = predict_proba(model, image)[0]
    top = int(probs.argmax())
    m1, m2 = st.columns([1, 2])
    with m1:
        st.metric("Prediction", top, f"{probs[top]:.1%} confidence", delta_color="off", delta_arrow="off")
        st.plotly_chart(digit_heatmap(image, "Model input, 28x28", height=260, show_scale=False),
                        key="draw_seen")
    with m2:
        st.plotly_chart(probability_bars(probs, height=330, title=f"Probabilities · {model_name}"), key="draw_probs")
    if st.button("Open in Inside the network", icon=":material/visibility:"):
        st.session_state["inspect_source"] = {"kind": "drawing"}
        st.switch_page("app_pages/inside.py")

# --- why this answer: attribution maps ---------------------------------------------------------
if st.toggle("Why this answer? What each pixel contributed", key="draw_explain"):
    attribution_section(model, model_key, image, probs, key="draw_attr")

# --- every model on the same drawing -----------------------------------------------------------
if st.toggle("Compare models: every checkpoint on this drawing", key="draw_compare"):
    paths = list_checkpoints()
    cols = st.columns(min(4, len(paths)))
    for k, p in enumerate(paths):
        with cols[k % len(cols)]:
            try:
                other, _ = load_model(p)
            except Exception as exc:  # noqa: BLE001 - one bad checkpoint must not hide the others
                st.caption(p.stem)
                show_error(exc)
                continue
            probs_k = predict_proba(other, image)[0]
            st.metric(p.stem, int(probs_k.argmax()), f"{probs_k.max():.1%}", delta_color="off", delta_arrow="off")
            st.plotly_chart(probability_bars(probs_k, height=220), key=f"compare-{p.stem}")

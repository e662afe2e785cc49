"""Draw: draw a digit on a canvas and watch a model's prediction change as you draw.

The canvas and the answer are one fragment: a stroke reruns only them, not the model picker, the
downloads or the sidebar. An uploaded picture or checkpoint is used only while the page says so,
with a button back to the canvas or to the listed model.

Under the answer a drawing from the canvas can be given to the visitors' drawing set
(mnist_core.drawings): "Right?" -> yes, or the digit it really is -> Add to the drawing set, beside the
one line saying what is kept. Not offered when the host set MNIST_DRAWINGS=off.
"""

from pathlib import Path

import numpy as np
import streamlit as st

from mnist_core import drawings
from mnist_core.checkpoints import DRAW_DEFAULT, default_checkpoint
from mnist_core.errors import ImageError, MnistLabError
from mnist_core.loaded import LoadedModel
from mnist_core.models import list_models
from mnist_core.predict import predict_proba
from mnist_core.preprocess import canvas_to_mnist, load_image
from app_pages._canvas import drawing_canvas, drawn_strokes
from app_pages._class import membership
from app_pages import _keys as keys
from app_pages._data import load_model
from app_pages._errors import show_error
from app_pages._figures import CHART_CONFIG, digit_heatmap, probability_bars
from app_pages._frame import open_in_inside, visitor_token
from app_pages._models import checkpoint_search, model_chooser, offered_checkpoints
from app_pages._explain_ui import attribution_section, export_buttons

COMPARE_MAX = 8  # models compared on one drawing: each is a prediction and a chart on every stroke
# The picture uploader's file types, as MIME types: the browser's file picker offers only these. Not file
# name extensions: Streamlit checks those on the server, and a forged upload whose name has another one
# (`digit.tiff`) raises an exception before the page runs, which no page can catch. load_image reads
# the format from the file's bytes, whatever its name, and refuses any other in one line.
PICTURE_TYPES = ["image/png", "image/jpeg", "image/gif", "image/bmp", "image/webp"]

st.title("Draw")
st.caption("Draw a digit with the mouse or a finger: the prediction follows every stroke.")

st.session_state.setdefault("draw_picture_version", 0)
GIVE_PICK = "draw_give_digit"   # the "Right?" answer: the digit the drawing really is
GIVEN = "draw_given"            # {"picture": the 28x28 given, "id": its id, "digit": ...} of the last drawing given


def _picture_key() -> str:
    return f"draw_image_upload_{st.session_state.draw_picture_version}"


def _use_the_canvas() -> None:
    """Forget the uploaded picture: a file_uploader under a new key starts empty. A new drawing asks "Right?"
    afresh."""
    st.session_state.pop(GIVE_PICK, None)
    if st.session_state.get(_picture_key()) is not None:
        st.session_state.draw_picture_version += 1


# On a phone the columns stack: the model picker, then the canvas with the answer right under it, all on the
# first screen; the uploads and downloads, which nobody needs before drawing, come after.
picker, drawing_row, more_row = st.container(width=420), st.container(), st.container()
with more_row:
    upload_col, download_col = st.columns([1, 1.3], gap="large")
with picker:
    chosen = model_chooser("draw_checkpoint", label="Model", default=f"{DRAW_DEFAULT}.safetensors",
                           upload_place=upload_col)
if chosen is not None:
    with download_col.expander("Download this model", icon=":material/download:"):
        export_buttons(chosen, key="draw_export")


@st.fragment
def drawing_and_answer(chosen: LoadedModel | None) -> None:
    """The canvas (or an uploaded picture), the prediction right under it, the 28x28 the model sees and the
    probabilities beside it."""
    canvas_col, answer_col = st.columns([1, 1.3], gap="large")
    with canvas_col:
        try:
            rgba = drawing_canvas("draw_canvas", on_change=_use_the_canvas)  # a stroke puts the canvas back in use
        except ImageError as exc:
            show_error(exc)
            rgba = None
        notice, prediction = st.container(), st.container()  # fixed places, whatever comes and goes
    upload = st.file_uploader("...or upload a picture of a digit", type=PICTURE_TYPES, key=_picture_key(),
                              help="A PNG, JPEG, GIF, BMP or WebP picture; used instead of the canvas until you draw "
                                   "or go back")
    refused = None
    if upload is not None:
        try:
            rgba = load_image(upload.getvalue())
        except ImageError as exc:
            rgba, refused = None, exc
    image = canvas_to_mnist(rgba) if rgba is not None else np.zeros((28, 28), np.float32)
    if upload is not None:  # one line about the picture: refused, blank, or the one predicted from
        with notice:
            if refused is not None:
                show_error(refused)
            elif not image.any():
                st.warning(f"Your picture {upload.name[:60]} is blank: no digit stands out from its background. "
                           "Upload a picture of a digit, or draw one.", icon=":material/image:")
            else:
                st.info(f"Predicting: your uploaded picture {upload.name[:60]}", icon=":material/image:")
            st.button("Use the canvas instead", icon=":material/draw:", on_click=_use_the_canvas)
    if image.any():
        st.session_state[keys.DRAWING] = image  # Inside the network reads it
    else:
        st.session_state.pop(keys.DRAWING, None)

    if chosen is None:
        return
    if not image.any():
        prediction.metric("Prediction", "–", help="Draw a digit on the black canvas")
        if upload is None:  # an uploaded picture has had its line above
            answer_col.info("Draw a digit on the canvas: the prediction updates each time you lift the mouse or "
                            "finger.")
        return
    probs = predict_proba(chosen.model, image)[0]
    top = int(probs.argmax())
    prediction.metric("Prediction", top, f"{probs[top]:.1%} confidence", delta_color="off", delta_arrow="off")
    strokes = drawn_strokes("draw_canvas") if upload is None else None
    if strokes is not None:  # an uploaded picture has no strokes, and the set keeps only canvas drawings
        with prediction:
            give_drawing(image, top, strokes)
    with answer_col:
        seen, bars = st.columns([1, 2])
        seen.plotly_chart(digit_heatmap(image, "Model input, 28x28", height=260, show_scale=False),
                          key="draw_seen", config=CHART_CONFIG)
        seen.caption("Cropped, fitted into 20x20 and centred by its centre of mass, the way MNIST was made.")
        bars.plotly_chart(probability_bars(probs, height=330, title=f"Probabilities · {chosen.name}"),
                          key="draw_probs", config=CHART_CONFIG)
        open_in_inside({"kind": "drawing"})

    # --- why this answer: attribution maps ---------------------------------------------------------
    if st.toggle("Why this answer? What each pixel contributed", key="draw_explain"):
        attribution_section(chosen, image, probs, key="draw_attr")

    # --- several models on the same drawing --------------------------------------------------------
    if st.toggle("Compare models on this drawing", key="draw_compare"):
        compare_models(chosen, image)


def give_drawing(image: np.ndarray, top: int, strokes: dict) -> None:
    """ "Right?" -> yes, or the digit it really is -> Add to the drawing set, with the consent line. Every
    refusal (the caps, a blank or duplicate drawing, a field the browser forged) is one line."""
    try:
        on = drawings.settings.current().enabled
    except MnistLabError as exc:
        show_error(exc)
        return
    if not on:
        return
    given = st.session_state.get(GIVEN)
    if given is not None and np.array_equal(given["picture"], image):
        st.success(f"Added to the drawing set as a {given['digit']} (drawing {given['id']}): thank you. The "
                   "Dataset page shows it under \"Mine\".", icon=":material/volunteer_activism:")
        return
    digit = st.pills("Right? If not, pick the digit it really is", [top, *(d for d in range(10) if d != top)],
                     key=GIVE_PICK, format_func=lambda d: f"Yes, {d}" if d == top else str(d))
    if st.button("Add to the drawing set", icon=":material/add_photo_alternate:", disabled=digit is None,
                 help="Pick \"Yes\" or the right digit first" if digit is None else None, key="draw_give"):
        try:
            drawing_id = drawings.add_drawing(image, digit, strokes.get("strokes"), strokes.get("pointer"),
                                              owner=visitor_token(), predicted=top, class_code=membership()[0])
        except MnistLabError as exc:
            show_error(exc)
        else:
            st.session_state[GIVEN] = {"picture": image.copy(), "id": drawing_id, "digit": digit}
            st.success(f"Added to the drawing set as a {digit} (drawing {drawing_id}): thank you. The Dataset "
                       "page shows it under \"Mine\".", icon=":material/volunteer_activism:")
            return
    st.caption(drawings.consent_line())


def compare_models(chosen: LoadedModel, image: np.ndarray) -> None:
    """Chosen checkpoints' answers to the same drawing, side by side: the committed ones and the model in
    use unless the visitor picks others, COMPARE_MAX at most, from a bounded list with a search box (a host
    with thousands of runs has thousands of checkpoints: comparing them all would take minutes a stroke).
    A model in use that is not a file here (an upload, an ONNX file, a run the registry holds) answers first."""
    key = "draw_compare_pick"
    in_use = [Path(chosen.key[1]).name] if chosen.key[0] == "file" else []
    first = list(dict.fromkeys([f"{m}.safetensors" for m in list_models() if default_checkpoint(m)] + in_use))
    held = st.session_state.get(key)
    paths, total = offered_checkpoints(key, keep=[*first[:COMPARE_MAX], *(held if isinstance(held, list) else [])])
    by_name = {p.name: p for p in paths}
    picked = st.multiselect("Models to compare", list(by_name), [n for n in first if n in by_name][:COMPARE_MAX],
                            key=key, max_selections=COMPARE_MAX, format_func=lambda n: n.removesuffix(".safetensors"),
                            help=f"Up to {COMPARE_MAX} checkpoints, each answering this drawing.")
    checkpoint_search(key, len(by_name), total)
    shown = ([] if in_use else [chosen]) + [by_name[n] for n in picked[:COMPARE_MAX] if n in by_name]
    if shown:
        cols = st.columns(min(4, len(shown)))
        for k, p in enumerate(shown):
            name = p.name if isinstance(p, LoadedModel) else p.stem
            with cols[k % len(cols)]:
                try:
                    other = p.model if isinstance(p, LoadedModel) else load_model(p)[0]
                except Exception as exc:  # noqa: BLE001 - one bad checkpoint must not hide the others
                    st.caption(name)
                    show_error(exc)
                    continue
                probs_k = predict_proba(other, image)[0]
                st.metric(name, int(probs_k.argmax()), f"{probs_k.max():.1%}", delta_color="off", delta_arrow="off")
                st.plotly_chart(probability_bars(probs_k, height=220), key=f"compare-{k}-{name}", config=CHART_CONFIG)


with drawing_row:
    drawing_and_answer(chosen)

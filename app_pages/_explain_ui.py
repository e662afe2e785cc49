"""Page sections that explain a model, shared by Draw, Inside the network and Train.

- `attribution_section`: why the model gave its answer for one image: gradient saliency, Integrated
  Gradients and occlusion (mnist_core.explain, through captum) drawn over the 28x28 input, for the
  predicted digit or any other. The three maps are one bounded heavy job (run_heavy).
- `export_buttons`: download the model as ONNX (prepared behind a button, with a spinner) or as a
  one-file bundle (mnist_core.export).
- `replay_section`: a run's training snapshots (mnist_core.snapshots), with a slider and Play: the
  kernels and the probe image's feature maps as they were through training.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from mnist_core import explain, export
from mnist_core.errors import MnistLabError
from mnist_core.loaded import LoadedModel
from mnist_core.snapshots import find_snapshots, read_snapshots
from app_pages._errors import show_error
from app_pages._figures import CHART_CONFIG
from app_pages._frame import run_heavy
from app_pages._models import is_imported
from app_pages._network_figures import diverging, kernel_figure, map_figure

METHOD_NOTES = {
    "saliency": "How strongly each pixel's gradient moves the score: where a small change matters most.",
    "integrated-gradients": "Each pixel's share of the score, from a black image to this one (the shares "
                            "add up to the score's change). Red raises the score, blue lowers it.",
    "occlusion": "How much the score drops when a 4x4 patch around the pixel is blacked out. Red: hiding it "
                 "hurts the answer; blue: hiding it helps.",
}


# --- attribution ------------------------------------------------------------------------------

@st.cache_data(show_spinner=False, max_entries=256)
def _attributions(_model, model_key: tuple, image: np.ndarray, target: int | None) -> dict:
    return run_heavy(explain.attributions, _model, image, target)


def attribution_figure(image: np.ndarray, values: np.ndarray, signed: bool, height: int = 300) -> go.Figure:
    """The input in dim grey with the attribution over it: zero is transparent, so the digit shows through.

    The colour scale saturates at the 99th percentile of |attribution|: a handful of extreme pixels
    would otherwise wash everything else out.
    """
    image = np.asarray(image, np.float32)
    bound = float(np.percentile(np.abs(values), 99)) or float(np.abs(values).max()) or 1.0
    if signed:  # blue below zero, red above, opacity growing with |value| (hue kept: no washed-out pinks)
        scale = [[0.0, "rgba(33,102,172,1)"], [0.25, "rgba(33,102,172,0.75)"], [0.5, "rgba(33,102,172,0)"],
                 [0.5, "rgba(214,39,40,0)"], [0.75, "rgba(214,39,40,0.75)"], [1.0, "rgba(214,39,40,1)"]]
        zmin, zmax = -bound, bound
    else:
        scale = [[0.0, "rgba(255,120,0,0)"], [0.5, "rgba(255,120,0,0.75)"], [1.0, "rgba(255,40,0,1)"]]
        zmin, zmax = 0.0, bound
    fig = go.Figure()
    # The digit at most mid-grey (zmax 2 for pixels in [0,1]), so colours stay visible over the strokes.
    fig.add_heatmap(z=image, colorscale="gray", zmin=0.0, zmax=2.0, showscale=False, hoverinfo="skip")
    fig.add_heatmap(z=values, customdata=image, colorscale=scale, zmin=zmin, zmax=zmax, showscale=True,
                    colorbar=dict(thickness=10, len=0.8),
                    hovertemplate="row %{y}, col %{x}<br>pixel %{customdata:.2f}<br>attribution %{z:.3g}"
                                  "<extra></extra>")
    fig.update_yaxes(autorange="reversed", scaleanchor="x", showticklabels=False, showgrid=False, zeroline=False,
                     constrain="domain")
    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False, constrain="domain")
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=10, b=10))
    return fig


def attribution_section(loaded: LoadedModel, image: np.ndarray, probs: np.ndarray, key: str) -> None:
    """Three attribution maps for `image`, for the predicted digit or the one the user picks."""
    top = int(np.argmax(probs))
    target = st.selectbox("Explain the score of digit", [None, *range(10)], key=f"{key}_target",
                          format_func=lambda d: f"{top} (the prediction)" if d is None else f"{d} ({probs[d]:.1%})")
    st.caption("Each map explains the chosen digit's score (its logit, before softmax), computed with captum. "
               "Hover a pixel for its value.")
    try:
        results = _attributions(loaded.model, loaded.key, np.asarray(image, np.float32), target)
    except Exception as exc:  # noqa: BLE001 - one line, never a traceback
        show_error(exc)
        return
    cols = st.columns(len(explain.METHODS))
    for col, (method, title) in zip(cols, explain.METHODS.items()):
        with col:
            result = results[method]
            st.markdown(f"**{title}** · digit {result.target}")
            st.plotly_chart(attribution_figure(image, result.values, signed=method != "saliency"),
                            key=f"{key}_{method}", config=CHART_CONFIG)
            st.caption(METHOD_NOTES[method])


# --- export -----------------------------------------------------------------------------------

_EXPORTS: "OrderedDict[tuple, bytes]" = OrderedDict()  # (model key, format) -> bytes, the newest few
_EXPORTS_LOCK = threading.Lock()


def _ready(model_key: tuple, fmt: str) -> bytes | None:
    """The export's bytes if this server has made them already."""
    with _EXPORTS_LOCK:
        return _EXPORTS.get((model_key, fmt))


def _exported(model, meta: dict, model_key: tuple, fmt: str) -> bytes:
    """The export's bytes, made once and kept for every session (the newest 8)."""
    data = _ready(model_key, fmt)
    if data is not None:
        return data
    data = export.onnx_bytes(model, meta) if fmt == "onnx" else export.bundle_bytes(model, meta)
    with _EXPORTS_LOCK:
        _EXPORTS[(model_key, fmt)] = data
        while len(_EXPORTS) > 8:
            _EXPORTS.popitem(last=False)
    return data


def export_buttons(loaded: LoadedModel, key: str) -> None:
    """Download buttons: ONNX, and the one-file bundle that the checkpoint upload accepts.

    Making an ONNX file traces the model through torch.export, which takes seconds (the first one in
    a server the longest), so it is made behind a "Prepare" button, under a spinner, and kept: once
    made, the download is offered straight away. The bundle is quick and made when clicked.
    """
    if is_imported(loaded):  # an uploaded ONNX file: the visitor has it already
        st.caption("An uploaded ONNX file: nothing to download that you do not have.")
        return
    model, meta, model_key = loaded.model, loaded.meta, loaded.key
    stem = "".join(c if c.isalnum() or c in "-_." else "-" for c in loaded.name)[:60] or "model"
    c1, c2 = st.columns(2)
    onnx = _ready(model_key, "onnx")
    slot = c1.empty()  # the Prepare button, then the spinner, then the download, in one place
    if onnx is None and slot.button("Prepare ONNX", icon=":material/build:", key=f"{key}_onnx_prepare",
                                    help="Converts the model for ONNX runtimes (input image float32 [N,1,28,28] "
                                         "in [0,1], output logits [N,10]). Takes a few seconds, up to half a "
                                         "minute for the first model on this server."):
        with slot, st.spinner("Preparing the ONNX file: tracing the model through torch.export..."):
            try:
                onnx = _exported(model, meta, model_key, "onnx")
            except Exception as exc:  # noqa: BLE001 - one line, never a traceback
                show_error(exc)
    if onnx is not None:
        slot.download_button("ONNX", data=onnx, file_name=f"{stem}{export.ONNX_SUFFIX}",
                             mime="application/octet-stream", icon=":material/download:", key=f"{key}_onnx",
                             help="For any ONNX runtime: input image float32 [N,1,28,28] in [0,1], output logits "
                                  "[N,10].")
    c2.download_button("Bundle", data=lambda: _exported(model, meta, model_key, "bundle"),
                       file_name=f"{stem}{export.BUNDLE_SUFFIX}", mime="application/octet-stream",
                       icon=":material/download:", key=f"{key}_bundle",
                       help="Weights and metadata in one safetensors file: upload it here on any MNIST Lab.")


# --- replaying a run's snapshots ----------------------------------------------------------------

PLAY_SECONDS = 0.5  # one frame per tick while the replay plays


@st.cache_data(show_spinner=False, max_entries=8)
def _snapshots(path: str, mtime: float, run_id: str):
    """A snapshot file's frames, read once per version of the file (Play redraws often)."""
    return read_snapshots(path, run_id)


def _toggle_play(playing_key: str, slider_key: str, last: int) -> None:
    """Play from the frame shown (from the start when at the end); Pause where it is."""
    if st.session_state.get(playing_key) == slider_key:
        st.session_state[playing_key] = None
        return
    if st.session_state.get(slider_key, last) >= last:
        st.session_state[slider_key] = 0
    st.session_state[playing_key] = slider_key


def replay_section(run_id: str | None, key: str) -> None:
    """The run's snapshots: the kernels and the probe's feature maps through training, a frame at a
    time with the slider, or played (a fragment that reruns every PLAY_SECONDS, one frame further each time)."""
    if not run_id:
        st.caption("This model was not trained by a run on this server, so there are no snapshots to replay.")
        return
    try:
        path = find_snapshots(run_id)
        snaps = None if path is None else _snapshots(str(path), path.stat().st_mtime, run_id)
    except (MnistLabError, OSError) as exc:
        show_error(exc)
        return
    if snaps is None or len(snaps) == 0:
        st.caption(f"Run {run_id} has no training snapshots here: runs record them as they train, except on the "
                   "NumPy engine, and runs from before this feature have none.")
        return
    if len(snaps) == 1:
        st.caption(f"One snapshot so far: step {snaps.steps[0]:,}.")
        _replay_frame(snaps, 0, run_id, key)
        return
    # The slider's key follows the frames, so new frames (or thinned ones) give a fresh slider at the newest.
    last = len(snaps) - 1
    slider_key, playing_key = f"{key}_{run_id}_{len(snaps)}_{snaps.steps[-1]}", f"{key}_playing"
    playing = st.session_state.get(playing_key) == slider_key
    st.button("Pause" if playing else "Play", icon=":material/pause:" if playing else ":material/play_arrow:",
              key=f"{key}_play", on_click=_toggle_play, args=(playing_key, slider_key, last),
              help=f"Step through the {len(snaps)} snapshots, about {1 / PLAY_SECONDS:g} a second")

    @st.fragment(run_every=PLAY_SECONDS if playing else None)
    def frames() -> None:
        if playing and st.session_state.get(playing_key) == slider_key:
            i = min(st.session_state.get(slider_key, 0) + 1, last)
            st.session_state[slider_key] = i
            if i == last:  # the end: stop, and redraw the page so the fragment stops ticking
                st.session_state[playing_key] = None
                st.rerun(scope="app")
        st.session_state.setdefault(slider_key, last)
        i = st.select_slider("Training step", options=list(range(len(snaps))), key=slider_key,
                             format_func=lambda k: f"step {snaps.steps[k]:,} · epoch {snaps.epochs[k]:.2f}")
        _replay_frame(snaps, i, run_id, key)

    frames()


def _replay_frame(snaps, i: int, run_id: str, key: str) -> None:
    """Frame i: the kernels beside what each layer made of the probe image."""
    c_kernels, c_maps = st.columns([1, 1.4], gap="large")
    with c_kernels:
        names = list(snaps.kernels)
        layer = st.selectbox("Weights of", names, key=f"{key}_{run_id}_kernel_layer") if len(names) > 1 else names[0]
        frames = snaps.kernels[layer]  # one colour scale for every frame: the slider shows change, not rescaling
        fig, what = kernel_figure(frames[i], diverging(frames, 99.5), max_height=500)
        st.markdown(f"**{layer}** · {what}")
        st.plotly_chart(fig, key=f"{key}_kernels", config=CHART_CONFIG)
    with c_maps:
        names = list(snaps.maps)
        if not names:
            return
        layer = st.selectbox(f"What this layer makes of the probe image (a {snaps.probe_label})", names,
                             key=f"{key}_{run_id}_map_layer")
        p_img, p_maps = st.columns([1, 4])
        p_img.image(snaps.probe, caption="probe", width=84)
        with p_maps:
            st.plotly_chart(map_figure(snaps.maps[layer][i], over=snaps.maps[layer], max_height=500), key=f"{key}_maps",
                            config=CHART_CONFIG)

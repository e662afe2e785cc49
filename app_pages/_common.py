"""What several pages share: cached data and models, and small drawing helpers.

Heavy read-only things (dataset tensors, checkpoints) are cached once per server with
st.cache_resource; derived figures with st.cache_data. Errors a user can cause come back as
mnist_core's own exceptions and are shown with st.error (one line, no traceback).
"""

from __future__ import annotations

import hashlib
import importlib
import os
import re
import secrets
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import streamlit as st
# The check every st call makes for a stop or rerun request, without drawing anything (Streamlit's own
# cache waits with it): a heavy job's wait polls it, so a closed tab stops the job at once.
from streamlit.runtime.scriptrunner_utils.script_run_context import get_run_yield_check

from mnist_core import data, heavy, runs
from mnist_core import live as live_view
from mnist_core.checkpoints import find_checkpoints, load_checkpoint, load_uploaded_checkpoint
from mnist_core.errors import MnistLabError
from mnist_core.export import load_bundle
from mnist_core.loaded import LoadedModel
from mnist_core.records import LIVE


@st.cache_resource(show_spinner="Loading MNIST...")
def load_split(split: str):
    """(uint8 images [N,28,28], int64 labels [N]) as numpy, shared by every session."""
    images, labels = data.load_mnist(split)
    return images.numpy(), labels.numpy()


@st.cache_resource(show_spinner="Fetching and verifying MNIST (once per server)...")
def auto_fetch() -> str | None:
    """With MNIST_AUTO_FETCH=1 (a hosted demo), fetch the data once per server; the error, if any.

    The outcome is cached either way, so a failing fetch is not retried on every page view.
    """
    try:
        data.fetch()
    except MnistLabError as exc:
        return str(exc)
    return None


def data_ready() -> bool:
    return data.is_present()


def require_data() -> None:
    """Stop the page with a clear message when MNIST is not on disk."""
    if not data.is_present():
        st.error("MNIST is not downloaded yet. Fetch it from the Home page, or run `python -m mnist_core fetch-data`.")
        st.page_link("app_pages/home.py", label="Go to Home", icon=":material/home:")
        st.stop()


@st.cache_resource(show_spinner="Loading checkpoint...", max_entries=16)
def _load_model(path: str, mtime: float):
    return load_checkpoint(path)


def load_model(path: str | Path):
    """(model, meta) for a checkpoint, cached per file version. Raises CheckpointError."""
    p = Path(path)
    return _load_model(str(p), p.stat().st_mtime if p.exists() else 0.0)


# --- choosing among many checkpoints: a bounded list, and a box to find the others -----------------

PICKER_LIMIT = 30  # checkpoints (and registry-held models) a picker offers at once: a host with thousands of
                   # runs would otherwise send thousands of options to every browser on every rerun


def offered_checkpoints(key: str, keep=()) -> tuple[list[Path], int]:
    """The checkpoints a picker under `key` offers now (mnist_core.checkpoints.find_checkpoints: what
    `keep` names, the defaults, the newest, filtered by the picker's search box), and how many match."""
    search = st.session_state.get(f"{key}_search")
    return find_checkpoints(search if isinstance(search, str) else "", PICKER_LIMIT, [k for k in keep if k])


def checkpoint_search(key: str, shown: int, total: int) -> None:
    """The search box under a picker, when it does not list them all (or a search is on)."""
    if total > shown or st.session_state.get(f"{key}_search"):
        st.text_input("Find a checkpoint", key=f"{key}_search", max_chars=80, placeholder="lenet5, 20250611...",
                      persist_state="session",
                       help=f"The list shows {shown} of {total:,}: the defaults and the newest. Type part of a name "
                            "(a model, a run's date) to list others.")


def checkpoint_picker(label: str = "Checkpoint", key: str = "checkpoint", default: str = "lenet5.safetensors"):
    """A selectbox over the offered checkpoints (offered_checkpoints) with its search box; returns the
    chosen Path, or None (with a message) if none exist."""
    paths, total = offered_checkpoints(key, keep=[st.session_state.get(key)])
    if not paths:
        st.warning("No checkpoints yet: train one on the Train page, or run `make pretrained`.")
        return None
    names = [p.name for p in paths]
    if st.session_state.get(key) not in names:
        st.session_state[key] = default if default in names else names[0]
    name = st.selectbox(label, names, index=names.index(st.session_state[key]), key=key, persist_state="session",
                        format_func=lambda n: n.removesuffix(".safetensors"))
    checkpoint_search(key, len(names), total)
    return paths[names.index(name)]


@st.cache_resource(show_spinner=False, max_entries=8)
def _load_upload(digest: str, weights: bytes, sidecar: bytes | None):
    if sidecar is None:  # one file: a bundle (`python -m mnist_core export --format bundle`)
        return load_bundle(weights)
    return load_uploaded_checkpoint(weights, sidecar)


def uploaded_checkpoint(files) -> LoadedModel | None:
    """The model in uploaded files (weights + sidecar, or one bundle); None after saying why in one line."""
    by_suffix = {Path(f.name).suffix.lower(): f for f in files}
    if len(files) == 1 and ".safetensors" in by_suffix:
        weights, sidecar = by_suffix[".safetensors"].getvalue(), None
    elif set(by_suffix) != {".safetensors", ".json"} or len(files) != 2:
        st.error("Upload two files: the checkpoint's .safetensors weights and its .json sidecar (or one "
                 ".bundle.safetensors file).")
        return None
    else:
        weights, sidecar = by_suffix[".safetensors"].getvalue(), by_suffix[".json"].getvalue()
    digest = hashlib.sha256(weights + b"\0" + (sidecar or b"")).hexdigest()
    try:
        model, meta = _load_upload(digest, weights, sidecar)
    except MnistLabError as exc:
        show_error(exc)
        return None
    name = f"uploaded {Path(by_suffix['.safetensors'].name).stem[:40]}"
    return LoadedModel(model, meta, name, ("upload", digest))


# --- models the registry keeps: completed runs whose checkpoint lives there (trained on another host) ----

RUN_OPTION = "run:"  # a chooser option "run:<id>" (as the sweep view's "use this model" sets it) names such a run


def _stored_runs(keep: str | None = None) -> dict[str, str]:
    """{run id: "run ID · lenet5 · 99.1%"} for the newest PICKER_LIMIT completed runs whose checkpoint
    the registry keeps (mnist_core.artifacts.stored_models: one query with a LIMIT), and the run `keep`
    when it is one; {} when the registry cannot say, and the chooser offers the files alone."""
    try:
        stored = importlib.import_module("mnist_core.artifacts").stored_models(limit=PICKER_LIMIT)
        if keep and keep not in {r.id for r in stored}:
            stored += runs.list_runs(where=[runs.RUNS.c.id == keep], status="completed",
                                     has_artifacts=("checkpoint.safetensors", "checkpoint.json"))
    except (ImportError, AttributeError, MnistLabError, OSError):
        return {}
    return {r.id: " · ".join([f"run {r.id}", str((r.config or {}).get("model", "?")),
                              *([f"{r.test_accuracy:.1%}"] if r.test_accuracy is not None else [])])
            for r in stored}


@st.cache_resource(show_spinner="Loading the run's model from the registry...", max_entries=16)
def _load_run_model(run_id: str):
    return importlib.import_module("mnist_core.artifacts").load_run_model(run_id)


def _picked_option(key: str, options: list[str], default: str) -> None:
    """Point the chooser at st.session_state["mnist_default_model"] when it is new (set by "use this
    model" elsewhere), else keep the visitor's pick, else `default` (the first option if absent)."""
    ss = st.session_state
    wanted = ss.get("mnist_default_model")
    if isinstance(wanted, str) and wanted.startswith(RUN_OPTION) and wanted not in options:
        # a run whose checkpoint is a file here: MODEL-RUN_ID.safetensors (mnist_core.runfiles)
        wanted = next((o for o in options if o.endswith(f"-{wanted.removeprefix(RUN_OPTION)}.safetensors")), wanted)
    if wanted in options and ss.get(f"{key}_default_applied") != wanted:
        ss[key] = wanted
        ss[f"{key}_default_applied"] = wanted
    if ss.get(key) not in options:
        ss[key] = default if default in options else options[0]


def model_chooser(key: str, label: str = "Checkpoint", default: str = "lenet5.safetensors",
                  upload_place=None) -> LoadedModel | None:
    """A checkpoint picker with an upload beside it (or in `upload_place`, a container further down).

    The picker lists the checkpoint files, then the completed runs whose checkpoint only the registry
    holds; it starts on st.session_state["mnist_default_model"] (a file name or "run:<id>") when that
    is set. Returns the LoadedModel in use — the upload wins while one is given; a refused upload is
    said in one line and the listed checkpoint answers instead — or None after showing why (no
    checkpoints, a checkpoint that cannot be loaded). While an upload is in use the page says so under
    the picker, with a button back to the listed checkpoint (it empties the upload: a file_uploader
    under a new key starts empty). Uploads are checked and loaded in memory; nothing is written.
    """
    version_key = f"{key}_upload_version"
    version = st.session_state.get(version_key, 0)
    picks = [st.session_state.get(key), st.session_state.get("mnist_default_model")]
    wanted_runs = [p.removeprefix(RUN_OPTION) for p in picks if isinstance(p, str) and p.startswith(RUN_OPTION)]
    # a run's checkpoint that is a file here is offered as that file: MODEL-RUN_ID.safetensors (mnist_core.runfiles)
    keep = [p for p in picks if isinstance(p, str) and not p.startswith(RUN_OPTION)] + \
        [p.name for run_id in wanted_runs for p in find_checkpoints(f"-{run_id}.", limit=1)[0]]
    found, total = offered_checkpoints(key, keep)
    paths = {p.name: p for p in found}
    runs_held = {f"{RUN_OPTION}{run_id}": text for run_id, text in _stored_runs(next(iter(wanted_runs), None)).items()
                 if not any(name.endswith(f"-{run_id}.safetensors") for name in paths)}  # here as a file
    options = [*paths, *runs_held]
    picked = None
    if options:
        _picked_option(key, options, default)
        # its default is the pick: a browser that missed the run which set it falls back to the default;
        # kept for the session (persist_state): Streamlit drops a widget's value when its page is left
        picked = st.selectbox(label, options, index=options.index(st.session_state[key]), key=key,
                              persist_state="session",
                              format_func=lambda o: runs_held.get(o) or o.removesuffix(".safetensors"))
        checkpoint_search(key, len(paths), total)
    else:
        st.warning("No checkpoints yet: train one on the Train page, or run `make pretrained`.")
    picked_name = None if picked is None else (runs_held.get(picked) or picked.removesuffix(".safetensors"))
    notice = st.container()  # always here, so what follows keeps its place when the notice comes or goes
    with upload_place or st.container(), st.expander("Upload a checkpoint", icon=":material/upload:"):
        files = st.file_uploader("The .safetensors weights and the .json sidecar, or one .bundle.safetensors file",
                                 type=["safetensors", "json"], accept_multiple_files=True,
                                 key=f"{key}_upload" + (f"_{version}" if version else ""))
    if files:
        with notice:
            chosen = uploaded_checkpoint(files)  # a refusal is shown here, in one line
            if chosen is not None:
                st.info(f"Model in use: {chosen.name}" + (f", not {picked_name}" if picked_name else ""),
                        icon=":material/upload_file:")
            elif picked_name:  # a bad upload loses nothing: the listed checkpoint goes on answering
                st.caption(f"The upload was refused: still using {picked_name}.")
            if picked_name:
                st.button(f"Back to {picked_name}" if chosen is not None else "Clear the upload", icon=":material/undo:",
                          key=f"{key}_back", on_click=lambda: st.session_state.update({version_key: version + 1}))
        if chosen is not None or picked is None:
            return chosen
    if picked is None:
        return None
    try:
        if picked in runs_held:
            run_id = picked.removeprefix(RUN_OPTION)
            model, meta = _load_run_model(run_id)
            return LoadedModel(model, meta, f"run {run_id}", ("run", run_id))
        path = paths[picked]
        model, meta = load_model(path)
        return LoadedModel(model, meta, path.stem, ("file", str(path), path.stat().st_mtime))
    except Exception as exc:  # noqa: BLE001 - a bad checkpoint is the user's to fix: one line, no traceback
        with notice:
            show_error(exc)
        return None


def show_error(exc: Exception) -> None:
    """One line for the user; our own errors say what to do, anything else names its type. Either way
    in the reader's words, with any server path cut to its file name (live.for_visitor)."""
    text = live_view.for_visitor(str(exc))
    if isinstance(exc, MnistLabError):
        st.error(text)
    else:
        st.error(f"Something went wrong: {type(exc).__name__}: {text}")


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


def sidebar_status() -> None:
    """The shared sidebar: whether data is present, and runs in progress, live while any run is.

    It also gives a first-time browser its owner cookie (see visitor_token)."""
    with st.sidebar:
        st.caption("MNIST Lab · train and look inside small networks")
        _remember_visitor(visitor_token())
        if not data_ready() and os.environ.get("MNIST_AUTO_FETCH") == "1":
            problem = auto_fetch()
            if problem:
                st.error(problem)
        if not data_ready():
            st.warning("MNIST not downloaded", icon=":material/cloud_off:")
        try:
            any_live = bool(runs.list_runs(status=LIVE, limit=1))
        except MnistLabError as exc:
            st.error(live_view.for_visitor(str(exc)))
            return
        _sidebar_runs(any_live)


SIDEBAR_POLL_SECONDS = 2.0


def _sidebar_runs(polling: bool) -> None:
    """Runs in progress with their progress bars. While any is live they sit in a fragment that redraws
    only itself every couple of seconds, and the whole page once when the last run ends (which stops
    the polling)."""

    @st.fragment(run_every=SIDEBAR_POLL_SECONDS if polling else None)
    def bars() -> None:
        try:
            live = runs.list_runs(status=LIVE)  # all a place in line needs: the queue caps bound them
        except MnistLabError as exc:
            st.error(live_view.for_visitor(str(exc)))
            return
        for r in live:
            p = live_view.short_progress(r, live)
            st.progress(p.fraction, text=p.text)
        if polling and not live:
            st.rerun()

    bars()


# --- who is this visitor ----------------------------------------------------------------------

VISITOR_COOKIE = "mnist_lab_visitor"
_TOKEN_FORMAT = re.compile(r"[A-Za-z0-9_-]{32}")  # what secrets.token_urlsafe(24) makes
VISITOR_COOKIE_DAYS = 365


def visitor_token() -> str:
    """This browser's owner token: the runs it starts are recorded with it, and only it may cancel or
    delete them.

    A Streamlit session ends with the tab (and with every refresh), so the token lives in a cookie: a
    refresh or a new tab of the same browser sends it back, and another browser has its own. The
    cookie is untrusted input: anything but the format we make is ignored and replaced. Kept in
    session_state for the session.
    """
    token = st.session_state.get("visitor_token")
    if token:
        return token
    sent = st.context.cookies.get(VISITOR_COOKIE)
    token = sent if isinstance(sent, str) and _TOKEN_FORMAT.fullmatch(sent) else secrets.token_urlsafe(24)
    st.session_state["visitor_token"] = token
    return token


def _remember_visitor(token: str) -> None:
    """Set the owner cookie in the browser when it did not send this token (a first visit)."""
    if st.context.cookies.get(VISITOR_COOKIE) == token:
        return
    # st.context.cookies is read-only: the browser sets the cookie itself. SameSite=Lax keeps it off
    # other sites' requests; Secure where the app is served over https.
    st.html(f"""<script>
document.cookie = "{VISITOR_COOKIE}={token}; Path=/; Max-Age={VISITOR_COOKIE_DAYS * 86400}; SameSite=Lax"
  + (location.protocol === "https:" ? "; Secure" : "");
</script>""", unsafe_allow_javascript=True)


def run_heavy(fn, *args, **kwargs):
    """fn(*args, **kwargs) as this visitor's heavy computation (mnist_core.heavy): in a child process,
    at most one of theirs and MNIST_MAX_HEAVY on the server at once; BusyError, one line, over either.
    The wait checks for Streamlit's stop or rerun request, so when the visitor leaves or reruns the
    page the child is killed then and there (safe inside st.cache_data: nothing is drawn)."""
    return heavy.run(visitor_token(), fn, *args, poll=get_run_yield_check() or (lambda: None), **kwargs)


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
    from mnist_core.inspection import mosaic

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

"""Choosing the model a page uses: a checkpoint on disk, a run whose checkpoint the registry holds, or an upload.

- `checkpoint_picker`: a selectbox over the checkpoint files (Evaluate's confusion matrix).
- `model_chooser`: the files, then the completed runs whose checkpoint only the registry holds (trained
  on another host), with one uploader beside them (a checkpoint, a bundle or an ONNX file, in the same
  words on every page); returns the LoadedModel in use (Draw, Inside, Evaluate, Explain).
- `offered_checkpoints` / `checkpoint_search`: a bounded list of checkpoints and the box that finds the
  others, for any picker (Draw's comparison too).
- `is_imported(loaded)`: whether the model in use is an uploaded ONNX file (no download, no replay).

A host with thousands of runs has thousands of checkpoints: a picker offers PICKER_LIMIT at once (the
defaults, the newest, what is picked) and a search box for the rest. Uploads are checked as hostile
and loaded in memory (mnist_core.checkpoints, mnist_core.export); nothing a visitor uploads is written.
An ONNX file's check, conversion and trial run in a limited child process (mnist_core.onnx_import, as
this visitor's heavy job), once per file and chosen convention on this server; the page then says how
the file was read ("NHWC, pixels 0..1, logits: 97.9% on 512 training images") with a select to read it
another way.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import streamlit as st
# The stop/rerun check a heavy job's wait polls (as _frame.run_heavy's does): a visitor who leaves stops
# their file's check at once.
from streamlit.runtime.scriptrunner_utils.script_run_context import get_run_yield_check

from mnist_core import artifacts, onnx_import, registry
from mnist_core.checkpoints import find_checkpoints, load_uploaded_checkpoint
from mnist_core.errors import MnistLabError
from mnist_core.export import load_bundle
from mnist_core.loaded import LoadedModel
from app_pages import _keys as keys
from app_pages._data import load_model
from app_pages._errors import show_error
from app_pages._frame import visitor_token

PICKER_LIMIT = 30  # checkpoints (and registry-held models) a picker offers at once: a host with thousands of
                   # runs would otherwise send thousands of options to every browser on every rerun
RUN_OPTION = "run:"  # a chooser option "run:<id>" (as the sweep view's "use this model" sets it) names such a run
NO_CHECKPOINTS = "No checkpoints yet: train one on the Train page, or run `make pretrained`."
# The one uploader, in the same words on every page that chooses a model
UPLOAD_TITLE = "Upload a model"
UPLOAD_LABEL = "A checkpoint (.safetensors and its .json sidecar), a .bundle.safetensors or an .onnx file"
UPLOAD_HELP = ("An ONNX file from Keras, PyTorch or scikit-learn is checked before anything of it runs (no "
               "custom ops, no control flow, bounded sizes), and its input convention is found by trying it on "
               "training images. Nothing you upload is kept.")
FOUND = "found"  # the convention select's first option: the one the trial found


# --- checkpoint files: a bounded list, and a box to find the others -------------------------------------

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
        st.warning(NO_CHECKPOINTS)
        return None
    names = [p.name for p in paths]
    if st.session_state.get(key) not in names:
        st.session_state[key] = default if default in names else names[0]
    name = st.selectbox(label, names, index=names.index(st.session_state[key]), key=key, persist_state="session",
                        format_func=lambda n: n.removesuffix(".safetensors"))
    checkpoint_search(key, len(names), total)
    return paths[names.index(name)]


# --- uploads ---------------------------------------------------------------------------------------------

@st.cache_resource(show_spinner=False, max_entries=8)
def _load_upload(digest: str, weights: bytes, sidecar: bytes | None):
    if sidecar is None:  # one file: a bundle (`python -m mnist_core export --format bundle`)
        return load_bundle(weights)
    return load_uploaded_checkpoint(weights, sidecar)


@st.cache_resource(show_spinner=False, max_entries=8)
def _load_onnx(digest: str, name: str, layout: str | None, scale: str | None, ink: str | None, _data: bytes,
               _owner: str) -> LoadedModel:
    """The checked, converted file read with the given convention (None: found by score), once per file
    (its digest) and convention on this server; a refusal raises and is not kept."""
    return onnx_import.load_onnx(_data, name, layout=layout, scale=scale, ink=ink, owner=_owner,
                                 poll=get_run_yield_check() or (lambda: None))


def is_imported(loaded: LoadedModel | None) -> bool:
    """Whether `loaded` is an uploaded ONNX file (mnist_core.onnx_import), not one of the lab's models."""
    return loaded is not None and loaded.meta.get("architecture") == "onnx"


def _convention_text(option: dict) -> str:
    accuracy = option.get("accuracy")
    return option["text"] + ("" if accuracy is None else f" ({accuracy:.1%} on the sample)")


def uploaded_onnx(file, key: str) -> LoadedModel | None:
    """The model in an uploaded ONNX file, read as found or as the visitor picks; None after saying why
    in one line. Says how the file is read, with the select that overrides it."""
    data = file.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    pick_key = f"{key}_convention_{digest[:16]}"  # a new file starts on what its trial finds
    try:
        with st.spinner(f"Checking {Path(file.name).name[:60]}: its graph, then a trial on training images in a "
                        "sandbox (up to a minute the first time)..."):
            found = _load_onnx(digest, file.name, None, None, None, data, visitor_token())
            options = {o["text"]: o for o in found.meta["options"]}
            picked = st.session_state.get(pick_key, FOUND)
            chosen = found
            if picked in options:
                o = options[picked]
                chosen = _load_onnx(digest, file.name, o["layout"], o["scale"], o["ink"], data, visitor_token())
    except MnistLabError as exc:
        show_error(exc)
        return None
    reading = f"Read as {chosen.meta['reading']}."
    if chosen.meta.get("near_chance"):
        st.warning(f"{reading} Its answers are no better than guessing: pick the convention it was trained with "
                   "below, or check the file.", icon=":material/warning:")
    else:
        st.caption(reading)
    best = found.meta["convention"]
    best_text = next((t for t, o in options.items()
                      if (o["layout"], o["scale"], o["ink"]) == (best["layout"], best["scale"], best["ink"])), "")
    st.selectbox("Input convention", [FOUND, *options], key=pick_key,
                 format_func=lambda t: f"as found: {best_text}" if t == FOUND else _convention_text(options[t]),
                 help="How the lab feeds this model its 28x28 images: the layout of its input, the scale of its "
                      "pixels and whether its digits are dark on white. Found by scoring every one on the "
                      "sample; pick another to read the model that way.")
    return chosen


def uploaded_checkpoint(files, key: str = "upload") -> LoadedModel | None:
    """The model in uploaded files (weights + sidecar, one bundle, or one ONNX file); None after saying
    why in one line."""
    by_suffix = {Path(f.name).suffix.lower(): f for f in files}
    if ".onnx" in by_suffix:
        if len(files) != 1:
            st.error("Upload an .onnx file alone: it holds the whole model.")
            return None
        return uploaded_onnx(files[0], key)
    if len(files) == 1 and ".safetensors" in by_suffix:
        weights, sidecar = by_suffix[".safetensors"].getvalue(), None
    elif set(by_suffix) != {".safetensors", ".json"} or len(files) != 2:
        st.error("Upload two files: the checkpoint's .safetensors weights and its .json sidecar (or one "
                 ".bundle.safetensors file, or one .onnx file).")
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

def _stored_runs(keep: str | None = None) -> dict[str, str]:
    """{run id: "run ID · lenet5 · 99.1%"} for the newest PICKER_LIMIT completed runs whose checkpoint
    the registry keeps (mnist_core.artifacts.stored_models: one query with a LIMIT), and the run `keep`
    when it is one; {} when the registry cannot say, and the chooser offers the files alone."""
    try:
        stored = artifacts.stored_models(limit=PICKER_LIMIT)
        if keep and keep not in {r.id for r in stored}:
            stored += registry.list_runs(where=[registry.RUNS.c.id == keep], status="completed",
                                         has_artifacts=("checkpoint.safetensors", "checkpoint.json"))
    except (MnistLabError, OSError):
        return {}
    return {r.id: " · ".join([f"run {r.id}", str((r.config or {}).get("model", "?")),
                              *([f"{r.test_accuracy:.1%}"] if r.test_accuracy is not None else [])])
            for r in stored}


@st.cache_resource(show_spinner="Loading the run's model from the registry...", max_entries=16)
def _load_run_model(run_id: str):
    return artifacts.load_run_model(run_id)


# --- the chooser ---------------------------------------------------------------------------------------

def _picked_option(key: str, options: list[str], default: str) -> None:
    """Point the chooser at st.session_state[keys.DEFAULT_MODEL] when it is new (set by "use this
    model" elsewhere), else keep the visitor's pick, else `default` (the first option if absent)."""
    ss = st.session_state
    wanted = ss.get(keys.DEFAULT_MODEL)
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
    holds; it starts on st.session_state[keys.DEFAULT_MODEL] (a file name or "run:<id>") when that
    is set. Returns the LoadedModel in use — the upload wins while one is given; a refused upload is
    said in one line and the listed checkpoint answers instead — or None after showing why (no
    checkpoints, a checkpoint that cannot be loaded). While an upload is in use the page says so under
    the picker, with a button back to the listed checkpoint (it empties the upload: a file_uploader
    under a new key starts empty); an ONNX file's reading and its Input convention select come with
    it (uploaded_onnx). Uploads are checked and loaded in memory; nothing is written.
    """
    version_key = f"{key}_upload_version"
    version = st.session_state.get(version_key, 0)
    picks = [st.session_state.get(key), st.session_state.get(keys.DEFAULT_MODEL)]
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
        st.warning(NO_CHECKPOINTS)
    picked_name = None if picked is None else (runs_held.get(picked) or picked.removesuffix(".safetensors"))
    notice = st.container()  # always here, so what follows keeps its place when the notice comes or goes
    with upload_place or st.container(), st.expander(UPLOAD_TITLE, icon=":material/upload:"):
        files = st.file_uploader(UPLOAD_LABEL, type=["safetensors", "json", "onnx"], accept_multiple_files=True,
                                 key=f"{key}_upload" + (f"_{version}" if version else ""), help=UPLOAD_HELP)
    if files:
        with notice:
            in_use = st.container()  # "Model in use" above what the check of an ONNX file says
            chosen = uploaded_checkpoint(files, key)  # a refusal is shown here, in one line
            if chosen is not None:
                in_use.info(f"Model in use: {chosen.name}" + (f", not {picked_name}" if picked_name else ""),
                        icon=":material/upload_file:")
            elif picked_name:  # a bad upload loses nothing: the listed checkpoint goes on answering
                st.caption(f"The upload was refused: still using {picked_name}.")
            if picked_name:
                st.button(f"Back to {picked_name}" if chosen is not None else "Clear the upload",
                          icon=":material/undo:", key=f"{key}_back",
                          on_click=lambda: st.session_state.update({version_key: version + 1}))
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

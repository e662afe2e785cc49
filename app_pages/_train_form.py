"""The Train page's One run form: the presets, a widget for every TrainConfig field, and Start.

The fields come from TrainConfig (the list the CLI's flags come from), in the reader's words and in
the order a phone shows them (mnist_core.form), so a new TrainConfig field appears here by itself.
A widget keeps whatever was typed: a wrong value gets a sentence next to it (form.problems) and
Start stays disabled, so a run never differs from the form and Start submits the values that passed.

The page calls, in order: `restore()` before any widget, `preset_row`, `fields`, `start_button`,
`architecture`, and `start(values, token)` when Start was pressed.

The drawings_weight field (mix the visitors' drawings into training) gets a line under Advanced
saying how many drawings the set's training part holds and how many held-out ones the run will be
tested on (mnist_core.training.mixing).

State: each field's widget has the key _keys.field_key(name), "cfg_<name>" (the Sweep tab starts
its runs from them). Streamlit forgets a widget's value while its page is not shown, so every change
also copies the values under a key no widget owns (_keys.TRAIN_FORM, the preset's name beside it),
and `restore()` puts them back when the page is drawn again.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from mnist_core import drawings, executors, form, kernels, live, registry, sweeps
from mnist_core.errors import MnistLabError
from mnist_core.models import count_parameters, create_model, layer_table, model_info
from mnist_core.training import PRESETS, TrainConfig
from app_pages import _class
from app_pages._keys import SCROLL_TO_RUN, TRAIN_FORM, WATCH_RUN, field_key

CUSTOM = "(custom)"  # the preset box when the form is no recipe
FIELDS = {f.name: f for f in TrainConfig.fields()}
# The Advanced section is drawn open once a field in it was changed or had a problem, and stays open:
# drawn open only while a problem lasts, it would fold away under the visitor's hand as the value is fixed.
ADVANCED_OPEN = "train_advanced_open"
START_TOAST = "train_toast"  # what Start has to say, kept for the rerun that follows it
PRESET_KEPT = "train_form_preset"  # the preset's name, kept beside TRAIN_FORM


# --- state ---------------------------------------------------------------------------------------

def values() -> dict:
    """The form's values, as typed (a number field holds a float even for a whole-number field)."""
    return {name: st.session_state[field_key(name)] for name in FIELDS}


def saved_values() -> dict:
    """The form's values as last shown, whether or not the page is drawn now: the first-run values
    before the visitor has seen the form."""
    if all(field_key(name) in st.session_state for name in FIELDS):
        return values()
    return dict(st.session_state.get(TRAIN_FORM) or form.first_run().values)


def _set_fields(new: dict) -> None:
    for name, f in FIELDS.items():
        st.session_state[field_key(name)] = new.get(name, f.default)


def _remember() -> None:
    now = values()
    preset = st.session_state.get("preset", CUSTOM)
    if preset != CUSTOM and (preset not in PRESETS or now != form.preset(preset, keep=now).values):
        st.session_state["preset"] = preset = CUSTOM  # the form is no longer that recipe: don't name it so
    st.session_state[TRAIN_FORM] = now
    st.session_state[PRESET_KEPT] = preset


def _remember_advanced() -> None:
    st.session_state[ADVANCED_OPEN] = True
    _remember()


def _apply_preset() -> None:
    name = st.session_state["preset"]
    if name not in PRESETS:  # not a recipe's name (a forged request): the form stays as it is
        st.session_state["preset"] = name = CUSTOM
    if name != CUSTOM:
        _set_fields(form.preset(name, keep=values()).values)  # the recipe fitted to this host's bounds
    _remember()


def restore() -> dict[str, form.Offer]:
    """Put the form's values back (the first run's on a first visit); the presets as this host offers
    them (fitted to its bounds, or unavailable with the reason)."""
    offers = {name: form.preset(name) for name in PRESETS}
    if field_key("model") not in st.session_state:
        _set_fields(st.session_state.get(TRAIN_FORM, form.first_run().values))
        st.session_state["preset"] = st.session_state.get(PRESET_KEPT, CUSTOM)
    offer = offers.get(st.session_state["preset"])
    if st.session_state["preset"] != CUSTOM and (offer is None or offer.unavailable):
        st.session_state["preset"] = CUSTOM  # chosen under other bounds, or never offered (forged): not offered now
    return offers


# --- widgets -------------------------------------------------------------------------------------

def preset_row(offers: dict[str, form.Offer], first_visit: bool) -> None:
    """The preset box and, beside it, the chosen recipe's description (or the first-run tip on a first
    visit) and the presets this server cannot run."""
    left, right = st.columns([2, 3])
    with left:
        presets = [CUSTOM, *(name for name, o in offers.items() if not o.unavailable)]
        st.selectbox("Preset", presets, index=presets.index(st.session_state["preset"]), key="preset",
                     on_change=_apply_preset,
                     help="Each tutorial's recipe, plus fast and best. Choosing one fills in the form.")
    with right:
        chosen = st.session_state["preset"]
        if chosen != CUSTOM:
            p = PRESETS[chosen]
            st.caption(p.description + (f" **Article's result:** {p.reported}." if p.reported else "")
                       + (f" *{offers[chosen].fitted_text()}.*" if offers[chosen].notes else ""))
        elif first_visit:
            first_run = form.first_run()
            st.caption(form.first_run_tip(first_run.values)
                       + (f" *{first_run.fitted_text()}.*" if first_run.notes else ""))
        unavailable = [f"{name} ({o.unavailable})" for name, o in offers.items() if o.unavailable]
        if unavailable:
            st.caption("Not on this server: " + "; ".join(unavailable) + ".")


def field_widget(name: str, problem: str | None) -> None:
    """One field: a widget that keeps whatever was typed (no min/max to clamp to), and its problem.

    The widget's default is the value the field holds, so the browser draws that value whichever run
    of the script it receives the widget from (a value only put in session state reaches the browser
    with the run that put it there: a polling fragment's rerun crossing a page switch would otherwise
    have the form drawn blank while the page holds the real values)."""
    f, key = FIELDS[name], field_key(name)
    value = st.session_state[key]
    common = dict(key=key, help=form.help_text(name),
                  on_change=_remember_advanced if name in form.ADVANCED else _remember)
    if f.metadata["choices"] is not None:
        options = list(form.choices(name))
        if value not in options:  # e.g. a device this server lacks: shown, and refused by form.problems
            options.append(value)
        st.selectbox(form.label(name), options, index=options.index(value), **common)
    else:
        # A float widget even for a whole number (epochs, 0 weight decay): an int widget would turn a typed 2.5
        # into 2 without a word, where this one keeps the 2.5 and form.problems says "must be a whole number".
        st.number_input(form.label(name), format="%g", step=1.0 if isinstance(f.default, int) else None,
                        value=None if value is None else float(value), **common)
    if problem:
        st.markdown(f":red[{problem}]")


def fields(problems: dict[str, str]) -> None:
    """Every field with its problem: the ones that matter most in a row, the rest under Advanced, then
    a problem of no one field."""
    # On a phone the columns stack, in this order.
    for col, name in zip(st.columns(len(form.PRIMARY)), form.PRIMARY):
        with col:
            field_widget(name, problems.get(name))
    # A sentence next to a field must never sit in a closed expander while Start stays disabled.
    if any(name in problems for name in form.ADVANCED):
        st.session_state[ADVANCED_OPEN] = True
    with st.expander("Advanced: optimizer, schedule, data, validation, device",
                     expanded=st.session_state.get(ADVANCED_OPEN, False), icon=":material/tune:"):
        for i in range(0, len(form.ADVANCED), 3):  # row by row, so a phone keeps the order
            for col, name in zip(st.columns(3), form.ADVANCED[i:i + 3]):
                with col:
                    field_widget(name, problems.get(name))
        drawings_note(st.session_state[field_key("drawings_weight")])
    if st.session_state[field_key("backend")] == "numpy":
        st.info("The NumPy engine trains the MLPs from scratch (hand-written forward and backward passes) with "
                "sgd or sgd-momentum and no augmentation: the presets tutorial-numpy-2layer and "
                "tutorial-numpy-mlp90 are set up for it.", icon=":material/calculate:")
    if "" in problems:
        st.error(problems[""])


@st.cache_data(show_spinner=False, max_entries=4)
def drawing_parts(total: int, newest: int) -> tuple[int, int]:
    """(drawings in the set's training part, in its held-out part); (total, newest id) name the set's
    state, so a drawing added or removed counts afresh."""
    return len(drawings.drawing_set(part="train")[2]), len(drawings.drawing_set(part="held-out")[2])


def drawings_note(weight) -> None:
    """Under a share of drawings above 0: what the run will train on and be tested on, or that the set has
    nothing to train on yet (the run would fail at its start)."""
    if not isinstance(weight, (int, float)) or not weight > 0:
        return
    try:
        newest = drawings.list_drawings(newest_first=True, limit=1)
        train, held_out = drawing_parts(drawings.count_drawings(), newest[0].id if newest else 0)
    except MnistLabError:
        return  # the registry's own error shows where the page reads the runs
    if not train:
        st.warning("The visitors' drawing set has no drawings to train on yet: give some on the Draw page, or set "
                   "the share of drawings to 0.", icon=":material/draw:")
    else:
        st.caption(f"{weight:.0%} of the training images will be drawn from the set's {train:,} training drawings; "
                   f"the run is then tested on the {held_out:,} drawings of the held-out givers"
                   + (" (none yet)." if not held_out else ", beside the MNIST test set."))


def start_button(problems: dict[str, str], recent: list[registry.Run]) -> bool:
    """How long the run will take (reckoned as the Sweep tab reckons each of its runs), then Start,
    disabled while a field has a problem. Whether it was pressed."""
    if not problems:
        try:
            estimate = sweeps.estimate_one(TrainConfig.from_dict(values()), recent)
        except MnistLabError:
            estimate = None
        if estimate is not None:
            st.caption(f"Training time: {estimate.text()}, once it starts.")
    return st.button("Start training", type="primary", icon=":material/play_arrow:", disabled=bool(problems),
                     help="Fix the fields marked in red first." if problems else None)


@st.cache_data(show_spinner=False)
def _architecture(name: str) -> tuple[pd.DataFrame, int, bool]:
    """The layer table, the parameter count, and whether LeNet-5's fused CPU kernels fit the model."""
    model = create_model(name)
    return pd.DataFrame(layer_table(model)), count_parameters(model), kernels.fits(model)


def architecture() -> None:
    """The chosen model's layers and parameter count, folded away."""
    name = st.session_state[field_key("model")]
    if name not in FIELDS["model"].metadata["choices"]:
        return
    table, n_params, fused = _architecture(name)
    info = model_info(name)
    with st.expander(f"Architecture: {name} · {n_params:,} parameters · {info.description}"):
        st.caption(f"Provenance: {info.provenance}. Output shapes are for one 28x28 input.")
        st.dataframe(table, hide_index=True, width="stretch")
        if fused:
            st.caption("In training on the CPU, C1 + ReLU + S2 and C3 + ReLU + S4 each run as one fused C kernel "
                       f"(mnist_core/kernels, BENCHMARKS.md): {kernels.status()}.")


# --- Start ---------------------------------------------------------------------------------------

def start(checked: dict, token: str) -> None:
    """Submit `checked` (the values form.problems passed) as a run owned by this browser, inside its
    class if it joined one; then watch that run, scroll to it and say where it stands in a toast
    after the rerun (which also has the sidebar, drawn before the run existed, follow it). A refusal
    is said in one line where Start was pressed."""
    try:
        class_code, student = _class.membership()  # a run started inside a class shows on its page
        run_id = executors.for_host().submit(checked, owner=token, class_code=class_code, student=student)
        place = live.places_in_line(registry.recent_runs()).get(run_id)
    except MnistLabError as exc:
        st.error(live.for_visitor(str(exc)))
        return
    st.session_state[WATCH_RUN] = run_id
    st.session_state[SCROLL_TO_RUN] = True
    st.session_state[START_TOAST] = ((f"Queued run {run_id}: number {place} in line", ":material/schedule:")
                                     if place else (f"Started run {run_id}", ":material/play_arrow:"))
    st.rerun()


def start_toast() -> None:
    """Say what Start did, once, in the run after it."""
    if said := st.session_state.pop(START_TOAST, None):
        st.toast(said[0], icon=said[1])

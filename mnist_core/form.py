"""The Train form's words and checks: TrainConfig's fields as a reader meets them.

The form is generated from TrainConfig's fields (the same list the CLI's flags come from). This
module holds what the page needs beyond the field metadata, so the page stays a loop of widgets:

- `label(name)`, `help_text(name)`: each field in the reader's words ("learning rate"), the exact
  config name and CLI flag kept in the help text;
- `PRIMARY` / `ADVANCED`: the order a phone shows them in, most important first;
- `choices(name)`: the values offered *here* (cuda and mps only where torch sees them);
- `problems(values)`: one plain sentence per field that is wrong, before any run exists. The form
  keeps whatever was typed and blocks Start while this is not empty, so a run never differs from
  what the form shows;
- `plain(message)`: a ConfigError's text with config names turned into the reader's words;
- `config_line(config)`: a run's config in the same words, for the live panel;
- `FIRST_RUN`: the form's starting values, a run long enough to watch the curves move;
- `first_run()`, `preset(name)`, `sweep_default()`: what the form and the Sweep tab start from on
  *this* host: fitted to its bounds (limits.fit) with a note saying what changed, or, for a preset
  no fitting can admit (a model the demo does not allow), unavailable with the reason, so a host's
  own settings never meet a visitor with a refusal; `first_run_tip(values)` describes the values.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from . import limits
from .errors import ConfigError
from .training import PRESETS, TrainConfig, admit, available_devices
from .training.config import number, out_of_range

_FIELDS = {f.name: f for f in TrainConfig.fields()}

LABELS = {
    "model": "model",
    "optimizer": "optimizer",
    "lr": "learning rate",
    "momentum": "momentum",
    "weight_decay": "weight decay",
    "batch_size": "batch size",
    "epochs": "epochs",
    "loss": "loss function",
    "schedule": "learning-rate schedule",
    "augment": "augmentation",
    "drawings_weight": "share of visitors' drawings (0 = none)",
    "train_size": "training images (0 = all)",
    "val_size": "validation images",
    "eval_every": "validate every N steps (0 = once per epoch)",
    "seed": "random seed",
    "threads": "CPU threads (0 = one per core that others leave free)",
    "device": "device",
    "backend": "engine",
}
assert set(LABELS) == set(_FIELDS), "every TrainConfig field needs a label (and nothing else)"

# What a phone shows first (Start comes right after these); the rest go in an "Advanced" expander.
PRIMARY = ("model", "lr", "epochs", "batch_size")
ADVANCED = tuple(name for name in _FIELDS if name not in PRIMARY)

# The form's starting values. TrainConfig's defaults finish in a few seconds on a quiet machine, so
# a first run's chart would jump once from empty to done; small batches make many points, and
# validating every 50 steps draws the validation curve as it goes. One thread leaves the other cores
# to the web server and the browser drawing the live charts (on a busy 2-core host, two threads were
# several times slower, not faster: BENCHMARKS.md). It stays inside the public demo's bounds
# (limits.py), so a first visit to a hosted demo sees no refusal: a host with tighter bounds gets
# them fitted (first_run()).
FIRST_RUN = {"model": "lenet5", "batch_size": 32, "epochs": 4, "train_size": 20_000, "val_size": 2_000,
             "eval_every": 50, "threads": 1}
# The Sweep tab's first sweep: the learning rate over three decades (the last one too high for AdamW,
# which is worth seeing), as many of them as a visitor may queue here.
SWEEP_DEFAULT = ("lr", (0.001, 0.01, 0.1))
MODEL_NAMES = {"lenet5": "LeNet-5"}  # how a sentence names a model, where it has a usual name


def noun(name: str) -> str:
    """A field's name inside a sentence: its label without the parenthesis ("training images")."""
    return LABELS[name].split(" (")[0]


def label(name: str) -> str:
    return LABELS[name]


def help_text(name: str) -> str:
    """The field's help, then its exact config name and CLI flag (for readers of the CLI and the code)."""
    meta = _FIELDS[name].metadata
    allowed = ""
    if meta["min"] is not None:
        allowed = f" Allowed: {number(meta['min'])} to {number(meta['max'])}."
    return f"{meta['help'][0].upper()}{meta['help'][1:]}.{allowed} Config field `{name}`, CLI flag " \
           f"`--{name.replace('_', '-')}`."


def choices(name: str) -> tuple:
    """The values to offer for a choice field: all of them, except devices this server does not have."""
    allowed = _FIELDS[name].metadata["choices"]
    if name == "device":
        here = available_devices()
        return tuple(d for d in allowed if d in here)
    if name == "model":
        bounds = limits.current()
        if bounds.demo:  # the models this demo admits, in the zoo's order
            return tuple(m for m in allowed if m in bounds.allowed_models)
    return tuple(allowed)


def _field_problem(name: str, value: Any) -> str | None:
    f = _FIELDS[name]
    meta, words = f.metadata, noun(name)
    if meta["choices"] is not None:
        if value not in meta["choices"]:
            return f"{words}: choose one of {', '.join(map(str, meta['choices']))}"
        if value not in choices(name):
            return f"{words}: {value} is not available on this server"
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"{words} must be a number"
    if isinstance(value, float) and not math.isfinite(value):
        return f"{words} must be a number"
    if isinstance(f.default, int) and not float(value).is_integer():
        return f"{words} must be a whole number"
    problem = out_of_range(f, value)
    return f"{words} {problem}" if problem else None


_NAME = re.compile(r"\b(" + "|".join(sorted(_FIELDS, key=len, reverse=True)) + r")\b")
_LEADING_NAME = re.compile(r"(" + "|".join(sorted(_FIELDS, key=len, reverse=True)) + r")(?=[: ])")


def plain(message: str) -> str:
    """A config error in the reader's words: config names become the form's, the one a message starts with
    ("seed must be at least 0, not -1" -> "random seed ...") and any written like code (train_size, lr)
    inside it. Every config message a visitor meets (the form's, the Sweep tab's, a run's error) passes here."""
    if m := _LEADING_NAME.match(message):
        message = noun(m.group(1)) + message[m.end():]
    return _NAME.sub(lambda m: noun(m.group(1)) if "_" in m.group(1) or m.group(1) == "lr" else m.group(1), message)


def problems(values: dict[str, Any]) -> dict[str, str]:
    """{field name: a plain sentence} for each field that is wrong; "" for a problem of no one field.

    Each field is checked against its metadata first; when all pass, the whole config is parsed
    (TrainConfig.from_dict: cross-field rules) and admitted as a submit would admit it (training.admit:
    the engine's subset, this host, the demo bounds), and the one-line error is put next to the first
    field it names.
    """
    found = {}
    for name in _FIELDS:
        if name in values:
            problem = _field_problem(name, values[name])
            if problem:
                found[name] = problem
    if found:
        return found
    try:
        admit(TrainConfig.from_dict(values))
    except ConfigError as exc:
        message = str(exc)
        m = _NAME.search(message)
        return {m.group(1) if m else "": plain(message)}
    return {}


def config_line(config: dict[str, Any]) -> str:
    """A run's whole config in the form's words and order, e.g. "model lenet5 · learning rate 0.003 · ..."."""
    def words(name: str, value: Any) -> str:
        if name == "eval_every":
            return f"validate every {number(value)} steps" if value else "validate once per epoch"
        if name in ("train_size", "threads") and value == 0:
            return f"{noun(name)} all"
        return f"{noun(name)} {value if isinstance(value, str) else number(value)}"

    return " · ".join(words(name, config[name]) for name in (*PRIMARY, *ADVANCED)
                      if name in config and (name != "drawings_weight" or config[name]))  # none: not said


# --- what the form starts from on this host ------------------------------------------------------

@dataclass(frozen=True)
class Offer:
    """Every field's value for the form to start from here, fitted to this host's bounds: `notes` says
    what the fitting changed, in the form's words; `unavailable` why no fitting lets it run here."""
    values: dict
    notes: tuple = ()
    unavailable: str | None = None

    def fitted_text(self) -> str:
        """"Fitted to this server: epochs 3 (this demo allows at most 3) · ...", or "" when nothing changed."""
        if not self.notes:
            return ""
        return "Fitted to this server: " + " · ".join(
            "{} ({})".format(*note.split(": ", 1)) if ": " in note else note for note in self.notes)


def offer(values: dict[str, Any]) -> Offer:
    """`values` (any fields; the rest take their defaults) fitted to this host's bounds (limits.fit) and
    admitted as a submit would admit them; a refusal that remains makes the offer unavailable."""
    config = TrainConfig.from_dict({**TrainConfig().to_dict(), **values})
    config, notes = limits.fit(config)
    try:
        admit(config)
    except ConfigError as exc:
        message = str(exc)
        name, _, why = message.partition(": ")
        if name in _FIELDS:  # the value too: "model cnn-strong: this demo allows lenet5, ..."
            message = f"{name} {getattr(config, name)}: {why}"
        return Offer(config.to_dict(), tuple(plain(n) for n in notes), plain(message))
    return Offer(config.to_dict(), tuple(plain(n) for n in notes))


def first_run() -> Offer:
    """The form's starting values (FIRST_RUN) on this host."""
    return offer(FIRST_RUN)


# Where a run trains, not what it learns: a recipe never changes them (a preset that reset the threads
# to 0 made two threads spin against each other on a busy host).
HOST_FIELDS = ("threads", "device")


def preset(name: str, keep: dict[str, Any] | None = None) -> Offer:
    """A preset's recipe on this host: fitted to its bounds, or unavailable with the reason. The host
    fields (HOST_FIELDS) are taken from `keep`, the form's values, where it has them."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}: choose one of {', '.join(PRESETS)}")
    host = {field: keep[field] for field in HOST_FIELDS if keep and field in keep}
    return offer({**host, **PRESETS[name].overrides})


def first_run_tip(values: dict[str, Any]) -> str:
    """The first-run tip, telling the starting values as they are on this host."""
    images = values["train_size"] or limits.TRAIN_IMAGES - values["val_size"]
    model = MODEL_NAMES.get(values["model"], values["model"])
    epochs = f"{values['epochs']} epoch{'s' * (values['epochs'] != 1)}"
    validate = (f"validate every {values['eval_every']} steps" if values["eval_every"] else "validate once per epoch")
    return (f"First time here? The starting values train {model} on {number(images)} images for {epochs} in small "
            f"batches ({values['batch_size']} images a step) and {validate}: watch the loss fall and the accuracy "
            "climb. More epochs or a smaller batch make a longer run; a preset fills in a tutorial's recipe.")


@dataclass(frozen=True)
class SweepDefault:
    """The Sweep tab's first sweep here: the field it varies, its values, and a note when the host's
    caps left fewer values than SWEEP_DEFAULT has ("" otherwise)."""
    name: str
    values: tuple
    note: str = ""


def sweep_default() -> SweepDefault:
    """SWEEP_DEFAULT with as many values as one visitor's sweep may have runs here (MNIST_MAX_SWEEP_RUNS,
    MNIST_MAX_QUEUED_PER_OWNER, MNIST_MAX_QUEUED), spread over its range: the first and last of them
    when only two fit."""
    name, values = SWEEP_DEFAULT
    bounds = limits.current()
    room, why = min((bounds.max_sweep_runs, f"a sweep may have at most {bounds.max_sweep_runs} runs here"),
                    (bounds.max_queued_per_owner, f"you may have at most {bounds.max_queued_per_owner} runs queued "
                                                  "or running here"),
                    (bounds.max_queued, f"the training queue holds at most {bounds.max_queued} runs here"))
    if room >= len(values):
        return SweepDefault(name, values)
    if room == 1:
        kept = (values[len(values) // 2],)
    else:
        kept = tuple(values[round(i * (len(values) - 1) / (room - 1))] for i in range(room))
    return SweepDefault(name, kept, f"{noun(name)} {', '.join(f'{v:g}' for v in kept)}: {why}")

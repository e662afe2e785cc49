"""The training config and the presets.

`TrainConfig` is the one list of training fields: the CLI flags and the Train page's form are both
generated from it (each field's metadata holds its help text and allowed values), and every config,
wherever it comes from, passes through `TrainConfig.from_dict` / `validate()`, which check the
schema and the ranges only: whether a valid config may run here (the engine, the host, a public
demo's bounds) is admission's question (admission.py).

`PRESETS` are named recipes (each tutorial's, plus fast and best) as data: field overrides.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from ..data import DEFAULT_VAL_SIZE
from ..errors import ConfigError
from ..models import list_models

OPTIMIZERS = ("sgd", "sgd-momentum", "adam", "adamw")
LOSSES = ("cross-entropy", "mse-onehot", "mse-logits")
SCHEDULES = ("none", "step", "onecycle")
AUGMENTS = ("none", "affine")
DEVICES = ("auto", "cpu", "cuda", "mps")
BACKENDS = ("torch", "numpy")


def _field(default, help: str, choices=None, low=None, high=None):
    """A config field with its help text and allowed values, read by validate(), the CLI and the form."""
    return field(default=default, metadata={"help": help, "choices": choices, "min": low, "max": high})


def number(x) -> str:
    """A config value as every message writes it: whole numbers with thousands separators (2,000 and
    20,000 alike), other numbers as short as they read (0.003, 1e-06)."""
    if isinstance(x, float) and x.is_integer() and abs(x) < 2**53:
        x = int(x)
    if isinstance(x, int) and not isinstance(x, bool):
        return f"{x:,}"
    return f"{x:g}" if isinstance(x, float) else str(x)


def out_of_range(f: dataclasses.Field, value) -> str | None:
    """Why `value` lies outside field f's allowed range ("must be at least 1"), or None. The one wording
    of a range problem: the form puts the field's label before it, validate() its name and the value."""
    low, high = f.metadata["min"], f.metadata["max"]
    if low is not None and value < low:
        if low > 0 and value <= 0 and isinstance(f.default, float):
            return "must be above 0"
        return f"must be at least {number(low)}"
    if high is not None and value > high:
        return f"must be at most {number(high)}"
    return None


@dataclass
class TrainConfig:
    # The defaults take LeNet-5 to about 99% test accuracy in a couple of minutes on 2 CPU cores.
    model: str = _field("lenet5", "architecture from the model zoo", choices=tuple(list_models()))
    optimizer: str = _field("adamw", "optimizer", choices=OPTIMIZERS)
    lr: float = _field(0.003, "learning rate (the peak rate for onecycle)", low=1e-6, high=10.0)
    momentum: float = _field(0.9, "momentum, for sgd-momentum", low=0.0, high=0.999)
    weight_decay: float = _field(0.0, "weight decay (L2 for sgd/adam, decoupled for adamw)", low=0.0, high=1.0)
    batch_size: int = _field(128, "images per step", low=1, high=8192)
    epochs: int = _field(3, "passes over the training images", low=1, high=200)
    loss: str = _field("cross-entropy", "loss: cross-entropy; mse-onehot = squared error of the softmax against "
                       "one-hot labels (tutorial 3); mse-logits = squared error of the raw outputs against one-hot "
                       "labels (tutorial 2)", choices=LOSSES)
    schedule: str = _field("onecycle", "learning-rate schedule (step: x0.1 at 2/3 of the run)", choices=SCHEDULES)
    augment: str = _field("none", "augmentation: affine = small random rotation, scale and shift", choices=AUGMENTS)
    drawings_weight: float = _field(0.0, "share of the training images taken from the visitors' drawings, in "
                                    "place of as many MNIST images, the drawings repeated as needed (0 = none); "
                                    "the held-out givers' drawings are never trained on: the run is tested on them",
                                    low=0.0, high=0.5)
    train_size: int = _field(0, "training images to use, a random subset (0 = all that remain after validation)",
                             low=0, high=60_000)
    val_size: int = _field(DEFAULT_VAL_SIZE, "validation images carved from the training set", low=0, high=30_000)
    eval_every: int = _field(0, "validate every N steps (0 = once per epoch)", low=0, high=1_000_000)
    seed: int = _field(0, "random seed (same seed, same run on CPU)", low=0, high=2**31 - 1)
    threads: int = _field(0, "CPU threads (0 = one per core that other processes leave free)", low=0, high=256)
    device: str = _field("auto", "device: auto picks cuda, then mps, then cpu", choices=DEVICES)
    backend: str = _field("torch", "training engine: torch, or numpy (the tutorials' from-scratch MLPs)",
                          choices=BACKENDS)

    @classmethod
    def fields(cls) -> list[dataclasses.Field]:
        return list(dataclasses.fields(cls))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        """Build and validate a config from plain values (form, CLI, registry JSON)."""
        known = {f.name: f for f in cls.fields()}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ConfigError(f"unknown config field(s): {', '.join(unknown)}")
        converted = {}
        for name, value in values.items():
            kind = type(known[name].default)
            try:
                if kind is int and isinstance(value, float) and not value.is_integer():
                    raise ValueError
                if kind is int and isinstance(value, bool):
                    raise ValueError
                converted[name] = kind(value)
            except (TypeError, ValueError):
                raise ConfigError(f"{name}: expected {kind.__name__}, got {value!r}") from None
        config = cls(**converted)
        config.validate()
        return config

    def validate(self) -> "TrainConfig":
        """Raise ConfigError naming the first field of the wrong type or out of range (not admission)."""
        for f in self.fields():
            value, meta = getattr(self, f.name), f.metadata
            if type(value) is not type(f.default) and not (isinstance(f.default, float) and type(value) is int):
                raise ConfigError(f"{f.name}: expected {type(f.default).__name__}, got {value!r}")
            if meta["choices"] is not None and value not in meta["choices"]:
                raise ConfigError(f"{f.name}: {value!r} is not one of {', '.join(map(str, meta['choices']))}")
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"{f.name}: must be a finite number, got {value}")
            if problem := out_of_range(f, value):
                raise ConfigError(f"{f.name} {problem}, not {number(value)}")
        if self.val_size + max(self.train_size, 1) > 60_000:
            raise ConfigError(f"train_size + val_size must be at most 60,000, not {number(self.train_size)} + "
                              f"{number(self.val_size)}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def summary(self) -> str:
        size = self.train_size or "all"
        return (f"{self.model}, {self.optimizer} lr {self.lr:g}, batch {self.batch_size}, "
                f"{self.epochs} ep, {size} imgs" + (", affine" if self.augment == "affine" else ""))


# --- presets: each tutorial's recipe by name, plus fast and best --------------------------------

@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    overrides: dict
    reported: str = ""  # the article's own figure


PRESETS: dict[str, Preset] = {p.name: p for p in [
    Preset("tutorial-numpy-2layer",
           "Tutorial 1: 784-50-10 net, plain SGD, batch 100, 5 epochs (= 5 x 600 iterations). The article's lr "
           "0.001 was for raw 0-255 pixels; our models normalize inputs, so the rate is rescaled to 0.06 (measured "
           "to reproduce the article's figure).",
           dict(model="mlp-50", optimizer="sgd", lr=0.06, batch_size=100, epochs=5, schedule="none", backend="numpy"),
           "96.23% test accuracy"),
    Preset("tutorial-mlp-mse",
           "Tutorial 2: 784-256-64-10 MLP trained with MSE between its raw outputs and one-hot labels (no "
           "softmax: through a softmax the gradients vanish and the same recipe stalls near 40%), SGD lr 0.01 "
           "momentum 0.9, batch 512, 3 epochs.",
           dict(model="mlp-256-64", optimizer="sgd-momentum", lr=0.01, momentum=0.9, batch_size=512, epochs=3,
                loss="mse-logits", schedule="none"),
           "about 0.88 test accuracy"),
    Preset("tutorial-numpy-mlp90",
           "Tutorial 3: 784-90-10 net, squared error on softmax outputs, batch 100, 6 epochs, 50k train / 10k "
           "validation. The article's lr 10^-0.35 was for pixels / 255; with normalized inputs and a loss averaged "
           "over the 10 outputs too (F.mse_loss), the rate that reproduces its figure is 1.0 (measured).",
           dict(model="mlp-90", optimizer="sgd", lr=1.0, batch_size=100, epochs=6,
                loss="mse-onehot", schedule="none", val_size=10_000, backend="numpy"),
           "97.62% train, 96.84% validation, 96.71% test"),
    Preset("tutorial-lenet5",
           "Tutorial 4: LeNet-5, SGD lr 0.2, batch 64, 6 epochs on a 3,000-image subset (2,600 train, 200 dev), "
           "validating every 15 steps and keeping the best model.",
           dict(model="lenet5", optimizer="sgd", lr=0.2, batch_size=64, epochs=6, train_size=2_600, val_size=200,
                eval_every=15, schedule="none"),
           "best dev accuracy 96%, about 94% on its 200-image test set"),
    Preset("tutorial-cnn",
           "Tutorial 5: small CNN (8-16-32 channels), Adam lr 0.01, batch 64, 10 epochs.",
           dict(model="cnn-small", optimizer="adam", lr=0.01, batch_size=64, epochs=10, schedule="none"),
           "test accuracy printed after training (no figure in the text)"),
    Preset("fast",
           "LeNet-5 to 99% as fast as we can: AdamW (lr 0.02, weight decay 0.05) with a one-cycle schedule, "
           "3 epochs of batch 192 over all 60,000 training images (no validation split). Measured on this "
           "project's quiet 2-core AMD EPYC: 99.1-99.3% test accuracy, 9.1 s median (BENCHMARKS.md).",
           dict(model="lenet5", optimizer="adamw", lr=0.02, weight_decay=0.05, batch_size=192, epochs=3,
                schedule="onecycle", val_size=0)),
    Preset("best",
           "Our strongest recipe: cnn-strong with affine augmentation, AdamW one-cycle, 12 epochs (>= 99.5%).",
           dict(model="cnn-strong", optimizer="adamw", lr=0.004, weight_decay=0.01, batch_size=128, epochs=12,
                schedule="onecycle", augment="affine")),
]}


def preset_config(name: str, **overrides) -> TrainConfig:
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}: choose one of {', '.join(PRESETS)}")
    return TrainConfig.from_dict({**PRESETS[name].overrides, **overrides})

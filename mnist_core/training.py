"""Training: the config, the presets, and the loop.

`TrainConfig` is the one list of training fields: the CLI flags and the Train page's form are both
generated from it (each field's metadata holds its help text and allowed values), and every config,
wherever it comes from, passes through `TrainConfig.from_dict` / `validate()`.

`train(config, on_event, should_stop)` is the loop. It works on in-memory uint8 tensors (batches by
tensor indexing, no per-sample Python or PIL), reports events as plain dicts:

    {"kind": "step", "step", "epoch", "loss", "accuracy", "images_per_s", "total_steps"}
    {"kind": "val",  "step", "epoch", "loss", "accuracy"}
    {"kind": "test", "step", "epoch", "loss", "accuracy"}

keeps the weights that did best on validation (as tutorial 4's runner does), evaluates them on the
test set, and stops between steps when `should_stop()` says so. The same seed gives the same run on
CPU. The worker (worker.py) runs this for the CLI and the dashboard alike. `on_snapshot(model, step,
epoch)`, if given, sees the live model before the first step and at every validation point (the
worker records kernels and feature maps with it, see snapshots.py); it must only read the model.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from . import limits
from .data import DEFAULT_VAL_SIZE, load_mnist, train_val_indices
from .errors import ConfigError
from .models import create_model, list_models

OPTIMIZERS = ("sgd", "sgd-momentum", "adam", "adamw")
LOSSES = ("cross-entropy", "mse-onehot", "mse-logits")
SCHEDULES = ("none", "step", "onecycle")
AUGMENTS = ("none", "affine")
DEVICES = ("auto", "cpu", "cuda", "mps")
BACKENDS = ("torch", "numpy")


def _field(default, help: str, choices=None, low=None, high=None):
    """A config field with its help text and allowed values, read by validate(), the CLI and the form."""
    return field(default=default, metadata={"help": help, "choices": choices, "min": low, "max": high})


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
    train_size: int = _field(0, "training images to use, a random subset (0 = all that remain after validation)",
                             low=0, high=60_000)
    val_size: int = _field(DEFAULT_VAL_SIZE, "validation images carved from the training set", low=0, high=30_000)
    eval_every: int = _field(0, "validate every N steps (0 = once per epoch)", low=0, high=1_000_000)
    seed: int = _field(0, "random seed (same seed, same run on CPU)", low=0, high=2**31 - 1)
    threads: int = _field(0, "CPU threads (0 = one per core)", low=0, high=256)
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
        """Raise ConfigError naming the first field that is out of range."""
        for f in self.fields():
            value, meta = getattr(self, f.name), f.metadata
            if type(value) is not type(f.default) and not (isinstance(f.default, float) and type(value) is int):
                raise ConfigError(f"{f.name}: expected {type(f.default).__name__}, got {value!r}")
            if meta["choices"] is not None and value not in meta["choices"]:
                raise ConfigError(f"{f.name}: {value!r} is not one of {', '.join(map(str, meta['choices']))}")
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"{f.name}: must be a finite number, got {value}")
            if meta["min"] is not None and not (meta["min"] <= value <= meta["max"]):
                raise ConfigError(f"{f.name}: {value} is outside the allowed range {meta['min']} to {meta['max']}")
        if self.val_size + max(self.train_size, 1) > 60_000:
            raise ConfigError(f"train_size + val_size must be at most 60000, got {self.train_size} + {self.val_size}")
        if self.backend == "numpy":
            from .numpy_backend import check_config  # the from-scratch engine supports a subset
            check_config(self)
        limits.check_bounds(self)  # the host's cores, and a hosted public demo's bounds on the work
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
           dict(model="mlp-50", optimizer="sgd", lr=0.06, batch_size=100, epochs=5, schedule="none"),
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
                loss="mse-onehot", schedule="none", val_size=10_000),
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
           "3 epochs of batch 192 over all 60,000 training images (no validation split). About 99.2% test "
           "accuracy in about 5 s on 2 CPU cores (BENCHMARKS.md).",
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


# --- the loop -----------------------------------------------------------------------------------

@dataclass
class TrainResult:
    model: nn.Module
    status: str                      # "completed" or "cancelled"
    best_val_accuracy: Optional[float]
    test_accuracy: Optional[float]
    test_loss: Optional[float]
    steps: int
    seconds: float
    history: list = field(default_factory=list, repr=False)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: cuda was asked for but no CUDA GPU is available")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError("device: mps was asked for but is not available")
    return torch.device(name)


def available_devices() -> tuple[str, ...]:
    """The `device` values that can run on this machine: auto and cpu always, cuda and mps where torch sees
    them (the Train form offers only these)."""
    here = ["auto", "cpu"]
    if torch.cuda.is_available():
        here.append("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        here.append("mps")
    return tuple(here)


def make_optimizer(config: TrainConfig, params, capturable: bool = False) -> torch.optim.Optimizer:
    """The config's optimizer. `capturable` (CUDA graphs) keeps the learning rate in a device tensor,
    so the scheduler's updates reach a captured step, and Adam's step count on the device."""
    wd = config.weight_decay
    params = list(params)
    # The fused kernels update every tensor in one pass: measured 3x faster optimizer steps on CPU for
    # Adam/AdamW (0.6 -> 0.2 ms a step for LeNet-5), 2.4x for SGD with momentum (benchmarks/, BENCHMARKS.md).
    fused = {"fused": True} if params and all(p.device.type in ("cpu", "cuda") for p in params) else {}
    lr = torch.tensor(config.lr, device=params[0].device) if capturable else config.lr
    adam = {"capturable": True} if capturable else {}
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=wd, **fused)
    if config.optimizer == "sgd-momentum":
        return torch.optim.SGD(params, lr=lr, momentum=config.momentum, weight_decay=wd, **fused)
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd, **fused, **adam)
    return torch.optim.AdamW(params, lr=lr, weight_decay=wd, **fused, **adam)


def make_schedule(config: TrainConfig, optimizer, total_steps: int, cycle_momentum: bool = True):
    """The config's learning-rate schedule. `cycle_momentum=False` keeps momentum / beta1 fixed under
    onecycle (a captured CUDA graph holds them as constants)."""
    if config.schedule == "onecycle" and total_steps >= 10:  # shorter runs are too short for a cycle
        # (OneCycleLR divides by its phase lengths, which round to zero on a handful of steps)
        cycle_momentum = cycle_momentum and config.optimizer != "sgd"
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=total_steps,
                                                   pct_start=0.25, cycle_momentum=cycle_momentum)
    if config.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=max(1, (2 * total_steps) // 3), gamma=0.1)
    return None


def random_affine(x: torch.Tensor, generator: torch.Generator, degrees: float = 10.0,
                  scale: float = 0.1, shift: float = 2.0) -> torch.Tensor:
    """A different small rotation, scale and shift for every image of the batch, in one grid_sample."""
    n = x.shape[0]
    u = torch.rand(n, 4, generator=generator, device="cpu").to(x.device) * 2 - 1
    angle = u[:, 0] * math.radians(degrees)
    s = 1 + u[:, 1] * scale
    tx, ty = u[:, 2] * shift * 2 / 28, u[:, 3] * shift * 2 / 28
    cos, sin = torch.cos(angle) / s, torch.sin(angle) / s
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, align_corners=False, padding_mode="zeros")


def compute_loss(config: TrainConfig, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    if config.loss == "mse-onehot":
        return F.mse_loss(logits.softmax(1), F.one_hot(labels, 10).to(logits.dtype))
    if config.loss == "mse-logits":
        return F.mse_loss(logits, F.one_hot(labels, 10).to(logits.dtype))
    return F.cross_entropy(logits, labels)


def to_input(images_u8: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    x = images_u8.to(device, non_blocking=True).unsqueeze(1).float().div_(255)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


@torch.inference_mode()
def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, config: Optional[TrainConfig] = None,
             batch_size: int = 2000) -> tuple[float, float]:
    """(mean loss, accuracy) over uint8 images, in large inference-mode batches."""
    if len(images) == 0:
        return float("nan"), float("nan")
    device = next(model.parameters()).device
    config = config or TrainConfig()
    channels_last = uses_channels_last(model, device)
    was_training = model.training
    model.eval()
    total_loss, correct = 0.0, 0
    for i in range(0, len(images), batch_size):
        x = to_input(images[i:i + batch_size], device, channels_last)
        y = labels[i:i + batch_size].to(device)
        logits = model(x)
        total_loss += compute_loss(config, logits, y).item() * len(y)
        correct += (logits.argmax(1) == y).sum().item()
    model.train(was_training)
    return total_loss / len(images), correct / len(images)


def uses_channels_last(model: nn.Module, device: torch.device) -> bool:
    # channels_last makes oneDNN's CPU convolutions markedly faster (measured: ~1.7x on cnn-strong).
    # LeNet-5's convolutions run in fused kernels instead where they are built; there the layout
    # only costs weight copies (a step 2.36 -> 2.21 ms without it).
    if device.type == "cpu" and getattr(model, "fused_on_cpu", lambda: False)():
        return False
    return device.type == "cpu" and any(isinstance(m, nn.Conv2d) for m in model.modules())


def learn(model: nn.Module, optimizer: torch.optim.Optimizer, config: TrainConfig, x: torch.Tensor,
          y: torch.Tensor) -> torch.Tensor:
    """Forward, loss, backward and the optimizer's update on one batch (gradients already cleared, or
    static in a CUDA graph); returns [loss, batch accuracy] on the device, without a sync."""
    logits = model(x)
    loss = compute_loss(config, logits, y)
    loss.backward()
    optimizer.step()
    return torch.stack([loss.detach(), (logits.argmax(1) == y).float().mean()])


CUDA_GRAPHS = True  # benchmarks/gpu.py turns it off to time the eager steps beside the captured ones


class CudaGraphStep:
    """One whole training step (batch gather, forward, loss, backward, optimizer update) captured once
    as a CUDA graph and replayed for every full batch.

    A small net on a big GPU is bound by kernel launches, not arithmetic: eager LeNet-5 steps cost
    about 2.5 ms on an H100 whatever the batch size, nearly all of it Python and launch overhead
    (benchmarks/gpu.py, BENCHMARKS.md). A replay is one launch. Capturing needs a few warm-up steps
    on a side stream; they run on a throwaway batch, so the weights, buffers and optimizer state are
    put back afterwards and the run starts exactly where an eager one would.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, config: TrainConfig,
                 images: torch.Tensor, labels: torch.Tensor, warmup: int = 3):
        self.model, self.optimizer, self.config = model, optimizer, config
        self.images, self.labels = images, labels
        self.idx = torch.zeros(config.batch_size, dtype=torch.long, device=images.device)
        saved = [t.detach().clone() for t in model.state_dict().values()]
        try:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(warmup):
                    optimizer.zero_grad(set_to_none=True)
                    self._step()
            torch.cuda.current_stream().wait_stream(side)
            self.graph = torch.cuda.CUDAGraph()
            optimizer.zero_grad(set_to_none=True)
            with torch.cuda.graph(self.graph):
                self.result = self._step()
        finally:
            with torch.no_grad():
                for tensor, value in zip(model.state_dict().values(), saved):
                    tensor.copy_(value)
                for state in optimizer.state.values():  # Adam's moments and step, SGD's momentum buffer
                    for value in state.values():
                        if torch.is_tensor(value):
                            value.zero_()

    def _step(self) -> torch.Tensor:
        x = to_input(self.images[self.idx], self.images.device, channels_last=False)
        return learn(self.model, self.optimizer, self.config, x, self.labels[self.idx])

    def __call__(self, idx: torch.Tensor) -> torch.Tensor:
        """Train on the images at `idx` (exactly batch_size of them); returns [loss, accuracy]."""
        self.idx.copy_(idx)
        self.graph.replay()
        return self.result


def select_data(config: TrainConfig, gen: torch.Generator, data_root=None) -> tuple[torch.Tensor, ...]:
    """(x_train, y_train, x_val, y_val, x_test, y_test): the official training set split into train /
    validation, then an optional random subset (drawn from `gen`), and the test set. Both engines use it."""
    train_images, train_labels = load_mnist("train", root=data_root)
    test_images, test_labels = load_mnist("test", root=data_root)
    train_idx, val_idx = train_val_indices(len(train_images), config.val_size)
    if config.train_size:
        if config.train_size > len(train_idx):
            raise ConfigError(f"train_size: only {len(train_idx)} images remain after validation")
        train_idx = train_idx[torch.randperm(len(train_idx), generator=gen)[:config.train_size]].sort().values
    return (train_images[train_idx], train_labels[train_idx], train_images[val_idx], train_labels[val_idx],
            test_images, test_labels)


def run_loop(config: TrainConfig, n_train: int, shuffle: Callable[[], Any],
             train_step: Callable[[Any, int], tuple[float, float]], validate: Callable[[], Optional[tuple]],
             keep_best: Callable[[], None], emit: Callable[[dict], None], stop: Callable[[], bool],
             on_validate: Optional[Callable[[int, float], None]] = None) -> tuple[str, int, float]:
    """The loop both engines share: epochs of shuffled batches, a "step" event per batch, validation
    every eval_every steps (and at the end) keeping the best weights, cancel between steps.

    `shuffle()` gives an epoch's order of training indices; `train_step(indices, step)` trains on one
    batch and returns (loss, batch accuracy); `validate()` returns (loss, accuracy) or None without a
    validation set; `keep_best()` saves the current weights. Returns (status, steps, best accuracy).
    """
    steps_per_epoch = math.ceil(n_train / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    eval_every = config.eval_every or steps_per_epoch
    best_val, step, status = -1.0, 0, "completed"

    def validation(epoch: float) -> None:
        nonlocal best_val
        if on_validate:
            on_validate(step, epoch)
        result = validate()
        if result is None:
            return
        loss, acc = result
        emit({"kind": "val", "step": step, "epoch": epoch, "loss": loss, "accuracy": acc})
        if acc > best_val:
            best_val = acc
            keep_best()

    window_start, window_images = time.perf_counter(), 0
    for epoch in range(config.epochs):
        order = shuffle()
        for i in range(0, n_train, config.batch_size):
            if stop():
                status = "cancelled"
                break
            idx = order[i:i + config.batch_size]
            loss, acc = train_step(idx, step)
            step += 1
            window_images += len(idx)
            now = time.perf_counter()
            if not math.isfinite(loss):
                raise ConfigError(f"training diverged (loss is {loss}) at step {step}: try a smaller lr")
            emit({"kind": "step", "step": step, "epoch": epoch + (i + len(idx)) / n_train, "loss": loss,
                  "accuracy": acc, "images_per_s": window_images / max(now - window_start, 1e-9),
                  "total_steps": total_steps})
            if now - window_start > 2.0:  # images/s over a sliding ~2 s window
                window_start, window_images = now, 0
            if step % eval_every == 0:
                validation(epoch + (i + len(idx)) / n_train)
        if status == "cancelled":
            break
    if status == "completed" and step % eval_every != 0:
        validation(float(config.epochs))
    return status, step, best_val


def train(config: TrainConfig, on_event: Optional[Callable[[dict], None]] = None,
          should_stop: Optional[Callable[[], bool]] = None, data_root=None,
          on_snapshot: Optional[Callable[[nn.Module, int, float], None]] = None) -> TrainResult:
    """Train `config.model` as the config says; see the module docstring for the events."""
    config.validate()
    if config.backend == "numpy":
        from .numpy_backend import train_numpy
        return train_numpy(config, on_event=on_event, should_stop=should_stop, data_root=data_root)
    emit = on_event or (lambda event: None)
    stop = should_stop or (lambda: False)
    started = time.perf_counter()

    if config.threads:
        torch.set_num_threads(config.threads)
    else:
        torch.set_num_threads(os.cpu_count() or 1)
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    device = pick_device(config.device)

    x_train, y_train, x_val, y_val, test_images, test_labels = select_data(config, gen, data_root)
    if device.type != "cpu":  # keep the whole (small) dataset resident on the accelerator
        x_train, y_train = x_train.to(device), y_train.to(device)

    model = create_model(config.model).to(device)
    channels_last = uses_channels_last(model, device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    # On CUDA the step is captured as a graph (see CudaGraphStep); affine augmentation draws its
    # random transforms on the host, so it stays eager.
    graphs = (CUDA_GRAPHS and device.type == "cuda" and config.augment == "none"
              and len(x_train) >= config.batch_size)
    optimizer = make_optimizer(config, model.parameters(), capturable=graphs)
    total_steps = math.ceil(len(x_train) / config.batch_size) * config.epochs
    scheduler = make_schedule(config, optimizer, total_steps, cycle_momentum=not graphs)
    graphed = CudaGraphStep(model, optimizer, config, x_train, y_train) if graphs else None

    history: list[dict] = []
    best: dict = {}

    def record(event: dict) -> None:
        history.append(event)
        emit(event)

    def train_step(idx: torch.Tensor, step: int) -> tuple[float, float]:
        if graphed is not None and len(idx) == config.batch_size:
            result = graphed(idx)
        else:
            x = to_input(x_train[idx], device, channels_last)
            y = y_train[idx].to(device)
            if config.augment == "affine":
                x = random_affine(x, gen)
            optimizer.zero_grad(set_to_none=True)
            result = learn(model, optimizer, config, x, y)
        if scheduler is not None:
            scheduler.step()
        loss, acc = result.tolist()  # one device sync a step
        return loss, acc

    def keep_best() -> None:
        best["state"] = copy.deepcopy(model.state_dict())

    model.train()
    if on_snapshot:
        on_snapshot(model, 0, 0.0)
    status, step, best_val = run_loop(
        config, len(x_train), shuffle=lambda: torch.randperm(len(x_train), generator=gen).to(x_train.device),
        train_step=train_step, validate=lambda: evaluate(model, x_val, y_val, config) if len(x_val) else None,
        keep_best=keep_best, emit=record, stop=stop,
        on_validate=(lambda step, epoch: on_snapshot(model, step, epoch)) if on_snapshot else None)
    if "state" in best:
        model.load_state_dict(best["state"])

    test_loss = test_acc = None
    if status == "completed":
        test_loss, test_acc = evaluate(model, test_images, test_labels, config)
        record({"kind": "test", "step": step, "epoch": float(config.epochs), "loss": test_loss, "accuracy": test_acc})
    model = model.to("cpu").to(memory_format=torch.contiguous_format).eval()
    return TrainResult(model=model, status=status, best_val_accuracy=best_val if best_val >= 0 else None,
                       test_accuracy=test_acc, test_loss=test_loss, steps=step,
                       seconds=time.perf_counter() - started, history=history)

"""The training loop both engines share, read top to bottom.

`run(config, engine, ...)` is the whole recipe: epochs of shuffled batches; a "step" event per
batch; validation every `eval_every` steps (once per epoch when 0, and once more at the end if the
last step was not one), keeping the weights that did best on validation (as tutorial 4's runner
does); a stop check between steps (a cancel); and at the end the best weights put back, the test
set evaluated and a `TrainResult`. What differs between engines (how a batch is learned, how a set
is scored, what "the weights" are) sits behind the small `Engine` interface below: the torch engine
(torch_engine.py) and the from-scratch NumPy engine (numpy_engine.py).

Events are metric rows (records.MetricRow, the very rows the registry stores), in the order they
happen: a "train" row per step (loss and accuracy of the batch, images/s), a "val" row at each
validation, a "test" row at the end of a completed run.

`on_snapshot(model, step, epoch)`, if given and the engine has a torch model to show, sees the live
model before the first step, at every validation point and, with `snapshot_frames=N`, between them
every total_steps // N steps, so a replay has about N frames whatever the validation cadence (the
worker records kernels and feature maps with it, see snapshots.py); it must only read the model.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Protocol

import torch
from torch import nn

from ..data import load_mnist, train_val_indices
from ..errors import ConfigError
from ..records import MetricRow, RunStatus, metric_row
from .mixing import mix_in


@dataclass
class TrainResult:
    model: nn.Module                 # the trained model (the best on validation), on the CPU, in eval mode
    status: RunStatus                # COMPLETED or CANCELLED
    best_val_accuracy: Optional[float]
    test_accuracy: Optional[float]
    test_loss: Optional[float]
    steps: int
    seconds: float
    history: list = field(default_factory=list, repr=False)
    drawings_accuracy: Optional[float] = None  # on the held-out drawings, for a run trained on drawings


class Engine(Protocol):
    """What the loop asks of an engine. An engine is built for one config and holds its data and model."""

    n_train: int                          # training images
    n_val: int                            # validation images (0: no validation, no best-weight keeping)
    snapshot_model: Optional[nn.Module]   # the live torch model for on_snapshot, None when there is none

    def shuffle(self) -> Any:
        """An epoch's order of the training indices."""

    def train_step(self, idx: Any, step: int) -> tuple[float, float]:
        """Learn from the training images at `idx` (the `step`-th batch, from 0); (loss, batch accuracy)."""

    def evaluate(self, split: str) -> tuple[float, float]:
        """(mean loss, accuracy) on "val" or "test"."""

    def weights(self) -> Any:
        """A copy of the current weights, for load_weights."""

    def load_weights(self, weights: Any) -> None: ...

    def trained_model(self) -> nn.Module:
        """The zoo's torch model holding the current weights, on the CPU, in eval mode."""


def select_data(config, gen: torch.Generator, data_root=None) -> tuple[torch.Tensor, ...]:
    """(x_train, y_train, x_val, y_val, x_test, y_test): the official training set split into train /
    validation, then an optional random subset (drawn from `gen`), with a share of the visitors'
    drawings in it when the config asks (drawings_weight), and the test set. Both engines use it."""
    train_images, train_labels = load_mnist("train", root=data_root)
    test_images, test_labels = load_mnist("test", root=data_root)
    train_idx, val_idx = train_val_indices(len(train_images), config.val_size)
    if config.train_size:
        if config.train_size > len(train_idx):
            raise ConfigError(f"train_size: only {len(train_idx)} images remain after validation")
        train_idx = train_idx[torch.randperm(len(train_idx), generator=gen)[:config.train_size]].sort().values
    x_train, y_train = train_images[train_idx], train_labels[train_idx]
    if config.drawings_weight:  # the visitors' drawings in place of some of these (mixing.py)
        x_train, y_train = mix_in(config.drawings_weight, x_train, y_train, gen)
    return x_train, y_train, train_images[val_idx], train_labels[val_idx], test_images, test_labels


def run(config, engine: Engine, on_event: Optional[Callable[[MetricRow], None]] = None,
        should_stop: Optional[Callable[[], bool]] = None,
        on_snapshot: Optional[Callable[[nn.Module, int, float], None]] = None, snapshot_frames: int = 0,
        started: Optional[float] = None) -> TrainResult:
    """Train with `engine` as `config` says; see the module docstring for the events. `started`
    (time.perf_counter) is when the run began, setting up the engine included; default now."""
    started = time.perf_counter() if started is None else started
    emit = on_event or (lambda event: None)
    stop = should_stop or (lambda: False)
    snapshot = on_snapshot if engine.snapshot_model is not None else None
    history: list[MetricRow] = []

    def record(event: MetricRow) -> None:
        history.append(event)
        emit(event)

    n_train, batch_size = engine.n_train, config.batch_size
    steps_per_epoch = math.ceil(n_train / batch_size)
    eval_every = config.eval_every or steps_per_epoch
    snapshot_every = max(1, steps_per_epoch * config.epochs // snapshot_frames) if snapshot_frames else 0
    step, status = 0, RunStatus.COMPLETED
    best_val, best_weights = -1.0, None

    def validate(epoch: float) -> None:
        nonlocal best_val, best_weights
        if snapshot:
            snapshot(engine.snapshot_model, step, epoch)
        if not engine.n_val:
            return
        loss, acc = engine.evaluate("val")
        record(metric_row("val", step, epoch, loss, acc))
        if acc > best_val:
            best_val, best_weights = acc, engine.weights()

    if snapshot:
        snapshot(engine.snapshot_model, 0, 0.0)
    window_start, window_images = time.perf_counter(), 0  # images/s over a sliding ~2 s window
    for epoch in range(config.epochs):
        order = engine.shuffle()
        for i in range(0, n_train, batch_size):
            if stop():
                status = RunStatus.CANCELLED
                break
            idx = order[i:i + batch_size]
            loss, acc = engine.train_step(idx, step)
            step += 1
            if not math.isfinite(loss):
                raise ConfigError(f"training diverged (loss is {loss}) at step {step}: try a smaller lr")
            window_images += len(idx)
            now = time.perf_counter()
            epoch_done = epoch + (i + len(idx)) / n_train
            record(metric_row("train", step, epoch_done, loss, acc, window_images / max(now - window_start, 1e-9)))
            if now - window_start > 2.0:
                window_start, window_images = now, 0
            if step % eval_every == 0:
                validate(epoch_done)  # a frame too
            elif snapshot and snapshot_every and step % snapshot_every == 0:
                snapshot(engine.snapshot_model, step, epoch_done)
        if status == RunStatus.CANCELLED:
            break
    if status == RunStatus.COMPLETED and step % eval_every != 0:
        validate(float(config.epochs))

    # The end of a run: the best weights back, the test set once (a cancelled run has no score), the result.
    if best_weights is not None:
        engine.load_weights(best_weights)
    test_loss = test_acc = None
    if status == RunStatus.COMPLETED:
        test_loss, test_acc = engine.evaluate("test")
        record(metric_row("test", step, float(config.epochs), test_loss, test_acc))
    return TrainResult(model=engine.trained_model(), status=status,
                       best_val_accuracy=best_val if best_val >= 0 else None, test_accuracy=test_acc,
                       test_loss=test_loss, steps=step, seconds=time.perf_counter() - started, history=history)

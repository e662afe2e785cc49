"""The numpy backend: the tutorials' from-scratch MLPs (scratch/mlp.py) trained like any run.

`train_numpy(config, ...)` is what `training.train()` calls when `config.backend == "numpy"`. It
uses the torch engine's data (the same train / validation split and, for a seed, the same training
subset), emits the same events, keeps the best-on-validation weights, honours `should_stop()`
between steps and gives the same run for the same seed. At the end the weights are copied into
the zoo's torch model of the same name, so checkpoints, `load_checkpoint` and prediction work
unchanged.

Initialisation follows the tutorial each architecture comes from: mlp-50 (tutorial 1) draws its
weights from N(0, 0.01^2); mlp-90 (tutorial 3) and the deeper MLPs use Xavier-uniform. Biases
start at 0.

`check_config` says what the backend supports: the zoo's MLPs, sgd / sgd-momentum, both losses,
no schedule or the step schedule, no augmentation, on the CPU. `threads` is the number of BLAS
threads here, and 0 means one: a batch's matrices are too small for more to pay (scratch/blas.py).
"""

from __future__ import annotations

import math
import time
from typing import Callable, Optional

import numpy as np
import torch
from torch import nn

from .data import MNIST_MEAN, MNIST_STD, load_mnist, train_val_indices
from .errors import ConfigError
from .models import create_model
from .scratch.blas import blas_threads
from .scratch.mlp import LOSSES, MLP, SGD, normal_init, xavier_uniform_init

INITS = {"mlp-50": normal_init, "mlp-90": xavier_uniform_init, "mlp-256-64": xavier_uniform_init,
         "mlp-128-64": xavier_uniform_init}
SUPPORTED = {
    "model": tuple(INITS),
    "optimizer": ("sgd", "sgd-momentum"),
    "loss": tuple(LOSSES),
    "schedule": ("none", "step"),
    "augment": ("none",),
    "device": ("auto", "cpu"),
}


def check_config(config) -> None:
    """Raise ConfigError, naming the field, for a setting the numpy backend does not support."""
    for name, allowed in SUPPORTED.items():
        value = getattr(config, name)
        if value not in allowed:
            raise ConfigError(f"{name}: the numpy backend supports {', '.join(allowed)}, not {value!r}")


# --- between the NumPy net and the zoo's torch model ---------------------------------------------

def _linears(model: nn.Module) -> list[nn.Linear]:
    return [m for m in model.modules() if isinstance(m, nn.Linear)]


def mlp_for(model: nn.Module, init=xavier_uniform_init, rng: Optional[np.random.Generator] = None,
            dtype=np.float32) -> MLP:
    """A freshly initialised NumPy MLP with the layer sizes of a zoo MLP."""
    linears = _linears(model)
    sizes = [linears[0].in_features] + [m.out_features for m in linears]
    return MLP(sizes, init=init, rng=rng, mean=MNIST_MEAN, std=MNIST_STD, dtype=dtype)


def copy_to_torch(net: MLP, model: nn.Module) -> nn.Module:
    """Copy the NumPy weights into the zoo model (torch's Linear keeps W transposed)."""
    with torch.no_grad():
        for affine, linear in zip(net.affines, _linears(model), strict=True):
            linear.weight.copy_(torch.from_numpy(np.ascontiguousarray(affine.params["W"].T)))
            linear.bias.copy_(torch.from_numpy(affine.params["b"]))
    return model


def copy_from_torch(model: nn.Module, net: MLP) -> MLP:
    """Copy the zoo model's weights into the NumPy net (the reverse of copy_to_torch)."""
    for affine, linear in zip(net.affines, _linears(model), strict=True):
        affine.params["W"][...] = linear.weight.detach().cpu().numpy().T
        affine.params["b"][...] = linear.bias.detach().cpu().numpy()
    return net


# --- the loop -------------------------------------------------------------------------------------

def to_input(images_u8: np.ndarray) -> np.ndarray:
    """uint8 [N,28,28] -> float32 [N,1,28,28] in [0,1], what every zoo model takes."""
    return (images_u8.astype(np.float32) / 255)[:, None]


def evaluate_numpy(net: MLP, loss_layer, images_u8: np.ndarray, labels: np.ndarray,
                   batch_size: int = 2000) -> tuple[float, float]:
    """(mean loss, accuracy) over uint8 images, as training.evaluate computes them."""
    if len(images_u8) == 0:
        return float("nan"), float("nan")
    total_loss, correct = 0.0, 0
    for i in range(0, len(images_u8), batch_size):
        y = labels[i:i + batch_size]
        logits = net.forward(to_input(images_u8[i:i + batch_size]))
        total_loss += loss_layer.forward(logits, y) * len(y)
        correct += int((logits.argmax(axis=1) == y).sum())
    return total_loss / len(images_u8), correct / len(images_u8)


def train_numpy(config, on_event: Optional[Callable[[dict], None]] = None,
                should_stop: Optional[Callable[[], bool]] = None, data_root=None):
    """Train `config.model` with the NumPy net; returns a training.TrainResult holding the torch model."""
    config.validate()
    with blas_threads(config.threads or 1):
        return _train(config, on_event, should_stop, data_root)


def _train(config, on_event, should_stop, data_root):
    from .training import TrainResult  # training imports this module lazily; import it back the same way

    emit = on_event or (lambda event: None)
    stop = should_stop or (lambda: False)
    started = time.perf_counter()
    rng = np.random.default_rng(config.seed)

    # Data: the torch engine's split, and its subset for this seed (same generator, same draws).
    train_images, train_labels = load_mnist("train", root=data_root)
    test_images, test_labels = load_mnist("test", root=data_root)
    train_idx, val_idx = train_val_indices(len(train_images), config.val_size)
    if config.train_size:
        if config.train_size > len(train_idx):
            raise ConfigError(f"train_size: only {len(train_idx)} images remain after validation")
        gen = torch.Generator().manual_seed(config.seed)
        train_idx = train_idx[torch.randperm(len(train_idx), generator=gen)[:config.train_size]].sort().values
    x_train, y_train = train_images[train_idx].numpy(), train_labels[train_idx].numpy()
    x_val, y_val = train_images[val_idx].numpy(), train_labels[val_idx].numpy()
    x_test, y_test = test_images.numpy(), test_labels.numpy()

    model = create_model(config.model)
    net = mlp_for(model, init=INITS[config.model], rng=rng)
    loss_layer = LOSSES[config.loss]()
    optimizer = SGD(net.affines, lr=config.lr, weight_decay=config.weight_decay,
                    momentum=config.momentum if config.optimizer == "sgd-momentum" else 0.0)
    steps_per_epoch = math.ceil(len(x_train) / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    step_size = max(1, (2 * total_steps) // 3)  # the step schedule: x0.1 at 2/3 of the run, as StepLR
    eval_every = config.eval_every or steps_per_epoch

    best_weights, best_val = None, -1.0
    step, status = 0, "completed"
    history: list[dict] = []

    def record(event: dict) -> None:
        history.append(event)
        emit(event)

    def validate(epoch: float) -> None:
        nonlocal best_weights, best_val
        if len(x_val) == 0:
            return
        loss, acc = evaluate_numpy(net, loss_layer, x_val, y_val)
        record({"kind": "val", "step": step, "epoch": epoch, "loss": loss, "accuracy": acc})
        if acc > best_val:
            best_val, best_weights = acc, net.get_weights()

    window_start, window_images = time.perf_counter(), 0
    for epoch in range(config.epochs):
        perm = rng.permutation(len(x_train))
        for i in range(0, len(x_train), config.batch_size):
            if stop():
                status = "cancelled"
                break
            idx = perm[i:i + config.batch_size]
            x, y = to_input(x_train[idx]), y_train[idx]
            logits = net.forward(x)
            loss = loss_layer.forward(logits, y)
            net.backward(loss_layer.backward())
            if config.schedule == "step":
                optimizer.lr = config.lr * 0.1 ** (step // step_size)
            optimizer.step()
            step += 1
            window_images += len(y)
            now = time.perf_counter()
            if not math.isfinite(loss):
                raise ConfigError(f"training diverged (loss is {loss}) at step {step}: try a smaller lr")
            record({"kind": "step", "step": step, "epoch": epoch + (i + len(y)) / len(x_train),
                    "loss": loss, "accuracy": float((logits.argmax(axis=1) == y).mean()),
                    "images_per_s": window_images / max(now - window_start, 1e-9), "total_steps": total_steps})
            if now - window_start > 2.0:  # images/s over a sliding ~2 s window
                window_start, window_images = now, 0
            if step % eval_every == 0:
                validate(epoch + (i + len(y)) / len(x_train))
        if status == "cancelled":
            break

    if status == "completed" and step % eval_every != 0:
        validate(float(config.epochs))
    if best_weights is not None:
        net.set_weights(best_weights)

    test_loss = test_acc = None
    if status == "completed":
        test_loss, test_acc = evaluate_numpy(net, loss_layer, x_test, y_test)
        record({"kind": "test", "step": step, "epoch": float(config.epochs), "loss": test_loss, "accuracy": test_acc})
    model = copy_to_torch(net, model).eval()
    return TrainResult(model=model, status=status, best_val_accuracy=best_val if best_val >= 0 else None,
                       test_accuracy=test_acc, test_loss=test_loss, steps=step,
                       seconds=time.perf_counter() - started, history=history)

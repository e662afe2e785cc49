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

from .data import MNIST_MEAN, MNIST_STD
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
    from .training import TrainResult, run_loop, select_data  # training imports this module lazily

    emit = on_event or (lambda event: None)
    stop = should_stop or (lambda: False)
    started = time.perf_counter()
    rng = np.random.default_rng(config.seed)

    # Data: the torch engine's split, and its subset for this seed (same generator, same draws).
    data = select_data(config, torch.Generator().manual_seed(config.seed), data_root)
    x_train, y_train, x_val, y_val, x_test, y_test = (t.numpy() for t in data)

    model = create_model(config.model)
    net = mlp_for(model, init=INITS[config.model], rng=rng)
    loss_layer = LOSSES[config.loss]()
    optimizer = SGD(net.affines, lr=config.lr, weight_decay=config.weight_decay,
                    momentum=config.momentum if config.optimizer == "sgd-momentum" else 0.0)
    total_steps = math.ceil(len(x_train) / config.batch_size) * config.epochs
    step_size = max(1, (2 * total_steps) // 3)  # the step schedule: x0.1 at 2/3 of the run, as StepLR
    history: list[dict] = []
    best: dict = {}

    def record(event: dict) -> None:
        history.append(event)
        emit(event)

    def train_step(idx: np.ndarray, step: int) -> tuple[float, float]:
        x, y = to_input(x_train[idx]), y_train[idx]
        logits = net.forward(x)
        loss = loss_layer.forward(logits, y)
        net.backward(loss_layer.backward())
        if config.schedule == "step":
            optimizer.lr = config.lr * 0.1 ** (step // step_size)
        optimizer.step()
        return float(loss), float((logits.argmax(axis=1) == y).mean())

    def keep_best() -> None:
        best["weights"] = net.get_weights()

    status, step, best_val = run_loop(
        config, len(x_train), shuffle=lambda: rng.permutation(len(x_train)), train_step=train_step,
        validate=lambda: evaluate_numpy(net, loss_layer, x_val, y_val) if len(x_val) else None,
        keep_best=keep_best, emit=record, stop=stop)
    if "weights" in best:
        net.set_weights(best["weights"])

    test_loss = test_acc = None
    if status == "completed":
        test_loss, test_acc = evaluate_numpy(net, loss_layer, x_test, y_test)
        record({"kind": "test", "step": step, "epoch": float(config.epochs), "loss": test_loss, "accuracy": test_acc})
    model = copy_to_torch(net, model).eval()
    return TrainResult(model=model, status=status, best_val_accuracy=best_val if best_val >= 0 else None,
                       test_accuracy=test_acc, test_loss=test_loss, steps=step,
                       seconds=time.perf_counter() - started, history=history)

"""The NumPy engine: the tutorials' from-scratch MLPs (scratch/mlp.py) trained like any run.

`NumpyEngine(config)` is what `training.train()` uses when `config.backend == "numpy"`: the shared
loop (loop.py) drives it, so it emits the same events, keeps the best-on-validation weights and
honours `should_stop()` between steps like the torch engine. It uses the torch engine's data (the
same train / validation split and, for a seed, the same training subset) and gives the same run for
the same seed. At the end the weights are copied into the zoo's torch model of the same name, so
checkpoints, `load_checkpoint` and prediction work unchanged.

Initialisation follows the tutorial each architecture comes from: mlp-50 (tutorial 1) draws its
weights from N(0, 0.01^2); mlp-90 (tutorial 3) and the deeper MLPs use Xavier-uniform. Biases
start at 0.

`SUPPORTED` says what the engine supports (admission.py refuses the rest): the zoo's MLPs, sgd / sgd-momentum,
both losses, no schedule or the step schedule, no augmentation, on the CPU. `threads` is the number of BLAS
threads here, and 0 means one: a batch's matrices are too small for more to pay (scratch/blas.py).
"""

from __future__ import annotations

import contextlib
import math
from typing import Optional

import numpy as np
import torch
from torch import nn

from ..data import MNIST_MEAN, MNIST_STD
from ..models import create_model
from ..scratch.blas import blas_threads
from ..scratch.mlp import LOSSES, MLP, SGD, normal_init, xavier_uniform_init
from .loop import select_data

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


# --- the engine -----------------------------------------------------------------------------------

def to_input(images_u8: np.ndarray) -> np.ndarray:
    """uint8 [N,28,28] -> float32 [N,1,28,28] in [0,1], what every zoo model takes."""
    return (images_u8.astype(np.float32) / 255)[:, None]


def evaluate_numpy(net: MLP, loss_layer, images_u8: np.ndarray, labels: np.ndarray,
                   batch_size: int = 2000) -> tuple[float, float]:
    """(mean loss, accuracy) over uint8 images, as the torch engine's evaluate computes them."""
    if len(images_u8) == 0:
        return float("nan"), float("nan")
    total_loss, correct = 0.0, 0
    for i in range(0, len(images_u8), batch_size):
        y = labels[i:i + batch_size]
        logits = net.forward(to_input(images_u8[i:i + batch_size]))
        total_loss += loss_layer.forward(logits, y) * len(y)
        correct += int((logits.argmax(axis=1) == y).sum())
    return total_loss / len(images_u8), correct / len(images_u8)


class NumpyEngine:
    """The loop's engine for the NumPy MLPs (see loop.Engine). It has no torch model to snapshot."""

    snapshot_model = None

    def __init__(self, config, data_root=None, cuda_graphs: bool = False):  # cuda_graphs: no GPU here
        self.config = config
        self.rng = np.random.default_rng(config.seed)
        # Data: the torch engine's split, and its subset for this seed (same generator, same draws).
        data = select_data(config, torch.Generator().manual_seed(config.seed), data_root)
        self.x_train, self.y_train, self.x_val, self.y_val, self.x_test, self.y_test = (t.numpy() for t in data)
        self.n_train, self.n_val = len(self.x_train), len(self.x_val)

        self.model = create_model(config.model)
        self.net = mlp_for(self.model, init=INITS[config.model], rng=self.rng)
        self.loss_layer = LOSSES[config.loss]()
        self.optimizer = SGD(self.net.affines, lr=config.lr, weight_decay=config.weight_decay,
                             momentum=config.momentum if config.optimizer == "sgd-momentum" else 0.0)
        total_steps = math.ceil(self.n_train / config.batch_size) * config.epochs
        self.step_size = max(1, (2 * total_steps) // 3)  # the step schedule: x0.1 at 2/3 of the run, as StepLR

    @staticmethod
    def threads(config) -> contextlib.AbstractContextManager:
        """`threads` BLAS threads, and 0 means one: a batch's matrices are too small for more to pay."""
        return blas_threads(config.threads or 1)

    def shuffle(self) -> np.ndarray:
        return self.rng.permutation(self.n_train)

    def train_step(self, idx: np.ndarray, step: int) -> tuple[float, float]:
        x, y = to_input(self.x_train[idx]), self.y_train[idx]
        logits = self.net.forward(x)
        loss = self.loss_layer.forward(logits, y)
        self.net.backward(self.loss_layer.backward())
        if self.config.schedule == "step":
            self.optimizer.lr = self.config.lr * 0.1 ** (step // self.step_size)
        self.optimizer.step()
        return float(loss), float((logits.argmax(axis=1) == y).mean())

    def evaluate(self, split: str) -> tuple[float, float]:
        images, labels = (self.x_val, self.y_val) if split == "val" else (self.x_test, self.y_test)
        return evaluate_numpy(self.net, self.loss_layer, images, labels)

    def weights(self) -> list:
        return self.net.get_weights()

    def load_weights(self, weights: list) -> None:
        self.net.set_weights(weights)

    def trained_model(self) -> nn.Module:
        return copy_to_torch(self.net, self.model).eval()

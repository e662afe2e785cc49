"""A multilayer perceptron from scratch in NumPy: tutorials 1 and 3, layer by layer.

Every layer has `forward(x)`, which caches what its backward pass will need, and `backward(dout)`,
which takes dL/d(output) and returns dL/d(input); a layer with weights also fills `grads` (same keys
as `params`) as it goes. A batch is a block of rows, so every pass is a few whole-array operations
with no per-sample Python. The layers work in whatever float dtype they are given: training runs
in float32, the gradient checks in float64.

The net mirrors the torch zoo's MLPs (models.py) exactly: flatten, normalize with MNIST's mean and
std, then affine / ReLU pairs and a last affine layer that gives the logits. Its weights are stored
as the tutorials write them, x @ W + b with W of shape [in, out] (torch's Linear keeps W.T).
"""

from __future__ import annotations

from typing import Callable, Optional

import numpy as np

# --- layers -------------------------------------------------------------------------------------

class Flatten:
    def forward(self, x: np.ndarray) -> np.ndarray:
        self.shape = x.shape
        return x.reshape(len(x), -1)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return dout.reshape(self.shape)


class Normalize:
    """(x - mean) / std, as every zoo model does inside its forward."""

    def __init__(self, mean: float, std: float):
        self.mean, self.std = mean, std

    def forward(self, x: np.ndarray) -> np.ndarray:
        return (x - self.mean) / self.std

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return dout / self.std


class Affine:
    """y = x @ W + b."""

    def __init__(self, weight: np.ndarray, bias: np.ndarray):
        self.params = {"W": weight, "b": bias}
        self.grads = {"W": np.zeros_like(weight), "b": np.zeros_like(bias)}

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.x = x
        return x @ self.params["W"] + self.params["b"]

    def backward(self, dout: np.ndarray) -> np.ndarray:
        self.grads["W"] = self.x.T @ dout
        self.grads["b"] = dout.sum(axis=0)
        return dout @ self.params["W"].T


class ReLU:
    def forward(self, x: np.ndarray) -> np.ndarray:
        self.off = x <= 0
        return np.where(self.off, 0, x)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return np.where(self.off, 0, dout)


# --- losses: softmax on the logits, then a loss against the labels ------------------------------

def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)  # exp of large logits would overflow
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def one_hot(labels: np.ndarray, classes: int, dtype) -> np.ndarray:
    out = np.zeros((len(labels), classes), dtype=dtype)
    out[np.arange(len(labels)), labels] = 1
    return out


class SoftmaxCrossEntropy:
    """Tutorial 1's last layer: mean cross-entropy of softmax(logits), like F.cross_entropy.

    Its backward is the famous (p - onehot) / N: the softmax's Jacobian and the log's derivative
    cancel to that, which is why the tutorials fuse the two into one layer.
    """

    def forward(self, logits: np.ndarray, labels: np.ndarray) -> float:
        self.p = softmax(logits)
        self.labels = labels
        z = logits - logits.max(axis=1, keepdims=True)
        log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))  # log-sum-exp, stable for confident nets
        return float(-log_p[np.arange(len(labels)), labels].mean())

    def backward(self) -> np.ndarray:
        d = self.p.copy()
        d[np.arange(len(self.labels)), self.labels] -= 1
        return d / len(self.labels)


class SoftmaxSquaredError:
    """Tutorial 3's loss: squared error between softmax(logits) and one-hot labels.

    Averaged over all N x 10 elements, as F.mse_loss(softmax(logits), one_hot) in the torch engine.
    """

    def forward(self, logits: np.ndarray, labels: np.ndarray) -> float:
        self.p = softmax(logits)
        self.target = one_hot(labels, logits.shape[1], logits.dtype)
        return float(((self.p - self.target) ** 2).mean())

    def backward(self) -> np.ndarray:
        g = 2 * (self.p - self.target) / self.p.size  # dL/dp
        # Through the softmax: dL/dz_i = p_i * (g_i - sum_j g_j p_j), its Jacobian without building it.
        return self.p * (g - (g * self.p).sum(axis=1, keepdims=True))


class SquaredError:
    """Tutorial 2's loss: squared error between the raw outputs (the logits, no softmax) and one-hot labels.

    Averaged over all N x 10 elements, as F.mse_loss(logits, one_hot) in the torch engine. Without the
    softmax in between its gradient does not vanish when an output saturates, which is why the article's
    MLP learns with it in 3 epochs where softmax + squared error stays near 40%.
    """

    def forward(self, logits: np.ndarray, labels: np.ndarray) -> float:
        self.diff = logits - one_hot(labels, logits.shape[1], logits.dtype)
        return float((self.diff ** 2).mean())

    def backward(self) -> np.ndarray:
        return 2 * self.diff / self.diff.size


LOSSES = {"cross-entropy": SoftmaxCrossEntropy, "mse-onehot": SoftmaxSquaredError, "mse-logits": SquaredError}


# --- initialisations: (n_in, n_out, rng, dtype) -> (W, b) -----------------------------------------

Init = Callable[[int, int, np.random.Generator, type], tuple[np.ndarray, np.ndarray]]


def normal_init(n_in: int, n_out: int, rng: np.random.Generator, dtype=np.float32):
    """Tutorial 1: weights N(0, 0.01^2) (std 0.01), biases 0."""
    return (0.01 * rng.standard_normal((n_in, n_out))).astype(dtype), np.zeros(n_out, dtype)


def xavier_uniform_init(n_in: int, n_out: int, rng: np.random.Generator, dtype=np.float32):
    """Tutorial 3: weights U(-a, a) with a = sqrt(6 / (n_in + n_out)) (Glorot & Bengio 2010), biases 0."""
    a = np.sqrt(6 / (n_in + n_out))
    return rng.uniform(-a, a, (n_in, n_out)).astype(dtype), np.zeros(n_out, dtype)


# --- the net --------------------------------------------------------------------------------------

class MLP:
    """Flatten -> Normalize -> (Affine -> ReLU) x k -> Affine; `sizes` = (784, hidden..., 10)."""

    def __init__(self, sizes, init: Init = xavier_uniform_init, rng: Optional[np.random.Generator] = None,
                 mean: float = 0.0, std: float = 1.0, dtype=np.float32):
        rng = rng if rng is not None else np.random.default_rng(0)
        self.sizes = tuple(sizes)
        self.layers = [Flatten(), Normalize(mean, std)]
        for i, (n_in, n_out) in enumerate(zip(self.sizes, self.sizes[1:]), start=1):
            self.layers.append(Affine(*init(n_in, n_out, rng, dtype)))
            if i < len(self.sizes) - 1:
                self.layers.append(ReLU())

    @property
    def affines(self) -> list[Affine]:
        return [layer for layer in self.layers if isinstance(layer, Affine)]

    def forward(self, x: np.ndarray) -> np.ndarray:
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def backward(self, dout: np.ndarray) -> np.ndarray:
        for layer in reversed(self.layers):
            dout = layer.backward(dout)
        return dout

    def get_weights(self) -> list[np.ndarray]:
        """Copies of every W and b, in order (to keep the best weights, or to save them)."""
        return [p.copy() for a in self.affines for p in (a.params["W"], a.params["b"])]

    def set_weights(self, weights: list[np.ndarray]) -> None:
        for i, a in enumerate(self.affines):
            a.params["W"][...] = weights[2 * i]
            a.params["b"][...] = weights[2 * i + 1]


# --- the optimizer ------------------------------------------------------------------------------

class SGD:
    """Stochastic gradient descent with optional momentum and L2 weight decay.

    The update is torch.optim.SGD's, step for step: g += wd * w; buf = momentum * buf + g (buf = g
    on the first step); w -= lr * buf. Weights are updated in place, so a layer keeps its arrays.
    """

    def __init__(self, layers: list[Affine], lr: float, momentum: float = 0.0, weight_decay: float = 0.0):
        self.layers, self.lr, self.momentum, self.weight_decay = layers, lr, momentum, weight_decay
        self.buffers: dict[tuple[int, str], np.ndarray] = {}

    def step(self) -> None:
        for i, layer in enumerate(self.layers):
            for name, w in layer.params.items():
                g = layer.grads[name]
                if self.weight_decay:
                    g = g + self.weight_decay * w
                if self.momentum:
                    buf = self.buffers.get((i, name))
                    if buf is None:
                        buf = self.buffers[(i, name)] = g.copy()
                    else:
                        buf *= self.momentum
                        buf += g
                    g = buf
                w -= self.lr * g

"""Tutorial 4's point, in NumPy: a convolution is a matrix multiply once the patches are unrolled.

`conv2d` unrolls every receptive field of the input into one column (im2col), so the whole
batch's convolution is a single [C_out, C*kh*kw] @ [C*kh*kw, N*OH*OW] product; `max_pool2d` and
`avg_pool2d` combine strided views of the input. No Python loop runs over images, channels or
positions. Arrays are NCHW, like torch's.

`lenet5_speed_table()` times each operator against torch's on LeNet-5's layer shapes and checks
they agree: rows of (layer, operation, numpy ms, torch ms, max abs diff), ready for a table.
"""

from __future__ import annotations

import functools
import time
from typing import Callable, Optional

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .blas import blas_threads


def im2col(x: np.ndarray, kh: int, kw: int, stride: int = 1) -> np.ndarray:
    """[N, C, H, W] -> [C*kh*kw, N*OH*OW]: every receptive field as one column, ordered as torch's weights."""
    windows = sliding_window_view(x, (kh, kw), axis=(2, 3))[:, :, ::stride, ::stride]  # a view: N,C,OH,OW,kh,kw
    c = x.shape[1]
    # The one copy. Columns (rather than rows) keep N*OH*OW the long, contiguous axis, which made the
    # copy and the product below about twice as fast on LeNet-5's C1 and C3 (measured).
    return windows.transpose(1, 4, 5, 0, 2, 3).reshape(c * kh * kw, -1)


def conv2d(x: np.ndarray, weight: np.ndarray, bias: Optional[np.ndarray] = None, stride: int = 1,
           padding: int = 0) -> np.ndarray:
    """Cross-correlation as torch's conv2d computes it: x [N,C,H,W], weight [C_out,C,kh,kw] -> [N,C_out,OH,OW]."""
    if padding:
        x = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    n = x.shape[0]
    c_out, _, kh, kw = weight.shape
    oh = (x.shape[2] - kh) // stride + 1
    ow = (x.shape[3] - kw) // stride + 1
    out = weight.reshape(c_out, -1) @ im2col(x, kh, kw, stride)  # [C_out, N*OH*OW]
    if bias is not None:
        out += bias[:, None]
    return np.ascontiguousarray(out.reshape(c_out, n, oh, ow).transpose(1, 0, 2, 3))


def _window_offsets(x: np.ndarray, kernel: int, stride: Optional[int]):
    """The kernel*kernel strided views [N,C,OH,OW] holding each window's element (i, j)."""
    stride = stride or kernel
    oh = (x.shape[2] - kernel) // stride + 1
    ow = (x.shape[3] - kernel) // stride + 1
    return [x[:, :, i:i + stride * (oh - 1) + 1:stride, j:j + stride * (ow - 1) + 1:stride]
            for i in range(kernel) for j in range(kernel)]


# Pooling combines the kernel*kernel shifted views element-wise: a loop over window offsets (4 for
# 2x2), each step a whole-array operation. Reducing a sliding-window view over its last two axes
# instead was an order of magnitude slower (measured on S2; BENCHMARKS.md).

def max_pool2d(x: np.ndarray, kernel: int = 2, stride: Optional[int] = None) -> np.ndarray:
    """The largest value of every kernel x kernel window (stride defaults to kernel, as in torch)."""
    return functools.reduce(np.maximum, _window_offsets(x, kernel, stride))


def avg_pool2d(x: np.ndarray, kernel: int = 2, stride: Optional[int] = None) -> np.ndarray:
    """The mean of every kernel x kernel window (stride defaults to kernel, as in torch)."""
    return sum(_window_offsets(x, kernel, stride)) / (kernel * kernel)


# --- the speed table --------------------------------------------------------------------------------

def _fastest_ms(fn: Callable[[], object], repeats: int):
    """Run fn once to warm up, then `repeats` times; (its last output, the fastest time in ms)."""
    out = fn()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return out, best * 1000


def lenet5_speed_table(batch_size: int = 64, repeats: int = 5, seed: int = 0, model=None) -> list[dict]:
    """NumPy (im2col) operators against torch's on LeNet-5's layers, one row per layer.

    Each row: {"layer", "operation", "numpy ms", "torch ms", "max abs diff"} for a float32 batch of
    `batch_size` random inputs of that layer's shape. Times are the fastest of `repeats` runs, with
    NumPy's BLAS on as many threads as torch uses. The convolutions use the weights of `model` (a
    lenet5 from the zoo, e.g. a loaded checkpoint) when given, else random ones.
    """
    import torch  # here, not above: everything else in scratch/ is plain NumPy
    import torch.nn.functional as F

    rng = np.random.default_rng(seed)

    def conv_weights(name: str, c_in: int, c_out: int):
        if model is not None:
            conv = model.body.get_submodule(f"{name}.conv")
            return conv.weight.detach().cpu().numpy(), conv.bias.detach().cpu().numpy()
        bound = 1 / np.sqrt(c_in * 25)  # torch's default init range for a 5x5 conv
        return (rng.uniform(-bound, bound, (c_out, c_in, 5, 5)).astype(np.float32),
                rng.uniform(-bound, bound, c_out).astype(np.float32))

    layers = []
    for name, c_in, c_out, size in (("C1", 1, 6, 32), ("C3", 6, 16, 14), ("C5", 16, 120, 5)):
        w, b = conv_weights(name, c_in, c_out)
        w_t, b_t = torch.from_numpy(w), torch.from_numpy(b)
        layers.append((name, f"conv {c_in}->{c_out}, 5x5, on {size}x{size}", (c_in, size),
                       lambda x, w=w, b=b: conv2d(x, w, b), lambda x, w=w_t, b=b_t: F.conv2d(x, w, b)))
    layers.insert(1, ("S2", "max-pool 2x2, 6 maps 28x28", (6, 28), max_pool2d, lambda x: F.max_pool2d(x, 2)))
    layers.insert(3, ("S4", "avg-pool 2x2, 16 maps 10x10", (16, 10), avg_pool2d, lambda x: F.avg_pool2d(x, 2)))

    rows = []
    with torch.inference_mode(), blas_threads(torch.get_num_threads()):  # the same threads for both
        for name, operation, (channels, size), numpy_op, torch_op in layers:
            x = rng.standard_normal((batch_size, channels, size, size)).astype(np.float32)
            x_t = torch.from_numpy(x)
            ours, numpy_ms = _fastest_ms(functools.partial(numpy_op, x), repeats)
            theirs, torch_ms = _fastest_ms(functools.partial(torch_op, x_t), repeats)
            rows.append({"layer": name, "operation": operation, "numpy ms": round(numpy_ms, 3),
                         "torch ms": round(torch_ms, 3),
                         "max abs diff": float(np.abs(ours - theirs.numpy()).max())})
    return rows

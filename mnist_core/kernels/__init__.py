"""Hand-written CPU kernels for training LeNet-5, behind one seam, used only in training workers.

LeNet-5's two convolutional stages (C1 + ReLU + S2 max-pool, C3 + ReLU + S4 average pool) are where
PyTorch's stock CPU operators are furthest from what the hardware allows; fused, forward and
backward, a training step is about twice as fast (BENCHMARKS.md, section 1 and "What helped").

The seam: `fuse(model)` is called by the torch engine (training/torch_engine.py), in the worker
process, on a LeNet-5 it is about to train on the CPU. It turns that one model object into a
`FusedLeNet5`, whose forward runs the two stages in the kernels whenever nothing needs the stock
path (no hooks on those layers, no gradient wanted for the input, no tracing or dispatch mode:
models.stock_path_needed) and PyTorch's own layers otherwise; `unfuse(model)` turns it back before
the model leaves the engine. models.py stays the plain zoo: its LeNet-5 is stock PyTorch layers,
and that is all the Streamlit server ever runs (predict, inspect, explain, model cards): hand-written
native code in the shared web server would take down every visitor with one bug, so the server
never loads the library (a test checks its process maps).

The kernels are plain C (`lenet5.c` beside this file), compiled ahead by `make kernels` (`python -m
mnist_core kernels`) or else by the first training worker that wants them (about half a second),
with the system's C compiler (`$CC`, else `cc`; `-O3 -march=native -fopenmp`, plus
`$MNIST_KERNEL_CFLAGS`, e.g. sanitizers in CI) into `build/kernels/` (or `$MNIST_KERNEL_DIR`),
named by a hash of the source, compiler, flags and CPU, and loaded with ctypes.

OpenMP: the library is linked against `libgomp.so.1`, and every parallel region passes the thread
count explicitly (`num_threads(torch.get_num_threads())`). Which runtime that is depends on the
torch wheel: a wheel that ships its own `libgomp.so.1` (the CUDA builds) has it loaded already, and
the kernels share it; the `+cpu` wheels bundle their runtime under a hashed name
(`libgomp-<hash>.so.1`), so there the system's libgomp is loaded beside torch's: two thread pools,
each sized by the same torch thread count, used one after the other, never at once.

Without a C compiler, or with MNIST_KERNELS=0 in the environment, `available()` is False,
`status()` says why, and LeNet-5 trains on PyTorch's stock layers: the same function, up to float
rounding (tests/test_kernels.py compares the two).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shlex
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from ..data import MNIST_MEAN, MNIST_STD
from ..models import MnistNet, stock_path_needed
from ..paths import atomic_write

SOURCE = Path(__file__).with_name("lenet5.c")
CFLAGS = ["-O3", "-march=native", "-fopenmp", "-shared", "-fPIC"]  # then $MNIST_KERNEL_CFLAGS
MAX_MAPS = 16  # lenet5.c's MAXC
STAGE_INPUT = (1, 28, 28)  # what the fused stage takes: one 28x28 channel, padded by 2 inside
STAGE_KERNEL = (1, 5, 5)
STAGE2_INPUT = (6, 14, 14)  # the second stage: C3 (16 maps of 6x5x5) + ReLU + S4 (2x2 average pool)
STAGE2_WEIGHT = (16, 6, 5, 5)

_lock = threading.Lock()
_lib: Optional[ctypes.CDLL] = None
_status: Optional[str] = None


def build_dir() -> Path:
    value = os.environ.get("MNIST_KERNEL_DIR")
    return Path(value).expanduser().resolve() if value else SOURCE.parent.parent.parent / "build" / "kernels"


def _cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return line
    except OSError:
        pass
    return platform.processor()


def _cflags() -> list[str]:
    return CFLAGS + shlex.split(os.environ.get("MNIST_KERNEL_CFLAGS", ""))


@functools.lru_cache(maxsize=8)
def _build_key(cc: str, cflags: tuple[str, ...]) -> str:
    """A hash of the source, the compiler (and its version), the flags and the CPU."""
    version = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30).stdout
    return hashlib.sha256("\0".join([SOURCE.read_text(), cc, version, " ".join(cflags), platform.machine(),
                                     _cpu_flags()]).encode()).hexdigest()[:16]


def _target(cc: str) -> Path:
    """Where the library built by this compiler with the current flags lives."""
    return build_dir() / f"lenet5-{_build_key(cc, tuple(_cflags()))}.so"


def _compile(cc: str) -> Path:
    target = _target(cc)
    if target.exists():
        return target

    def build(tmp: str) -> None:
        done = subprocess.run([cc, *_cflags(), "-o", tmp, str(SOURCE)], capture_output=True, text=True,
                              timeout=120)
        if done.returncode != 0:
            first = (done.stderr.strip().splitlines() or ["no output"])[0]
            raise RuntimeError(f"{cc} failed: {first}")

    atomic_write(target, build)  # another process never sees half a library
    for old in target.parent.glob("lenet5-*.so"):  # builds of earlier sources
        if old != target:
            old.unlink(missing_ok=True)
    return target


def _off() -> bool:
    return os.environ.get("MNIST_KERNELS", "1").strip() in ("0", "false", "no", "off")


def _load() -> tuple[Optional[ctypes.CDLL], str]:
    if _off():
        return None, "off (MNIST_KERNELS=0): PyTorch's stock layers"
    cc = os.environ.get("CC") or "cc"
    if shutil.which(cc) is None:
        return None, f"no C compiler ({cc}): PyTorch's stock layers"
    try:
        path = _compile(cc)
        lib = ctypes.CDLL(str(path))
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
        return None, f"not built ({exc}): PyTorch's stock layers"
    f32, i32, ptr = ctypes.c_float, ctypes.c_int, ctypes.c_void_p
    lib.c1s2_forward.argtypes = [ptr, i32, i32, ptr, ptr, f32, f32, ptr, ptr, ptr, i32]
    lib.c1s2_backward.argtypes = [ptr, i32, i32, f32, f32, ptr, ptr, ptr, ptr, ptr, ptr, ptr, ptr, i32]
    lib.c3s4_forward.argtypes = [ptr, ptr, i32, ptr, ptr, ptr, ptr, i32]
    lib.c3s4_backward.argtypes = [ptr, ptr, i32, ptr, ptr, ptr, ptr, ptr, ptr, ptr, ptr, ptr, i32]
    for fn in (lib.c1s2_forward, lib.c1s2_backward, lib.c3s4_forward, lib.c3s4_backward):
        fn.restype = i32
    return lib, f"compiled ({path.name})"


def library() -> Optional[ctypes.CDLL]:
    """The compiled kernels, built on first call and loaded into this process; None where they cannot
    be (see status()). Only training code calls it (fuse, the kernel functions, `make kernels`)."""
    global _lib, _status
    if _status is None:
        with _lock:
            if _status is None:
                _lib, _status = _load()
    return _lib


def available() -> bool:
    """Whether the kernels can run here: builds and loads them (never call it in the web server)."""
    return library() is not None


def status() -> str:
    """One line: whether LeNet-5 trains on the kernels here, and if not, why. Loads nothing (the web
    server shows it): after this process loaded them, what loading said; before, whether they are built."""
    if _status is not None:
        return _status
    if _off():
        return "off (MNIST_KERNELS=0): PyTorch's stock layers"
    cc = os.environ.get("CC") or "cc"
    if shutil.which(cc) is None:
        return f"no C compiler ({cc}): PyTorch's stock layers"
    try:
        target = _target(cc)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"not built ({type(exc).__name__}): PyTorch's stock layers"
    if target.exists():
        return f"built ({target.name}), used by training workers"
    return "not built yet: `make kernels` builds them, else the first LeNet-5 training does"


def reset() -> None:
    """Forget the loaded library (tests use it to load again under another environment)."""
    global _lib, _status
    with _lock:
        _lib, _status = None, None


def _ptr(t: torch.Tensor) -> ctypes.c_void_p:
    return ctypes.c_void_p(t.data_ptr())


def _strides(t: torch.Tensor):
    return (ctypes.c_long * 4)(*t.stride())


def _call(name: str, *args) -> None:
    """Run one of the library's functions; they return 0, or a negative code for arguments they refuse."""
    rc = getattr(library(), name)(*args)
    if rc != 0:
        raise RuntimeError(f"{name} failed ({rc})")


class _ConvReluMaxPool(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, mean: float, std: float):
        n, maps = x.shape[0], weight.shape[0]
        out = torch.empty(n, maps, 14, 14)
        where = torch.empty(n, maps, 14, 14, dtype=torch.uint8)  # each window's argmax, 0-3
        # Locals hold every tensor whose address C gets: a temporary could be freed before the call.
        x, weight, bias = x.contiguous(), weight.detach().contiguous(), bias.detach().contiguous()
        _call("c1s2_forward", _ptr(x), n, maps, _ptr(weight), _ptr(bias), mean, std, _ptr(out), _ptr(where),
              _strides(out), torch.get_num_threads())
        ctx.save_for_backward(x, out, where)
        ctx.norm = (mean, std)
        ctx.mark_non_differentiable(where)
        return out

    @staticmethod
    def backward(ctx, grad):
        x, out, where = ctx.saved_tensors
        maps = out.shape[1]
        grad = grad.float()
        grad_weight, grad_bias = torch.empty(maps, *STAGE_KERNEL), torch.empty(maps)
        threads = torch.get_num_threads()
        scratch = torch.empty(threads, maps * 26 * 16)  # per thread: 25 weight sums and 1 bias sum a map, as vectors
        _call("c1s2_backward", _ptr(x), x.shape[0], maps, *ctx.norm, _ptr(out), _ptr(where), _strides(out),
              _ptr(grad), _strides(grad), _ptr(grad_weight), _ptr(grad_bias), _ptr(scratch), threads)
        return None, grad_weight, grad_bias, None, None


def _fits(t: Optional[torch.Tensor], shape: tuple) -> bool:
    """A float32 CPU tensor of this shape (None in `shape`: any size there)."""
    if t is None or t.dtype != torch.float32 or t.device.type != "cpu" or t.dim() != len(shape):
        return False
    for want, got in zip(shape, t.shape):
        if want is not None and want != got:
            return False
    return True


def conv_relu_maxpool_applies(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> bool:
    """Whether conv_relu_maxpool can take this input and these parameters (else use the stock layers)."""
    return (_fits(x, (None, *STAGE_INPUT)) and x.shape[0] > 0 and not x.requires_grad
            and _fits(weight, (None, *STAGE_KERNEL)) and weight.shape[0] <= MAX_MAPS
            and _fits(bias, weight.shape[:1]) and available())


def conv_relu_maxpool(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, mean: float, std: float,
                      check: bool = True) -> torch.Tensor:
    """max_pool2d(relu(conv2d(pad((x - mean) / std, 2, background), weight, bias)), 2) in one pass.

    x: float32 [N, 1, 28, 28] pixels in [0, 1]; weight [C, 1, 5, 5] (C <= 16); bias [C]. Returns
    [N, C, 14, 14], contiguous. Differentiable in weight and bias, not in x.
    The padding is the normalized background ((0 - mean) / std), as MnistNet pads before normalizing.
    check=False skips the argument check, for a caller that has just made it (conv_relu_maxpool_applies).
    """
    if check and not conv_relu_maxpool_applies(x, weight, bias):
        raise ValueError("conv_relu_maxpool: needs float32 CPU input [N,1,28,28] without grad, weight [C<=16,1,5,5], "
                         "bias [C], and the compiled kernels (kernels.status())")
    return _ConvReluMaxPool.apply(x, weight, bias, float(mean), float(std))


class _ConvReluAvgPool(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias):
        n = x.shape[0]
        weight, bias = weight.detach().contiguous(), bias.detach().contiguous()
        act = torch.empty(n, 10, 10, 16)  # the post-ReLU convolution, positions x maps, for the backward
        out = torch.empty(n, 16, 5, 5)
        _call("c3s4_forward", _ptr(x), _strides(x), n, _ptr(weight), _ptr(bias), _ptr(act), _ptr(out),
              torch.get_num_threads())
        ctx.save_for_backward(x, weight, act)
        return out

    @staticmethod
    def backward(ctx, grad):
        x, weight, act = ctx.saved_tensors
        grad = grad.float()
        threads = torch.get_num_threads()
        grad_in = torch.empty(x.shape)
        grad_weight, grad_bias = torch.empty(STAGE2_WEIGHT), torch.empty(STAGE2_WEIGHT[0])
        scratch = torch.empty(threads, 151 * 16)
        _call("c3s4_backward", _ptr(x), _strides(x), x.shape[0], _ptr(weight), _ptr(act), _ptr(grad),
              _strides(grad), _ptr(grad_in), _strides(grad_in), _ptr(grad_weight), _ptr(grad_bias), _ptr(scratch),
              threads)
        return grad_in if ctx.needs_input_grad[0] else None, grad_weight, grad_bias


def conv_relu_avgpool_applies(x: Optional[torch.Tensor], weight: torch.Tensor, bias: Optional[torch.Tensor]) -> bool:
    """Whether conv_relu_avgpool can take this input (None: any it accepts) and these parameters."""
    return ((x is None or (_fits(x, (None, *STAGE2_INPUT)) and x.shape[0] > 0))
            and _fits(weight, STAGE2_WEIGHT) and _fits(bias, STAGE2_WEIGHT[:1]) and available())


def conv_relu_avgpool(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, check: bool = True) -> torch.Tensor:
    """avg_pool2d(relu(conv2d(x, weight, bias)), 2) in one pass: LeNet-5's C3 + S4.

    x: float32 [N, 6, 14, 14] in any memory layout; weight [16, 6, 5, 5]; bias [16]. Returns
    [N, 16, 5, 5], contiguous. Differentiable in x, weight and bias. check=False skips the argument
    check, for a caller that has made it (conv_relu_avgpool_applies).
    """
    if check and not conv_relu_avgpool_applies(x, weight, bias):
        raise ValueError("conv_relu_avgpool: needs float32 CPU input [N,6,14,14], weight [16,6,5,5], bias [16], "
                         "and the compiled kernels (kernels.status())")
    return _ConvReluAvgPool.apply(x, weight, bias)


# --- the seam: LeNet-5 on the kernels, in a training worker ----------------------------------------

class FusedLeNet5(MnistNet):
    """A zoo LeNet-5 (an MnistNet) whose two convolutional stages run in the kernels where they can:
    C1 + ReLU + S2 max-pool, with the padding and normalization before them, as one; C3 + ReLU + S4
    average pool as the other. The same parameters, state-dict keys, feature layers and function as
    the stock layers; anything the kernels do not cover takes those layers (models.stock_path_needed,
    another device or dtype, a gradient wanted for the input)."""

    FUSED = ("C1", "S2", "C3", "S4")

    def _fused_applies(self, x: torch.Tensor) -> bool:
        body = self.body
        c1, c3 = body.C1, body.C3
        return (not stock_path_needed(body, c1, c1.conv, c1.relu, body.S2, c3, c3.conv, c3.relu, body.S4)
                and conv_relu_maxpool_applies(x, c1.conv.weight, c1.conv.bias)
                and conv_relu_avgpool_applies(None, c3.conv.weight, c3.conv.bias))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self._fused_applies(x):
            return super().forward(x)
        body = self.body
        x = conv_relu_maxpool(x, body.C1.conv.weight, body.C1.conv.bias, MNIST_MEAN, MNIST_STD, check=False)
        x = conv_relu_avgpool(x, body.C3.conv.weight, body.C3.conv.bias, check=False)
        for name, layer in body.named_children():
            if name not in self.FUSED:
                x = layer(x)
        return x


def fits(model: nn.Module) -> bool:
    """Whether the kernels are made for this model: a zoo LeNet-5 (padded to 32x32, max-pool S2,
    average-pool S4). Loads nothing."""
    body = getattr(model, "body", None)
    return (isinstance(model, MnistNet) and getattr(model, "pad", 0) == 2 and body is not None
            and all(hasattr(body, name) for name in FusedLeNet5.FUSED)
            and isinstance(body.S2, nn.MaxPool2d) and isinstance(body.S4, nn.AvgPool2d))


def fuse(model: nn.Module) -> bool:
    """Make this LeNet-5 (for training on the CPU) run on the kernels; True when it now does, False
    when they do not fit it or are not available here (then it is left as it was). Training workers
    only: it builds and loads the library."""
    if type(model) is FusedLeNet5:
        return True
    if type(model) is not MnistNet or not fits(model) or not available():
        return False
    model.__class__ = FusedLeNet5  # same object, same parameters: only the forward changes
    return True


def is_fused(model: nn.Module) -> bool:
    return type(model) is FusedLeNet5


def unfuse(model: nn.Module) -> nn.Module:
    """The plain zoo model again (before it is saved or handed on); returns it."""
    if type(model) is FusedLeNet5:
        model.__class__ = MnistNet
    return model

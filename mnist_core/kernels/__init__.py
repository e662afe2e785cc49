"""Hand-written CPU kernels, for the one place where PyTorch's stock operators are far from what the
hardware allows: LeNet-5's two convolutional stages (C1 + ReLU + S2 max-pool, C3 + ReLU + S4 average
pool), which took about 3.3 of the 4.5 ms of a batch-64 training step on 2 cores; fused, forward and
backward, the whole step takes 1.9-2.0 ms (BENCHMARKS.md, section 1 and "What helped").

The kernels are plain C (`lenet5.c` beside this file). On first use they are compiled with the
system's C compiler (`$CC`, else `cc`; `-O3 -march=native -fopenmp`, about half a second) into
`build/kernels/` (or `$MNIST_KERNEL_DIR`), named by a hash of the source, compiler and CPU, and
loaded with ctypes. Their OpenMP runs on PyTorch's own OpenMP runtime (the same libgomp.so.1, already
loaded), so they use the threads `torch.set_num_threads` gave.

Without a C compiler, or with MNIST_KERNELS=0 in the environment, `available()` is False,
`status()` says why, and LeNet-5 runs on PyTorch's stock layers: the same function, up to float
rounding (tests/test_kernels.py compares the two).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Optional

import torch

SOURCE = Path(__file__).with_name("lenet5.c")
CFLAGS = ["-O3", "-march=native", "-fopenmp", "-shared", "-fPIC"]
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


def _compile(cc: str) -> Path:
    version = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30).stdout
    key = hashlib.sha256("\0".join([SOURCE.read_text(), cc, version, " ".join(CFLAGS), platform.machine(),
                                    _cpu_flags()]).encode()).hexdigest()[:16]
    target = build_dir() / f"lenet5-{key}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # Compile beside the target and rename into place: another process never sees half a library.
    fd, tmp = tempfile.mkstemp(prefix=".lenet5-", suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        done = subprocess.run([cc, *CFLAGS, "-o", tmp, str(SOURCE)], capture_output=True, text=True,
                              timeout=120)
        if done.returncode != 0:
            first = (done.stderr.strip().splitlines() or ["no output"])[0]
            raise RuntimeError(f"{cc} failed: {first}")
        os.replace(tmp, target)
        for old in target.parent.glob("lenet5-*.so"):  # builds of earlier sources
            if old != target:
                old.unlink(missing_ok=True)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def _load() -> tuple[Optional[ctypes.CDLL], str]:
    if os.environ.get("MNIST_KERNELS", "1").strip() in ("0", "false", "no", "off"):
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
    """The compiled kernels, built on first call; None where they cannot be (see status())."""
    global _lib, _status
    if _status is None:
        with _lock:
            if _status is None:
                _lib, _status = _load()
    return _lib


def available() -> bool:
    return library() is not None


def status() -> str:
    """One line: whether the kernels are in use, and if not, why."""
    library()
    return _status or ""


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

"""The model zoo: a registry of named architectures, timm-style.

Each architecture is one function decorated with @register_model; `create_model(name)` builds it
and `list_models()` names them all. Adding an architecture is adding one decorated function.

Every model takes float input [N,1,28,28] in [0,1] and normalizes (and pads) inside itself, so a
checkpoint is self-contained and every caller feeds the same thing. Layers that the inspection
page should show are listed in `model.feature_layers` (submodule names, in order).
"""

from __future__ import annotations

import copy
import itertools
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn
from torch.nn.modules import module as _module
from torch.utils._python_dispatch import is_in_torch_dispatch_mode

from .data import MNIST_MEAN, MNIST_STD
from .errors import ConfigError


@dataclass(frozen=True)
class ModelInfo:
    name: str
    description: str
    provenance: str
    builder: Callable[[], nn.Module]
    reported_accuracy: str = ""  # what the source article reports, where it reports one


_REGISTRY: "OrderedDict[str, ModelInfo]" = OrderedDict()


def register_model(name: str, description: str, provenance: str, reported_accuracy: str = ""):
    def decorator(builder):
        _REGISTRY[name] = ModelInfo(name, description, provenance, builder, reported_accuracy)
        return builder
    return decorator


def list_models() -> list[str]:
    return list(_REGISTRY)


def model_info(name: str) -> ModelInfo:
    if name not in _REGISTRY:
        raise ConfigError(f"unknown model {name!r}: choose one of {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def create_model(name: str) -> nn.Module:
    model = model_info(name).builder()
    model.arch_name = name  # checkpoints record it to rebuild the model
    return model


class MnistNet(nn.Module):
    """Normalizes [N,1,28,28] pixels in [0,1], optionally pads, then runs `body`.

    Padding happens before normalization so the added border is background (0), as it would be
    in a larger MNIST image (LeNet-5 was designed for 32x32 inputs).
    """

    def __init__(self, body: nn.Sequential, pad: int = 0, feature_layers: tuple[str, ...] = ()):
        super().__init__()
        self.pad = pad
        self.body = body
        self.feature_layers = feature_layers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pad:
            x = nn.functional.pad(x, (self.pad,) * 4)
        return self.body((x - MNIST_MEAN) / MNIST_STD)


def stock_path_needed(*modules: nn.Module) -> bool:
    """Whether a CPU shortcut (SmallBatchConv2d's below, the fused LeNet-5 kernels a training worker applies) must
    step aside for torch's stock operators: while torch traces (export), compiles or runs a dispatch
    mode (the FLOP counter, fake tensors), and while any of `modules`, or every module (global hooks),
    has a hook that must see the stock layers' own inputs and outputs (feature maps, the layer table).

    The one place that reads torch's private state (module hook dicts, the dispatch-mode stack);
    tests/test_models.py checks each case, so a torch upgrade that moves them fails there.
    """
    if torch.jit.is_tracing() or torch.compiler.is_compiling() or is_in_torch_dispatch_mode():
        return True
    if _module._global_forward_hooks or _module._global_forward_pre_hooks or _module._global_backward_hooks:
        return True
    return any(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or m._backward_pre_hooks
               for m in modules)


def _named(*layers: tuple[str, nn.Module]) -> nn.Sequential:
    return nn.Sequential(OrderedDict(layers))


class SmallBatchConv2d(nn.Conv2d):
    """nn.Conv2d with one CPU shortcut, for predicting a drawing or two. The layer table and checkpoints
    see a plain Conv2d (`torch_type_name`; same parameters and state-dict keys).

    Without autograd, for at most SMALL_BATCH images and a small kernel volume (in_channels x kh x kw
    <= SMALL_KERNEL: LeNet-5's convolutions, every net's first), PyTorch still picks oneDNN, whose set-up
    per call costs more than the arithmetic. There PyTorch's own im2col convolution
    (aten::thnn_conv2d) gives the same result several times faster for one image (benchmarks/predict_latency,
    figures in BENCHMARKS.md). Training, larger batches,
    wider kernels, tracing for export and any active dispatch mode (torch's FLOP counter, fake
    tensors) all take the stock path.
    """

    SMALL_BATCH = 4
    SMALL_KERNEL = 256

    def _conv_forward(self, x: torch.Tensor, weight: torch.Tensor, bias) -> torch.Tensor:
        kernel_volume = self.in_channels * self.kernel_size[0] * self.kernel_size[1]
        if (x.shape[0] <= self.SMALL_BATCH and kernel_volume <= self.SMALL_KERNEL and x.device.type == "cpu"
                and not torch.is_grad_enabled() and self.groups == 1 and self.dilation == (1, 1)
                and self.padding_mode == "zeros" and isinstance(self.padding, tuple)
                and not stock_path_needed()):
            return torch.ops.aten.thnn_conv2d(x, weight, self.kernel_size, bias, self.stride, self.padding)
        return super()._conv_forward(x, weight, bias)


class FullConv2d(SmallBatchConv2d):
    """A convolution whose kernel is as large as its input, so every output map is 1x1: LeNet-5's C5
    (120 kernels of 16x5x5 on a 16x5x5 input). That is exactly a fully connected layer, and is
    computed as one: for this shape oneDNN's CPU convolution takes several times as long as the matrix
    product, forward and backward (benchmarks/, figures in BENCHMARKS.md). Same parameters, same state-dict
    keys, same output shape [N, C, 1, 1]; any other input size is an ordinary convolution.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (tuple(x.shape[-2:]) == self.kernel_size and self.padding == (0, 0) and self.groups == 1
                and self.dilation == (1, 1)):
            flat = x.contiguous().flatten(1)  # [N, C*kh*kw] in the weight's (C, kh, kw) order
            return nn.functional.linear(flat, self.weight.flatten(1), self.bias)[:, :, None, None]
        return super().forward(x)


def _conv_relu(c_in: int, c_out: int, k: int, padding: int = 0, conv: type = SmallBatchConv2d) -> nn.Sequential:
    return _named(("conv", conv(c_in, c_out, k, padding=padding)), ("relu", nn.ReLU()))


def _mlp(*sizes: int) -> MnistNet:
    layers: list[tuple[str, nn.Module]] = [("flatten", nn.Flatten())]
    for i, (a, b) in enumerate(zip(sizes, sizes[1:]), start=1):
        layers.append((f"fc{i}", nn.Linear(a, b)))
        if i < len(sizes) - 1:
            layers.append((f"relu{i}", nn.ReLU()))
    hidden = tuple(f"relu{i}" for i in range(1, len(sizes) - 1))
    return MnistNet(_named(*layers), feature_layers=hidden)


@register_model("mlp-50", "MLP 784-50-10 with ReLU", "tutorial 1 (two-layer NumPy net)", "96.23%")
def mlp_50() -> nn.Module:
    return _mlp(784, 50, 10)


@register_model("mlp-90", "MLP 784-90-10 with ReLU", "tutorial 3 (NumPy net, squared error)", "96.71%")
def mlp_90() -> nn.Module:
    return _mlp(784, 90, 10)


@register_model("mlp-256-64", "MLP 784-256-64-10 with ReLU", "tutorial 2 (PyTorch MLP, MSE loss)", "about 88%")
def mlp_256_64() -> nn.Module:
    return _mlp(784, 256, 64, 10)


@register_model("mlp-128-64", "MLP 784-128-64-10 with ReLU", "tutorial 4 (the MLP it compares with LeNet-5)")
def mlp_128_64() -> nn.Module:
    return _mlp(784, 128, 64, 10)


@register_model("lenet5", "LeNet-5: conv 6@5x5, max-pool, conv 16@5x5, avg-pool, conv 120@5x5, fc 84, fc 10",
                "tutorial 4 (input padded to 32x32)", "about 94% (96% best dev) on its 200-image test set")
def lenet5() -> nn.Module:
    body = _named(
        ("C1", _conv_relu(1, 6, 5)),        # 6 x 28 x 28
        ("S2", nn.MaxPool2d(2)),            # 6 x 14 x 14
        ("C3", _conv_relu(6, 16, 5)),       # 16 x 10 x 10
        ("S4", nn.AvgPool2d(2)),            # 16 x 5 x 5
        ("C5", _conv_relu(16, 120, 5, conv=FullConv2d)),  # 120 x 1 x 1
        ("flatten", nn.Flatten()),
        ("F6", _named(("fc", nn.Linear(120, 84)), ("relu", nn.ReLU()))),
        ("F7", nn.Linear(84, 10)),
    )
    return MnistNet(body, pad=2, feature_layers=("C1", "S2", "C3", "S4", "C5"))


@register_model("cnn-small", "CNN: conv 8@3x3, pool, conv 16@3x3, pool, conv 32@3x3, linear 1568-10",
                "tutorial 5 (small CNN, Adam)")
def cnn_small() -> nn.Module:
    body = _named(
        ("block1", _named(("conv", SmallBatchConv2d(1, 8, 3, padding=1)), ("relu", nn.ReLU()),
                          ("pool", nn.MaxPool2d(2)))),
        ("block2", _named(("conv", SmallBatchConv2d(8, 16, 3, padding=1)), ("relu", nn.ReLU()),
                          ("pool", nn.MaxPool2d(2)))),
        ("block3", _conv_relu(16, 32, 3, padding=1)),
        ("flatten", nn.Flatten()),
        ("fc", nn.Linear(32 * 7 * 7, 10)),
    )
    return MnistNet(body, feature_layers=("block1", "block2", "block3"))


def _conv_bn_relu(c_in: int, c_out: int, k: int = 3) -> nn.Sequential:
    # No conv bias: batch norm's shift does its job.
    return _named(("conv", SmallBatchConv2d(c_in, c_out, k, padding=k // 2, bias=False)),
                  ("bn", nn.BatchNorm2d(c_out)), ("relu", nn.ReLU()))


@register_model("cnn-strong", "Our CNN: conv 32@5x5, pool, 2x conv 64@3x3, pool, conv 128@3x3, batch norm, "
                "global average pool, fc 10", "MNIST Lab's own; trained with affine augmentation to >= 99.5%")
def cnn_strong() -> nn.Module:
    body = _named(
        ("block1", _named(("conv", _conv_bn_relu(1, 32, 5)), ("pool", nn.MaxPool2d(2)))),       # 32 x 14 x 14
        ("block2", _named(("conv1", _conv_bn_relu(32, 64)), ("conv2", _conv_bn_relu(64, 64)),
                          ("pool", nn.MaxPool2d(2)))),                                          # 64 x 7 x 7
        ("block3", _conv_bn_relu(64, 128)),                                                    # 128 x 7 x 7
        ("gap", nn.AdaptiveAvgPool2d(1)),
        ("flatten", nn.Flatten()),
        ("dropout", nn.Dropout(0.2)),
        ("fc", nn.Linear(128, 10)),
    )
    return MnistNet(body, feature_layers=("block1", "block2", "block3"))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def torch_type_name(module: nn.Module) -> str:
    """The torch.nn class a layer is (FullConv2d reads as Conv2d: it is one, computed another way)."""
    return next(c.__name__ for c in type(module).__mro__ if c.__module__.startswith("torch.nn"))


def private_copy(model: nn.Module) -> nn.Module:
    """A copy of `model`'s modules, in eval mode, for one call to put hooks on or switch modes on.

    The dashboard caches one model object per checkpoint and every visitor's session runs it at the
    same time (a prediction per stroke, an inspection, an explanation). Hooks live on the module, so
    hooks on the shared object would catch other visitors' forward passes, and a mode switch would
    change their answers. The copy has its own modules (so its own hooks and modes) but shares the
    weight tensors, which nothing here writes to: no lock, and no second copy of the weights.
    """
    shared = {id(t): t for t in itertools.chain(model.parameters(), model.buffers())}
    return copy.deepcopy(model, memo=shared).eval()


def layer_table(model: nn.Module) -> list[dict]:
    """One row per leaf layer: name, type, output shape for one 28x28 input, parameter count."""
    model = private_copy(model)  # hooks on every layer: never on a model other sessions are running
    rows = []

    def hook(name):
        def fn(module, inputs, output):
            rows.append({"layer": name, "type": torch_type_name(module),
                         "output shape": "x".join(str(d) for d in output.shape[1:]),
                         "parameters": sum(p.numel() for p in module.parameters(recurse=False))})
        return fn

    for name, module in model.named_modules():
        if name and not list(module.children()):
            module.register_forward_hook(hook(name.removeprefix("body.")))  # on the copy, thrown away after
    with torch.no_grad():
        model(torch.zeros(1, 1, 28, 28))
    return rows

"""ONNX files for the tests, written by the tests themselves: classifiers in each input convention, and
hostile files. The page tests import these too.

`convention_model(base, layout, scale, ink, output)` wraps a committed zoo checkpoint so it expects the
given convention (it turns that input back into the lab's before the zoo model runs), so its true test
accuracy is the checkpoint's. `onnx_bytes(module, example)` exports it as torch's TorchScript exporter
does (opset 17, a dynamic batch), as people outside the lab export.

`HOSTILE` maps a name to a builder of bytes, and `HOSTILE_REASONS` to words its refusal must contain.
"""

from __future__ import annotations

import io
import pickle
import random
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from mnist_core.checkpoints import load_checkpoint
from mnist_core.data import MNIST_MEAN, MNIST_STD
from mnist_core.paths import REPO_ROOT

SHAPES = {"NCHW": (1, 28, 28), "NHWC": (28, 28, 1), "NHW": (28, 28), "flat": (784,)}


class ConventionModel(nn.Module):
    """A zoo model behind another input convention: the model's input, turned back into the lab's."""

    def __init__(self, model: nn.Module, layout: str, scale: str, ink: str = "normal", output: str = "logits"):
        super().__init__()
        self.model, self.layout, self.scale, self.ink, self.output = model, layout, scale, ink, output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(x.shape[0], 1, 28, 28) if self.layout != "NHWC" else x.permute(0, 3, 1, 2)
        if self.scale == "0..255":
            x = x / 255
        elif self.scale == "mean/std":
            x = x * MNIST_STD + MNIST_MEAN
        elif self.scale == "-1..1":
            x = (x + 1) / 2
        if self.ink == "inverted":
            x = 1 - x
        logits = self.model(x)
        if self.output == "probabilities":
            return logits.softmax(1)
        if self.output == "log-probabilities":
            return logits.log_softmax(1)
        return logits


def zoo_model(base: str = "mlp-256-64") -> nn.Module:
    model, _ = load_checkpoint(REPO_ROOT / "checkpoints" / f"{base}.safetensors")
    return model.eval()


def onnx_bytes(module: nn.Module, input_shape: tuple[int, ...], dynamic_batch: bool = True) -> bytes:
    """`module` exported by torch's TorchScript exporter (opset 17), input "x", output "y"."""
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), (torch.rand(2 if dynamic_batch else 1, *input_shape),), f, dynamo=False,
                          opset_version=17, input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}} if dynamic_batch else None)
    return f.getvalue()


def convention_model(base: str, layout: str, scale: str, ink: str = "normal", output: str = "logits",
                     dynamic_batch: bool = True) -> bytes:
    """The checkpoint `base` as an ONNX file that expects (layout, scale, ink) and returns `output`."""
    return onnx_bytes(ConventionModel(zoo_model(base), layout, scale, ink, output), SHAPES[layout], dynamic_batch)


# --- hostile files ------------------------------------------------------------------------------

def _graph_model(nodes, initializers, output_dims=(None, 10), opsets=(("", 17),), functions=()) -> bytes:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 1, 28, 28])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, list(output_dims))
    graph = helper.make_graph(nodes, "hostile", [x], [y], initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets],
                              functions=list(functions))
    model.ir_version = 8
    return model.SerializeToString()


def _linear(classes: int = 10, out: str = "y"):
    """Flatten then Gemm to `classes` scores: nodes and initializers."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.normal(0, 0.01, (classes, 784)).astype(np.float32), "w")
    b = numpy_helper.from_array(np.zeros(classes, np.float32), "b")
    nodes = [helper.make_node("Flatten", ["x"], ["flat"]),
             helper.make_node("Gemm", ["flat", "w", "b"], [out], transB=1)]
    return nodes, [w, b]


def external_data() -> bytes:
    """Its weights are said to lie in a file outside, far up the tree."""
    nodes, inits = _linear()
    w = inits[0]
    w.ClearField("raw_data")
    w.ClearField("float_data")
    w.data_location = TensorProto.EXTERNAL
    for key, value in (("location", "../../../../../etc/passwd"), ("offset", "0"), ("length", "31360")):
        entry = w.external_data.add()
        entry.key, entry.value = key, value
    return _graph_model(nodes, inits)


def custom_domain() -> bytes:
    nodes, inits = _linear(out="scores")
    nodes.append(helper.make_node("Steal", ["scores"], ["y"], domain="com.evil"))
    return _graph_model(nodes, inits, opsets=(("", 17), ("com.evil", 1)))


def loop() -> bytes:
    """A Loop around an Identity, a billion times."""
    nodes, inits = _linear(out="scores")
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]), helper.make_node("Identity", ["v_in"], ["v_out"])],
        "body", [helper.make_tensor_value_info("i", TensorProto.INT64, []),
                 helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
                 helper.make_tensor_value_info("v_in", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_out", TensorProto.FLOAT, None)])
    inits += [numpy_helper.from_array(np.array(10**9, np.int64), "trips"),
              numpy_helper.from_array(np.array(True), "keep_going")]
    nodes.append(helper.make_node("Loop", ["trips", "keep_going", "scores"], ["y"], body=body))
    return _graph_model(nodes, inits)


def constant_of_shape_40gb() -> bytes:
    """A 10,000,000,000-float tensor (40 GB) summed into the scores."""
    nodes, inits = _linear(out="scores")
    inits += [numpy_helper.from_array(np.array([1, 10_000_000_000], np.int64), "huge_shape"),
              numpy_helper.from_array(np.array([1], np.int64), "axis1")]
    nodes += [helper.make_node("ConstantOfShape", ["huge_shape"], ["huge"],
                               value=numpy_helper.from_array(np.array([1.0], np.float32))),
              helper.make_node("ReduceSum", ["huge", "axis1"], ["total"], keepdims=1),
              helper.make_node("Add", ["scores", "total"], ["y"])]
    return _graph_model(nodes, inits)


def five_classes() -> bytes:
    nodes, inits = _linear(classes=5)
    return _graph_model(nodes, inits, output_dims=(None, 5))


def random_bytes() -> bytes:
    return random.Random(0).randbytes(64 << 10)


def pickle_file() -> bytes:
    """What torch.save writes at heart: a pickle (here of plain values; the lab must never unpickle it)."""
    return pickle.dumps({"state_dict": {"fc.weight": [[0.0] * 784] * 10}, "epoch": 3}, protocol=4)


HOSTILE = {
    "external-data": external_data,
    "custom-domain": custom_domain,
    "loop": loop,
    "constant-of-shape-40gb": constant_of_shape_40gb,
    "five-classes": five_classes,
    "random-bytes": random_bytes,
    "pickle": pickle_file,
}
HOSTILE_REASONS = {
    "external-data": "external data",
    "custom-domain": "domain 'com.evil'",
    "loop": "uses Loop",
    "constant-of-shape-40gb": "ConstantOfShape node makes a tensor of 37.3 GB",
    "five-classes": "5 scores",
    "random-bytes": "not an ONNX",
    "pickle": "pickle",
}


def write(folder: Path, name: str, data: bytes) -> Path:
    path = Path(folder) / f"{name}.onnx"
    path.write_bytes(data)
    return path


def parsed(data: bytes) -> onnx.ModelProto:
    return onnx.load_from_string(data)

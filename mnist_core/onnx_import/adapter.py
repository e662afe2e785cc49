"""A checked ONNX graph as a torch module the lab runs like its own: `build(proto, found)` -> `OnnxNet`.

onnx2torch turns each ONNX node into a torch module (nn.Conv2d, nn.Linear, nn.ReLU, its own small
modules for the rest) inside a torch.fx GraphModule; it maps ops to modules and runs nothing from the
file. `OnnxNet` wraps that graph so it takes what every lab model takes, float [N,1,28,28] in [0,1],
and returns logits [N,10]: it turns the pixels into the model's own convention first (layout, scale,
ink; conventions.py) and its probabilities, when it gives probabilities, into log-probabilities
after. The graph is the wrapper's `body`, as a zoo model's layers are, so inspection and explain find
its layers where they look for a zoo model's: `feature_layers` (every convolution, pooling and
activation, by node name), `feature_ops` (each one's ONNX op), `final_layer` (the Gemm or MatMul that
makes the logits, whose input the embedding map reads) and `first_layer_weight` (an MLP's first
layer as [hidden, 784], for its templates).

onnx2torch 1.5.15 knows the ops up to about opset 17. Newer versions of a few ops changed only the
types they take, or added an input or attribute that a classifier does not use; `ALIASES` lets the
older converter take them, and `unsupported_feature` names the node that does use the new part (the
checks refuse it). `converts(op, version)` is what the checks ask before anything runs.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import onnx
import torch
from onnx import defs, numpy_helper
from onnx2torch import convert
from onnx2torch.node_converters.registry import _CONVERTER_REGISTRY, OperationDescription, add_converter
from onnx2torch.onnx_graph import OnnxGraph
from onnx2torch.utils.common import OperationConverterResult, onnx_mapping_from_node
from torch import nn

from .conventions import Convention

# (op, version the converter lacks) -> the version whose converter takes it unchanged
ALIASES = {
    ("Reshape", 19): 14, ("Reshape", 21): 14, ("Identity", 19): 16, ("Identity", 21): 16,
    ("Shape", 19): 15, ("Shape", 21): 15, ("Transpose", 21): 13, ("Unsqueeze", 21): 13,
    ("Flatten", 21): 13, ("Cast", 19): 13, ("Cast", 21): 13, ("Constant", 19): 13, ("Constant", 21): 13,
    ("Pad", 18): 13, ("Pad", 19): 13, ("Pad", 21): 13, ("AveragePool", 19): 11, ("AveragePool", 22): 11,
    ("ConstantOfShape", 20): 9, ("ConstantOfShape", 21): 9, ("Conv", 22): 11, ("MaxPool", 22): 12,
    ("GlobalAveragePool", 22): 1, ("Dropout", 22): 13, ("Elu", 22): 6, ("Selu", 22): 6, ("Softplus", 22): 1,
    ("HardSigmoid", 22): 6, ("HardSwish", 22): 14, ("InstanceNormalization", 22): 6,
}
FEATURE_OPS = ("Conv", "MaxPool", "AveragePool", "GlobalAveragePool", "Relu", "LeakyRelu",
               "PRelu", "Elu", "Selu", "Sigmoid", "Tanh", "Softplus", "HardSigmoid", "HardSwish", "Clip")
HEAD_OPS = ("Gemm", "MatMul")
WORKING_BYTES = 512 << 20  # one forward pass of an imported graph, however many images it is given


class _ReshapeAllowZero(nn.Module):
    """ONNX Reshape with allowzero=1 (a 0 in the shape is a dimension of 0, not "copy the input's"):
    what torch.reshape does. torch's exporter writes it; onnx2torch 1.5.15 refuses it."""

    def forward(self, x: torch.Tensor, shape: torch.Tensor) -> torch.Tensor:
        return torch.reshape(x, torch.Size(shape.tolist()))


def _with_allowzero(converter):
    def convert_reshape(node, graph) -> OperationConverterResult:
        if node.attributes.get("allowzero", 0) == 1:
            return OperationConverterResult(torch_module=_ReshapeAllowZero(), onnx_mapping=onnx_mapping_from_node(node))
        return converter(node, graph)
    return convert_reshape


def _register_aliases() -> None:
    """Teach onnx2torch's registry (process-wide, this module's import) the aliases and allowzero."""
    def key(op: str, version: int) -> OperationDescription:
        return OperationDescription(domain="", operation_type=op, version=version)

    for (op, version), older in ALIASES.items():
        if key(op, version) not in _CONVERTER_REGISTRY:  # a later onnx2torch may know it itself
            add_converter(operation_type=op, version=version)(_CONVERTER_REGISTRY[key(op, older)])
    for version in (14, 19, 21):
        converter = _CONVERTER_REGISTRY[key("Reshape", version)]
        if not getattr(converter, "allowzero", False):
            _CONVERTER_REGISTRY[key("Reshape", version)] = _with_allowzero(converter)
            _CONVERTER_REGISTRY[key("Reshape", version)].allowzero = True


_register_aliases()
# onnx2torch's Slice indexes with a list, which torch warns about on every call (naming a file)
warnings.filterwarnings("ignore", message="Using a non-tuple sequence for multidimensional indexing",
                        category=UserWarning)


def converts(op: str, opset: int) -> bool:
    """Whether the converter maps `op` as the default domain's `opset` defines it."""
    try:
        version = defs.get_schema(op, max_inclusive_version=opset).since_version
    except defs.SchemaError:
        return False
    return OperationDescription(domain="", operation_type=op, version=version) in _CONVERTER_REGISTRY


def unsupported_feature(node: onnx.NodeProto) -> str | None:
    """What a node asks of a newer op version that the older converter taking it would ignore."""
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    if node.op_type == "Pad" and (len(node.input) > 3 and node.input[3] or attrs.get("mode", b"constant") == b"wrap"):
        return "Pad with axes or wrap mode"
    if node.op_type in ("AveragePool", "MaxPool") and any(d != 1 for d in attrs.get("dilations", [])):
        return f"{node.op_type} with dilations"
    return None


_FLOAT_TYPES = (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16)


def keep_float_outputs(proto: onnx.ModelProto) -> onnx.ModelProto:
    """The graph with only its float tensor outputs and the nodes they need, in place.

    A scikit-learn export (skl2onnx) also outputs each image's label, made by ArgMax and a lookup in
    the ONNX-ML domain; the lab reads the probabilities and never runs the rest. Structure only:
    nothing is computed."""
    graph = proto.graph
    floats = [o for o in graph.output if o.type.WhichOneof("value") == "tensor_type"
              and o.type.tensor_type.elem_type in _FLOAT_TYPES]
    if not floats or len(floats) == len(graph.output):
        return proto
    needed = {o.name for o in floats}
    kept = []
    for node in reversed(graph.node):
        if any(out in needed for out in node.output):
            kept.append(node)
            needed.update(node.input)
    kept.reverse()
    outputs = [onnx.ValueInfoProto.FromString(o.SerializeToString()) for o in floats]
    del graph.output[:]
    graph.output.extend(outputs)
    nodes = [onnx.NodeProto.FromString(n.SerializeToString()) for n in kept]
    del graph.node[:]
    graph.node.extend(nodes)
    return proto


@dataclass(frozen=True)
class Found:
    """What the checks and the trial found out about a file, in plain values (it crosses processes)."""
    input_name: str
    layouts: tuple[str, ...]      # the layouts its input shape admits, in conventions.LAYOUTS order
    any_batch: bool               # False: it takes one image at a time (its batch is fixed to 1)
    output_index: int             # which of its outputs holds the ten scores
    opset: int
    image_bytes: int              # all of one image's tensors added up (checks.py's arithmetic)


def _node_ops(proto: onnx.ModelProto) -> dict[str, onnx.NodeProto]:
    """Each node under the module name onnx2torch gives it."""
    graph = OnnxGraph(proto.graph)
    return {name: node.proto for name, node in graph.nodes.items()}


def _first_layer_weight(proto: onnx.ModelProto, nodes: dict[str, onnx.NodeProto]) -> np.ndarray | None:
    """The first Gemm/MatMul's weights as [hidden, 784] when it reads the 784 pixels, else None."""
    inits = {t.name: t for t in proto.graph.initializer}
    for node in nodes.values():
        if node.op_type == "Conv":
            return None
        if node.op_type in HEAD_OPS and len(node.input) > 1 and node.input[1] in inits:
            w = numpy_helper.to_array(inits[node.input[1]]).astype(np.float32)
            trans_b = any(a.name == "transB" and a.i for a in node.attribute)
            w = w if trans_b else w.T  # now [out, in]
            return w.copy() if w.ndim == 2 and w.shape[1] == 784 else None
    return None


class OnnxNet(nn.Module):
    """An imported graph behind the lab's input and output: [N,1,28,28] in [0,1] -> logits [N,10]."""

    def __init__(self, body: nn.Module, convention: Convention, found: Found,
                 feature_ops: dict[str, str], final_layer: str | None, first_layer_weight: np.ndarray | None):
        super().__init__()
        self.body = body
        self.convention = convention
        self.found = found
        self.feature_layers = tuple(feature_ops)
        self.feature_ops = feature_ops
        self.final_layer = final_layer
        self.first_layer_weight = first_layer_weight

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        if isinstance(out, (tuple, list)):
            out = out[self.found.output_index]
        return out.reshape(len(x), 10).float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.convention.model_input(x)
        # Its memory bounded by arithmetic: images in chunks whose tensors fit WORKING_BYTES (one at a
        # time when its graph fixes the batch to one).
        chunk = max(1, WORKING_BYTES // max(1, self.found.image_bytes)) if self.found.any_batch else 1
        if len(x) <= chunk:
            out = self._run(x)
        else:
            out = torch.cat([self._run(x[i:i + chunk]) for i in range(0, len(x), chunk)])
        if self.convention.output == "probabilities":
            out = out.clamp_min(1e-12).log()  # softmax of log-probabilities gives the probabilities back
        return out


@dataclass(frozen=True)
class Package:
    """A checked model as it crosses to a heavy job's child (mnist_core.heavy): its file and what the
    checks found, rebuilt there by `rebuild` (the same conversion, none of the file's code)."""
    data: bytes
    found: Found
    convention: Convention

    def rebuild(self) -> "OnnxNet":
        proto = onnx.ModelProto()
        proto.ParseFromString(self.data)
        net = build(keep_float_outputs(proto), self.found, self.convention)
        net.package = self
        return net


def build(proto: onnx.ModelProto, found: Found, convention: Convention) -> OnnxNet:
    """The checked model as an OnnxNet in eval mode (convert runs no code from the file)."""
    nodes = _node_ops(proto)
    body = convert(proto)
    # Float weights as parameters (frozen), not buffers: a Gemm became an nn.Linear with parameters, a
    # MatMul reads a buffer, and the lab counts a model's parameters and finds its device through them.
    store = getattr(body, "initializers", nn.Module())  # absent when no node reads a stored tensor
    for name, tensor in list(store.named_buffers(recurse=False)):
        if tensor.is_floating_point():
            delattr(store, name)
            store.register_parameter(name, nn.Parameter(tensor, requires_grad=False))
    feature_ops = {name: node.op_type for name, node in nodes.items() if node.op_type in FEATURE_OPS}
    heads = [name for name, node in nodes.items() if node.op_type in HEAD_OPS]
    net = OnnxNet(body, convention, found, feature_ops, heads[-1] if heads else None,
                  _first_layer_weight(proto, nodes))
    return net.eval()

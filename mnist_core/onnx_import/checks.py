"""Everything the lab asks of an ONNX file before anything in it runs, each refusal one line.

The file comes from a stranger, and onnx's own security policy leaves isolation to its host. So:

- `check(data)`, in this order (the server runs the first part itself, `check_static`, up to the
  weights; the whole runs in the sandbox's child, sandbox.py):
    at most MNIST_MAX_ONNX_BYTES (20 MB by default); a pickle, a zip (a PyTorch .pt), HDF5 (a Keras
    .h5) or safetensors file is named as what it is (`check_size`, `sniff`);
    it parses as an ONNX model with a graph (in memory: the bytes are never written to disk); only
    its float outputs are kept, with the nodes they need (a scikit-learn export's label is not);
    no model-local functions, no node outside the default domain (no custom-op library is ever
    registered), no control flow (Loop, If, Scan) and no subgraph, at most MAX_NODES nodes, and
    every op on `ALLOWED_OPS`, the one list of what MNIST classifiers use (docs/onnx.md shows it);
    no tensor stored outside the file (external data), no sparse or text tensor;
    a default-domain opset from MIN_OPSET to MAX_OPSET, each node one the converter maps
    (adapter.converts) and no node using what a newer op version added (adapter.unsupported_feature);
    every stored tensor holds exactly the data its shape says, and its floats are finite;
    onnx's checker passes;
    one float input whose shape admits a layout the lab can feed (conventions.admitted_layouts);
    shapes inferred with that input fixed to one image and to LARGEST_BATCH images: every tensor's
    size known, none growing faster than the batch, all of one image's together at most
    MAX_IMAGE_BYTES (so a ConstantOfShape or Expand to 40 GB is refused by arithmetic, not run);
    an output of ten scores per image.
  It returns the parsed model and `adapter.Found`: what the wrapper needs to run it.
"""

from __future__ import annotations

import math
import os

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import numpy_helper, shape_inference
from onnx.reference import ReferenceEvaluator

from ..errors import OnnxRefused
from . import adapter
from .conventions import LAYOUTS, admitted_layouts

DEFAULT_MAX_BYTES = 20 << 20
MAX_NODES = 2000
MIN_OPSET, MAX_OPSET = 7, 22
LARGEST_BATCH = 4096          # predict.predict_proba's batch: the most images the lab runs at once
MAX_IMAGE_BYTES = 256 << 20   # all the tensors of one image's forward pass, added up
FOLD_BYTES = 1 << 20          # the largest constant computed before the sizes are bounded (_fold)

# What MNIST classifiers from PyTorch, Keras (tf2onnx) and scikit-learn use; nothing else runs.
ALLOWED_OPS = (
    # layers
    "Conv", "Gemm", "MatMul", "BatchNormalization", "InstanceNormalization", "LayerNormalization", "Dropout",
    # pooling
    "MaxPool", "AveragePool", "GlobalAveragePool",
    # activations and outputs
    "Relu", "LeakyRelu", "PRelu", "Elu", "Selu", "Sigmoid", "Tanh", "Softplus", "HardSigmoid", "HardSwish",
    "Clip", "Erf", "Softmax", "LogSoftmax",
    # arithmetic
    "Add", "Sub", "Mul", "Div", "Pow", "Sqrt", "Reciprocal", "Neg", "Abs", "Exp", "Log", "Max", "Min",
    "ReduceMean", "ReduceSum", "ReduceMax",
    # shapes
    "Flatten", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Identity", "Constant", "Shape", "Gather",
    "Concat", "Slice", "Cast", "Pad", "ConstantOfShape", "Expand",
)
CONTROL_FLOW = ("Loop", "If", "Scan", "SequenceMap")
DEFAULT_DOMAINS = ("", "ai.onnx")
_NUMERIC = {onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16,
            onnx.TensorProto.INT64, onnx.TensorProto.INT32, onnx.TensorProto.INT16, onnx.TensorProto.INT8,
            onnx.TensorProto.UINT8, onnx.TensorProto.BOOL}
_FLOATS = {onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16}


def max_bytes() -> int:
    """MNIST_MAX_ONNX_BYTES: the largest ONNX file accepted (default 20 MB)."""
    try:
        return max(1, int(os.environ.get("MNIST_MAX_ONNX_BYTES", DEFAULT_MAX_BYTES)))
    except ValueError:
        raise OnnxRefused("MNIST_MAX_ONNX_BYTES must be an integer number of bytes") from None


def _mb(n: int) -> str:
    """Bytes in MB or GB (binary, as the caps are set), to one decimal: "20 MB", "37.3 GB"."""
    value, unit = (n / 2**20, "MB") if n < 2**30 else (n / 2**30, "GB")
    return f"{value:,.1f}".removesuffix(".0") + f" {unit}"


def check_size(data: bytes, name: str) -> None:
    limit = max_bytes()
    if len(data) > limit:
        raise OnnxRefused(f"{name} is {_mb(len(data))}: the lab takes ONNX files up to {_mb(limit)}")
    if not data:
        raise OnnxRefused(f"{name} is empty")


def sniff(data: bytes, name: str) -> None:
    """Name the formats people upload by mistake, from their first bytes."""
    head = data[:8]
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        raise OnnxRefused(f"{name} is a Python pickle, which the lab never loads: export the model to ONNX")
    if head[:4] == b"PK\x03\x04":
        raise OnnxRefused(f"{name} is a zip archive (a PyTorch .pt file?), not ONNX: export the model to ONNX")
    if head == b"\x89HDF\r\n\x1a\n":
        raise OnnxRefused(f"{name} is an HDF5 file (a Keras .h5?), not ONNX: convert it with tf2onnx")
    if len(data) > 9 and data[8:9] == b"{":
        raise OnnxRefused(f"{name} looks like a safetensors checkpoint: use the checkpoint upload, not ONNX")


def parse(data: bytes, name: str) -> onnx.ModelProto:
    """The bytes as a ModelProto that has a graph, parsed in memory."""
    proto = onnx.ModelProto()
    try:
        proto.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError):
        raise OnnxRefused(f"{name} is not an ONNX file (it does not parse as one)") from None
    if proto.ir_version < 3 or not proto.graph.node or not proto.graph.output or not proto.opset_import:
        raise OnnxRefused(f"{name} is not an ONNX model (no graph in it)")
    return adapter.keep_float_outputs(proto)


def _tensors(proto: onnx.ModelProto):
    """Every tensor stored in the main graph: initializers and Constant values."""
    yield from proto.graph.initializer
    for node in proto.graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.TENSOR:
                yield attr.t
            yield from attr.tensors


def _structure(proto: onnx.ModelProto, name: str) -> None:
    if proto.functions:
        raise OnnxRefused(f"{name} defines its own functions (model-local functions), which the lab does not run")
    nodes = proto.graph.node
    if len(nodes) > MAX_NODES:
        raise OnnxRefused(f"{name} has {len(nodes):,} nodes; the lab takes graphs of up to {MAX_NODES:,}")
    allowed = set(ALLOWED_OPS)
    for node in nodes:
        if node.domain not in DEFAULT_DOMAINS:
            raise OnnxRefused(f"{name} uses {node.op_type[:40]} from the domain {node.domain[:40]!r}: the lab runs "
                              "standard ONNX ops only, never a custom-op library")
        if node.op_type in CONTROL_FLOW:
            raise OnnxRefused(f"{name} uses {node.op_type}, which the lab does not run (no control flow)")
        if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute):
            raise OnnxRefused(f"{name}: its node {node.op_type[:40]} holds a subgraph, which the lab does not run")
        if node.op_type not in allowed:
            raise OnnxRefused(f"{name} uses {node.op_type[:40]}, which is not among the ops the lab runs "
                              "(docs/onnx.md lists them)")
    if proto.graph.sparse_initializer:
        raise OnnxRefused(f"{name} holds sparse tensors, which the lab does not take")
    for tensor in _tensors(proto):
        if tensor.data_location == onnx.TensorProto.EXTERNAL or tensor.external_data:
            raise OnnxRefused(f"{name} keeps tensors outside the file (external data): the lab takes one "
                              "self-contained file")
        if tensor.data_type not in _NUMERIC:
            raise OnnxRefused(f"{name} holds a tensor of a type the lab does not run (text or other)")


def _opsets(proto: onnx.ModelProto, name: str) -> int:
    opset = max((o.version for o in proto.opset_import if o.domain in DEFAULT_DOMAINS), default=None)
    if opset is None:
        raise OnnxRefused(f"{name} does not say which ONNX opset it uses")
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise OnnxRefused(f"{name} uses opset {opset}; the lab runs opsets {MIN_OPSET} to {MAX_OPSET}")
    for node in proto.graph.node:
        if not adapter.converts(node.op_type, opset):
            raise OnnxRefused(f"{name} uses {node.op_type} as opset {opset} defines it, which the lab's converter "
                              "does not map (export with an older opset, e.g. 17)")
        feature = adapter.unsupported_feature(node)
        if feature:
            raise OnnxRefused(f"{name} uses {feature}, which the lab does not run")
    return opset


def _checker(proto: onnx.ModelProto, name: str) -> None:
    try:
        onnx.checker.check_model(proto)
    except (onnx.checker.ValidationError, ValueError, RuntimeError) as exc:
        reason = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        raise OnnxRefused(f"{name} is not a valid ONNX model ({reason[:160]})") from None


def _weights(proto: onnx.ModelProto, name: str) -> None:
    for tensor in _tensors(proto):
        if any(d < 0 for d in tensor.dims) or tensor.segment.ByteSize():
            raise OnnxRefused(f"{name}: a stored tensor has a malformed shape")
        expected = math.prod(tensor.dims)
        if tensor.raw_data:
            itemsize = onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
            if len(tensor.raw_data) != expected * itemsize:
                raise OnnxRefused(f"{name}: the tensor {tensor.name[:60]!r} does not hold the data its shape says")
        lies = f"{name}: the tensor {tensor.name[:60]!r} does not hold the data its shape says"
        try:
            values = numpy_helper.to_array(tensor)
        except (ValueError, TypeError, RuntimeError):
            raise OnnxRefused(lies) from None
        if values.size != expected:
            raise OnnxRefused(lies)
        if tensor.data_type in _FLOATS and not np.isfinite(values.astype(np.float32, copy=False)).all():
            raise OnnxRefused(f"{name}: the weights {tensor.name[:60]!r} hold values that are not finite "
                              "(NaN or infinity)")


def _input(proto: onnx.ModelProto, name: str) -> tuple[onnx.ValueInfoProto, list]:
    stored = {t.name for t in proto.graph.initializer}
    inputs = [i for i in proto.graph.input if i.name not in stored]
    if len(inputs) != 1:
        raise OnnxRefused(f"{name} takes {len(inputs)} inputs; the lab feeds one tensor of images")
    value = inputs[0]
    kind = value.type.tensor_type
    if value.type.WhichOneof("value") != "tensor_type" or kind.elem_type != onnx.TensorProto.FLOAT:
        raise OnnxRefused(f"{name}'s input is not float32; the lab feeds float32 images")
    dims = [d.dim_value if d.WhichOneof("value") == "dim_value" else None for d in kind.shape.dim]
    return value, dims


def _fold(proto: onnx.ModelProto) -> onnx.ModelProto:
    """A copy with its constant parts computed: each node whose inputs are all stored tensors and whose
    output's size shape inference already knows to be at most FOLD_BYTES becomes a stored tensor,
    computed by onnx's own reference implementation of its op (no code from the file; an allowed op).

    Exporters compute a Pad's widths or a Reshape's shape from constants through ops whose values
    shape inference does not follow (Transpose, ConstantOfShape); computed, they fix every size."""
    folded = onnx.ModelProto()
    folded.CopyFrom(proto)
    graph = folded.graph
    for _ in range(len(graph.node)):
        try:
            inferred = shape_inference.infer_shapes(folded, data_prop=True)
        except (shape_inference.InferenceError, RuntimeError, ValueError):
            return folded
        sizes = {}
        for v in inferred.graph.value_info:
            dims = v.type.tensor_type.shape.dim
            if v.type.tensor_type.HasField("shape") and all(d.WhichOneof("value") == "dim_value" for d in dims):
                itemsize = onnx.helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type).itemsize \
                    if v.type.tensor_type.elem_type in _NUMERIC else FOLD_BYTES + 1
                sizes[v.name] = math.prod(d.dim_value for d in dims) * itemsize
        stored = {t.name: t for t in graph.initializer}
        progress = False
        for node in list(graph.node):
            if any(i and i not in stored for i in node.input) or node.op_type in CONTROL_FLOW:
                continue
            if node.op_type != "Constant" and any(sizes.get(o, FOLD_BYTES + 1) > FOLD_BYTES for o in node.output):
                continue
            sub = onnx.helper.make_model(
                onnx.helper.make_graph([node], "fold", [], [onnx.ValueInfoProto(name=o) for o in node.output],
                                       initializer=[stored[i] for i in dict.fromkeys(node.input) if i]),
                opset_imports=folded.opset_import)
            sub.ir_version = folded.ir_version
            try:
                values = ReferenceEvaluator(sub).run(None, {})
            except Exception:  # noqa: BLE001 - left unfolded: the checks after decide
                continue
            graph.node.remove(node)
            tensors = [numpy_helper.from_array(np.asarray(v), o) for o, v in zip(node.output, values)]
            graph.initializer.extend(tensors)
            stored.update({t.name: t for t in tensors})
            progress = True
        if not progress:
            break
    return folded


def _set_input(value: onnx.ValueInfoProto, dims: tuple[int, ...]) -> None:
    shape = value.type.tensor_type.shape
    del shape.dim[:]
    for d in dims:
        shape.dim.add().dim_value = d


def _sizes(proto: onnx.ModelProto, value: onnx.ValueInfoProto, dims: tuple[int, ...], name: str):
    """{tensor: (elements, bytes)} of every node output, and the outputs' shapes, for input shape `dims`."""
    _set_input(value, dims)
    try:
        inferred = shape_inference.infer_shapes(proto, check_type=True, strict_mode=True, data_prop=True)
    except (shape_inference.InferenceError, onnx.checker.ValidationError, RuntimeError, ValueError) as exc:
        reason = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        raise OnnxRefused(f"{name}: its shapes do not follow from a {list(dims)} input ({reason[:120]})") from None
    types = {v.name: v.type for v in [*inferred.graph.value_info, *inferred.graph.output]}
    sizes = {}
    for node in inferred.graph.node:
        for out in node.output:
            if not out:
                continue
            t = types.get(out)
            shape = t.tensor_type.shape if t is not None and t.WhichOneof("value") == "tensor_type" else None
            if shape is None or not t.tensor_type.HasField("shape") or \
                    any(d.WhichOneof("value") != "dim_value" for d in shape.dim):
                raise OnnxRefused(f"{name}: the size of what its {node.op_type} node makes does not follow from "
                                  "the input's, so the lab cannot bound it")
            if t.tensor_type.elem_type not in _NUMERIC:
                raise OnnxRefused(f"{name}: its {node.op_type} node makes a tensor of a type the lab does not run")
            elements = math.prod(d.dim_value for d in shape.dim)
            itemsize = onnx.helper.tensor_dtype_to_np_dtype(t.tensor_type.elem_type).itemsize
            sizes[out] = (node.op_type, elements, elements * itemsize)
    outputs = [(o.name, o.type.tensor_type.elem_type, [d.dim_value for d in o.type.tensor_type.shape.dim])
               for o in inferred.graph.output]
    return sizes, outputs


def _bound(sizes: dict, name: str) -> int:
    """One image's tensors added up, refused above MAX_IMAGE_BYTES (naming the largest)."""
    total = sum(b for _, _, b in sizes.values())
    if total > MAX_IMAGE_BYTES:
        op, _, largest = max(sizes.values(), key=lambda s: s[2])
        raise OnnxRefused(f"{name}: its {op} node makes a tensor of {_mb(largest)}; the lab allows "
                          f"{_mb(MAX_IMAGE_BYTES)} for all of one image's tensors")
    return total


def _output_index(outputs: list, name: str) -> int:
    scores = [i for i, (_, kind, dims) in enumerate(outputs)
              if kind in _FLOATS and dims and dims[0] == 1 and math.prod(dims[1:]) == 10]
    if len(scores) == 1:
        return scores[0]
    floats = [dims for _, kind, dims in outputs if kind in _FLOATS]
    if not scores and floats:
        n = math.prod(floats[0][1:]) if floats[0] else 1
        raise OnnxRefused(f"{name} gives {n:,} score{'s' * (n != 1)} per image; the lab needs ten, one per digit")
    if not scores:
        raise OnnxRefused(f"{name} gives no float scores; the lab needs ten per image, one per digit")
    raise OnnxRefused(f"{name} has {len(scores)} outputs of ten scores; the lab needs exactly one")


def check_static(data: bytes, name: str) -> tuple[onnx.ModelProto, int]:
    """The checks that read the file without inferring anything (up to the weights): the server runs
    them itself, so most hostile files are refused without a child. (The parsed model, its opset.)"""
    check_size(data, name)
    sniff(data, name)
    proto = parse(data, name)
    _structure(proto, name)
    opset = _opsets(proto, name)
    _weights(proto, name)
    return proto, opset


def check(data: bytes, name: str) -> tuple[onnx.ModelProto, "adapter.Found"]:
    """Every check in the module docstring's order: (the parsed model, what the wrapper needs)."""
    proto, opset = check_static(data, name)
    _checker(proto, name)
    value, dims = _input(proto, name)
    if not dims or dims[0] not in (None, 1):
        raise OnnxRefused(f"{name} takes a fixed batch of {dims[0] if dims else 0} images; the lab needs any "
                          "batch, or one image")
    layouts = admitted_layouts(dims[1:])
    if not layouts:
        shown = ",".join("N" if d is None else str(d) for d in dims)
        raise OnnxRefused(f"{name} takes input [{shown}]; the lab feeds 28x28 grey images as [N,1,28,28], "
                          "[N,28,28,1], [N,28,28] or [N,784]")
    bounded = _fold(proto)
    value = next(i for i in bounded.graph.input if i.name == value.name)
    admitted, any_batch, image_bytes, output_index, refusal = [], True, 0, 0, None
    for layout in layouts:
        shape = LAYOUTS[layout]
        try:
            one, outputs = _sizes(bounded, value, (1, *shape), name)
        except OnnxRefused as exc:
            refusal = refusal or exc
            continue
        image_bytes = max(image_bytes, _bound(one, name))
        output_index = _output_index(outputs, name)
        try:
            many, outputs = _sizes(bounded, value, (LARGEST_BATCH, *shape), name)
        except OnnxRefused:
            many = None
        if many is None or outputs[output_index][2][:1] != [LARGEST_BATCH]:
            any_batch = False  # a batch fixed inside the graph: the wrapper feeds one image at a time
        else:
            for tensor, (op, elements, _) in many.items():
                if elements > LARGEST_BATCH * one.get(tensor, (op, elements, 0))[1]:
                    raise OnnxRefused(f"{name}: its {op} node grows faster than the batch, so the lab "
                                      "cannot bound it")
        admitted.append(layout)
    if not admitted:
        raise refusal
    found = adapter.Found(input_name=value.name, layouts=tuple(admitted), any_batch=any_batch,
                          output_index=output_index, opset=opset, image_bytes=image_bytes)
    return proto, found

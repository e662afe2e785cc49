"""Export: a checkpoint as ONNX (to run anywhere), or as one self-contained bundle file.

ONNX. `onnx_bytes(model, meta)` uses torch.onnx.export's torch.export-based exporter (the default
since torch 2.9; it needs onnxscript). The graph takes "image", float32 [N,1,28,28] in [0,1] with a
dynamic batch N, and returns "logits", float32 [N,10]: padding and normalization are inside it, as
they are inside the model, so an ONNX runtime is fed exactly what the model is fed. The sidecar
JSON rides along in the model's metadata_props under META_KEY. `onnx_max_difference` runs the
file with onnxruntime and compares it with PyTorch.

Bundle. One safetensors file (`NAME.bundle.safetensors`) whose header metadata holds the sidecar
JSON under META_KEY: weights and metadata travel as one file, and the Draw and Inside pages' checkpoint
upload accepts it alone. `load_bundle` checks it as strictly as any uploaded checkpoint, with
checkpoints.py's own checks (size, safetensors header, the sidecar's fields, every tensor's name,
shape, dtype and finiteness). No pickle anywhere.
"""

from __future__ import annotations

import copy
import os
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.torch
import torch
from torch import nn

from .checkpoints import (MAX_SIDECAR_BYTES, MAX_UPLOAD_BYTES, _check_safetensors_header,
                          _sidecar_json, model_from_bytes, parse_meta, read_capped)
from .errors import CheckpointError
from .paths import atomic_write
from .predict import as_batch

META_KEY = "mnist_lab_meta"
BUNDLE_SUFFIX = ".bundle.safetensors"
ONNX_SUFFIX = ".onnx"
FORMATS = ("onnx", "bundle")

# torch.export traces through process-wide state: one export at a time (pages export on a thread).
_EXPORT_LOCK = threading.Lock()


# --- ONNX ---------------------------------------------------------------------------------------

def onnx_bytes(model: nn.Module, meta: dict[str, Any] | None = None) -> bytes:
    """The model as an ONNX file's bytes (input "image" [N,1,28,28], output "logits" [N,10])."""
    import onnx  # here: seconds to load, for export only

    _, text = _sidecar_json(model, meta or {})
    # A private copy: tracing must not touch a model that other sessions are running.
    m = copy.deepcopy(model).cpu().to(memory_format=torch.contiguous_format).eval()
    example = torch.rand(2, 1, 28, 28)  # batch 2: torch.export would fix a batch of 1 as a constant
    with _EXPORT_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's chatter about its own internals
        program = torch.onnx.export(m, (example,), None, dynamo=True, input_names=["image"],
                                    output_names=["logits"], dynamic_shapes=({0: torch.export.Dim("batch")},),
                                    verbose=False)
    proto = program.model_proto
    onnx.helper.set_model_props(proto, {META_KEY: text})
    proto.doc_string = "MNIST Lab model: image float32 [N,1,28,28] in [0,1] -> logits float32 [N,10]"
    return proto.SerializeToString()


def save_onnx(model: nn.Module, path: os.PathLike, meta: dict[str, Any] | None = None) -> Path:
    """Write the ONNX file atomically; return its path."""
    return _write(Path(path), onnx_bytes(model, meta))


def onnx_max_difference(model: nn.Module, data: bytes, images) -> float:
    """Largest |logit difference| between onnxruntime running `data` and PyTorch running `model`."""
    import onnxruntime as ort  # here: only the export's check runs the graph

    x = as_batch(images)
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    got = session.run(["logits"], {"image": x.numpy()})[0]
    model.eval()
    with torch.inference_mode():
        want = model(x.to(next(model.parameters()).device)).float().cpu().numpy()
    return float(np.abs(got - want).max()) if len(x) else 0.0


# --- the one-file bundle ------------------------------------------------------------------------

def bundle_bytes(model: nn.Module, meta: dict[str, Any]) -> bytes:
    """Weights and sidecar as one safetensors file's bytes."""
    arch, text = _sidecar_json(model, meta)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    return safetensors.torch.save(state, metadata={"architecture": arch, META_KEY: text})


def save_bundle(model: nn.Module, meta: dict[str, Any], path: os.PathLike) -> Path:
    """Write a bundle atomically; return its path."""
    return _write(Path(path), bundle_bytes(model, meta))


def load_bundle(source: os.PathLike | bytes) -> tuple[nn.Module, dict]:
    """(model in eval mode, sidecar meta) from a bundle file or its bytes; CheckpointError otherwise."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data, name = bytes(source), "the bundle"
    else:
        path = Path(source)
        name = path.name
        data = read_capped(path, MAX_UPLOAD_BYTES)
    if len(data) > MAX_UPLOAD_BYTES:
        raise CheckpointError(f"{name} is too large ({len(data) / 2**20:.1f} MB; "
                              f"the limit is {MAX_UPLOAD_BYTES / 2**20:.0f} MB)")
    header = _check_safetensors_header(data, name)
    metadata = header.get("__metadata__")
    text = metadata.get(META_KEY) if isinstance(metadata, dict) else None
    if not isinstance(text, str):
        raise CheckpointError(f"{name} is not an MNIST Lab bundle (no {META_KEY} in its header): "
                              "a plain checkpoint needs its .json sidecar too")
    if len(text) > MAX_SIDECAR_BYTES:
        raise CheckpointError(f"{name}: its metadata is too large ({len(text) / 2**10:.0f} KB)")
    meta = parse_meta(text, name)
    return model_from_bytes(data, meta, name), meta


def _write(path: Path, data: bytes) -> Path:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))
    except OSError as exc:
        raise CheckpointError(f"cannot write {path.name}: {exc.strerror or type(exc).__name__}") from None
    return path


def export_checkpoint(model: nn.Module, meta: dict[str, Any], fmt: str, path: os.PathLike) -> Path:
    """Write `model` as `fmt` ("onnx" or "bundle") to `path`: what the CLI's export does."""
    if fmt == "onnx":
        return save_onnx(model, path, meta)
    if fmt == "bundle":
        return save_bundle(model, meta, path)
    raise CheckpointError(f"unknown export format {fmt!r}: choose one of {', '.join(FORMATS)}")

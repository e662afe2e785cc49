"""Checkpoints: weights as safetensors, metadata as a JSON sidecar. No pickle, ever.

`name.safetensors` holds the tensors; `name.json` beside it holds the architecture (a model-zoo
name), the training config, the metrics, when it was made and the library versions. Both are written
to temporary names and renamed, weights first, so a checkpoint with a sidecar is always whole.
`load_checkpoint` rebuilds the model from the zoo and raises CheckpointError, with a one-line
reason, for anything it cannot load.
"""

from __future__ import annotations

import json
import os
import struct
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from . import __version__
from .errors import CheckpointError
from .models import create_model, list_models
from .paths import REPO_ROOT, checkpoint_dir

SUFFIX = ".safetensors"
MAX_HEADER_BYTES = 10 << 20  # a real header of ours is a few KB


def sidecar_path(path: os.PathLike) -> Path:
    return Path(path).with_suffix(".json")


def weights_path(path: os.PathLike) -> Path:
    """Accept either file of a checkpoint (or its stem) and return the .safetensors path."""
    p = Path(path)
    return p if p.suffix == SUFFIX else p.with_suffix(SUFFIX)


def _atomic_write(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _sidecar_json(model: nn.Module, meta: dict[str, Any]) -> tuple[str, str]:
    """(architecture, sidecar JSON text): `meta` plus the format, architecture, date and library versions."""
    import safetensors

    arch = meta.get("architecture") or getattr(model, "arch_name", None)
    if arch not in list_models():
        raise CheckpointError(f"cannot save: architecture {arch!r} is not in the model zoo")
    sidecar = {
        "format": "mnist-lab-checkpoint",
        "format_version": 1,
        **meta,
        "architecture": arch,
        "created": meta.get("created") or time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "versions": {"mnist_lab": __version__, "torch": torch.__version__, "safetensors": safetensors.__version__},
    }
    try:
        return arch, json.dumps(sidecar, indent=2, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"cannot save: metadata is not JSON-serialisable ({exc})") from None


def save_checkpoint(model: nn.Module, meta: dict[str, Any], path: os.PathLike) -> Path:
    """Write `path` (.safetensors) and its .json sidecar atomically; return the weights path.

    `meta` may hold config, metrics and anything JSON-serialisable; the architecture is taken from
    the model (create_model sets it) unless meta names one.
    """
    from safetensors.torch import save_file

    path = weights_path(path)
    arch, text = _sidecar_json(model, meta)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(path, lambda tmp: save_file(state, tmp, metadata={"architecture": arch}))
        _atomic_write(sidecar_path(path), lambda tmp: Path(tmp).write_text(text))
    except OSError as exc:
        raise CheckpointError(f"cannot write the checkpoint {path.name}: {exc.strerror or exc}") from None
    return path


def parse_meta(text: bytes | str, name: str = "sidecar") -> dict:
    """A sidecar's JSON, checked to be an object naming a known architecture."""
    try:
        meta = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise CheckpointError(f"{name} is not valid JSON ({exc.__class__.__name__})") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{name} must hold a JSON object")
    arch = meta.get("architecture")
    if not isinstance(arch, str) or arch not in list_models():
        raise CheckpointError(f"{name} names an unknown architecture {str(arch)[:40]!r}")
    return meta


def read_meta(path: os.PathLike) -> dict:
    """The sidecar of a checkpoint, checked to be a JSON object naming a known architecture."""
    side = sidecar_path(weights_path(path))
    if not side.is_file():
        raise CheckpointError(f"{side.name} is missing: a checkpoint needs its JSON sidecar")
    try:
        text = side.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"{side.name} cannot be read: {exc.strerror or exc}") from None
    return parse_meta(text, side.name)


def _check_safetensors_header(data: bytes, name: str) -> dict:
    """Reject empty, truncated and non-safetensors data (a pickle renamed, say) before parsing.

    Returns the parsed header (tensor entries, and "__metadata__" where the file has one)."""
    size = len(data)
    if size < 8:
        raise CheckpointError(f"{name} is empty or truncated ({size} bytes)")
    (n,) = struct.unpack("<Q", data[:8])
    if n > MAX_HEADER_BYTES or 8 + n > size:
        raise CheckpointError(f"{name} is not a safetensors file (bad header length)")
    try:
        entries = json.loads(data[8:8 + n])
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise CheckpointError(f"{name} is not a safetensors file (bad header)") from None
    if not isinstance(entries, dict):
        raise CheckpointError(f"{name} is not a safetensors file (bad header)")
    ends = []
    for key, entry in entries.items():
        if key == "__metadata__":
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int for o in offsets)):
            raise CheckpointError(f"{name} is not a safetensors file (bad header entry)")
        ends.append(offsets[1])
    end = max(ends, default=0)
    if 8 + n + end > size:
        raise CheckpointError(f"{name} is truncated ({size} bytes, the header promises {8 + n + end})")
    return entries


def model_from_bytes(data: bytes, meta: dict, name: str = "checkpoint") -> nn.Module:
    """Rebuild meta's architecture from safetensors bytes, checking every tensor's name and shape."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    _check_safetensors_header(data, name)
    try:
        state = load(bytes(data))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{name} could not be read as safetensors: {str(exc).splitlines()[0]}") from None
    model = create_model(meta["architecture"])
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        detail = (f"missing {', '.join(missing[:3])}" if missing else f"unexpected {', '.join(unexpected[:3])}")
        raise CheckpointError(f"{name} does not fit {meta['architecture']}: {detail}")
    for key in expected:  # in the model's order: safetensors' dict order varies from load to load
        tensor = state[key]
        if tensor.shape != expected[key].shape:
            raise CheckpointError(f"{name} does not fit {meta['architecture']}: {key} has shape "
                                  f"{tuple(tensor.shape)}, expected {tuple(expected[key].shape)}")
        if tensor.dtype != expected[key].dtype:
            raise CheckpointError(f"{name}: {key} is {tensor.dtype}, expected {expected[key].dtype}")
    model.load_state_dict(state)
    return model.eval()


def load_checkpoint(path: os.PathLike) -> tuple[nn.Module, dict]:
    """(model in eval mode on CPU, sidecar metadata). Raises CheckpointError with a one-line reason."""
    path = weights_path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    meta = read_meta(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"{path.name} cannot be read: {exc.strerror or exc}") from None
    return model_from_bytes(data, meta, path.name), meta


# --- uploads: untrusted bytes, checked and loaded in memory, never written ------------------------

MAX_UPLOAD_BYTES = 20 << 20      # our largest checkpoint is about 0.6 MB
MAX_SIDECAR_BYTES = 256 << 10
MAX_META_STRING = 2_000          # no field of a real sidecar is longer


def check_untrusted_meta(meta: dict, name: str = "sidecar") -> None:
    """Refuse sidecars with enormous or path-like fields (an upload must not smuggle paths or bulk)."""
    def walk(value, where: str, depth: int) -> None:
        if depth > 8:
            raise CheckpointError(f"{name}: {where} is nested too deeply")
        if isinstance(value, str):
            if len(value) > MAX_META_STRING:
                raise CheckpointError(f"{name}: {where} is too long ({len(value):,} characters)")
        elif isinstance(value, dict):
            if len(value) > 200:
                raise CheckpointError(f"{name}: {where} has too many fields")
            for k, v in value.items():
                walk(v, f"{where}.{k}" if where else k, depth + 1)
        elif isinstance(value, list):
            if len(value) > 1000:
                raise CheckpointError(f"{name}: {where} is too long ({len(value):,} items)")
            for i, v in enumerate(value):
                walk(v, f"{where}[{i}]", depth + 1)

    walk(meta, "", 0)
    for field in ("architecture", "name", "run_id"):
        value = meta.get(field)
        if isinstance(value, str) and ("/" in value or "\\" in value or ".." in value or "\x00" in value):
            raise CheckpointError(f"{name}: {field} must be a plain name, not a path")


def load_uploaded_checkpoint(weights: bytes, sidecar: bytes) -> tuple[nn.Module, dict]:
    """A checkpoint uploaded as its two files' bytes -> (model, meta), in memory; nothing is written."""
    if len(weights) > MAX_UPLOAD_BYTES:
        raise CheckpointError(f"the weights file is too large ({len(weights) / 2**20:.1f} MB; "
                              f"the limit is {MAX_UPLOAD_BYTES / 2**20:.0f} MB)")
    if len(sidecar) > MAX_SIDECAR_BYTES:
        raise CheckpointError(f"the sidecar is too large ({len(sidecar) / 2**10:.0f} KB; "
                              f"the limit is {MAX_SIDECAR_BYTES / 2**10:.0f} KB)")
    meta = parse_meta(sidecar, "the sidecar")
    check_untrusted_meta(meta, "the sidecar")
    return model_from_bytes(weights, meta, "the weights file"), meta


def checkpoint_dirs() -> list[Path]:
    """Where checkpoints are looked for: the configured folder, then the committed defaults."""
    dirs = [checkpoint_dir(), REPO_ROOT / "checkpoints"]
    return list(dict.fromkeys(d.resolve() for d in dirs))


def list_checkpoints() -> list[Path]:
    """Every complete checkpoint (weights with a sidecar), defaults first in zoo order, then by name."""
    found = {}
    for folder in checkpoint_dirs():
        for p in sorted(folder.glob(f"*{SUFFIX}")):
            if sidecar_path(p).is_file() and p.name not in found:
                found[p.name] = p
    order = {f"{name}{SUFFIX}": i for i, name in enumerate(list_models())}
    return sorted(found.values(), key=lambda p: (order.get(p.name, len(order)), p.name))


def default_checkpoint(name: str = "lenet5") -> Optional[Path]:
    """The committed checkpoint of a zoo architecture, if present."""
    p = REPO_ROOT / "checkpoints" / f"{name}{SUFFIX}"
    return p if p.is_file() and sidecar_path(p).is_file() else None

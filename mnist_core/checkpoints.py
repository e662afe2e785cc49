"""Checkpoints: weights as safetensors, metadata as a JSON sidecar. No pickle, ever.

`name.safetensors` holds the tensors; `name.json` beside it holds the architecture (a model-zoo
name), the training config, the metrics, when it was made and the library versions. Both are written
to temporary names and renamed, weights first, so a checkpoint with a sidecar is always whole.
`load_checkpoint` rebuilds the model from the zoo and raises CheckpointError, with a one-line
reason, for anything it cannot load.

Every checkpoint is read as untrusted, wherever it comes from (our folder, an upload, a bundle): the
sidecar's fields are checked for type and size (`check_meta`), a number too long for Python to read
is refused rather than raised as a ValueError, every tensor must fit the architecture and be finite,
and error messages name a file, never a server folder.
"""

from __future__ import annotations

import json
import math
import os
import struct
import time
from pathlib import Path
from typing import Any, Iterable, Optional

import safetensors
import safetensors.torch
import torch
from torch import nn

from . import __version__
from .errors import CheckpointError, first_line
from .models import create_model, list_models
from .paths import REPO_ROOT, atomic_write, checkpoint_dir
from .runfiles import RUN_ID

SUFFIX = ".safetensors"
MAX_HEADER_BYTES = 10 << 20  # a real header of ours is a few KB
# Every checkpoint is untrusted, wherever it lies: a file in the checkpoint folder, an upload or the
# registry's copy is refused above these sizes before it is read (our largest is about 0.9 MB).
MAX_UPLOAD_BYTES = 20 << 20
MAX_SIDECAR_BYTES = 256 << 10


def sidecar_path(path: os.PathLike) -> Path:
    return Path(path).with_suffix(".json")


def weights_path(path: os.PathLike) -> Path:
    """Accept either file of a checkpoint (or its stem) and return the .safetensors path."""
    p = Path(path)
    return p if p.suffix == SUFFIX else p.with_suffix(SUFFIX)


def _sidecar_json(model: nn.Module, meta: dict[str, Any]) -> tuple[str, str]:
    """(architecture, sidecar JSON text): `meta` plus the format, architecture, date and library versions."""
    arch = meta.get("architecture") or getattr(model, "arch_name", None)
    metrics = meta.get("metrics")
    if isinstance(metrics, dict):  # a diverged run's NaN loss is saved as unknown: loading refuses NaN
        meta = {**meta, "metrics": {k: None if isinstance(v, float) and not math.isfinite(v) else v
                                    for k, v in metrics.items()}}
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
    path = weights_path(path)
    arch, text = _sidecar_json(model, meta)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    broken = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if broken:  # loading refuses such weights: never write a checkpoint nobody can open
        raise CheckpointError(f"training diverged: {broken[0]} holds values that are not finite (NaN or infinity), "
                              "so no checkpoint was saved; try a smaller learning rate")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda tmp: safetensors.torch.save_file(state, tmp, metadata={"architecture": arch}))
        atomic_write(sidecar_path(path), lambda tmp: Path(tmp).write_text(text))
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise CheckpointError(f"cannot write the checkpoint {path.name}: {reason}") from None
    return path


def _json(text: bytes | str, name: str, what: str = "is not valid JSON") -> Any:
    """json.loads with every way it can fail as one CheckpointError line.

    Besides malformed JSON (a ValueError) and deep nesting (RecursionError), Python refuses to read
    an integer of more than 4,300 digits (a plain ValueError, sys.get_int_max_str_digits)."""
    try:
        return json.loads(text)
    except RecursionError:
        raise CheckpointError(f"{name} {what} (nested too deeply)") from None
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{name} {what} ({exc.__class__.__name__})") from None
    except UnicodeDecodeError:
        raise CheckpointError(f"{name} {what} (not UTF-8 text)") from None
    except ValueError:
        raise CheckpointError(f"{name} {what} (it holds a number with too many digits)") from None


def parse_meta(text: bytes | str, name: str = "sidecar") -> dict:
    """A sidecar's JSON, checked to be an object naming a known architecture, its fields by check_meta."""
    meta = _json(text, name)
    if not isinstance(meta, dict):
        raise CheckpointError(f"{name} must hold a JSON object")
    arch = meta.get("architecture")
    if not isinstance(arch, str) or arch not in list_models():
        raise CheckpointError(f"{name} names an unknown architecture {str(arch)[:40]!r}")
    check_meta(meta, name)
    return meta


MAX_META_STRING = 2_000          # no field of a real sidecar is longer
PLAIN_NAMES = ("architecture", "name", "run_id")   # fields a page may turn into a file name
TEXT_FIELDS = ("created", "format")
DICT_FIELDS = ("config", "versions")


def _finite_number(value: Any) -> bool:
    """An int or float a float can hold, not NaN or infinite (JSON's true and false are not numbers)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


def _shown(where: str) -> str:
    """A field's name as an error message may quote it: short, and one printable line whatever it holds."""
    return "".join(c if c.isprintable() else "?" for c in where[:80])


def check_meta(meta: dict, name: str = "sidecar") -> None:
    """Refuse a sidecar whose fields have the wrong type, or are enormous, path-like or non-finite.

    What the pages read must be what they expect: metrics a dict of finite numbers or null (accuracies
    in [0, 1]), config and versions dicts, names plain short strings, format_version an integer. Other
    fields may hold anything JSON holds, within bounds on size and nesting.
    """
    def walk(value, where: str, depth: int) -> None:
        if depth > 8:
            raise CheckpointError(f"{name}: {_shown(where)} is nested too deeply")
        if isinstance(value, str):
            if len(value) > MAX_META_STRING:
                raise CheckpointError(f"{name}: {_shown(where)} is too long ({len(value):,} characters)")
        elif isinstance(value, float) and not math.isfinite(value):
            raise CheckpointError(f"{name}: {_shown(where)} must be a finite number, not {value}")
        elif isinstance(value, int) and not isinstance(value, bool) and not _finite_number(value):
            raise CheckpointError(f"{name}: {_shown(where)} must be a number a float can hold")
        elif isinstance(value, dict):
            if len(value) > 200:
                raise CheckpointError(f"{name}: {_shown(where)} has too many fields")
            for k, v in value.items():
                walk(v, f"{where}.{k}"[:80] if where else k[:80], depth + 1)
        elif isinstance(value, list):
            if len(value) > 1000:
                raise CheckpointError(f"{name}: {_shown(where)} is too long ({len(value):,} items)")
            for i, v in enumerate(value):
                walk(v, f"{where}[{i}]", depth + 1)

    metrics = meta.get("metrics")
    if metrics is not None:
        if not isinstance(metrics, dict):
            raise CheckpointError(f"{name}: metrics must be a JSON object of numbers")
        for key, value in metrics.items():
            if value is None:
                continue
            if not _finite_number(value):
                raise CheckpointError(f"{name}: metrics.{_shown(key)} must be a finite number or null")
            if key.endswith("accuracy") and not 0.0 <= value <= 1.0:
                raise CheckpointError(f"{name}: metrics.{_shown(key)} must be a fraction between 0 and 1, "
                                      f"not {value:g}")
    for field in DICT_FIELDS:
        if meta.get(field) is not None and not isinstance(meta[field], dict):
            raise CheckpointError(f"{name}: {field} must be a JSON object")
    for field in PLAIN_NAMES + TEXT_FIELDS:
        if meta.get(field) is not None and not isinstance(meta[field], str):
            raise CheckpointError(f"{name}: {field} must be a string")
    version = meta.get("format_version")
    if version is not None and (isinstance(version, bool) or not isinstance(version, int) or abs(version) > 10**6):
        raise CheckpointError(f"{name}: format_version must be a whole number")
    walk(meta, "", 0)
    for field in PLAIN_NAMES:
        value = meta.get(field)
        if isinstance(value, str) and ("/" in value or "\\" in value or ".." in value or "\x00" in value):
            raise CheckpointError(f"{name}: {field} must be a plain name, not a path")


def read_capped(path: Path, limit: int) -> bytes:
    """A file's bytes, refused in one line (naming the file, never its folder) when it holds more than
    `limit` bytes. Reads at most limit + 1 bytes, so a file that is sparse, growing or lying about its
    size never costs more memory than the limit."""
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError as exc:
        raise CheckpointError(f"{path.name} cannot be read: {exc.strerror or type(exc).__name__}") from None
    if len(data) > limit:
        shown = f"{limit >> 20} MB" if limit >= 1 << 20 else f"{limit >> 10} KB"
        raise CheckpointError(f"{path.name} is too large (the limit for this file is {shown})")
    return data


def read_meta(path: os.PathLike) -> dict:
    """The sidecar of a checkpoint, checked to be a JSON object naming a known architecture."""
    side = sidecar_path(weights_path(path))
    if not side.is_file():
        raise CheckpointError(f"{side.name} is missing: a checkpoint needs its JSON sidecar")
    return parse_meta(read_capped(side, MAX_SIDECAR_BYTES), side.name)


def _check_safetensors_header(data: bytes, name: str) -> dict:
    """Reject empty, truncated and non-safetensors data (a pickle renamed, say) before parsing.

    Returns the parsed header (tensor entries, and "__metadata__" where the file has one)."""
    size = len(data)
    if size < 8:
        raise CheckpointError(f"{name} is empty or truncated ({size} bytes)")
    (n,) = struct.unpack("<Q", data[:8])
    if n > MAX_HEADER_BYTES or 8 + n > size:
        raise CheckpointError(f"{name} is not a safetensors file (bad header length)")
    entries = _json(data[8:8 + n], name, "is not a safetensors file: bad header")
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
    _check_safetensors_header(data, name)
    try:
        state = safetensors.torch.load(bytes(data))
    except (safetensors.SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{name} could not be read as safetensors: {first_line(exc)}") from None
    model = create_model(meta["architecture"])
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        detail = (f"missing {', '.join(missing[:3])}" if missing
                  else f"unexpected {', '.join(_shown(k) for k in unexpected[:3])}")
        raise CheckpointError(f"{name} does not fit {meta['architecture']}: {detail}")
    for key in expected:  # in the model's order: safetensors' dict order varies from load to load
        tensor = state[key]
        if tensor.shape != expected[key].shape:
            raise CheckpointError(f"{name} does not fit {meta['architecture']}: {key} has shape "
                                  f"{tuple(tensor.shape)}, expected {tuple(expected[key].shape)}")
        if tensor.dtype != expected[key].dtype:
            raise CheckpointError(f"{name}: {key} is {tensor.dtype}, expected {expected[key].dtype}")
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            # A diverged run or a crafted file: every prediction would be NaN ("Prediction 0 ... nan%").
            raise CheckpointError(f"{name}: {key} holds values that are not finite (NaN or infinity)")
    model.load_state_dict(state)
    return model.eval()


def load_checkpoint(path: os.PathLike) -> tuple[nn.Module, dict]:
    """(model in eval mode on CPU, sidecar metadata). Raises CheckpointError with a one-line reason."""
    path = weights_path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path.name}")  # the file name, never the server's folder
    meta = read_meta(path)
    return model_from_bytes(read_capped(path, MAX_UPLOAD_BYTES), meta, path.name), meta


# --- uploads: untrusted bytes, checked and loaded in memory, never written ------------------------

def load_uploaded_checkpoint(weights: bytes, sidecar: bytes) -> tuple[nn.Module, dict]:
    """A checkpoint uploaded as its two files' bytes -> (model, meta), in memory; nothing is written."""
    if len(weights) > MAX_UPLOAD_BYTES:
        raise CheckpointError(f"the weights file is too large ({len(weights) / 2**20:.1f} MB; "
                              f"the limit is {MAX_UPLOAD_BYTES / 2**20:.0f} MB)")
    if len(sidecar) > MAX_SIDECAR_BYTES:
        raise CheckpointError(f"the sidecar is too large ({len(sidecar) / 2**10:.0f} KB; "
                              f"the limit is {MAX_SIDECAR_BYTES / 2**10:.0f} KB)")
    meta = parse_meta(sidecar, "the sidecar")
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


def find_checkpoints(search: str = "", limit: int = 30, keep: Iterable[str] = ()) -> tuple[list[Path], int]:
    """A bounded choice of checkpoints for a picker, and how many match: the files named in `keep` (a
    picker's current choice), the defaults in zoo order, then the newest others (by the run id in a
    run's file name, MODEL-RUN_ID; other names after, by name), `limit` in all at most; all but `keep`
    only when their name contains `search` (any case). The count is of the weights files whose name
    contains `search`. The folders are listed by name; only the offered files are checked for a
    sidecar, so a host with ten thousand runs' checkpoints costs a picker one directory listing."""
    names: dict[str, Path] = {}
    for folder in checkpoint_dirs():
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    if entry.name.endswith(SUFFIX) and entry.name not in names:
                        names[entry.name] = Path(folder) / entry.name
        except OSError:
            continue  # a folder not made yet
    wanted = search.strip().lower()
    matching = [n for n in names if wanted in n.lower()]
    defaults = [f"{name}{SUFFIX}" for name in list_models()]
    run_id = {n: n.removesuffix(SUFFIX)[-22:] for n in matching}  # MODEL-YYYYMMDD-HHMMSS-xxxxxx
    runs_newest_first = sorted((n for n in matching if RUN_ID.match(run_id[n])), key=run_id.get, reverse=True)
    shown: list[Path] = []
    ordered = [*keep, *(n for n in defaults if n in matching), *runs_newest_first, *sorted(matching)]
    for name in dict.fromkeys(ordered):
        if len(shown) >= limit:
            break
        path = names.get(name)
        if path is not None and sidecar_path(path).is_file():
            shown.append(path)
    return shown, len(matching)


# The committed checkpoint the Draw page starts with: the one that reads canvas drawings best
# (benchmarks/drawn_digits.py, BENCHMARKS.md "Drawn digits").
DRAW_DEFAULT = "lenet5"


def default_checkpoint(name: str = "lenet5") -> Optional[Path]:
    """The committed checkpoint of a zoo architecture, if present."""
    p = REPO_ROOT / "checkpoints" / f"{name}{SUFFIX}"
    return p if p.is_file() and sidecar_path(p).is_file() else None

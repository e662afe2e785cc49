"""The first load of an ONNX file, in a child process that may die: `verify(data, name, ...)`.

The checks (checks.py), the conversion and a trial inference that scores every admitted input
convention (conventions.find) run in a heavy job's child (mnist_core.heavy: forked from its
forkserver, one at a time per visitor, killed when the visitor leaves), which first puts limits on
itself: its address space at what it has mapped already plus `memory_bytes` (RLIMIT_AS: an allocation
past it fails), `cpu_seconds` of CPU (RLIMIT_CPU: the kernel kills it past them) and no file written
(RLIMIT_FSIZE 0); the server waits at most `seconds` of wall clock before it kills the child. A file
that slips past the checks kills a child, never the server. What comes back is plain values: what
the checks found (adapter.Found) and the scores (conventions.Reading). The server then parses and
converts the same bytes itself (adapter.build), as the child just did within its limits.

Settings (read by the server, passed to the child as arguments):
    MNIST_ONNX_CHECK_SECONDS    wall-clock and CPU seconds for one file's check (default 60)
    MNIST_ONNX_CHECK_MEMORY_MB  memory the check may add to what the child starts with (default 1536)
"""

from __future__ import annotations

import os
import re
import resource
import time
from dataclasses import replace
from typing import Callable

import numpy as np
import torch

from .. import heavy
from ..data import load_mnist
from ..errors import BusyError, ConfigError, MnistLabError, OnnxRefused
from ..explain import sample_indices
from . import adapter, checks
from .conventions import LAYOUTS, SAMPLE_SEED, SAMPLE_SIZE, Convention, Reading, candidates, find

DEFAULT_SECONDS = 60
DEFAULT_MEMORY_MB = 1536


def _setting(name: str, default: int) -> int:
    try:
        return max(1, int(os.environ.get(name, default)))
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {os.environ[name]!r}") from None


def _mapped_bytes() -> int:
    """This process's address space now (Linux: /proc/self/statm's first field, in pages)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[0]) * resource.getpagesize()
    except (OSError, ValueError, IndexError):
        return 0


def _limit_self(memory_bytes: int, cpu_seconds: int) -> None:
    mapped = _mapped_bytes()
    if mapped:
        resource.setrlimit(resource.RLIMIT_AS, (mapped + memory_bytes, mapped + memory_bytes))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 5))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))


_PATH = re.compile(r"(?:[A-Za-z]:)?(?:[/\\][\w.@+-]+){2,}")


def _said(exc: BaseException) -> str:
    """An unexpected error's first line, short, without any path in it."""
    line = next((s.strip() for s in str(exc).splitlines() if s.strip()), "")
    return f"{type(exc).__name__}: {_PATH.sub('...', line)[:120]}" if line else type(exc).__name__


def _out_of_memory(exc: BaseException) -> bool:
    """MemoryError, or torch's own words when its allocator is refused memory."""
    return isinstance(exc, MemoryError) or "can't allocate memory" in str(exc)


def _takes_batches(net: adapter.OnnxNet, images_u8: np.ndarray) -> bool:
    """Whether two images at once give what each gives alone."""
    x = torch.as_tensor(images_u8).float().div(255)[:, None]
    try:
        with torch.inference_mode():
            together = net(x)
            alone = torch.cat([net(x[i:i + 1]) for i in range(len(x))])
    except Exception as exc:  # a shape fixed to one image fails here
        if _out_of_memory(exc):
            raise
        return False
    return together.shape == alone.shape and torch.allclose(together, alone, rtol=1e-4, atol=1e-4)


def trial(data: bytes, name: str, images_u8: np.ndarray, labels: np.ndarray, fixed: dict,
          memory_bytes: int, cpu_seconds: int) -> tuple[adapter.Found, Reading]:
    """The child's work: limits, checks, conversion, every admitted convention scored on the images."""
    _limit_self(memory_bytes, cpu_seconds)
    try:
        proto, found = checks.check(data, name)
        del data
        among = candidates(found.layouts, fixed.get("layout"), fixed.get("scale"), fixed.get("ink"))
        if not among:
            raise OnnxRefused(f"{name} cannot be read as {fixed['layout']}: its input admits "
                              f"{', '.join(found.layouts)}")
        net = adapter.build(proto, found, Convention(layout=found.layouts[0]))
        del proto
        if found.any_batch and not _takes_batches(net, images_u8[:2]):
            found = replace(found, any_batch=False)  # shape inference missed a batch fixed in the graph
            net.found = found

        def run(convention: Convention, x: torch.Tensor) -> torch.Tensor:
            net.convention = convention  # output "logits": the raw scores
            return net(x)

        reading = find(run, images_u8, labels, candidates(found.layouts), among if fixed else None)
        return found, reading
    except OnnxRefused:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever the converter or torch says, in one line
        if _out_of_memory(exc):
            raise OnnxRefused(f"{name} needs more memory than the lab allows for a check "
                              f"({memory_bytes >> 20:,} MB)") from None
        raise OnnxRefused(f"{name} could not be run by the lab ({_said(exc)})") from None


def sample() -> tuple[np.ndarray, np.ndarray]:
    """The fixed training images every convention is scored on (uint8 [SAMPLE_SIZE,28,28], labels)."""
    images, labels = load_mnist("train")
    idx = sample_indices(len(labels), SAMPLE_SIZE, SAMPLE_SEED)
    return images.numpy()[idx], labels.numpy()[idx]


def verify(data: bytes, name: str, fixed: dict | None = None, owner: str = "local",
           poll: Callable[[], None] = lambda: None) -> tuple[adapter.Found, Reading]:
    """Check, convert and score the file in a limited child: (what was found, the reading);
    OnnxRefused in one line for a file the lab does not run, BusyError when over heavy's bounds."""
    checks.check_static(data, name)  # most hostile files end here, before any child
    fixed = {k: v for k, v in (fixed or {}).items() if v is not None}
    if fixed.get("layout") not in (None, *LAYOUTS):
        raise OnnxRefused(f"layout must be one of {', '.join(LAYOUTS)}")
    seconds = _setting("MNIST_ONNX_CHECK_SECONDS", DEFAULT_SECONDS)
    memory = _setting("MNIST_ONNX_CHECK_MEMORY_MB", DEFAULT_MEMORY_MB) << 20
    images, labels = sample()
    deadline = time.monotonic() + seconds

    def bounded_poll() -> None:
        poll()
        if time.monotonic() > deadline:
            raise OnnxRefused(f"{name} took longer than {seconds} s to check; the lab stopped it")

    try:
        return heavy.run(owner, trial, data, name, images, labels, fixed, memory, seconds, poll=bounded_poll)
    except (OnnxRefused, BusyError):
        raise
    except MnistLabError:  # the child died: a limit (memory, CPU) or a crash in native code
        raise OnnxRefused(f"{name} stopped its check process (the lab allows {memory >> 20:,} MB and "
                          f"{seconds} s of CPU): the lab does not run it") from None

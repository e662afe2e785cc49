"""Heavy work a visitor can ask for, bounded: a t-SNE map, attribution maps, a model over the test set.

Each costs seconds to minutes of a core, and anyone with the link can ask for it. So, on one server:

- at most `max_jobs()` run at once (MNIST_MAX_HEAVY, default 2; 1 under MNIST_DEMO), and at most one
  per visitor (their owner token). A request over either bound is refused in one line (BusyError),
  after waiting up to GRACE_SECONDS: a page rerun asks again while its previous run's job is still
  being dropped.
- a job runs in a child process, so it can be dropped. `run` waits for the child and calls `poll`
  every POLL_SECONDS; a page passes Streamlit's stop/rerun check there. When the visitor leaves
  (Streamlit stops a closed session's script run) or reruns the page, that check raises StopException
  or RerunException, and `run`'s `finally` kills the child and frees its slot. No job outlives the page
  run that asked for it.
- a child uses one thread (torch, and OpenMP/BLAS through threadpoolctl), so N jobs hold N cores.

Children are forked from the standard library's forkserver, started on the first job and preloaded
(PRELOAD) with torch, scikit-learn, captum and the explain and evaluate code, so a job starts without
importing them. The server is never forked itself: it runs threads (a lock one of them holds, an
OpenMP pool that is gone, would be inherited). A child gets everything as arguments and reads no
setting: the forkserver keeps the environment it started with.

What crosses to a child goes through multiprocessing's pipe (it pickles, between this server and a
process it forked): plain values and numpy arrays, and a model as its architecture's name and
safetensors bytes, rebuilt and checked by checkpoints.model_from_bytes. Results come back the same way.
"""

from __future__ import annotations

import ctypes
import functools
import multiprocessing
import os
import signal
import sys
import threading
import time
import types
from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch
from safetensors.torch import save
from threadpoolctl import threadpool_limits
from torch import nn

from . import limits
from .checkpoints import model_from_bytes
from .errors import BusyError, ConfigError, MnistLabError

POLL_SECONDS = 0.2       # how often a waiting page run checks whether it was stopped
GRACE_SECONDS = 3.0      # how long a request waits for a slot before it is refused
PRELOAD = ["mnist_core.heavy", "mnist_core.explain", "mnist_core.evaluate", "sklearn.manifold",
           "sklearn.decomposition", "captum.attr"]


def max_jobs() -> int:
    """MNIST_MAX_HEAVY: heavy jobs at once on this server (default 2, or 1 under MNIST_DEMO)."""
    default = 1 if limits.current().demo else 2
    try:
        return max(1, int(os.environ.get("MNIST_MAX_HEAVY", default)))
    except ValueError:
        raise ConfigError(f"MNIST_MAX_HEAVY must be an integer, got {os.environ['MNIST_MAX_HEAVY']!r}") from None


# --- the slots ----------------------------------------------------------------------------------

_slots = threading.Condition()
_holders: dict[str, "Job"] = {}   # owner -> their running job


def _refusal(owner: str, size: int) -> Optional[str]:
    if owner in _holders:
        return "another heavy computation of yours is running; wait for it"
    if len(_holders) >= size:
        n = len(_holders)
        return f"the server is busy with {n} heavy computation{'s' * (n != 1)}; try again in a moment"
    return None


def running() -> list["Job"]:
    """The jobs running now, one per owner."""
    with _slots:
        return list(_holders.values())


# --- the child ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Model:
    """A zoo model as it crosses to a child: its architecture and its weights as safetensors bytes."""
    architecture: str
    weights: bytes


def _pack(value):
    if isinstance(value, nn.Module) and hasattr(value, "package"):  # an imported ONNX model: its checked file
        return value.package
    if isinstance(value, nn.Module):
        architecture = getattr(value, "arch_name", None)
        if architecture is None:
            raise TypeError("a heavy job takes zoo models (models.create_model), which know their architecture")
        return _Model(architecture, save({k: t.contiguous() for k, t in value.state_dict().items()}))
    return value


def _unpack(value):
    if isinstance(value, _Model):
        return model_from_bytes(value.weights, {"architecture": value.architecture}, "the model")
    if hasattr(value, "rebuild"):  # onnx_import.adapter.Package: converted again, nothing of it run
        return value.rebuild()
    return value


def _die_with_parent() -> None:
    """On Linux, have the kernel kill this child when its parent, the forkserver, ends (it ends with
    the server): a job never outlives a killed server."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _child(send, fn: Callable, args: tuple, kwargs: dict) -> None:
    """The child's life: one thread, the job, its result (or its exception) sent back."""
    _die_with_parent()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1):
            outcome = (True, fn(*map(_unpack, args), **{k: _unpack(v) for k, v in kwargs.items()}))
    except Exception as exc:  # noqa: BLE001 - raised again in the server, by run
        outcome = (False, exc)
    try:
        send.send(outcome)
    except Exception as exc:  # noqa: BLE001 - a result or exception that does not pickle
        send.send((False, RuntimeError(f"{type(exc).__name__}: {exc}")))


@functools.cache
def _context():
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    return context


_starting = threading.Lock()
_NO_MAIN = types.ModuleType("__main__")  # no file, no spec: a child has no main script to run again


def _start(process) -> None:
    """process.start(), as if this server had no main script.

    A forkserver child first imports its parent's __main__ again, from its file
    (multiprocessing.spawn.prepare), and Streamlit installs each page run's script as __main__: the
    child would run the app. So __main__ is a bare module while the child starts, and put back after
    (unless a page run has installed its own meanwhile)."""
    with _starting:
        main = sys.modules["__main__"]
        sys.modules["__main__"] = _NO_MAIN
        try:
            process.start()
        finally:
            if sys.modules["__main__"] is _NO_MAIN:
                sys.modules["__main__"] = main


# --- jobs ---------------------------------------------------------------------------------------

class Job:
    """One heavy computation in its child process, holding its owner's slot until `cancel`."""

    def __init__(self, owner: str, fn: Callable, args: tuple, kwargs: dict):
        self.owner = owner
        self.name = getattr(fn, "__qualname__", repr(fn))
        self._call = (fn, args, kwargs)
        self._process = self._receive = None

    def _launch(self) -> None:
        fn, args, kwargs = self._call
        context = _context()
        self._receive, send = context.Pipe(duplex=False)
        self._process = context.Process(target=_child, args=(send, fn, tuple(map(_pack, args)),
                                                             {k: _pack(v) for k, v in kwargs.items()}),
                                        name=f"mnist-heavy {self.name}", daemon=True)
        try:
            _start(self._process)
        finally:
            send.close()  # the child holds its own end: when it ends, the pipe reads as closed

    @property
    def pid(self) -> Optional[int]:
        return self._process.pid if self._process is not None else None

    def result(self, poll: Callable[[], None] = lambda: None) -> Any:
        """Wait for the child's result, calling `poll` every POLL_SECONDS (it may raise to stop the
        wait); the job's own exception is raised again here."""
        while not self._receive.poll(POLL_SECONDS):
            poll()
        try:
            ok, value = self._receive.recv()
        except (EOFError, OSError):
            self._process.join(1)
            raise MnistLabError(f"the computation stopped without a result (its process ended with "
                                f"code {self._process.exitcode})") from None
        if ok:
            return value
        raise value

    def cancel(self) -> None:
        """Kill the child if it still runs, wait until it is gone, and give the slot back."""
        try:
            if self._process is not None and self._process.pid is not None:
                if self._process.is_alive():
                    self._process.kill()
                self._process.join()
            if self._receive is not None:
                self._receive.close()
        finally:
            with _slots:
                if _holders.get(self.owner) is self:
                    del _holders[self.owner]
                    _slots.notify_all()


def start(owner: str, fn: Callable, /, *args, poll: Callable[[], None] = lambda: None,
          wait: float = GRACE_SECONDS, **kwargs) -> Job:
    """Start fn(*args, **kwargs) in a child as `owner`'s heavy job, waiting up to `wait` seconds for
    a slot (calling `poll` meanwhile); BusyError in one line when none comes. The caller cancels it."""
    job = Job(owner, fn, args, kwargs)
    deadline = time.monotonic() + wait
    while True:
        with _slots:
            refusal = _refusal(owner, max_jobs())
            if refusal is None:
                _holders[owner] = job
                break
            left = deadline - time.monotonic()
            if left <= 0:
                raise BusyError(refusal)
            _slots.wait(min(POLL_SECONDS, left))  # a job that ends wakes it
        poll()
    try:
        job._launch()
    except BaseException:
        job.cancel()
        raise
    return job


def run(owner: str, fn: Callable, /, *args, poll: Callable[[], None] = lambda: None,
        wait: float = GRACE_SECONDS, **kwargs) -> Any:
    """fn(*args, **kwargs) as `owner`'s heavy job: its result, or its exception; BusyError when over
    a bound. Whatever ends the wait (the result, an exception, `poll` raising because the visitor
    left), the child is killed and the slot given back before this returns."""
    job = start(owner, fn, *args, poll=poll, wait=wait, **kwargs)
    try:
        return job.result(poll)
    finally:
        job.cancel()

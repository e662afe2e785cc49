"""Executors: what runs a queued run, chosen once by configuration (for_host).

    local (default)   runners on this host (runner.py): up to MNIST_MAX_CONCURRENT processes that
                      take queued runs from the registry in order and train each in a worker forked
                      from a warm template; no service needed
    ray               MNIST_RAY_ADDRESS set (e.g. http://head:8265): every run is a Ray Job whose
                      entrypoint is the worker command (`python -m mnist_core train --run-id ID`), and
                      Ray's scheduler decides where and when it runs (ray_executor.py)

Both implement executor_base.Executor: submit, cancel and prepare are the same steps for both (there);
each says how its runs start, what a cancel needs beyond the registry's flag, how it catches up
(reconcile) and where a waiting run is in its queue. The queue moves when a run is submitted (start)
and when a worker ends (the runner takes the next run): never because a page was drawn. The web
server prepares its executor once, then reconciles it in the background (keep_reconciling).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Optional, Sequence

from . import limits, outcomes, registry
from .errors import MnistLabError, first_line
from .executor_base import Executor
from .paths import REPO_ROOT, runs_dir
from .ray_executor import RayExecutor
from .runner import free_slots

__all__ = ["Executor", "LocalExecutor", "RayExecutor", "for_host", "ensure_runners", "launch_runner",
           "runners_alive", "Reconciler", "keep_reconciling"]

RECONCILE_SECONDS = 10.0  # how often the web server brings the registry up to date with its executor


class LocalExecutor(Executor):
    """Runners on this host: starting one when a slot is free is all a submit needs."""

    def start(self, run_id: str, config: dict, root=None) -> None:
        ensure_runners(root, wanted=1)  # one run, at most one more runner: a cold start costs a core for seconds

    def stop(self, run_id: str, root=None) -> None:
        pass  # the worker reads the flag at its next heartbeat, within a second

    def warm(self, root=None) -> None:
        """One runner warms up and waits (MNIST_RUNNER_IDLE_SECONDS), so the first Start needs no cold start."""
        ensure_runners(root, wanted=1)

    def reconcile(self, root=None) -> list[str]:
        """The outcomes workers here finished but could not record (outcomes.py). A worker that died is
        the registry's to judge (its pid) and its runner's to record."""
        return outcomes.reconcile(root)

    def places_in_line(self, all_runs: Sequence[registry.Run]) -> dict[str, int]:
        """A waiting run that a free slot will take in a moment (a runner claims it within a fraction of
        a second) is starting, not in line."""
        free = max(0, self.capacity() - sum(1 for r in all_runs if r.holds_slot))
        waiting = registry.queue_positions(all_runs)
        return {run_id: place - free for run_id, place in waiting.items() if place > free}

    def capacity(self) -> int:
        return limits.max_concurrent()


def for_host() -> Executor:
    """The executor this host's configuration names: Ray when MNIST_RAY_ADDRESS is set, else local."""
    return RayExecutor() if os.environ.get("MNIST_RAY_ADDRESS") else LocalExecutor()


def ensure_runners(root=None, wanted: Optional[int] = None) -> int:
    """Start runner processes for the free slots (at most `wanted`, default every free one) and
    return how many were started. A runner that finds its slot taken meanwhile just exits."""
    started = 0
    for _ in range(min(free_slots(root), wanted if wanted is not None else 1 << 30)):
        launch_runner(root)
        started += 1
    return started


def launch_runner(root=None) -> int:
    """Start `python -m mnist_core.runner` in its own session (a page or a browser tab closing never
    stops it), its output in <runs dir>/runners/runner.log; return its pid."""
    folder = Path(root or runs_dir()).resolve()
    (folder / "runners").mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1", MNIST_RUNS_DIR=str(folder), MNIST_RUNNER_PARENT=str(os.getpid()))
    with open(folder / "runners" / "runner.log", "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "mnist_core.runner"], stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env, cwd=REPO_ROOT, start_new_session=True)
    _children.append(proc)
    runners_alive()  # collects runners that ended: no zombies
    return proc.pid


_children: list[subprocess.Popen] = []


def runners_alive() -> list[int]:
    """The pids of the runners this process started that still run (each leads its own session, its
    workers inside it)."""
    _children[:] = [p for p in _children if p.poll() is None]
    return [p.pid for p in _children]


class Reconciler(threading.Thread):
    """Reconciles an executor (by default the host's) every `every` seconds until stopped: what a page
    shows never depends on a visitor, or the CLI, having asked (a Ray job that died before its run
    started reads as failed). The runs folder is the one configured when it starts. A fault is said on
    stderr once, until it changes, and tried again."""

    def __init__(self, executor: Optional[Executor] = None, root=None, every: float = RECONCILE_SECONDS):
        super().__init__(name="executor-reconcile", daemon=True)
        self.executor, self.root, self.every = executor or for_host(), Path(root or runs_dir()), every
        self.stopped = threading.Event()

    def run(self) -> None:
        said = None
        while not self.stopped.wait(self.every):
            try:
                self.executor.reconcile(self.root)
                said = None
            except Exception as exc:  # noqa: BLE001 - the loop outlives any one fault (a database, a cluster)
                words = first_line(exc)
                if not isinstance(exc, MnistLabError):  # not ours: its type says more than its words
                    words = f"{type(exc).__name__}: {words}"
                if words != said:
                    print(f"the runs could not be brought up to date: {words}", file=sys.stderr)
                    said = words

    def stop(self) -> None:
        self.stopped.set()


_reconciler: Optional[Reconciler] = None
_reconciler_lock = threading.Lock()


def keep_reconciling(executor: Optional[Executor] = None, root=None, every: float = RECONCILE_SECONDS) -> Reconciler:
    """The web server's Reconciler, started once per process (a second call returns the first while it
    runs)."""
    global _reconciler
    with _reconciler_lock:
        if _reconciler is None or not _reconciler.is_alive():
            _reconciler = Reconciler(executor, root, every)
            _reconciler.start()
        return _reconciler

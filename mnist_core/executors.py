"""Executors: what starts a queued run's worker, chosen once by configuration.

    local (default)   runners on this host (runner.py): up to MNIST_MAX_CONCURRENT processes that
                      take queued runs from the registry in order and train each in a worker forked
                      from a warm template; no service needed
    ray               MNIST_RAY_ADDRESS set (e.g. http://head:8265): every run is a Ray Job whose
                      entrypoint is the worker command (`python -m mnist_core train --run-id ID`), and
                      Ray's scheduler decides where and when it runs (ray_executor.py)

Both are told about a run after the registry has it ("queued") and about a cancel after the
registry's flag is set: the flag is what a worker obeys, wherever it runs; an executor may add a
backstop (Ray stops the job if the worker does not end in time). The queue moves when a run is
submitted (start) and when a worker ends (the runner takes the next run): never because a page was
drawn. The server's start (prepare) also records what workers on this host finished but could not
record (outcomes.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Optional, Protocol

from . import outcomes
from .errors import MnistLabError
from .paths import runs_dir

REPO_ROOT = Path(__file__).resolve().parent.parent


class Executor(Protocol):
    def start(self, run_id: str, config: dict, root=None) -> None:
        """A run was queued: see that a worker will take it."""

    def cancel(self, run_id: str, root=None) -> None:
        """The registry asks the run to stop: anything beyond the flag the worker reads."""

class LocalExecutor:
    """Runners on this host: starting one when a slot is free is all a submit needs."""

    def start(self, run_id: str, config: dict, root=None) -> None:
        ensure_runners(root, wanted=1)  # one run, at most one more runner: a cold start costs a core for seconds

    def cancel(self, run_id: str, root=None) -> None:
        pass  # the worker reads the flag at its next heartbeat, within a second

    def prepare(self, root=None) -> None:
        """One runner warms up and waits (MNIST_RUNNER_IDLE_SECONDS), so the first Start needs no cold start."""
        ensure_runners(root, wanted=1)


def ensure_runners(root=None, wanted: Optional[int] = None) -> int:
    """Start runner processes for the free slots (at most `wanted`, default every free one) and
    return how many were started. A runner that finds its slot taken meanwhile just exits."""
    from .runner import free_slots

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
    _children[:] = [p for p in _children if p.poll() is None]  # collect runners that ended: no zombies
    return proc.pid


_children: list = []


def current() -> Executor:
    """The executor this configuration asks for: Ray when MNIST_RAY_ADDRESS is set, else local."""
    if os.environ.get("MNIST_RAY_ADDRESS"):
        from .ray_executor import RayExecutor

        return RayExecutor()
    return LocalExecutor()


def prepare(root=None) -> None:
    """The server started: outcomes that workers here could not record are recorded (outcomes.py), and
    the configured executor gets ready (if it has anything to do) so that a first Start trains at once.
    The local one warms a runner; a cluster is ready by itself. MNIST_WARM_RUNNER=0 turns the warming
    off (no runner waits before the first submit)."""
    try:
        outcomes.reconcile(root)
    except MnistLabError as exc:
        print(f"outcomes left by workers still wait: {exc}", file=sys.stderr)
        if isinstance(current(), LocalExecutor):
            ensure_runners(root, wanted=1)  # a runner keeps trying while they wait
    if os.environ.get("MNIST_WARM_RUNNER", "1").lower() in ("0", "false", "no", "off"):
        return  # the operator saves the waiting runner's memory; the first Start pays a cold start
    executor = current()
    if hasattr(executor, "prepare"):
        executor.prepare(root)

"""A runner: one slot of the local executor, a process that takes queued runs from the registry and
trains them one after another, each in a fresh worker process forked from a warm template.

Why a runner and not one cold process per run: a fresh `python -m mnist_core train` spends seconds
importing torch and `torch._dynamo` before its first step, most of a short run on a small machine. A
runner keeps the standard library's forkserver (multiprocessing) preloaded with `mnist_core.warm`
(torch, the training code, MNIST in memory), so a worker forked from it is at its first step well
within a second of the claim. The forkserver never runs a torch operation itself, so forking it is safe.

Why a worker process per run and not the runner itself: a run that crashes its process (a fault in
native code, the OOM killer, a SIGKILL) takes only that worker. The runner sees how it ended, records
the run failed at once ("the worker was killed by SIGKILL") if the worker could not, and claims the
next run: the queue moves on without any page asking it to.

The runner also enforces the time limit from outside. The worker stops itself at MNIST_MAX_RUN_SECONDS,
but one that is stopped (SIGSTOP) or hung never looks at its clock: once the limit plus a grace
(MNIST_TIME_LIMIT_GRACE_SECONDS, default 30) has passed since the worker started, the runner kills it
with SIGKILL (a stopped process does not act on SIGTERM until it is continued) and fails the run with
the worker's own words, "time limit 10 min reached"; then it takes the next run.

A worker that finished but could not record how (the registry down, gone, full) leaves its outcome in
a file (outcomes.py). The runner records it once the worker has exited, and while it waits for work,
and never fails that run as "the worker died": the finished model is not lost.

Slots: a runner holds one of MNIST_MAX_CONCURRENT lock files in <runs dir>/runners/ for its life
(flock: the kernel releases it when the process dies, however it dies). A submit starts a runner
when a slot is free (executors.LocalExecutor); a runner that finds none free exits. The registry's
claim (registry.claim_next) keeps the cap across every host that shares the registry.

A runner waits for work, polling the registry every POLL_SECONDS, for MNIST_RUNNER_IDLE_SECONDS
(default 600) after its last run (or while an outcome waits to be recorded), then exits. It leaves
as soon as nothing waits once the process that started it (the web server, a CLI `submit`) has
ended, and when its runs folder disappears. When it starts and after each run it applies the
retention policy (retention.py: MNIST_KEEP_RUNS, MNIST_KEEP_RUN_DAYS), one bounded pass.
"""

from __future__ import annotations

import fcntl
import multiprocessing
from multiprocessing import forkserver
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Optional

from . import limits, outcomes, registry, retention, runfiles
from .paths import runs_dir
from .errors import MnistLabError
from .records import RunStatus

POLL_SECONDS = 0.2
OUTCOME_RETRY_SECONDS = 5.0  # how often a waiting runner tries again to record outcomes left in files
FAIL_BEFORE_KILL_SECONDS = 5.0  # how long a run past its time limit may take to be failed before its worker dies


def idle_seconds() -> float:
    return float(os.environ.get("MNIST_RUNNER_IDLE_SECONDS", 600))


def slots_dir(root=None) -> Path:
    return Path(root or runs_dir()) / "runners"


def take_slot(root=None, slots: Optional[int] = None):
    """Lock the first free slot file and return it open (the lock lives as long as the file stays
    open in this process), or None when every slot is taken."""
    folder = slots_dir(root)
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(slots or limits.max_concurrent()):
        f = open(folder / f"slot-{k}.lock", "a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            continue
        return f
    return None


def free_slots(root=None, slots: Optional[int] = None) -> int:
    """How many slots no runner holds (each checked by taking its lock, then letting all go)."""
    held = []
    while (f := take_slot(root, slots)) is not None:
        held.append(f)
    for f in held:
        f.close()
    return len(held)


def _launcher_alive() -> bool:
    """Whether the process that started this runner (MNIST_RUNNER_PARENT) still runs."""
    try:
        os.kill(int(os.environ.get("MNIST_RUNNER_PARENT", "")), 0)
    except ValueError:
        return True  # started by hand: only the idle time ends it
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def _work(run_id: str, root: Optional[str]) -> None:
    """The worker, in a process forked from the warm template: the run's output goes to its log."""
    log = os.open(runfiles.log_path(run_id, root), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    from .worker import execute_run  # here: the runner itself never loads torch; mnist_core.warm preloaded it

    try:
        execute_run(run_id, root=root)
    except BaseException as exc:  # noqa: BLE001 - recorded by execute_run; the exit status says it failed
        print(f"run {run_id} ended: {exc}", file=sys.stderr)
        sys.exit(1)


def _ended_how(exitcode: Optional[int]) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            return f"the worker was killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"the worker was killed by signal {-exitcode}"
    return f"the worker stopped (exit status {exitcode}) before recording how the run ended"


def run_one(context, run_id: str, root: Optional[str]) -> None:
    """Train one claimed run in a forked worker, within its time limit, and make sure the registry
    says how it ended."""
    worker = context.Process(target=_work, args=(run_id, root), name=f"worker-{run_id}", daemon=False)
    try:
        worker.start()
    except Exception as exc:  # noqa: BLE001 - a worker that cannot start fails its run, not the runner
        # An OSError's text names the file (a server path): its reason alone is said.
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        registry.finish_run(run_id, RunStatus.FAILED, root=root, error=f"the worker could not be started: {reason}")
        return
    limit = limits.max_run_seconds()
    worker.join(limit + limits.time_limit_grace() if limit else None)
    timed_out = False
    if worker.is_alive():  # stopped, hung, or still trying to record: it cannot be left holding the queue
        try:
            os.kill(worker.pid, signal.SIGSTOP)  # frozen first: nothing it writes can cross what follows
        except ProcessLookupError:
            pass  # it has just ended
        timed_out = not runfiles.outcome_path(run_id, root).exists()  # else it finished: its outcome is kept
        # The run is failed before the worker is killed, so that no reader takes the dead worker's run for
        # another death; from a thread, because the frozen worker may hold the registry's lock, which only
        # its death lets go.
        why = f"{limits.time_limit_text(limit)} reached"
        failing = threading.Thread(target=_fail_quietly, args=(run_id, root, why), daemon=True) if timed_out else None
        if failing:
            failing.start()
            failing.join(timeout=FAIL_BEFORE_KILL_SECONDS)
        worker.kill()
        worker.join()
        if failing:
            failing.join()
        print(f"runner: run {run_id}: its worker outlived its {limits.time_limit_text(limit)} and the "
              f"{limits.time_limit_grace()} s grace: killed", file=sys.stderr, flush=True)
    try:
        if runfiles.outcome_path(run_id, root).exists():  # it finished, but could not record how
            outcomes.reconcile_one(run_id, root)
        else:  # finish_run changes only a run still live: one the worker recorded stays as it said
            error = f"{limits.time_limit_text(limit)} reached" if timed_out else _ended_how(worker.exitcode)
            registry.finish_run(run_id, RunStatus.FAILED, root=root, error=error)
    except MnistLabError as exc:
        print(f"runner: run {run_id} could not be recorded: {exc}", file=sys.stderr, flush=True)


def _fail_quietly(run_id: str, root: Optional[str], error: str) -> None:
    try:
        registry.finish_run(run_id, RunStatus.FAILED, root=root, error=error)
    except MnistLabError:
        pass  # run_one tries again once the worker is dead


def _record_outcomes(root: Optional[str]) -> bool:
    """Record the outcomes workers here left in files (outcomes.py); True while some still wait."""
    if not outcomes.waiting(root):
        return False
    try:
        for run_id in outcomes.reconcile(root):
            print(f"runner: run {run_id} recorded from the outcome its worker left", flush=True)
    except MnistLabError as exc:
        print(f"runner: outcomes still wait: {exc}", file=sys.stderr, flush=True)
    return bool(outcomes.waiting(root))


def serve(root: Optional[str] = None) -> int:
    """The runner's life: hold a slot, warm the template, claim and train runs until idle."""
    slot = take_slot(root)
    if slot is None:
        return 0  # every slot is taken: the runners there will take the queue
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["mnist_core.warm"])
    forkserver.ensure_running()
    warmed = context.Process(target=int, name="warm-up")  # returns once the forkserver has loaded mnist_core.warm
    warmed.start()
    warmed.join()
    print(f"runner {os.getpid()} ready: {Path(slot.name).stem}", flush=True)
    folder = Path(root or runs_dir())
    retention.prune_pass(root)  # the policy (MNIST_KEEP_RUNS, MNIST_KEEP_RUN_DAYS) applied, a bounded pass
    idle_since = next_outcome_try = time.monotonic()
    while folder.is_dir() and time.monotonic() - idle_since < idle_seconds():
        try:
            run_id = registry.claim_next(os.getpid(), root=root, max_concurrent=limits.max_concurrent())
        except MnistLabError as exc:
            print(f"runner: {exc}", file=sys.stderr)
            run_id = None
        if run_id is None:
            if not _launcher_alive():
                break  # the server (or CLI) that started this runner is gone and nothing waits: leave now
            if time.monotonic() >= next_outcome_try:
                if _record_outcomes(root):
                    idle_since = time.monotonic()  # not idle: a run's outcome waits for the registry
                next_outcome_try = time.monotonic() + OUTCOME_RETRY_SECONDS
            time.sleep(POLL_SECONDS)
            continue
        run_one(context, run_id, root)
        retention.prune_pass(root)  # and after each run: one more finished run may be one too many
        idle_since = time.monotonic()
    slot.close()
    return 0


if __name__ == "__main__":
    sys.exit(serve(os.environ.get("MNIST_RUNS_DIR")))

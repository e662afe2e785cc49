"""The worker: executes one queued run from the registry, start to finish.

Wherever a run trains it runs this very code: in a worker process forked by a local runner
(runner.py), as a Ray Job's entrypoint (`python -m mnist_core train --run-id ID`), or in-process for
the CLI's `train`. It admits the config once more (training.admit: the host or the hosting bounds may
have changed while the run waited), marks the run running with its planned steps (so progress and
ETA are known from the first step), trains, streams metric rows to the registry in small batches,
keeps a heartbeat (and notices cancel requests) from a background thread, writes the checkpoint
atomically (and into the registry, for a web host that shares no disk with this one), and always
leaves the run completed, cancelled or failed, with a one-line error text when it fails. Queueing a
run and cancelling one are the executor's (executors.for_host().submit / .cancel).

Three things stop a run early: a cancel request or SIGTERM (it ends cancelled; after SIGTERM with the
one-line reason "stopped by SIGTERM"), the time limit
MNIST_MAX_RUN_SECONDS (it ends failed, "time limit 10 min reached", with no checkpoint: a run cut
short does not pass for a finished one), and the registry giving up on it (its heartbeat says the
run is no longer running: the worker stops and leaves the record as the registry wrote it).

The trained model comes first: the checkpoint is saved before the run is recorded, and a registry
that fails meanwhile (gone, corrupt, full) never ends the training; its rows wait for the next
write. The final record (the checkpoint into the registry, then the outcome) is tried again with
growing waits for MNIST_RECORD_RETRY_SECONDS (default 300), the run's heartbeat kept meanwhile; from
its first failure the outcome also waits in a file (outcomes.py), so that if this worker gives up or
is killed, its runner or the next start records it: the run still ends completed, with its
accuracy and checkpoint, once the registry is back. The error says where the checkpoint is.
"""

from __future__ import annotations

import math
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Optional

from . import limits, outcomes, ray_executor, registry, runfiles
from .checkpoints import save_checkpoint
from .errors import ConfigError, MnistLabError, RunError
from .paths import shown
from .records import MetricRow, RunStatus
from .snapshots import FRAMES_PER_RUN, Recorder
from .training import TrainConfig, admit, train

FLUSH_SECONDS = 0.5   # metrics reach the registry at most this late
SIGTERM_REASON = "stopped by SIGTERM"  # a cancelled run's error when the signal, not a cancel request, stopped it
HEARTBEAT_SECONDS = 1.0
RECORD_RETRY_SECONDS = 300  # how long the final record is tried (MNIST_RECORD_RETRY_SECONDS)
RECORD_FIRST_WAIT = 1.0     # seconds before its second try; each wait doubles, up to RECORD_LONGEST_WAIT
RECORD_LONGEST_WAIT = 30.0


def record_retry_seconds() -> float:
    """MNIST_RECORD_RETRY_SECONDS: how long a worker keeps trying its final record (0: once)."""
    try:
        return max(0.0, float(os.environ.get("MNIST_RECORD_RETRY_SECONDS", RECORD_RETRY_SECONDS)))
    except ValueError:
        raise ConfigError("MNIST_RECORD_RETRY_SECONDS must be a number of seconds") from None


class _RegistryWriter:
    """Buffers metric rows and writes them in one transaction every FLUSH_SECONDS.

    A write that fails keeps its rows for the next one: a registry fault must not end a training
    whose model can still be saved. The final flush (after training) raises.
    """

    def __init__(self, run_id: str, root):
        self.run_id, self.root = run_id, root
        self.rows: list[dict] = []
        self.last_flush = time.monotonic()

    def add(self, row: MetricRow) -> None:
        self.rows.append(row)
        if row["split"] != "train" or time.monotonic() - self.last_flush > FLUSH_SECONDS:
            try:
                self.flush()
            except MnistLabError:
                self.last_flush = time.monotonic()  # try again in FLUSH_SECONDS, with these rows too

    def flush(self) -> None:
        if self.rows:
            registry.add_metrics(self.run_id, self.rows, root=self.root)
            self.rows = []
        self.last_flush = time.monotonic()


def execute_run(run_id: str, root=None, checkpoint_path: Optional[os.PathLike] = None,
                on_event: Optional[Callable[[MetricRow], None]] = None, data_root=None) -> registry.Run:
    """Run a queued run to its end and return its final registry record.

    What ended a run early (a bad config, missing data, any exception) is recorded, then raised. A
    trained model the registry could not record (in MNIST_RECORD_RETRY_SECONDS) raises a RunError
    that names its checkpoint file; its outcome waits in a file for the runner or the next start.
    """
    _record_waiting_outcomes(root)  # what an earlier worker here could not record (a Ray node has no runner)
    run = registry.get_run(run_id, root=root)
    try:
        config = admit(TrainConfig.from_dict(run.config))  # the host or the bounds may have changed since submit
        bounds = limits.current()
        retry_seconds = record_retry_seconds()
    except MnistLabError as exc:
        registry.finish_run(run_id, RunStatus.FAILED, root=root, error=str(exc))
        raise
    # Progress is known from the start; `node` is the Ray node when a Ray job runs this (else the host).
    registry.mark_running(run_id, total_steps=limits.planned_work(config)[0], root=root, node=ray_executor.node_here())

    stop = threading.Event()  # set by a cancel request, SIGTERM, the registry giving up, the time limit
    done = threading.Event()
    deadline = time.monotonic() + bounds.max_run_seconds if bounds.max_run_seconds else math.inf
    state = {"steps": 0, "timed_out": False, "sigterm": False}

    def beat() -> None:
        while not done.wait(HEARTBEAT_SECONDS):
            try:
                if registry.heartbeat(run_id, root=root, steps=state["steps"]):
                    stop.set()
            except MnistLabError:
                pass  # a registry problem: the next beat tries again, the training goes on

    def should_stop() -> bool:
        if not stop.is_set() and time.monotonic() > deadline:
            state["timed_out"] = True
            stop.set()
        return stop.is_set()

    heart = threading.Thread(target=beat, name=f"heartbeat-{run_id}", daemon=True)
    heart.start()

    def on_sigterm(*_) -> None:
        state["sigterm"] = state["sigterm"] or not stop.is_set()  # what stopped the run, unless it was stopping
        stop.set()

    previous_sigterm = None
    if threading.current_thread() is threading.main_thread():
        # SIGTERM (e.g. the hosting platform stopping us) ends the run as cancelled, not half-written.
        previous_sigterm = signal.signal(signal.SIGTERM, on_sigterm)

    writer = _RegistryWriter(run_id, root)

    def handle(row: MetricRow) -> None:
        row.setdefault("time", time.time())  # when it was measured, not when a batch of rows reached the registry
        if row["split"] == "train":
            state["steps"] = row["step"]
        writer.add(row)
        if on_event:
            on_event(row)

    snapshots = Recorder(run_id, root, data_root)  # kernels and a probe's feature maps, for the replay

    saved = None
    try:
        try:
            result = train(config, on_event=handle, should_stop=should_stop, data_root=data_root,
                           on_snapshot=snapshots.record, snapshot_frames=FRAMES_PER_RUN)
        finally:
            done.set()
            heart.join(timeout=5)
            if previous_sigterm is not None:
                signal.signal(signal.SIGTERM, previous_sigterm)
        snapshots.close()
        given_up = _given_up(run_id, root)
        if result.status == RunStatus.COMPLETED and not given_up:
            path = Path(checkpoint_path) if checkpoint_path else runfiles.default_checkpoint_path(config.model, run_id)
            meta = {"config": config.to_dict(), "run_id": run_id,
                    "metrics": {"test_accuracy": result.test_accuracy, "test_loss": result.test_loss,
                                "best_val_accuracy": result.best_val_accuracy, "steps": result.steps,
                                "train_seconds": round(result.seconds, 2)}}
            if result.drawings_accuracy is not None:  # trained on the visitors' drawings: its held-out score
                meta["metrics"]["drawings_accuracy"] = result.drawings_accuracy
            saved = save_checkpoint(result.model, meta, path)  # first: whatever happens next, the model is kept
    except BaseException as exc:  # record every failure, KeyboardInterrupt included, then let it propagate
        _record_failure(run_id, root, writer, exc)
        raise

    if given_up:
        ended = registry.get_run(run_id, root=root)
        print(f"run {run_id} was given up on while it ran ({ended.error}): this worker stopped and "
              "recorded nothing", file=sys.stderr)
        return ended
    if saved is not None:  # `store`: into the registry too, for a web host that shares no disk with this one
        outcome = dict(status=RunStatus.COMPLETED, checkpoint=str(saved), test_accuracy=result.test_accuracy,
                       test_loss=result.test_loss, store=True)
    elif state["timed_out"]:
        outcome = dict(status=RunStatus.FAILED, error=f"{bounds.time_limit_text()} reached")
    else:
        outcome = dict(status=RunStatus.CANCELLED, error=SIGTERM_REASON if state["sigterm"] else None)
    recorded = _final_record(run_id, root, writer, dict(outcome, best_val_accuracy=result.best_val_accuracy),
                             retry_seconds)
    ended = registry.get_run(run_id, root=root)
    if not recorded:  # given up on between the check above and now
        print(f"run {run_id} was given up on as it ended ({ended.error})" +
              (f"; its trained model is saved in {saved}" if saved else ""), file=sys.stderr)
    return ended


def _final_record(run_id: str, root, writer: _RegistryWriter, outcome: dict, retry_seconds: float) -> bool:
    """Record how a run ended: its last metric rows, its checkpoint into the registry (`store`), its
    outcome. True when recorded; False when the run had already ended (the registry gave up on it).

    A registry that cannot take it (down, gone, full) is tried again, with waits that double, for
    `retry_seconds`; the run's heartbeat is kept meanwhile, so that no host takes this worker for
    dead. From the first failure on, the outcome also waits in a file (outcomes.py): if this worker
    gives up, or is killed, its runner or the next start records it. Giving up raises a RunError that
    names the checkpoint and that file.
    """
    deadline = time.monotonic() + retry_seconds
    wait, left = RECORD_FIRST_WAIT, None
    while True:
        try:
            writer.flush()
            recorded = outcomes.record(run_id, outcome, root)
        except RunError as exc:
            if left is None:
                left = _leave_outcome(run_id, outcome, root)
            if time.monotonic() + wait > deadline:
                where = f"; how it ended waits in {shown(left)}" if left else ""
                if outcome.get("checkpoint"):
                    raise RunError(f"the trained model is saved in {outcome['checkpoint']}, but the run could not "
                                   f"be recorded: {exc}{where}") from None
                raise RunError(f"run {run_id} could not be recorded as {outcome['status']}: {exc}{where}") from None
            print(f"run {run_id} could not be recorded yet ({exc}): trying again in {wait:g} s", file=sys.stderr)
            _wait_beating(run_id, root, wait)
            wait = min(2 * wait, RECORD_LONGEST_WAIT)
            continue
        if left:
            outcomes.discard(run_id, root)
        return recorded


def _leave_outcome(run_id: str, outcome: dict, root):
    """The outcome in its file (outcomes.leave); False, said on stderr, when even that cannot be written."""
    try:
        return outcomes.leave(run_id, outcome, root)
    except OSError as exc:
        print(f"run {run_id}: how it ended could not be left in a file either ({exc.strerror or exc})",
              file=sys.stderr)
        return False


def _wait_beating(run_id: str, root, seconds: float) -> None:
    """Wait `seconds`, refreshing the run's heartbeat: a host that judges this worker by its lease (it
    runs elsewhere) must not give up on it while it waits for the registry."""
    until = time.monotonic() + seconds
    while (left := until - time.monotonic()) > 0:
        time.sleep(min(HEARTBEAT_SECONDS, left))
        try:
            registry.heartbeat(run_id, root=root)
        except MnistLabError:
            pass  # still down: the lease is refreshed as soon as it is back


def _record_waiting_outcomes(root) -> None:
    """Record the outcomes earlier workers on this host left in files (outcomes.reconcile); a registry
    that still cannot take them leaves them for later, said on stderr."""
    if outcomes.waiting(root):
        try:
            outcomes.reconcile(root)
        except MnistLabError as exc:
            print(f"outcomes left by earlier runs still wait: {exc}", file=sys.stderr)


def _given_up(run_id: str, root) -> bool:
    """True when the registry no longer has the run running: it gave up on it while it trained."""
    try:
        return registry.get_run(run_id, root=root).status != RunStatus.RUNNING
    except MnistLabError:
        return False  # the registry cannot say: keep the model; recording it will report the fault


def _record_failure(run_id: str, root, writer: _RegistryWriter, exc: BaseException) -> None:
    """Record what ended a run, in one line. A registry that cannot take it is reported on stderr
    (the run's log), never raised over the error that ended the run."""
    message = str(exc) if isinstance(exc, MnistLabError) else f"{type(exc).__name__}: {exc}"
    status = RunStatus.CANCELLED if isinstance(exc, KeyboardInterrupt) else RunStatus.FAILED
    try:
        writer.flush()
    except MnistLabError:
        pass  # the curves lose their last rows; the outcome matters more
    try:
        registry.finish_run(run_id, status, root=root, error=message.splitlines()[0] if message else status)
    except MnistLabError as record_error:
        print(f"run {run_id} could not be recorded as {status}: {record_error}", file=sys.stderr)


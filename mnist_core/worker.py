"""The worker: executes one queued run from the registry, start to finish.

The Train page launches it as its own process (`python -m mnist_core train --run-id ID`) and the
CLI's `train` calls it in-process, so both run this very code. It marks the run running, trains,
streams metrics to the registry in small batches, keeps a heartbeat (and notices cancel requests)
from a background thread, writes the checkpoint atomically, and always leaves the run completed,
cancelled or failed, with a one-line error text when it fails.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Callable, Optional

from . import runs
from .checkpoints import save_checkpoint
from .errors import MnistLabError
from .paths import checkpoint_dir
from .training import TrainConfig, train

FLUSH_SECONDS = 0.5   # metrics reach the registry at most this late
HEARTBEAT_SECONDS = 1.0


class _RegistryWriter:
    """Buffers metric rows and writes them in one transaction every FLUSH_SECONDS."""

    def __init__(self, run_id: str, root):
        self.run_id, self.root = run_id, root
        self.rows: list[dict] = []
        self.last_flush = time.monotonic()

    def add(self, event: dict) -> None:
        row = {k: event.get(k) for k in ("step", "epoch", "loss", "accuracy", "images_per_s")}
        row["split"] = {"step": "train"}.get(event["kind"], event["kind"])
        self.rows.append(row)
        if event["kind"] != "step" or time.monotonic() - self.last_flush > FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        if self.rows:
            runs.add_metrics(self.run_id, self.rows, root=self.root)
            self.rows = []
        self.last_flush = time.monotonic()


def execute_run(run_id: str, root=None, checkpoint_path: Optional[os.PathLike] = None,
                on_event: Optional[Callable[[dict], None]] = None, data_root=None) -> runs.Run:
    """Run a queued run to its end and return its final registry record."""
    run = runs.get_run(run_id, root=root)
    try:
        config = TrainConfig.from_dict(run.config)
    except MnistLabError as exc:
        runs.finish_run(run_id, "failed", root=root, error=str(exc))
        raise
    runs.mark_running(run_id, root=root)

    cancel = threading.Event()
    done = threading.Event()
    state = {"steps": 0, "total": None}

    def beat() -> None:
        while not done.wait(HEARTBEAT_SECONDS):
            try:
                if runs.heartbeat(run_id, root=root, steps=state["steps"], total_steps=state["total"]):
                    cancel.set()
            except MnistLabError:
                pass  # a transient registry problem: the next beat tries again

    heart = threading.Thread(target=beat, name=f"heartbeat-{run_id}", daemon=True)
    heart.start()
    previous_sigterm = None
    if threading.current_thread() is threading.main_thread():
        # SIGTERM (e.g. the hosting platform stopping us) ends the run as cancelled, not half-written.
        previous_sigterm = signal.signal(signal.SIGTERM, lambda *_: cancel.set())

    writer = _RegistryWriter(run_id, root)

    def handle(event: dict) -> None:
        if event["kind"] == "step":
            state["steps"], state["total"] = event["step"], event["total_steps"]
        writer.add(event)
        if on_event:
            on_event(event)

    from .snapshots import Recorder
    snapshots = Recorder(run_id, root, data_root)  # kernels and a probe's feature maps, for the replay slider

    try:
        result = train(config, on_event=handle, should_stop=cancel.is_set, data_root=data_root,
                       on_snapshot=snapshots.record)
        snapshots.close()
        writer.flush()
        if result.status == "completed":
            path = Path(checkpoint_path) if checkpoint_path else checkpoint_dir() / f"{config.model}-{run_id}.safetensors"
            meta = {"config": config.to_dict(), "run_id": run_id,
                    "metrics": {"test_accuracy": result.test_accuracy, "test_loss": result.test_loss,
                                "best_val_accuracy": result.best_val_accuracy, "steps": result.steps,
                                "train_seconds": round(result.seconds, 2)}}
            saved = save_checkpoint(result.model, meta, path)
            runs.finish_run(run_id, "completed", root=root, checkpoint=str(saved),
                            best_val_accuracy=result.best_val_accuracy, test_accuracy=result.test_accuracy,
                            test_loss=result.test_loss)
        else:
            runs.finish_run(run_id, "cancelled", root=root, best_val_accuracy=result.best_val_accuracy)
    except BaseException as exc:  # record every failure, KeyboardInterrupt included, then let it propagate
        message = str(exc) if isinstance(exc, MnistLabError) else f"{type(exc).__name__}: {exc}"
        status = "cancelled" if isinstance(exc, KeyboardInterrupt) else "failed"
        try:
            writer.flush()
        except MnistLabError:
            pass
        runs.finish_run(run_id, status, root=root, error=message.splitlines()[0] if message else status)
        raise
    finally:
        done.set()
        heart.join(timeout=5)
        if previous_sigterm is not None:
            signal.signal(signal.SIGTERM, previous_sigterm)
        try:
            start_queued(root)  # this run's slot is free: the queue moves on
        except MnistLabError:
            pass
    return runs.get_run(run_id, root=root)


# --- launching a worker process (what the Train page does) --------------------------------------

_children: list = []  # Popen objects of workers this process started, reaped as they finish


def reap_workers() -> None:
    """Collect finished worker processes so none lingers as a zombie."""
    _children[:] = [p for p in _children if p.poll() is None]


def launch(run_id: str, root=None) -> int:
    """Start `python -m mnist_core train --run-id ID` as its own process and return its pid.

    The worker gets its own session, so closing the browser tab or stopping a page never stops it;
    its output goes to runs/<id>.log. Use start_queued(), which respects the cap on runs at once.
    """
    import subprocess
    import sys

    runs.check_run_id(run_id)
    log_dir = Path(root) if root else runs.registry_path().parent
    log_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if root:
        env["MNIST_RUNS_DIR"] = str(root)
    with open(log_dir / f"{run_id}.log", "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "mnist_core", "train", "--quiet", "--run-id", run_id],
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                cwd=Path(__file__).resolve().parent.parent, start_new_session=True)
    _children.append(proc)
    return proc.pid


def start_queued(root=None) -> list[str]:
    """Start waiting runs while fewer than MNIST_MAX_CONCURRENT run; return the ids started.

    Called when a run is submitted, when a worker finishes, and by pages as they poll, so a queue
    moves on by itself.
    """
    reap_workers()
    return runs.claim_queued(lambda run_id: launch(run_id, root), root=root)


def submit(config: dict, owner: Optional[str] = None, root=None) -> str:
    """Queue a validated config as a run and start it if a slot is free; return the run id."""
    run_id = runs.create_run(config, root=root, owner=owner)
    start_queued(root)
    return run_id

"""How a run ended, kept in a small file while the registry cannot take it: no finished model is lost.

The worker saves a trained model first, then makes the run's final record: the checkpoint into the
registry (for hosts that share no disk) and the outcome (completed with its accuracy and checkpoint;
or failed, cancelled). When that record fails (the registry is down, gone, replaced, its disk full),
the worker leaves the outcome in <runs dir>/outcomes/RUN_ID.json (written atomically) and keeps
trying for MNIST_RECORD_RETRY_SECONDS (worker.py); once it is recorded the file goes. A worker that
gives up, or is killed meanwhile, leaves the file for whoever comes next on this host: its runner
(as soon as the worker has exited, then while it waits for work), the next start (Executor.prepare,
which the app calls once per server) and the next worker. Meanwhile the registry does not take the
run's worker for dead (registry._dead_reason): the run stays running until its outcome is recorded.

The file holds only what registry.finish_run takes, and whether the checkpoint still has to be stored.
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Optional

from . import registry
from .errors import CheckpointError
from .paths import atomic_write
from .records import ENDED, LIVE, RunStatus
from .runfiles import RUN_ID, outcome_path, outcomes_dir

MAX_OUTCOME_BYTES = 64 * 1024  # a few fields; anything larger is not one of ours
NUMBERS = ("test_accuracy", "test_loss", "best_val_accuracy")


def leave(run_id: str, outcome: dict, root: Optional[os.PathLike] = None) -> Path:
    """Write a run's outcome to its file, whole or not at all: status, error, checkpoint, the numbers,
    and `store` (True while the checkpoint is not yet in the registry)."""
    text = json.dumps(outcome)
    return atomic_write(outcome_path(run_id, root), lambda tmp: Path(tmp).write_text(text))


def discard(run_id: str, root: Optional[os.PathLike] = None) -> None:
    outcome_path(run_id, root).unlink(missing_ok=True)


def waiting(root: Optional[os.PathLike] = None) -> list[str]:
    """The runs whose outcome waits in a file, oldest first (a run id starts with its date)."""
    try:
        return sorted(p.stem for p in outcomes_dir(root).glob("*.json") if RUN_ID.match(p.stem))
    except OSError:
        return []


def record(run_id: str, outcome: dict, root: Optional[os.PathLike] = None) -> bool:
    """One try at a run's final record: its checkpoint into the registry (while `store` asks for it),
    then the outcome (registry.finish_run). True when this recorded it; False when the run had already
    ended. A registry that cannot take it raises RunError, and nothing is lost: try again."""
    if outcome.get("store") and outcome.get("checkpoint"):
        from . import artifacts  # here, not above: it loads torch, which a runner that only waits never needs

        try:
            artifacts.store_checkpoint(run_id, outcome["checkpoint"], root=root)
        except CheckpointError as exc:  # the file itself cannot go there (too large, unreadable): recorded without it
            print(f"run {run_id}: the checkpoint is saved in {outcome['checkpoint']} but not in the registry: {exc}",
                  file=sys.stderr)
        outcome["store"] = False  # stored (or never will be): a second try does not send it again
    return registry.finish_run(run_id, RunStatus(outcome["status"]), root=root, error=outcome.get("error"),
                               checkpoint=outcome.get("checkpoint"),
                               **{name: outcome.get(name) for name in NUMBERS})


def reconcile_one(run_id: str, root: Optional[os.PathLike] = None) -> bool:
    """Record the outcome a worker left for `run_id`, then remove its file; True when it was recorded.

    An outcome for a run that has ended since (or was deleted) is dropped with a line on stderr (the
    checkpoint file stays where it was). A file that is not an outcome is removed: the run is then
    judged like any other. A registry that still cannot take it raises RunError and the file waits.
    """
    path = outcome_path(run_id, root)
    try:
        outcome = _read(path)
    except FileNotFoundError:
        return False  # recorded meanwhile, by its worker or another reconcile
    except (OSError, ValueError) as exc:
        print(f"run {run_id}: its outcome file is unreadable ({exc}): removed", file=sys.stderr)
        path.unlink(missing_ok=True)
        return False
    status = registry.run_status(run_id, root=root)
    recorded = status in LIVE and record(run_id, outcome, root)
    if not recorded:
        print(f"run {run_id}: its outcome ({outcome['status']}) was not recorded: the run is "
              f"{status or 'gone'}" + (f"; its checkpoint is in {outcome['checkpoint']}" if outcome.get("checkpoint")
                                       else ""), file=sys.stderr)
    path.unlink(missing_ok=True)
    return recorded


def reconcile(root: Optional[os.PathLike] = None) -> list[str]:
    """Record every outcome waiting on this host, oldest first; return the runs recorded. Stops at the
    first registry fault (RunError), leaving that file and the rest for the next call."""
    return [run_id for run_id in waiting(root) if reconcile_one(run_id, root)]


def _read(path: Path) -> dict:
    """An outcome file's fields, checked: they are written by a worker, but a file can be anything."""
    with open(path, "rb") as f:
        data = f.read(MAX_OUTCOME_BYTES + 1)
    if len(data) > MAX_OUTCOME_BYTES:
        raise ValueError("too large")
    outcome = json.loads(data)
    if not isinstance(outcome, dict) or outcome.get("status") not in [str(s) for s in ENDED]:
        raise ValueError("not an outcome")
    for name in NUMBERS:
        value = outcome.get(name)
        if value is not None and (not isinstance(value, (int, float)) or not math.isfinite(value)):
            raise ValueError(f"{name} is not a number")
    for name in ("error", "checkpoint"):
        if outcome.get(name) is not None and not isinstance(outcome[name], str):
            raise ValueError(f"{name} is not text")
    return outcome

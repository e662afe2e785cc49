"""Run ids and a run's files: one owner, below both the registry (registry/) and snapshots (snapshots.py).

A run id is generated here (date, time and 6 random hex digits) and checked here before it becomes
part of any path: ids are never user text, so no path can hide in one. Every file a run owns is
named here:

    runs/registry.sqlite                the registry, shared by every run (registry/), unless
                                        MNIST_REGISTRY_URL names another database
    runs/RUN_ID.log                     the worker's output (runner.py points it there)
    runs/snapshots/RUN_ID.npz           the kernels and feature maps for the replay (snapshots.py)
    runs/outcomes/RUN_ID.json           how the run ended, while the registry could not take it (outcomes.py)
    checkpoints/MODEL-RUN_ID.safetensors (+ .json)  the checkpoint, unless the run was told another path

(runs/ and checkpoints/ move with MNIST_RUNS_DIR and MNIST_CHECKPOINT_DIR.) A run's files kept in the
registry itself (registry.put_artifact: for hosts that share no disk) are rows there, not files here.
Deleting a run removes all of them. A checkpoint the run wrote somewhere it was told to (`train --checkpoint PATH`: the
committed defaults are made that way) is the operator's file, not the run's, and stays.
"""

from __future__ import annotations

import os
import re
import secrets
import time
from pathlib import Path
from typing import Optional

from .errors import RunError
from .paths import checkpoint_dir, runs_dir

RUN_ID = re.compile(r"^\d{8}-\d{6}-[0-9a-f]{6}$")


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)


def check_run_id(run_id: str) -> str:
    """`run_id` itself when it is a run id; else a one-line RunError."""
    if not isinstance(run_id, str) or not RUN_ID.match(run_id):
        raise RunError(f"{str(run_id)[:40]!r} is not a run id")
    return run_id


def registry_path(root: Optional[os.PathLike] = None) -> Path:
    return Path(root or runs_dir()) / "registry.sqlite"


def log_path(run_id: str, root: Optional[os.PathLike] = None) -> Path:
    return Path(root or runs_dir()) / f"{check_run_id(run_id)}.log"


def snapshot_path(run_id: str, root: Optional[os.PathLike] = None) -> Path:
    return Path(root or runs_dir()) / "snapshots" / f"{check_run_id(run_id)}.npz"


def outcome_path(run_id: str, root: Optional[os.PathLike] = None) -> Path:
    return outcomes_dir(root) / f"{check_run_id(run_id)}.json"


def outcomes_dir(root: Optional[os.PathLike] = None) -> Path:
    return Path(root or runs_dir()) / "outcomes"


def default_checkpoint_path(model: str, run_id: str) -> Path:
    """Where a run's checkpoint goes unless it was told another path: MODEL-RUN_ID.safetensors."""
    return checkpoint_dir() / f"{model}-{check_run_id(run_id)}.safetensors"


def remove_run_files(run_id: str, root: Optional[os.PathLike] = None, checkpoint: Optional[str] = None) -> None:
    """Delete every file the run owns: its log, its snapshots, an outcome left waiting and, when
    `checkpoint` (the run's recorded one) is its own default-named file, that checkpoint and its
    sidecar. Missing files are fine."""
    paths = [log_path(run_id, root), snapshot_path(run_id, root), outcome_path(run_id, root)]
    if checkpoint:
        own = Path(checkpoint)
        if own.name.endswith(f"-{check_run_id(run_id)}.safetensors") and own.parent.resolve() == checkpoint_dir():
            paths += [own, own.with_suffix(".json")]
    for path in paths:
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise RunError(f"run {run_id}: {path.name} could not be removed ({exc.strerror or type(exc).__name__})") \
                from None

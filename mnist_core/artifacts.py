"""A run's artifacts in the run registry: its checkpoint and its replay snapshots, beside its metrics.

On a cluster the web host and the worker hosts share no disk, so a file a worker writes never
reaches the app by itself. MNIST models are small (well under 2 MB), so the simplest honest answer
is to keep a copy of each in the registry database (registry.put_artifact / get_artifact) and read it
back wherever it is needed:

    checkpoint.safetensors, checkpoint.json   the checkpoint's two files, stored right after it is saved
    snapshots.npz                              the replay's frames, stored with every write of the file

Whatever comes back from the registry is read as untrusted, like an upload: sizes capped before
anything is decoded, the sidecar checked (checkpoints.parse_meta), the weights rebuilt from
safetensors (checkpoints.model_from_bytes). Never pickle.

The local file stays the first choice where it exists (the embedded default: one machine, one
disk); the registry copy is what a process elsewhere reads.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from torch import nn

from . import registry
from .checkpoints import (MAX_SIDECAR_BYTES, MAX_UPLOAD_BYTES, load_checkpoint, load_uploaded_checkpoint,
                          read_capped, read_meta, sidecar_path, weights_path)
from .errors import CheckpointError, MnistLabError, RunError
from .records import RunStatus

WEIGHTS = "checkpoint.safetensors"
SIDECAR = "checkpoint.json"
SNAPSHOTS = "snapshots.npz"
MAX_SNAPSHOT_BYTES = 8 << 20   # a replay is at most about 2 MB before compression (snapshots.py)


def store_checkpoint(run_id: str, path: os.PathLike, root: Optional[os.PathLike] = None) -> None:
    """Copy the checkpoint the worker just saved at `path` (weights and sidecar) into the registry.

    Called by the worker right after save_checkpoint. Refuses (CheckpointError) a checkpoint larger
    than an upload may be: the registry holds small models, not whatever a file grew to.
    """
    weights = weights_path(path)
    data = read_capped(weights, MAX_UPLOAD_BYTES)
    sidecar = read_capped(sidecar_path(weights), MAX_SIDECAR_BYTES)
    registry.put_artifact(run_id, WEIGHTS, data, root=root)
    registry.put_artifact(run_id, SIDECAR, sidecar, root=root)


def _local_checkpoint(run: registry.Run) -> Optional[Path]:
    """The run's checkpoint file when it is on this host's disk and really is that run's."""
    if not run.checkpoint:
        return None
    path = weights_path(run.checkpoint)
    try:
        if path.is_file() and read_meta(path).get("run_id") == run.id:
            return path
    except MnistLabError:
        return None  # a broken or replaced file here: the registry's copy decides
    return None


def load_run_model(run_id: str, root: Optional[os.PathLike] = None) -> tuple[nn.Module, dict]:
    """(model in eval mode, sidecar) of a completed run, from its file here or else from the registry.

    Raises a one-line RunError for a run that has no checkpoint (not completed, or from before the
    registry kept them and trained on another host), CheckpointError for stored bytes that fail the
    upload checks.
    """
    run = registry.get_run(run_id, root=root)
    if run.status != RunStatus.COMPLETED:
        raise RunError(f"run {run_id} is {run.status}: only a completed run has a checkpoint")
    local = _local_checkpoint(run)
    if local is not None:
        return load_checkpoint(local)
    data = registry.get_artifact(run_id, WEIGHTS, root=root)
    sidecar = registry.get_artifact(run_id, SIDECAR, root=root)
    if data is None or sidecar is None:
        raise RunError(f"run {run_id}'s checkpoint is neither on this host nor in the run registry")
    model, meta = load_uploaded_checkpoint(data, sidecar)  # sizes capped, sidecar checked, never pickle
    if meta.get("run_id") != run_id:
        raise CheckpointError(f"the checkpoint stored for run {run_id} belongs to another run")
    return model, meta


def stored_models(root: Optional[os.PathLike] = None, limit: Optional[int] = None) -> list[registry.Run]:
    """The completed runs whose checkpoint is in the registry, oldest first; with `limit`, the newest
    `limit` of them (the app's model choosers offer these beside the checkpoint files). One query."""
    found = registry.list_runs(root=root, status=RunStatus.COMPLETED, has_artifacts=(WEIGHTS, SIDECAR),
                               newest_first=limit is not None, limit=limit)
    return found if limit is None else found[::-1]


def store_snapshots(run_id: str, data: bytes, root: Optional[os.PathLike] = None) -> None:
    """Keep a run's replay file (the npz bytes snapshots.Recorder just wrote) in the registry."""
    if len(data) > MAX_SNAPSHOT_BYTES:
        raise RunError(f"the training snapshots of run {run_id} are too large to keep in the run registry")
    registry.put_artifact(run_id, SNAPSHOTS, data, root=root)


def stored_snapshots(run_id: str, root: Optional[os.PathLike] = None) -> Optional[bytes]:
    """A run's replay file from the registry, or None when it holds none (or one too large to read)."""
    data = registry.get_artifact(run_id, SNAPSHOTS, root=root)
    if data is None:
        return None
    if len(data) > MAX_SNAPSHOT_BYTES:
        raise RunError(f"the training snapshots of run {run_id} in the run registry are too large to read")
    return data

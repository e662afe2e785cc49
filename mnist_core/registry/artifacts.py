"""A run's small files kept in the registry: its checkpoint weights and sidecar, its replay snapshots.

The web host and worker hosts share no disk, only the registry; a file kept here reaches every host
that reaches it. Each file is one row of ARTIFACTS (the run's id, a name, the bytes), removed with
its run (runs.delete_run). What is kept, and how it is read back as a model, is mnist_core.artifacts's.
"""

from __future__ import annotations

import os
from typing import Optional

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect

from ..errors import RunError
from ..runfiles import check_run_id
from .db import transaction
from .schema import ARTIFACTS, RUNS

MAX_ARTIFACT_BYTES = 32 * 1024 * 1024  # a run's small files (an MNIST checkpoint is under 2 MB)


def put_artifact(run_id: str, name: str, data: bytes, root: Optional[os.PathLike] = None) -> None:
    """Keep one of a run's small files in the registry (its checkpoint weights and sidecar, its replay
    snapshots), so every host that reaches the registry reaches it too: the web host and worker hosts
    share no disk. A file of the same name is replaced; one over MAX_ARTIFACT_BYTES is refused."""
    check_run_id(run_id)
    if not isinstance(name, str) or not name or len(name) > 200:
        raise RunError(f"{str(name)[:40]!r} is not an artifact name")
    data = bytes(data)
    if len(data) > MAX_ARTIFACT_BYTES:
        raise RunError(f"{name} is {len(data) / 2**20:.1f} MB, over the {MAX_ARTIFACT_BYTES / 2**20:g} MB a run's "
                       "file may take in the run registry")
    with transaction(root, write=True, patient=True) as conn:
        if conn.scalar(sa.select(RUNS.c.id).where(RUNS.c.id == run_id)) is None:
            raise RunError(f"no run {run_id}")
        # Both databases say "insert, or replace on a clash" the same way; each dialect builds it.
        insert = (pg_dialect.insert if conn.dialect.name == "postgresql" else sqlite_dialect.insert)(ARTIFACTS)
        conn.execute(insert.values(run_id=run_id, name=name, data=data)
                     .on_conflict_do_update(index_elements=["run_id", "name"], set_={"data": insert.excluded.data}))


def get_artifact(run_id: str, name: str, root: Optional[os.PathLike] = None) -> Optional[bytes]:
    """A run's file kept by put_artifact; None when it has none of that name."""
    check_run_id(run_id)
    with transaction(root) as conn:
        data = conn.scalar(sa.select(ARTIFACTS.c.data).where(ARTIFACTS.c.run_id == run_id, ARTIFACTS.c.name == name))
    return bytes(data) if data is not None else None


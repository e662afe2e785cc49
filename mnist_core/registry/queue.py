"""The training queue: its one rule (waiting, starting, holding a slot), getting in line (create_run
with its limits), being claimed (claim_next, set_job), and each waiting run's place in line.

The rule. A queued run is *waiting* until a process claims it: a runner's claim, or the CLI training
in-process (create_run with `worker_pid`), records that process's pid and host. From the claim until
the worker marks it running, the run is *starting* (the stored status stays "queued"). Starting and
running runs *hold a slot*: at most MNIST_MAX_CONCURRENT of them at once. A run a Ray job will train
(its `job_id` recorded, set_job) is left to that job: no local runner claims it.

The claim counts, chooses and claims in one write transaction (db.py says how each database makes
that one step): however many runners on however many hosts call claim_next at once, each run is
claimed once and the cap holds. On PostgreSQL the claim's SELECT also says `FOR UPDATE SKIP LOCKED`,
so it never waits behind a visitor's cancel or delete of the run it was about to take (it takes the
next one); SQLAlchemy leaves FOR UPDATE out on SQLite, where the file lock does it.
"""

from __future__ import annotations

import json
import os
import socket
import time
from typing import Iterable, Optional

import sqlalchemy as sa

from .. import limits
from ..errors import RunError
from ..records import RunStatus
from ..runfiles import check_run_id, new_run_id
from .db import QUEUE_LOCK, transaction
from .liveness import reap
from .schema import LIVE_STATUSES, RUNS

# The rule, on one run's values (the Run record's `waiting`, `starting`, `holds_slot`) ...


def is_waiting(status: str, pid: Optional[int]) -> bool:
    return status == RunStatus.QUEUED and pid is None


def is_starting(status: str, pid: Optional[int]) -> bool:
    return status == RunStatus.QUEUED and pid is not None


def holds_slot(status: str, pid: Optional[int]) -> bool:
    return status == RunStatus.RUNNING or is_starting(status, pid)


# ... and as SQL conditions on RUNS, for the counts and the claim.
WAITING = sa.and_(RUNS.c.status == str(RunStatus.QUEUED), RUNS.c.pid.is_(None))
STARTING = sa.and_(RUNS.c.status == str(RunStatus.QUEUED), RUNS.c.pid.is_not(None))
HOLDS_SLOT = sa.or_(RUNS.c.status == str(RunStatus.RUNNING), STARTING)


def create_run(config: dict, root: Optional[os.PathLike] = None, owner: Optional[str] = None,
               worker_pid: Optional[int] = None, sweep: Optional[str] = None, class_code: Optional[str] = None,
               student: Optional[str] = None) -> str:
    """Register a run as "queued" and return its id. `config` is a validated TrainConfig's dict.

    A run with `worker_pid` is already claimed by that process (the CLI training in-process): it is
    starting. Otherwise it waits for a claim (claim_next) to start a worker. A visitor's run (one with
    an owner, the visitor's token) is refused when MNIST_MAX_QUEUED runs of everyone together are
    queued or running, or when that owner has MNIST_MAX_QUEUED_PER_OWNER of them; the operator's (no
    owner) never is. `sweep`, `class_code` and `student` are recorded as given (list_runs filters on
    the first two).
    """
    run_id = new_run_id()
    with transaction(root, write=True, lock=QUEUE_LOCK) as conn:
        if owner is not None:
            bounds = limits.current()
            live = conn.scalar(sa.select(sa.func.count()).where(RUNS.c.status.in_(LIVE_STATUSES)))
            if live >= bounds.max_queued:
                raise RunError(f"the training queue is full ({live} runs waiting or running): try again later")
            mine = conn.scalar(sa.select(sa.func.count()).where(RUNS.c.owner == owner,
                                                                RUNS.c.status.in_(LIVE_STATUSES)))
            if mine >= bounds.max_queued_per_owner:
                raise RunError(f"you already have {mine} run(s) queued or running (the limit is "
                               f"{bounds.max_queued_per_owner}): wait for one to finish or cancel one")
        conn.execute(RUNS.insert().values(
            id=run_id, created_at=time.time(), status=str(RunStatus.QUEUED), config=json.dumps(config),
            owner=owner, pid=worker_pid, host=socket.gethostname() if worker_pid else None, sweep=sweep,
            class_code=class_code, student=student))
    return run_id


def claim_next(pid: int, root: Optional[os.PathLike] = None, max_concurrent: Optional[int] = None) -> Optional[str]:
    """Take the oldest waiting run that no Ray job will train, for the process `pid` (it is starting
    from now on); None when there is none or `max_concurrent` runs (default: MNIST_MAX_CONCURRENT)
    already hold a slot. Dead runs are reaped first, so they free their slots."""
    cap = max_concurrent or limits.current().max_concurrent
    with transaction(root) as conn:
        if conn.scalar(sa.select(RUNS.c.id).where(WAITING).limit(1)) is None:
            return None  # the common case, without taking the write lock
    with transaction(root, write=True, lock=QUEUE_LOCK, patient=True) as conn:
        reap(conn, root=root)
        if conn.scalar(sa.select(sa.func.count()).where(HOLDS_SLOT)) >= cap:
            return None
        run_id = conn.scalar(sa.select(RUNS.c.id).where(WAITING, RUNS.c.job_id.is_(None))
                             .order_by(RUNS.c.created_at, RUNS.c.id).limit(1).with_for_update(skip_locked=True))
        if run_id is not None:
            conn.execute(RUNS.update().where(RUNS.c.id == run_id)
                         .values(pid=pid, host=socket.gethostname(), heartbeat=time.time()))
    return run_id


def set_job(run_id: str, job_id: str, root: Optional[os.PathLike] = None) -> None:
    """Record the executor's id for the run's job (a Ray job's submission id), to follow or stop it."""
    check_run_id(run_id)
    with transaction(root, write=True) as conn:
        conn.execute(RUNS.update().where(RUNS.c.id == run_id).values(job_id=job_id))


def queue_positions(all_runs: Iterable) -> dict[str, int]:
    """1-based place in the queue of each waiting run among `all_runs` (Run records), oldest first."""
    waiting = [r for r in all_runs if r.waiting]
    return {r.id: i for i, r in enumerate(sorted(waiting, key=lambda r: (r.created_at, r.id)), start=1)}

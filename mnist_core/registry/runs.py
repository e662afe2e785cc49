"""A run's record: the `Run` dataclass, the reads pages and the CLI make (list, count, the recent
ones, one run, its metric rows), the worker's writes as it trains (mark_running, heartbeat,
add_metrics, finish_run), and what a visitor may change (request_cancel, delete_run: their own runs).

A read never shows a dead worker's run as live: it checks live runs' workers (liveness.py) and, only
when one is found dead, takes a write to mark it failed before answering.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass
from typing import Iterable, Optional

import sqlalchemy as sa

from ..errors import RunError
from ..records import ENDED, LIVE, MetricRow, RunStatus
from ..runfiles import check_run_id, remove_run_files
from . import queue
from .db import transaction
from .liveness import dead_reason, reap
from .schema import ARTIFACTS, LIVE_STATUSES, METRICS, RUNS


@dataclass
class Run:
    """One run as the registry holds it (a row of RUNS, its config parsed). `status` is what is
    stored; `state` is what a reader is told, which also names the queue's "starting" (queue.py)."""

    id: str
    status: RunStatus
    config: dict
    created_at: float
    started_at: Optional[float]
    finished_at: Optional[float]
    error: Optional[str]
    checkpoint: Optional[str]
    best_val_accuracy: Optional[float]
    test_accuracy: Optional[float]
    test_loss: Optional[float]
    steps: Optional[int]
    total_steps: Optional[int]
    pid: Optional[int]
    host: Optional[str]
    heartbeat: Optional[float]
    cancel_requested: bool
    owner: Optional[str]
    job_id: Optional[str] = None      # the executor's job id (a Ray job's submission id)
    node: Optional[str] = None        # where the worker ran, as it reported it
    sweep: Optional[str] = None       # the sweep it belongs to
    class_code: Optional[str] = None  # the class it was started in
    student: Optional[str] = None     # the display name of who started it

    @property
    def is_live(self) -> bool:
        return self.status in LIVE

    @property
    def waiting(self) -> bool:
        """Queued, and no process has claimed it yet: it has a place in line."""
        return queue.is_waiting(self.status, self.pid)

    @property
    def starting(self) -> bool:
        """Queued and claimed: its worker is loading data and building the model."""
        return queue.is_starting(self.status, self.pid)

    @property
    def holds_slot(self) -> bool:
        """Starting or running: it takes one of the MNIST_MAX_CONCURRENT training slots."""
        return queue.holds_slot(self.status, self.pid)

    @property
    def state(self) -> str:
        """What a list of runs says: "starting" for a claimed queued run, else its status."""
        return "starting" if self.starting else str(self.status)

    @property
    def duration(self) -> Optional[float]:
        if self.started_at is None:
            return None
        return (self.finished_at or time.time()) - self.started_at

    @property
    def progress(self) -> float:
        """The fraction done: steps recorded over the steps planned (known from the moment it runs)."""
        if self.status == RunStatus.COMPLETED:
            return 1.0
        return min(1.0, (self.steps or 0) / self.total_steps) if self.total_steps else 0.0

    def eta(self, now: Optional[float] = None) -> Optional[float]:
        """Seconds left for a running run at its pace so far; None before its first step, or once ended."""
        if self.status != RunStatus.RUNNING or not self.steps or not self.total_steps or self.started_at is None:
            return None
        elapsed = (time.time() if now is None else now) - self.started_at
        return max(0.0, elapsed / self.steps * (self.total_steps - self.steps))


def _row_to_run(row: sa.Row) -> Run:
    d = dict(row._mapping)
    try:
        d["config"] = json.loads(d["config"])
    except (TypeError, ValueError):
        raise RunError(f"run {d['id']} has an unreadable config in the run registry") from None
    d["cancel_requested"] = bool(d["cancel_requested"])
    try:
        d["status"] = RunStatus(d["status"])
    except ValueError:
        raise RunError(f"run {d['id']} has an unknown status in the run registry") from None
    return Run(**d)


# --- reads ----------------------------------------------------------------------------------------

def _read_runs(root: Optional[os.PathLike], *where, newest_first: bool = False, limit: Optional[int] = None,
               offset: int = 0) -> list[sa.Row]:
    """Runs matching `where`, oldest first (or newest first), at most `limit` of them after skipping
    `offset` (SQL LIMIT and OFFSET: a page of 25 reads 25 rows, whatever the registry holds), dead
    workers' runs read as failed. The common case is one read transaction; only when a live run's
    worker is found dead is a write taken to record it."""
    order = (RUNS.c.created_at.desc(), RUNS.c.id.desc()) if newest_first else (RUNS.c.created_at, RUNS.c.id)
    query = sa.select(RUNS).where(*where).order_by(*order).limit(limit).offset(offset or None)
    with transaction(root) as conn:
        rows = conn.execute(query).all()
    now = time.time()
    if any(dead_reason(dict(r._mapping), now, root) for r in rows):
        with transaction(root, write=True) as conn:
            reap(conn, root=root)
            rows = conn.execute(query).all()
    return rows


def _run_filter(sweep: Optional[str] = None, class_code: Optional[str] = None, status=None,
                owner: Optional[str] = None, has_artifacts: Iterable[str] = (), where: Iterable = ()) -> list:
    conditions = list(where)
    conditions += [RUNS.c.sweep == sweep] if sweep is not None else []
    conditions += [RUNS.c.class_code == class_code] if class_code is not None else []
    if status is not None:
        statuses = [status] if isinstance(status, str) else list(status)
        conditions.append(RUNS.c.status.in_([str(s) for s in statuses]))
    conditions += [RUNS.c.owner == owner] if owner is not None else []
    conditions += [sa.exists().where(ARTIFACTS.c.run_id == RUNS.c.id, ARTIFACTS.c.name == name)
                   for name in has_artifacts]
    return conditions


def list_runs(root: Optional[os.PathLike] = None, sweep: Optional[str] = None, class_code: Optional[str] = None,
              *, status=None, owner: Optional[str] = None, has_artifacts: Iterable[str] = (), where: Iterable = (),
              newest_first: bool = False, limit: Optional[int] = None, offset: int = 0) -> list[Run]:
    """Every run (or those of one sweep, one class, with a status or several, of one owner, holding
    the named artifacts, meeting further conditions `where` on RUNS' columns), oldest first. Runs
    whose worker died read as failed.

    A page never lists them all: `newest_first=True, limit=25, offset=50` is the third page of 25,
    newest first, and count_runs says how many pages there are. The limit is the database's (SQL
    LIMIT), so a registry of 10,000 runs costs a page what a registry of 25 does."""
    conditions = _run_filter(sweep, class_code, status, owner, has_artifacts, where)
    return [_row_to_run(r) for r in _read_runs(root, *conditions, newest_first=newest_first, limit=limit,
                                               offset=offset)]


def count_runs(root: Optional[os.PathLike] = None, sweep: Optional[str] = None, class_code: Optional[str] = None,
               *, status=None, owner: Optional[str] = None, where: Iterable = ()) -> int:
    """How many runs list_runs would list with the same filters (no limit), counted by the database."""
    conditions = _run_filter(sweep, class_code, status, owner, where=where)
    with transaction(root) as conn:
        return conn.scalar(sa.select(sa.func.count()).select_from(RUNS).where(*conditions))


def recent_runs(limit: int = 100, root: Optional[os.PathLike] = None) -> list[Run]:
    """What a page needs to place runs in line and pick one to watch, without reading the whole
    registry: every live run (the queue caps bound them) and the newest `limit` runs, oldest first."""
    newest = list_runs(root, newest_first=True, limit=limit)
    known = {r.id for r in newest}
    live = [r for r in list_runs(root, status=LIVE) if r.id not in known]
    return sorted([*newest, *live], key=lambda r: (r.created_at, r.id))


def run_status(run_id: str, root: Optional[os.PathLike] = None) -> Optional[RunStatus]:
    """A run's status as recorded (its worker not checked), or None when the registry has no such run."""
    check_run_id(run_id)
    with transaction(root) as conn:
        status = conn.scalar(sa.select(RUNS.c.status).where(RUNS.c.id == run_id))
    return RunStatus(status) if status is not None else None


def get_run(run_id: str, root: Optional[os.PathLike] = None) -> Run:
    """One run (a dead worker's reads failed); a RunError when the registry has no such run."""
    check_run_id(run_id)
    rows = _read_runs(root, RUNS.c.id == run_id)
    if not rows:
        raise RunError(f"no run {run_id}")
    return _row_to_run(rows[0])


# Built once (the live view asks for new rows every second or so): each call only binds its values.
_SPLIT_ORDER = sa.case({"train": 0, "val": 1, "test": 2}, value=METRICS.c.split, else_=3)
_METRIC_ROWS = sa.select(METRICS.c.step, METRICS.c.epoch, METRICS.c.split, METRICS.c.loss, METRICS.c.accuracy,
                         METRICS.c.images_per_s, METRICS.c.time) \
    .where(METRICS.c.run_id == sa.bindparam("run_id"), METRICS.c.step > sa.bindparam("after_step"))
_METRIC_ROWS_OF_ALL = _METRIC_ROWS.order_by(METRICS.c.step, _SPLIT_ORDER, METRICS.c.time)
_METRIC_ROWS_OF_SPLIT = _METRIC_ROWS.where(METRICS.c.split == sa.bindparam("split")) \
    .order_by(METRICS.c.step, _SPLIT_ORDER, METRICS.c.time)


def get_metrics(run_id: str, split: Optional[str] = None, root: Optional[os.PathLike] = None,
                after_step: int = -1) -> list[MetricRow]:
    """Metric rows of a run (optionally one split, optionally only those after a step), in step order
    (at one step: the training step, then the validation after it, then the test)."""
    query, values = _METRIC_ROWS_OF_ALL, {"run_id": run_id, "after_step": after_step}
    if split:
        query, values = _METRIC_ROWS_OF_SPLIT, {**values, "split": split}
    with transaction(root) as conn:
        rows = conn.execute(query, values).all()
    return [dict(r._mapping) for r in rows]


# --- the worker's writes, and a visitor's --------------------------------------------------------

def mark_running(run_id: str, total_steps: Optional[int] = None, root: Optional[os.PathLike] = None,
                 node: Optional[str] = None) -> None:
    """The worker (this process) starts the queued run; `node` says where, as the worker knows it
    (a Ray node; by default this host's name)."""
    now = time.time()
    with transaction(root, write=True, patient=True) as conn:
        cur = conn.execute(
            RUNS.update().where(RUNS.c.id == run_id, RUNS.c.status == "queued").values(
                status="running", started_at=now, pid=os.getpid(), host=socket.gethostname(), heartbeat=now,
                total_steps=total_steps, node=node or socket.gethostname()))
        if cur.rowcount != 1:
            status = conn.scalar(sa.select(RUNS.c.status).where(RUNS.c.id == run_id))
            raise RunError(f"run {run_id} cannot start: " + (f"it is {status}" if status else "no such run"))


def heartbeat(run_id: str, root: Optional[os.PathLike] = None, steps: Optional[int] = None) -> bool:
    """Refresh a running run's heartbeat; True when its worker should stop: a cancel was requested,
    or the run is no longer running (the registry gave up on it, or it was deleted)."""
    with transaction(root, write=True, patient=True) as conn:
        conn.execute(RUNS.update().where(RUNS.c.id == run_id, RUNS.c.status == "running")
                     .values(heartbeat=time.time(), steps=sa.func.coalesce(steps, RUNS.c.steps)))
        row = conn.execute(sa.select(RUNS.c.status, RUNS.c.cancel_requested).where(RUNS.c.id == run_id)).first()
    return row is None or row.status != RunStatus.RUNNING or bool(row.cancel_requested)


def add_metrics(run_id: str, rows: Iterable[MetricRow], root: Optional[os.PathLike] = None) -> None:
    """Append metric rows (records.MetricRow: split, step, epoch, loss, accuracy, images_per_s) in one
    transaction."""
    now = time.time()
    values = [dict(run_id=run_id, step=r["step"], epoch=r["epoch"], split=r["split"], loss=r.get("loss"),
                   accuracy=r.get("accuracy"), images_per_s=r.get("images_per_s"), time=r.get("time", now))
              for r in rows]
    if not values:
        return
    top = max(v["step"] for v in values)
    with transaction(root, write=True, patient=True) as conn:
        conn.execute(METRICS.insert(), values)
        steps_so_far = sa.func.coalesce(RUNS.c.steps, 0)
        conn.execute(RUNS.update().where(RUNS.c.id == run_id).values(
            heartbeat=now, steps=sa.case((steps_so_far < top, top), else_=steps_so_far)))


def finish_run(run_id: str, status: RunStatus, root: Optional[os.PathLike] = None, error: Optional[str] = None,
               checkpoint: Optional[str] = None, best_val_accuracy: Optional[float] = None,
               test_accuracy: Optional[float] = None, test_loss: Optional[float] = None) -> bool:
    """Record how a live run ended; False when it had already ended (then nothing is changed)."""
    if status not in ENDED:
        raise RunError(f"a run cannot finish as {status!r}")
    with transaction(root, write=True, patient=True) as conn:
        cur = conn.execute(RUNS.update().where(RUNS.c.id == run_id, RUNS.c.status.in_(LIVE_STATUSES)).values(
            status=str(status), finished_at=time.time(), error=error,
            checkpoint=sa.func.coalesce(checkpoint, RUNS.c.checkpoint),
            best_val_accuracy=sa.func.coalesce(best_val_accuracy, RUNS.c.best_val_accuracy),
            test_accuracy=test_accuracy, test_loss=test_loss))
        return cur.rowcount == 1


def _check_owner(row, by: Optional[str], action: str) -> None:
    """A visitor (`by` = their owner token) may change only their own runs. Runs without an owner were
    started from the CLI: they are the operator's. `by=None` is the operator, who may change any run."""
    if by is None or row.owner == by:
        return
    if row.owner is None:
        raise RunError(f"this run was started by the operator: only the operator can {action} it")
    raise RunError(f"this run was started by someone else: only they can {action} it")


def request_cancel(run_id: str, root: Optional[os.PathLike] = None, by: Optional[str] = None) -> None:
    """Ask a live run to stop. A waiting run (no process has claimed it) is cancelled at once."""
    check_run_id(run_id)
    with transaction(root, write=True) as conn:
        row = conn.execute(sa.select(RUNS.c.status, RUNS.c.pid, RUNS.c.owner).where(RUNS.c.id == run_id)).first()
        if row is None:
            raise RunError(f"no run {run_id}")
        _check_owner(row, by, "cancel")
        if row.status not in LIVE:
            return
        conn.execute(RUNS.update().where(RUNS.c.id == run_id).values(cancel_requested=1))
        # Only while no worker has it: a claim that got there first leaves it to its worker.
        conn.execute(RUNS.update().where(RUNS.c.id == run_id, queue.WAITING)
                     .values(status="cancelled", finished_at=time.time()))


def delete_run(run_id: str, root: Optional[os.PathLike] = None, by: Optional[str] = None) -> None:
    """Remove a finished run, its metrics, its artifacts and all its files (runfiles.remove_run_files: its
    log, its snapshots, its checkpoint when the run named it). A file that cannot be removed keeps the run
    listed."""
    check_run_id(run_id)
    with transaction(root, write=True) as conn:
        row = conn.execute(sa.select(RUNS.c.status, RUNS.c.owner, RUNS.c.checkpoint)
                           .where(RUNS.c.id == run_id)).first()
        if row is None:
            raise RunError(f"no run {run_id}")
        _check_owner(row, by, "delete")
        if row.status in LIVE:
            raise RunError(f"run {run_id} is {row.status}: cancel it before deleting it")
        remove_run_files(run_id, root, checkpoint=row.checkpoint)
        conn.execute(ARTIFACTS.delete().where(ARTIFACTS.c.run_id == run_id))
        conn.execute(METRICS.delete().where(METRICS.c.run_id == run_id))
        conn.execute(RUNS.delete().where(RUNS.c.id == run_id))


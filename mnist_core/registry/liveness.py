"""Whether a live run's worker is still there, and reaping the runs of those that are not.

A run whose worker died is never left reading "running": reads check live runs' workers and mark
dead ones failed (runs.py's reads, the queue's claim). On this host the process answers for itself
(its pid alive, not a zombie, and started before the worker last wrote: /proc), so a worker that is
only late (paused, swapped out, busy) is never given up on, nor one that ended leaving an outcome the
registry could not take (outcomes.py: its runner or the next start records it); a worker on another
host is judged by its heartbeat lease (none for HEARTBEAT_TIMEOUT seconds). A worker whose run was
given up on learns it from its next heartbeat and stops without touching the record.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Optional

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .. import limits
from ..records import LIVE, RunStatus
from ..runfiles import outcome_path
from .schema import LIVE_STATUSES, RUNS

HEARTBEAT_TIMEOUT = 10.0  # seconds without a heartbeat before a live run's worker counts as dead


def pid_alive(pid: int) -> bool:
    """True when the process exists and is not a zombie (a killed child nobody has reaped yet)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except OSError:
        return True  # no /proc (macOS): trust kill()


def process_started_at(pid: int) -> Optional[float]:
    """When a process started, in seconds since the epoch; None where /proc cannot say (macOS)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            ticks = int(f.read().rsplit(")", 1)[1].split()[19])  # field 22, starttime, in clock ticks since boot
        with open("/proc/stat") as f:
            boot = next(int(line.split()[1]) for line in f if line.startswith("btime "))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def dead_reason(row: dict, now: float, root: Optional[os.PathLike] = None) -> Optional[str]:
    """Why a live run's worker counts as dead, in one line for the run's error; None while it is there
    (and for a run that is not live). `row` is the run's row in RUNS, as a dict."""
    if row["status"] not in LIVE:
        return None
    if row["pid"] is not None and row["host"] == socket.gethostname():
        # On this host the process answers for itself: one that is only late (paused, swapped out,
        # starved of CPU) keeps its run, however old its heartbeat. Unless the pid now belongs to a
        # process that started after the worker last wrote (a reboot, a recycled pid): the worker
        # was started before it was recorded, so that one cannot be it.
        limit = limits.max_run_seconds()
        if not pid_alive(row["pid"]) and limit and row.get("started_at") and \
                now - row["started_at"] > limit + limits.time_limit_grace():
            reason = f"{limits.time_limit_text(limit)} reached"  # its runner killed it for that
        elif not pid_alive(row["pid"]):
            reason = f"the worker process (pid {row['pid']}) died"
        elif (started := process_started_at(row["pid"])) is not None and \
                started > (row["heartbeat"] or row["created_at"]) + 2.0:
            reason = f"the worker process (pid {row['pid']}) is gone: its pid now belongs to another process"
        else:
            return None
        # A worker that ended with an outcome the registry could not take left it in a file: the
        # runner or the next start records it (outcomes.py); failing the run would lose its model.
        return None if outcome_path(row["id"], root).exists() else reason
    if row["status"] == RunStatus.RUNNING and row["heartbeat"] and now - row["heartbeat"] > HEARTBEAT_TIMEOUT:
        return f"the worker stopped responding (no heartbeat for {now - row['heartbeat']:.0f} s)"
    return None


def reap(conn: Connection, live: Optional[list[dict]] = None, root: Optional[os.PathLike] = None) -> None:
    """Mark failed, in this write transaction, every live run whose worker is dead."""
    now = time.time()
    if live is None:
        live = [dict(r._mapping) for r in conn.execute(sa.select(RUNS).where(RUNS.c.status.in_(LIVE_STATUSES)))]
    for row in live:
        reason = dead_reason(row, now, root)
        if reason:
            conn.execute(RUNS.update().where(RUNS.c.id == row["id"], RUNS.c.status.in_(LIVE_STATUSES))
                         .values(status="failed", finished_at=now, error=reason))

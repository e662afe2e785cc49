"""The run registry: one SQLite file (standard library, WAL mode) that every process shares.

A run is a row in `runs` (config, status, timestamps, error text, checkpoint, final metrics, the
worker's pid and heartbeat); its curves are rows in `metrics` (step, epoch, split, loss, accuracy,
images/s). The worker writes; pages and the CLI read. WAL mode lets readers read while the writer
writes, and every connection waits (busy_timeout) rather than failing with "database is locked".

A run whose worker died is never left reading "running": every read checks live runs' workers and
marks dead ones failed. On this host the process answers for itself (its pid alive, not a zombie,
and started before the worker last wrote), so a worker that is only late (paused, swapped out,
busy) is never given up on; a worker on another host is judged by its heartbeat (none for
HEARTBEAT_TIMEOUT seconds). A worker whose run
was given up on learns it from its next heartbeat and stops without touching the record.

Every fault of the file (corrupt, not a database, disk I/O, a folder that cannot be made) is a
one-line RunError that says "the run registry" and its file name, never a server path. The file is
created on first use and given a random id; once this process has used it, every connection checks
that it is still that registry: one deleted or replaced under a running server is "gone", never
silently recreated empty.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import sqlite3
import time
import urllib.parse
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

from .errors import RunError
from .records import ENDED, LIVE, MetricRow, RunStatus
from .runfiles import check_run_id, new_run_id, registry_path, remove_run_files

HEARTBEAT_TIMEOUT = 10.0  # seconds without a heartbeat before a live run's worker counts as dead

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    status TEXT NOT NULL,
    config TEXT NOT NULL,
    error TEXT,
    checkpoint TEXT,
    best_val_accuracy REAL,
    test_accuracy REAL,
    test_loss REAL,
    steps INTEGER,
    total_steps INTEGER,
    pid INTEGER,
    host TEXT,
    heartbeat REAL,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    owner TEXT,
    job_id TEXT,
    node TEXT,
    sweep TEXT,
    class_code TEXT,
    student TEXT
);
CREATE TABLE IF NOT EXISTS metrics (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    step INTEGER NOT NULL,
    epoch REAL NOT NULL,
    split TEXT NOT NULL,
    loss REAL,
    accuracy REAL,
    images_per_s REAL,
    time REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS metrics_run ON metrics(run_id, split, step);
CREATE TABLE IF NOT EXISTS registry (id TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS artifacts (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (run_id, name)
);
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
"""

SCHEMA_VERSION = 2  # 1: before job_id, node, sweep, class_code, student and artifacts (no schema_version table)

# How a registry at version N becomes N + 1, in one write transaction with the version bump.
UPGRADES = {
    1: ["ALTER TABLE runs ADD COLUMN job_id TEXT", "ALTER TABLE runs ADD COLUMN node TEXT",
        "ALTER TABLE runs ADD COLUMN sweep TEXT", "ALTER TABLE runs ADD COLUMN class_code TEXT",
        "ALTER TABLE runs ADD COLUMN student TEXT",
        "CREATE TABLE IF NOT EXISTS artifacts (run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE, "
        "name TEXT NOT NULL, data BLOB NOT NULL, PRIMARY KEY (run_id, name))"],
}

MAX_ARTIFACT_BYTES = 32 * 1024 * 1024  # a run's small files (an MNIST checkpoint is under 2 MB)


@dataclass
class Run:
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


_opened: dict[Path, str] = {}  # registries this process has used: path -> the registry's id


@contextmanager
def connect(root: Optional[os.PathLike] = None):
    """A short-lived connection; commits on success. Each call opens its own: safe across threads.

    Creates the registry when this process has never used one there; after that it must be the
    registry it knew (the same id), else it is gone. Every SQLite or file-system error, here or in
    the caller's statements, leaves as a one-line RunError.
    """
    path = registry_path(root)
    name = f"the run registry ({path.name})"
    gone = RunError(f"{name} is gone: it was deleted or replaced while in use (restore it, or restart to "
                    "begin an empty one)")
    known = _opened.get(path)
    try:
        exists = path.exists()
    except OSError as exc:
        raise RunError(f"cannot open {name}: {exc.strerror or type(exc).__name__}") from None
    if known is not None and not exists:
        raise gone
    try:
        if not exists:
            path.parent.mkdir(parents=True, exist_ok=True)
        # mode=rw: a known registry deleted since the check above is not recreated by the open.
        uri = f"file:{urllib.parse.quote(str(path))}?mode={'rw' if known else 'rwc'}"
        conn = sqlite3.connect(uri, uri=True, timeout=30.0, isolation_level=None)
    except OSError as exc:
        raise RunError(f"cannot open {name}: {exc.strerror or type(exc).__name__}") from None
    except sqlite3.Error as exc:
        raise RunError(f"cannot open {name}: {exc}") from None
    try:
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA busy_timeout = 30000")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        if known is None:  # once per process: WAL is a property of the file, the schema too
            conn.execute("PRAGMA journal_mode = WAL")
            _create_or_upgrade(conn)
            _opened[path] = _registry_id(conn)
        elif _registry_id(conn) != known:
            raise gone
        yield conn
    except sqlite3.Error as exc:  # corrupt, "file is not a database", disk I/O, locked past the timeout...
        raise RunError(f"{name} cannot be used: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") \
            from None
    except OSError as exc:
        raise RunError(f"{name} cannot be used: {exc.strerror or type(exc).__name__}") from None
    finally:
        conn.close()


def _create_or_upgrade(conn: sqlite3.Connection) -> None:
    """Create a fresh registry at SCHEMA_VERSION, or bring an older one up to it, data kept.

    One write transaction: two processes opening the same old registry upgrade it once."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "runs" not in tables:
            for statement in SCHEMA.split(";"):  # not executescript(): it would commit first
                if statement.strip():
                    conn.execute(statement)
            version = SCHEMA_VERSION
            conn.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
        elif "schema_version" not in tables:
            version = 1
            conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
            conn.execute("INSERT INTO schema_version (version) VALUES (1)")
        else:
            (version,) = conn.execute("SELECT version FROM schema_version").fetchone()
        if version > SCHEMA_VERSION:
            raise RunError(f"the run registry is at version {version}, newer than this code ({SCHEMA_VERSION}): "
                           "update the app")
        while version < SCHEMA_VERSION:
            for statement in UPGRADES[version]:
                conn.execute(statement)
            version += 1
            conn.execute("UPDATE schema_version SET version = ?", (version,))
        conn.execute("INSERT INTO registry (id) SELECT ? WHERE NOT EXISTS (SELECT 1 FROM registry)",
                     (secrets.token_hex(8),))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _registry_id(conn: sqlite3.Connection) -> Optional[str]:
    try:
        row = conn.execute("SELECT id FROM registry").fetchone()
    except sqlite3.OperationalError as exc:
        if str(exc).startswith("no such table"):
            return None  # an empty file, or some other database: not the registry we knew
        raise
    return row[0] if row else None


def _row_to_run(row: sqlite3.Row) -> Run:
    d = dict(row)
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


def create_run(config: dict, root: Optional[os.PathLike] = None, owner: Optional[str] = None,
               worker_pid: Optional[int] = None, sweep: Optional[str] = None, class_code: Optional[str] = None,
               student: Optional[str] = None) -> str:
    """Register a run as "queued" and return its id. `config` is a validated TrainConfig's dict.

    A run with `worker_pid` is already claimed by that process (the CLI training in-process);
    otherwise it waits for `claim_queued` to start a worker. A visitor's run (one with an owner, the
    visitor's token) is refused when MNIST_MAX_QUEUED runs of everyone together are queued or running,
    or when that owner has MNIST_MAX_QUEUED_PER_OWNER of them; the operator's (no owner) never is.
    `sweep`, `class_code` and `student` are recorded as given (list_runs filters on the first two).
    """
    from .limits import current

    run_id = new_run_id()
    with connect(root) as conn:
        conn.execute("BEGIN IMMEDIATE")
        if owner is not None:
            limits = current()
            (live,) = conn.execute("SELECT COUNT(*) FROM runs WHERE status IN ('queued', 'running')").fetchone()
            if live >= limits.max_queued:
                conn.execute("ROLLBACK")
                raise RunError(f"the training queue is full ({live} runs waiting or running): try again later")
            (mine,) = conn.execute("SELECT COUNT(*) FROM runs WHERE owner = ? AND status IN ('queued', 'running')",
                                   (owner,)).fetchone()
            if mine >= limits.max_queued_per_owner:
                conn.execute("ROLLBACK")
                raise RunError(f"you already have {mine} run(s) queued or running (the limit is "
                               f"{limits.max_queued_per_owner}): wait for one to finish or cancel one")
        conn.execute("INSERT INTO runs (id, created_at, status, config, owner, pid, host, sweep, class_code, student) "
                     "VALUES (?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?)",
                     (run_id, time.time(), json.dumps(config), owner, worker_pid,
                      socket.gethostname() if worker_pid else None, sweep, class_code, student))
        conn.execute("COMMIT")
    return run_id


def claim_queued(launch, root: Optional[os.PathLike] = None, max_concurrent: Optional[int] = None) -> list[str]:
    """Start waiting runs, oldest first, while fewer than `max_concurrent` are active.

    `launch(run_id) -> pid` starts a worker. The count, the choice and the pid are one write
    transaction, so two processes (pages, finishing workers) never start the same run or exceed the
    cap. A launch that fails marks its run failed.
    """
    from .limits import current

    cap = max_concurrent or current().max_concurrent
    started = []
    with connect(root) as conn:
        if not conn.execute("SELECT 1 FROM runs WHERE status = 'queued' AND pid IS NULL LIMIT 1").fetchone():
            return started  # the common case, without taking the write lock
        conn.execute("BEGIN IMMEDIATE")
        try:
            _reap_dead(conn)
            (active,) = conn.execute("SELECT COUNT(*) FROM runs WHERE status = 'running' "
                                     "OR (status = 'queued' AND pid IS NOT NULL)").fetchone()
            waiting = conn.execute("SELECT id FROM runs WHERE status = 'queued' AND pid IS NULL "
                                   "ORDER BY created_at, id").fetchall()
            for (run_id,) in waiting[:max(0, cap - active)]:
                try:
                    pid = launch(run_id)
                except Exception as exc:  # noqa: BLE001 - a failed launch fails its run, not the page
                    # An OSError's text names the file (a server path): its reason alone is shown.
                    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
                    conn.execute("UPDATE runs SET status = 'failed', finished_at = ?, error = ? WHERE id = ?",
                                 (time.time(), f"the worker could not be started: {reason}", run_id))
                    continue
                conn.execute("UPDATE runs SET pid = ?, host = ?, heartbeat = ? WHERE id = ?",
                             (pid, socket.gethostname(), time.time(), run_id))
                started.append(run_id)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return started


def claim_next(pid: int, root: Optional[os.PathLike] = None, max_concurrent: Optional[int] = None) -> Optional[str]:
    """Take the oldest queued run that no worker has claimed, for the process `pid`; None when there is
    none or `max_concurrent` runs (default: MNIST_MAX_CONCURRENT) are already active (running, or
    queued with a worker). Dead runs are reaped first, so they free their slots.

    The count, the choice and the claim are one write transaction: however many runner processes
    call this at once, each run is claimed once and the cap holds.
    """
    from .limits import current

    cap = max_concurrent or current().max_concurrent
    with connect(root) as conn:
        if not conn.execute("SELECT 1 FROM runs WHERE status = 'queued' AND pid IS NULL LIMIT 1").fetchone():
            return None  # the common case, without taking the write lock
        conn.execute("BEGIN IMMEDIATE")
        try:
            _reap_dead(conn)
            (active,) = conn.execute("SELECT COUNT(*) FROM runs WHERE status = 'running' "
                                     "OR (status = 'queued' AND pid IS NOT NULL)").fetchone()
            row = None if active >= cap else conn.execute(
                "SELECT id FROM runs WHERE status = 'queued' AND pid IS NULL ORDER BY created_at, id LIMIT 1").fetchone()
            if row is not None:
                conn.execute("UPDATE runs SET pid = ?, host = ?, heartbeat = ? WHERE id = ?",
                             (pid, socket.gethostname(), time.time(), row[0]))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return row[0] if row is not None else None


def queue_positions(all_runs: list["Run"]) -> dict[str, int]:
    """1-based place in the queue of each run that waits for a free slot."""
    waiting = [r for r in all_runs if r.status == RunStatus.QUEUED and r.pid is None]
    return {r.id: i for i, r in enumerate(sorted(waiting, key=lambda r: (r.created_at, r.id)), start=1)}


def set_worker(run_id: str, pid: int, root: Optional[os.PathLike] = None) -> None:
    """Record the worker process launched for a queued run (so a dead launch is noticed)."""
    check_run_id(run_id)
    with connect(root) as conn:
        conn.execute("UPDATE runs SET pid = ?, host = ?, heartbeat = ? WHERE id = ?",
                     (pid, socket.gethostname(), time.time(), run_id))


def set_job(run_id: str, job_id: str, root: Optional[os.PathLike] = None) -> None:
    """Record the executor's id for the run's job (a Ray job's submission id), to follow or stop it."""
    check_run_id(run_id)
    with connect(root) as conn:
        conn.execute("UPDATE runs SET job_id = ? WHERE id = ?", (job_id, run_id))


def mark_running(run_id: str, total_steps: Optional[int] = None, root: Optional[os.PathLike] = None,
                 node: Optional[str] = None) -> None:
    """The worker (this process) starts the queued run; `node` says where, as the worker knows it
    (a Ray node; by default this host's name)."""
    with connect(root) as conn:
        cur = conn.execute(
            "UPDATE runs SET status = 'running', started_at = ?, pid = ?, host = ?, heartbeat = ?, total_steps = ?, "
            "node = ? WHERE id = ? AND status = 'queued'",
            (time.time(), os.getpid(), socket.gethostname(), time.time(), total_steps,
             node or socket.gethostname(), run_id))
        if cur.rowcount != 1:
            status = conn.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()
            raise RunError(f"run {run_id} cannot start: " + (f"it is {status[0]}" if status else "no such run"))


def heartbeat(run_id: str, root: Optional[os.PathLike] = None, steps: Optional[int] = None) -> bool:
    """Refresh a running run's heartbeat; True when its worker should stop: a cancel was requested,
    or the run is no longer running (the registry gave up on it, or it was deleted)."""
    with connect(root) as conn:
        conn.execute("UPDATE runs SET heartbeat = ?, steps = COALESCE(?, steps) WHERE id = ? AND status = 'running'",
                     (time.time(), steps, run_id))
        row = conn.execute("SELECT status, cancel_requested FROM runs WHERE id = ?", (run_id,)).fetchone()
    return row is None or row["status"] != RunStatus.RUNNING or bool(row["cancel_requested"])


def add_metrics(run_id: str, rows: Iterable[MetricRow], root: Optional[os.PathLike] = None) -> None:
    """Append metric rows (records.MetricRow: split, step, epoch, loss, accuracy, images_per_s) in one
    transaction."""
    now = time.time()
    values = [(run_id, r["step"], r["epoch"], r["split"], r.get("loss"), r.get("accuracy"), r.get("images_per_s"),
               r.get("time", now)) for r in rows]
    if not values:
        return
    with connect(root) as conn:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT INTO metrics (run_id, step, epoch, split, loss, accuracy, images_per_s, time) "
                         "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", values)
        conn.execute("UPDATE runs SET heartbeat = ?, steps = MAX(COALESCE(steps, 0), ?) WHERE id = ?",
                     (now, max(v[1] for v in values), run_id))
        conn.execute("COMMIT")


def finish_run(run_id: str, status: RunStatus, root: Optional[os.PathLike] = None, error: Optional[str] = None,
               checkpoint: Optional[str] = None, best_val_accuracy: Optional[float] = None,
               test_accuracy: Optional[float] = None, test_loss: Optional[float] = None) -> bool:
    """Record how a live run ended; False when it had already ended (then nothing is changed)."""
    if status not in ENDED:
        raise RunError(f"a run cannot finish as {status!r}")
    with connect(root) as conn:
        cur = conn.execute(
            "UPDATE runs SET status = ?, finished_at = ?, error = ?, checkpoint = COALESCE(?, checkpoint), "
            "best_val_accuracy = COALESCE(?, best_val_accuracy), test_accuracy = ?, test_loss = ? "
            "WHERE id = ? AND status IN ('queued', 'running')",
            (str(status), time.time(), error, checkpoint, best_val_accuracy, test_accuracy, test_loss, run_id))
        return cur.rowcount == 1


def _check_owner(row: sqlite3.Row, by: Optional[str], action: str) -> None:
    """A visitor (`by` = their owner token) may change only their own runs. Runs without an owner were
    started from the CLI: they are the operator's. `by=None` is the operator, who may change any run."""
    if by is None or row["owner"] == by:
        return
    if row["owner"] is None:
        raise RunError(f"this run was started by the operator: only the operator can {action} it")
    raise RunError(f"this run was started by someone else: only they can {action} it")


def request_cancel(run_id: str, root: Optional[os.PathLike] = None, by: Optional[str] = None) -> None:
    """Ask a live run to stop. A queued run that no worker has picked up is cancelled at once."""
    check_run_id(run_id)
    with connect(root) as conn:
        row = conn.execute("SELECT id, status, pid, owner FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise RunError(f"no run {run_id}")
        _check_owner(row, by, "cancel")
        if row["status"] not in LIVE:
            return
        conn.execute("UPDATE runs SET cancel_requested = 1 WHERE id = ?", (run_id,))
        if row["status"] == RunStatus.QUEUED and row["pid"] is None:
            conn.execute("UPDATE runs SET status = 'cancelled', finished_at = ? WHERE id = ? AND status = 'queued'",
                         (time.time(), run_id))


def delete_run(run_id: str, root: Optional[os.PathLike] = None, by: Optional[str] = None) -> None:
    """Remove a finished run, its metrics, its artifacts and all its files (runfiles.remove_run_files: its
    log, its snapshots, its checkpoint when the run named it). A file that cannot be removed keeps the run
    listed."""
    check_run_id(run_id)
    with connect(root) as conn:
        row = conn.execute("SELECT id, status, owner, checkpoint FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise RunError(f"no run {run_id}")
        _check_owner(row, by, "delete")
        if row["status"] in LIVE:
            raise RunError(f"run {run_id} is {row['status']}: cancel it before deleting it")
        remove_run_files(run_id, root, checkpoint=row["checkpoint"])
        conn.execute("DELETE FROM artifacts WHERE run_id = ?", (run_id,))
        conn.execute("DELETE FROM metrics WHERE run_id = ?", (run_id,))
        conn.execute("DELETE FROM runs WHERE id = ?", (run_id,))


# --- liveness -------------------------------------------------------------------------------------

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


def _dead_reason(row: sqlite3.Row, now: float) -> Optional[str]:
    if row["status"] not in LIVE:
        return None
    if row["pid"] is not None and row["host"] == socket.gethostname():
        # On this host the process answers for itself: one that is only late (paused, swapped out,
        # starved of CPU) keeps its run, however old its heartbeat. Unless the pid now belongs to a
        # process that started after the worker last wrote (a reboot, a recycled pid): the worker
        # was started before it was recorded, so that one cannot be it.
        if not pid_alive(row["pid"]):
            return f"the worker process (pid {row['pid']}) died"
        started = process_started_at(row["pid"])
        if started is not None and started > (row["heartbeat"] or row["created_at"]) + 2.0:
            return f"the worker process (pid {row['pid']}) is gone: its pid now belongs to another process"
        return None
    if row["status"] == RunStatus.RUNNING and row["heartbeat"] and now - row["heartbeat"] > HEARTBEAT_TIMEOUT:
        return f"the worker stopped responding (no heartbeat for {now - row['heartbeat']:.0f} s)"
    return None


def _reap_dead(conn: sqlite3.Connection) -> None:
    now = time.time()
    for row in conn.execute("SELECT * FROM runs WHERE status IN ('queued', 'running')").fetchall():
        reason = _dead_reason(row, now)
        if reason:
            conn.execute("UPDATE runs SET status = 'failed', finished_at = ?, error = ? "
                         "WHERE id = ? AND status IN ('queued', 'running')", (now, reason, row["id"]))


def list_runs(root: Optional[os.PathLike] = None, sweep: Optional[str] = None,
              class_code: Optional[str] = None) -> list[Run]:
    """Every run (or those of one sweep, one class), oldest first. Runs whose worker died read as failed."""
    query, args = "SELECT * FROM runs WHERE 1 = 1", []
    if sweep is not None:
        query, args = query + " AND sweep = ?", args + [sweep]
    if class_code is not None:
        query, args = query + " AND class_code = ?", args + [class_code]
    with connect(root) as conn:
        _reap_dead(conn)
        rows = conn.execute(query + " ORDER BY created_at, id", args).fetchall()
    return [_row_to_run(r) for r in rows]


def get_run(run_id: str, root: Optional[os.PathLike] = None) -> Run:
    check_run_id(run_id)
    with connect(root) as conn:
        _reap_dead(conn)
        row = conn.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
    if row is None:
        raise RunError(f"no run {run_id}")
    return _row_to_run(row)


def get_metrics(run_id: str, split: Optional[str] = None, root: Optional[os.PathLike] = None,
                after_step: int = -1) -> list[MetricRow]:
    """Metric rows of a run (optionally one split, optionally only those after a step), in step order."""
    query = "SELECT step, epoch, split, loss, accuracy, images_per_s, time FROM metrics WHERE run_id = ? AND step > ?"
    args: list = [run_id, after_step]
    if split:
        query += " AND split = ?"
        args.append(split)
    with connect(root) as conn:
        return [dict(r) for r in conn.execute(query + " ORDER BY step, rowid", args).fetchall()]


# --- artifacts ------------------------------------------------------------------------------------

def put_artifact(run_id: str, name: str, data: bytes, root: Optional[os.PathLike] = None) -> None:
    """Keep one of a run's small files in the registry (its checkpoint weights and sidecar, its replay
    snapshots), so every host that reaches the registry reaches it too: the web host and worker hosts
    share no disk. A file of the same name is replaced; one over MAX_ARTIFACT_BYTES is refused."""
    check_run_id(run_id)
    if not isinstance(name, str) or not name or len(name) > 200:
        raise RunError(f"{str(name)[:40]!r} is not an artifact name")
    data = bytes(data)
    if len(data) > MAX_ARTIFACT_BYTES:
        raise RunError(f"{name} is {len(data) / 2**20:.1f} MB, over the {MAX_ARTIFACT_BYTES // 2**20} MB a run's "
                       "file may take in the run registry")
    with connect(root) as conn:
        if conn.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is None:
            raise RunError(f"no run {run_id}")
        conn.execute("INSERT INTO artifacts (run_id, name, data) VALUES (?, ?, ?) "
                     "ON CONFLICT (run_id, name) DO UPDATE SET data = excluded.data", (run_id, name, data))


def get_artifact(run_id: str, name: str, root: Optional[os.PathLike] = None) -> Optional[bytes]:
    """A run's file kept by put_artifact; None when it has none of that name."""
    check_run_id(run_id)
    with connect(root) as conn:
        row = conn.execute("SELECT data FROM artifacts WHERE run_id = ? AND name = ?", (run_id, name)).fetchone()
    return bytes(row[0]) if row else None


def artifact_names(run_id: str, root: Optional[os.PathLike] = None) -> list[str]:
    """The names of a run's files in the registry, sorted."""
    check_run_id(run_id)
    with connect(root) as conn:
        return [r[0] for r in conn.execute("SELECT name FROM artifacts WHERE run_id = ? ORDER BY name", (run_id,))]

"""The run registry: one database that every process shares, SQLite by default, PostgreSQL when shared.

A run is a row in `runs` (config, status, timestamps, error text, checkpoint, final metrics, the
worker's pid, host and heartbeat, the executor's job id and the node it ran on, its sweep, class
and student); its curves are rows in `metrics` (step, epoch, split, loss, accuracy, images/s); its
small files (checkpoint weights and sidecar, replay snapshots) are rows in `artifacts`, so a web
host and worker hosts that share no disk both reach them. The worker writes; pages and the CLI read.

Where it lives: MNIST_REGISTRY_URL, by default `sqlite:///<runs dir>/registry.sqlite` (the runs dir
is MNIST_RUNS_DIR or the `root` argument), or `postgresql://user:password@host:port/db` for one
that several hosts share (driver: psycopg 3). Both go through one code path, SQLAlchemy Core; what
differs is how each database makes a write atomic:

- SQLite (WAL mode, so readers read while the writer writes): a write transaction starts with
  `BEGIN IMMEDIATE`, taking the file's write lock before its first read, so a count followed by an
  insert (the queue limits, the claim) is one step; a transaction that finds the file locked waits
  (busy timeout) rather than failing with "database is locked": a page's for PAGE_WAIT_SECONDS, so a
  broken or stuck registry costs a page one line within seconds, never a minute; a worker's or a
  runner's writes for WORKER_WAIT_SECONDS, since nobody waits on them and they must not lose a
  record to a moment's contention. SQLAlchemy's pysqlite recipe: the driver's own BEGIN is turned
  off and an event listener emits ours.
- PostgreSQL (READ COMMITTED): a write that counts before it acts (create_run's queue limits, the
  claim's cap) first takes a transaction-level advisory lock, which serializes exactly those writes
  and is released by COMMIT or ROLLBACK whatever happens; row locks alone cannot stop two claimers
  from each counting one free slot and both taking it. The claim's SELECT also says `FOR UPDATE SKIP
  LOCKED`, so it never waits behind a visitor's cancel or delete of the run it was about to take
  (it takes the next one). SQLAlchemy leaves FOR UPDATE out on SQLite, where the file lock does it.

A run whose worker died is never left reading "running": reads check live runs' workers and mark
dead ones failed. On this host the process answers for itself (its pid alive, not a zombie, and
started before the worker last wrote), so a worker that is only late (paused, swapped out, busy) is
never given up on, nor one that ended leaving an outcome the registry could not take (outcomes.py:
its runner or the next start records it); a worker on another host is judged by its heartbeat
lease (none for HEARTBEAT_TIMEOUT seconds). A worker whose run was given up on learns it from its
next heartbeat and stops without touching the record.

Every fault is a one-line RunError that names the registry as a visitor may see it, "the run
registry (registry.sqlite)" or "the run registry (PostgreSQL at host:port)", never a server path or
a password: a corrupt file, a folder that cannot be made, a server that cannot be reached. A SQLite
registry is created on first use and given a random id; once this process has used it, every
transaction checks that it is still that registry: one deleted or replaced under a running server is
"gone", never silently recreated empty. The schema is versioned (`schema_version`): a fresh registry
is created at SCHEMA_VERSION, an older one is upgraded in place on first use, its data kept.
"""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
import socket
import sqlite3
import threading
import time
import urllib.parse
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Optional

import sqlalchemy as sa
from sqlalchemy import Column, Float, Index, Integer, LargeBinary, MetaData, Table, Text, event
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import Connection, Engine

from .errors import RunError
from .records import ENDED, LIVE, MetricRow, RunStatus
from .runfiles import check_run_id, new_run_id, outcome_path, registry_path, remove_run_files

HEARTBEAT_TIMEOUT = 10.0  # seconds without a heartbeat before a live run's worker counts as dead
MAX_ARTIFACT_BYTES = 32 * 1024 * 1024  # a run's small files (an MNIST checkpoint is under 2 MB)
PAGE_WAIT_SECONDS = 3.0     # how long a page's transaction waits for a locked (or unreachable) registry
WORKER_WAIT_SECONDS = 30.0  # ... and a worker's or a runner's write, which nobody waits on

# --- the schema -----------------------------------------------------------------------------------

SCHEMA_VERSION = 2  # 1: before job_id, node, sweep, class_code, student and artifacts (no schema_version)

metadata = MetaData()

RUNS = Table(
    "runs", metadata,
    Column("id", Text, primary_key=True),
    Column("created_at", Float, nullable=False),
    Column("started_at", Float),
    Column("finished_at", Float),
    Column("status", Text, nullable=False),
    Column("config", Text, nullable=False),       # the TrainConfig as JSON
    Column("error", Text),
    Column("checkpoint", Text),
    Column("best_val_accuracy", Float),
    Column("test_accuracy", Float),
    Column("test_loss", Float),
    Column("steps", Integer),
    Column("total_steps", Integer),
    Column("pid", Integer),                       # the worker (or the runner that claimed the run)
    Column("host", Text),                         # where that pid lives
    Column("heartbeat", Float),
    Column("cancel_requested", Integer, nullable=False, server_default="0"),
    Column("owner", Text),                        # the visitor's token; None: the operator
    # Since version 2:
    Column("job_id", Text),
    Column("node", Text),
    Column("sweep", Text),
    Column("class_code", Text),
    Column("student", Text),
)

METRICS = Table(
    "metrics", metadata,
    Column("run_id", Text, sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("step", Integer, nullable=False),
    Column("epoch", Float, nullable=False),
    Column("split", Text, nullable=False),
    Column("loss", Float),
    Column("accuracy", Float),
    Column("images_per_s", Float),
    Column("time", Float, nullable=False),
    Index("metrics_run", "run_id", "split", "step"),
)

REGISTRY = Table("registry", metadata, Column("id", Text, nullable=False))  # one row: this registry's id

ARTIFACTS = Table(  # since version 2
    "artifacts", metadata,
    Column("run_id", Text, sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    Column("name", Text, primary_key=True),
    Column("data", LargeBinary, nullable=False),
)

VERSION = Table("schema_version", metadata, Column("version", Integer, nullable=False))  # since version 2


def _upgrade_1_to_2(conn: Connection) -> None:
    # ADD COLUMN with the type as this database spells it: the same statement on SQLite and PostgreSQL.
    # (Alembic would do this too; for a few added columns it is one more dependency than it is worth.)
    for name in ("job_id", "node", "sweep", "class_code", "student"):
        column_type = RUNS.c[name].type.compile(dialect=conn.dialect)
        conn.execute(sa.text(f"ALTER TABLE runs ADD COLUMN {name} {column_type}"))
    ARTIFACTS.create(conn)


UPGRADES = {1: _upgrade_1_to_2}  # version N -> N + 1, each in the one transaction that bumps the version

# PostgreSQL advisory lock keys (any two fixed 64-bit numbers: they only need to differ from each other).
_SCHEMA_LOCK = 0x4D4E495354_01  # creating or upgrading the schema
_QUEUE_LOCK = 0x4D4E495354_02   # counting the queue and acting on the count (create_run, the claims)
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




# --- where the registry is, and connections to it ---------------------------------------------------

@dataclass(frozen=True)
class _Where:
    """The registry a call uses: its SQLAlchemy URL, its name as messages say it, and its file (SQLite)."""

    url: sa.URL
    name: str
    path: Optional[Path] = None

    @property
    def key(self) -> str:
        return self.url.render_as_string(hide_password=False)


def _where(root: Optional[os.PathLike] = None) -> _Where:
    """MNIST_REGISTRY_URL, or the default SQLite file in the runs dir (`root` or MNIST_RUNS_DIR)."""
    text = os.environ.get("MNIST_REGISTRY_URL", "").strip()
    if not text:
        return _sqlite_where(registry_path(root))
    try:
        url = sa.make_url(text)
    except sa.exc.ArgumentError:
        # Not the value itself: it may hold a password.
        raise RunError("MNIST_REGISTRY_URL is not a database URL (sqlite:///PATH or "
                       "postgresql://USER:PASSWORD@HOST:PORT/DATABASE)") from None
    backend = url.get_backend_name()
    if backend == "sqlite":
        if not url.database or url.database == ":memory:":
            raise RunError("MNIST_REGISTRY_URL: a SQLite registry needs a file (sqlite:///PATH)")
        return _sqlite_where(Path(url.database).expanduser().resolve())
    if backend in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
        # A socket folder (a host that is a path, or ?host=/path) is a server path: not said.
        place = f"{url.host}:{url.port or 5432}" if url.host and not url.host.startswith("/") else "its local socket"
        return _Where(url, f"the run registry (PostgreSQL at {place})")
    raise RunError(f"MNIST_REGISTRY_URL: {backend}:// is not supported (sqlite:/// or postgresql://)")


def _sqlite_where(path: Path) -> _Where:
    return _Where(sa.URL.create("sqlite", database=str(path)), f"the run registry ({path.name})", path)


_engines: dict[str, Engine] = {}
_known: dict[str, str] = {}  # registries this process has created or upgraded: key -> the registry's id
_engines_lock = threading.Lock()


def _engine(where: _Where) -> Engine:
    """This process's Engine for a registry, made on first use (with the schema created or upgraded)."""
    engine = _engines.get(where.key)
    if engine is not None and where.key in _known:
        return engine
    with _engines_lock:
        engine = _engines.get(where.key)
        if engine is None:
            engine = _sqlite_engine(where.path) if where.path else _postgres_engine(where.url)
            _engines[where.key] = engine
        if where.key not in _known:
            _known[where.key] = _create_or_upgrade(engine, where)
    return engine


def _sqlite_engine(path: Path) -> Engine:
    """SQLite with a small pool of open connections, all dropped whenever the file changes under them.

    Pooled, because opening the file for every transaction cost more than the transaction (and a WAL
    database whose last connection closes is checkpointed, with an fsync, on every close). Dropped
    on a change (see _same_sqlite_file), because open connections trust what they have: within one
    process they share the file's WAL index, so while any is open, a new one would go on reading a
    file that was overwritten, or deleted and replaced, as it was."""

    def open_file() -> sqlite3.Connection:
        # mode=rw once this process knows the registry: one deleted since is not recreated by the open.
        mode = "rw" if _sqlite_where(path).key in _known else "rwc"
        uri = f"file:{urllib.parse.quote(str(path))}?mode={mode}"
        return sqlite3.connect(uri, uri=True, timeout=_wait.get(), isolation_level=None, check_same_thread=False)

    engine = sa.create_engine("sqlite://", creator=open_file, poolclass=sa.pool.QueuePool, pool_size=4,
                              max_overflow=16)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None  # the driver emits no BEGIN of its own: _on_begin does
        for pragma in (f"busy_timeout = {_wait.get() * 1000:.0f}", "synchronous = NORMAL", "foreign_keys = ON",
                       "journal_mode = WAL"):
            dbapi_connection.execute(f"PRAGMA {pragma}")

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        wait_ms = round(_wait.get() * 1000)  # a pooled connection keeps the last caller's wait: set this one's
        if conn.info.get("busy_timeout") != wait_ms:
            conn.exec_driver_sql(f"PRAGMA busy_timeout = {wait_ms}")
            conn.info["busy_timeout"] = wait_ms
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("registry_write") else "BEGIN")

    return engine


_files_seen: dict[str, tuple] = {}  # SQLite registry key -> its file as last seen (device, inode, size, mtime)


def _same_sqlite_file(where: _Where, engine: Engine) -> None:
    """Drop the pooled connections of a SQLite registry whose file changed since the last transaction:
    replaced, overwritten, or checkpointed (WAL writes leave the main file alone, so that is rare and
    only costs a reopen). The next connection opens the file now at the path and finds the registry
    there as it should be, corrupt, or not the one this process knew ("gone")."""
    st = where.path.stat()
    now = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    if _files_seen.get(where.key) != now:
        engine.dispose()
        _files_seen[where.key] = now


def _postgres_engine(url: sa.URL) -> Engine:
    # psycopg is the `cluster` extra, not the base install: SQLAlchemy's dialect imports it here, and
    # without it would fail with a traceback naming neither the option nor the fix.
    if importlib.util.find_spec("psycopg") is None:
        raise RunError("MNIST_REGISTRY_URL names PostgreSQL, but its driver psycopg is not installed: "
                       "pip install 'mnist-lab[cluster]'")
    # pre_ping: a pooled connection that a server restart closed is replaced, not handed out.
    engine = sa.create_engine(url, pool_pre_ping=True, pool_size=4, max_overflow=8, hide_parameters=True)

    @event.listens_for(engine, "do_connect")
    def _connect_timeout(_dialect, _record, _args, params):
        params["connect_timeout"] = max(1, round(min(_wait.get(), 10)))  # a page's PAGE_WAIT_SECONDS, else 10 s

    return engine


def close_connections() -> None:
    """Close this process's connections to every registry (a test that drops its database, a shutdown).
    The registries stay known: one used before must still be the same one when used again."""
    with _engines_lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


def _forget_engines_in_child() -> None:
    # A forked child (the local executor forks its runners) must not use its parent's pooled
    # connections: two processes on one socket corrupt both. dispose(close=False) drops them
    # without closing them under the parent.
    for engine in list(_engines.values()):
        engine.dispose(close=False)


os.register_at_fork(after_in_child=_forget_engines_in_child)


def _create_or_upgrade(engine: Engine, where: _Where) -> str:
    """Create a fresh registry at SCHEMA_VERSION, or bring an older one up to it, data kept; its id.

    One write transaction (BEGIN IMMEDIATE; on PostgreSQL, whose DDL is transactional, under an
    advisory lock): processes opening the same registry at once create or upgrade it once."""
    with _connection(where, engine, write=True, lock=_SCHEMA_LOCK, check=False) as conn:
        tables = set(sa.inspect(conn).get_table_names())
        if "runs" not in tables:
            metadata.create_all(conn)
            conn.execute(VERSION.insert().values(version=SCHEMA_VERSION))
            version = SCHEMA_VERSION
        elif "schema_version" not in tables:
            VERSION.create(conn)
            conn.execute(VERSION.insert().values(version=1))
            version = 1
        else:
            version = conn.scalar(sa.select(VERSION.c.version))
        if version > SCHEMA_VERSION:
            raise RunError(f"{where.name} is at schema version {version}, newer than this app's "
                           f"({SCHEMA_VERSION}): update the app")
        while version < SCHEMA_VERSION:
            UPGRADES[version](conn)
            version += 1
            conn.execute(VERSION.update().values(version=version))
        registry_id = conn.scalar(sa.select(REGISTRY.c.id))
        if registry_id is None:
            registry_id = secrets.token_hex(8)
            conn.execute(REGISTRY.insert().values(id=registry_id))
    return registry_id


@contextmanager
def _connection(where: _Where, engine: Engine, write: bool, lock: Optional[int] = None,
                check: bool = True) -> Iterator[Connection]:
    """One transaction on `engine`: a write one (BEGIN IMMEDIATE on SQLite) when `write`; `lock` is a
    PostgreSQL advisory lock to hold until it ends; `check` makes sure a SQLite registry this process
    knew is still the same one. Commits on success, rolls back on any exception."""
    gone = RunError(f"{where.name} is gone: it was deleted or replaced while in use (restore it, or restart "
                    "to begin an empty one)")
    if where.path is not None:
        try:
            exists = where.path.exists()
            if not exists and check:
                raise gone
            if not exists:
                where.path.parent.mkdir(parents=True, exist_ok=True)
            else:
                _same_sqlite_file(where, engine)
        except OSError as exc:
            raise RunError(f"cannot open {where.name}: {exc.strerror or type(exc).__name__}") from None
    try:
        conn = engine.connect()
    except sa.exc.DBAPIError as exc:
        if where.path is not None:
            raise RunError(f"cannot open {where.name}: {_first_line(exc)}") from None
        raise RunError(f"{where.name} cannot be reached: {_reason(exc)}") from None
    try:
        with conn:
            if write:
                conn.execution_options(registry_write=True)
            with conn.begin():
                if check and where.path is not None and _registry_id(conn) != _known.get(where.key):
                    raise gone
                if lock is not None and conn.dialect.name == "postgresql":
                    conn.execute(sa.select(sa.func.pg_advisory_xact_lock(lock)))
                yield conn
    except sa.exc.SQLAlchemyError as exc:  # corrupt, "file is not a database", disk I/O, locked past the timeout...
        if isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated and where.path is None:
            raise RunError(f"{where.name} cannot be reached: {_reason(exc)}") from None
        raise RunError(f"{where.name} cannot be used: {_first_line(exc)}") from None
    except OSError as exc:
        raise RunError(f"{where.name} cannot be used: {exc.strerror or type(exc).__name__}") from None


def _registry_id(conn: Connection) -> Optional[str]:
    try:
        return conn.scalar(sa.select(REGISTRY.c.id))
    except sa.exc.OperationalError as exc:
        if "no such table" in str(exc.orig):
            return None  # an empty file, or some other database: not the registry we knew
        raise


def _first_line(exc: BaseException) -> str:
    """The database's own words, one line, without SQLAlchemy's statement and link."""
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip()
    return text.splitlines()[0].strip() if text else type(orig).__name__


def _reason(exc: BaseException) -> str:
    """Why a server could not be reached, without where it was looked for: psycopg says 'connection to
    server at "HOST", port N failed: REASON' (or 'on socket "/a/path" failed: ...'); the reason is enough,
    the registry's name says where."""
    line = _first_line(exc)
    return line.rsplit("failed: ", 1)[-1].strip() or line


_wait: ContextVar[float] = ContextVar("registry_wait", default=PAGE_WAIT_SECONDS)  # this transaction's


@contextmanager
def _transaction(root: Optional[os.PathLike] = None, write: bool = False, lock: Optional[int] = None,
                 patient: bool = False) -> Iterator[Connection]:
    """One transaction on the registry; `patient` for a worker's or a runner's (WORKER_WAIT_SECONDS for a
    locked or unreachable registry, instead of a page's PAGE_WAIT_SECONDS)."""
    where = _where(root)
    token = _wait.set(WORKER_WAIT_SECONDS if patient else PAGE_WAIT_SECONDS)
    try:
        try:
            engine = _engine(where)
        except sa.exc.SQLAlchemyError as exc:  # pragma: no cover - _connection turns these into RunError
            raise RunError(f"{where.name} cannot be used: {_first_line(exc)}") from None
        with _connection(where, engine, write=write, lock=lock) as conn:
            yield conn
    finally:
        _wait.reset(token)


@contextmanager
def connect(root: Optional[os.PathLike] = None, patient: bool = False) -> Iterator[Connection]:
    """A write transaction on the registry (a SQLAlchemy Connection; use the tables above): commits on
    success, rolls back on an exception. Each call has its own: safe across threads. `patient`: it
    waits for a locked registry as a worker does (WORKER_WAIT_SECONDS), not as a page (PAGE_WAIT_SECONDS)."""
    with _transaction(root, write=True, patient=patient) as conn:
        yield conn


# --- runs -----------------------------------------------------------------------------------------

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


_LIVE = [str(s) for s in LIVE]
_ACTIVE = sa.or_(RUNS.c.status == "running", sa.and_(RUNS.c.status == "queued", RUNS.c.pid.is_not(None)))
_WAITING = sa.and_(RUNS.c.status == "queued", RUNS.c.pid.is_(None))


def create_run(config: dict, root: Optional[os.PathLike] = None, owner: Optional[str] = None,
               worker_pid: Optional[int] = None, sweep: Optional[str] = None, class_code: Optional[str] = None,
               student: Optional[str] = None) -> str:
    """Register a run as "queued" and return its id. `config` is a validated TrainConfig's dict.

    A run with `worker_pid` is already claimed by that process (the CLI training in-process);
    otherwise it waits for a claim (claim_next, claim_queued) to start a worker. A visitor's run (one
    with an owner, the visitor's token) is refused when MNIST_MAX_QUEUED runs of everyone together are
    queued or running, or when that owner has MNIST_MAX_QUEUED_PER_OWNER of them; the operator's (no
    owner) never is. `sweep`, `class_code` and `student` are recorded as given (list_runs filters on
    the first two).
    """
    from .limits import current

    run_id = new_run_id()
    with _transaction(root, write=True, lock=_QUEUE_LOCK) as conn:
        if owner is not None:
            limits = current()
            live = conn.scalar(sa.select(sa.func.count()).where(RUNS.c.status.in_(_LIVE)))
            if live >= limits.max_queued:
                raise RunError(f"the training queue is full ({live} runs waiting or running): try again later")
            mine = conn.scalar(sa.select(sa.func.count()).where(RUNS.c.owner == owner, RUNS.c.status.in_(_LIVE)))
            if mine >= limits.max_queued_per_owner:
                raise RunError(f"you already have {mine} run(s) queued or running (the limit is "
                               f"{limits.max_queued_per_owner}): wait for one to finish or cancel one")
        conn.execute(RUNS.insert().values(
            id=run_id, created_at=time.time(), status="queued", config=json.dumps(config), owner=owner,
            pid=worker_pid, host=socket.gethostname() if worker_pid else None, sweep=sweep, class_code=class_code,
            student=student))
    return run_id


def claim_next(pid: int, root: Optional[os.PathLike] = None, max_concurrent: Optional[int] = None) -> Optional[str]:
    """Take the oldest queued run that no worker or Ray job has claimed, for the process `pid`; None when there is
    none or `max_concurrent` runs (default: MNIST_MAX_CONCURRENT) are already active (running, or
    queued with a worker). Dead runs are reaped first, so they free their slots.

    The count, the choice and the claim are one write transaction (see the module's docstring for how
    each database makes it so): however many runner processes call this at once, each run is claimed
    once and the cap holds.
    """
    from .limits import current

    cap = max_concurrent or current().max_concurrent
    with _transaction(root) as conn:
        if conn.scalar(sa.select(RUNS.c.id).where(_WAITING).limit(1)) is None:
            return None  # the common case, without taking the write lock
    with _transaction(root, write=True, lock=_QUEUE_LOCK, patient=True) as conn:
        _reap(conn, root=root)
        if conn.scalar(sa.select(sa.func.count()).where(_ACTIVE)) >= cap:
            return None
        run_id = conn.scalar(sa.select(RUNS.c.id).where(_WAITING, RUNS.c.job_id.is_(None))  # a Ray job's run is Ray's
                             .order_by(RUNS.c.created_at, RUNS.c.id).limit(1).with_for_update(skip_locked=True))
        if run_id is not None:
            conn.execute(RUNS.update().where(RUNS.c.id == run_id)
                         .values(pid=pid, host=socket.gethostname(), heartbeat=time.time()))
    return run_id


def claim_queued(launch, root: Optional[os.PathLike] = None, max_concurrent: Optional[int] = None) -> list[str]:
    """Start waiting runs, oldest first, while fewer than `max_concurrent` are active.

    `launch(run_id) -> pid` starts a worker. The count, the choice and the pid are one write
    transaction, so two processes (pages, finishing workers) never start the same run or exceed the
    cap. A launch that fails marks its run failed.
    """
    from .limits import current

    cap = max_concurrent or current().max_concurrent
    started: list[str] = []
    with _transaction(root) as conn:
        if conn.scalar(sa.select(RUNS.c.id).where(_WAITING).limit(1)) is None:
            return started  # the common case, without taking the write lock
    with _transaction(root, write=True, lock=_QUEUE_LOCK, patient=True) as conn:
        _reap(conn, root=root)
        active = conn.scalar(sa.select(sa.func.count()).where(_ACTIVE))
        waiting = conn.scalars(sa.select(RUNS.c.id).where(_WAITING).order_by(RUNS.c.created_at, RUNS.c.id)
                               .limit(max(0, cap - active)).with_for_update(skip_locked=True)).all()
        for run_id in waiting:
            try:
                pid = launch(run_id)
            except Exception as exc:  # noqa: BLE001 - a failed launch fails its run, not the page
                # An OSError's text names the file (a server path): its reason alone is shown.
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
                conn.execute(RUNS.update().where(RUNS.c.id == run_id).values(
                    status="failed", finished_at=time.time(), error=f"the worker could not be started: {reason}"))
                continue
            conn.execute(RUNS.update().where(RUNS.c.id == run_id)
                         .values(pid=pid, host=socket.gethostname(), heartbeat=time.time()))
            started.append(run_id)
    return started


def queue_positions(all_runs: list["Run"]) -> dict[str, int]:
    """1-based place in the queue of each run that waits for a free slot."""
    waiting = [r for r in all_runs if r.status == RunStatus.QUEUED and r.pid is None]
    return {r.id: i for i, r in enumerate(sorted(waiting, key=lambda r: (r.created_at, r.id)), start=1)}


def set_worker(run_id: str, pid: int, root: Optional[os.PathLike] = None) -> None:
    """Record the worker process launched for a queued run (so a dead launch is noticed)."""
    check_run_id(run_id)
    with _transaction(root, write=True, patient=True) as conn:
        conn.execute(RUNS.update().where(RUNS.c.id == run_id)
                     .values(pid=pid, host=socket.gethostname(), heartbeat=time.time()))


def set_job(run_id: str, job_id: str, root: Optional[os.PathLike] = None) -> None:
    """Record the executor's id for the run's job (a Ray job's submission id), to follow or stop it."""
    check_run_id(run_id)
    with _transaction(root, write=True) as conn:
        conn.execute(RUNS.update().where(RUNS.c.id == run_id).values(job_id=job_id))


def mark_running(run_id: str, total_steps: Optional[int] = None, root: Optional[os.PathLike] = None,
                 node: Optional[str] = None) -> None:
    """The worker (this process) starts the queued run; `node` says where, as the worker knows it
    (a Ray node; by default this host's name)."""
    now = time.time()
    with _transaction(root, write=True, patient=True) as conn:
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
    with _transaction(root, write=True, patient=True) as conn:
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
    with _transaction(root, write=True, patient=True) as conn:
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
    with _transaction(root, write=True, patient=True) as conn:
        cur = conn.execute(RUNS.update().where(RUNS.c.id == run_id, RUNS.c.status.in_(_LIVE)).values(
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
    """Ask a live run to stop. A queued run that no worker has picked up is cancelled at once."""
    check_run_id(run_id)
    with _transaction(root, write=True) as conn:
        row = conn.execute(sa.select(RUNS.c.status, RUNS.c.pid, RUNS.c.owner).where(RUNS.c.id == run_id)).first()
        if row is None:
            raise RunError(f"no run {run_id}")
        _check_owner(row, by, "cancel")
        if row.status not in LIVE:
            return
        conn.execute(RUNS.update().where(RUNS.c.id == run_id).values(cancel_requested=1))
        # Only while no worker has it: a claim that got there first leaves it to its worker.
        conn.execute(RUNS.update().where(RUNS.c.id == run_id, _WAITING)
                     .values(status="cancelled", finished_at=time.time()))


def delete_run(run_id: str, root: Optional[os.PathLike] = None, by: Optional[str] = None) -> None:
    """Remove a finished run, its metrics, its artifacts and all its files (runfiles.remove_run_files: its
    log, its snapshots, its checkpoint when the run named it). A file that cannot be removed keeps the run
    listed."""
    check_run_id(run_id)
    with _transaction(root, write=True) as conn:
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


def _dead_reason(row: dict, now: float, root: Optional[os.PathLike] = None) -> Optional[str]:
    if row["status"] not in LIVE:
        return None
    if row["pid"] is not None and row["host"] == socket.gethostname():
        # On this host the process answers for itself: one that is only late (paused, swapped out,
        # starved of CPU) keeps its run, however old its heartbeat. Unless the pid now belongs to a
        # process that started after the worker last wrote (a reboot, a recycled pid): the worker
        # was started before it was recorded, so that one cannot be it.
        if not pid_alive(row["pid"]):
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




def _reap(conn: Connection, live: Optional[list[dict]] = None, root: Optional[os.PathLike] = None) -> None:
    """Mark failed, in this write transaction, every live run whose worker is dead."""
    now = time.time()
    if live is None:
        live = [dict(r._mapping) for r in conn.execute(sa.select(RUNS).where(RUNS.c.status.in_(_LIVE)))]
    for row in live:
        reason = _dead_reason(row, now, root)
        if reason:
            conn.execute(RUNS.update().where(RUNS.c.id == row["id"], RUNS.c.status.in_(_LIVE))
                         .values(status="failed", finished_at=now, error=reason))


def _read_runs(root: Optional[os.PathLike], *where, newest_first: bool = False, limit: Optional[int] = None,
               offset: int = 0) -> list[sa.Row]:
    """Runs matching `where`, oldest first (or newest first), at most `limit` of them after skipping
    `offset` (SQL LIMIT and OFFSET: a page of 25 reads 25 rows, whatever the registry holds), dead
    workers' runs read as failed. The common case is one read transaction; only when a live run's
    worker is found dead is a write taken to record it."""
    order = (RUNS.c.created_at.desc(), RUNS.c.id.desc()) if newest_first else (RUNS.c.created_at, RUNS.c.id)
    query = sa.select(RUNS).where(*where).order_by(*order).limit(limit).offset(offset or None)
    with _transaction(root) as conn:
        rows = conn.execute(query).all()
    now = time.time()
    if any(_dead_reason(dict(r._mapping), now, root) for r in rows):
        with _transaction(root, write=True) as conn:
            _reap(conn, root=root)
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
    with _transaction(root) as conn:
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
    with _transaction(root) as conn:
        status = conn.scalar(sa.select(RUNS.c.status).where(RUNS.c.id == run_id))
    return RunStatus(status) if status is not None else None


def get_run(run_id: str, root: Optional[os.PathLike] = None) -> Run:
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
    with _transaction(root) as conn:
        rows = conn.execute(query, values).all()
    return [dict(r._mapping) for r in rows]


# --- a run's files in the registry ------------------------------------------------------------------

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
    with _transaction(root, write=True, patient=True) as conn:
        if conn.scalar(sa.select(RUNS.c.id).where(RUNS.c.id == run_id)) is None:
            raise RunError(f"no run {run_id}")
        # Both databases say "insert, or replace on a clash" the same way; each dialect builds it.
        insert = (pg_dialect.insert if conn.dialect.name == "postgresql" else sqlite_dialect.insert)(ARTIFACTS)
        conn.execute(insert.values(run_id=run_id, name=name, data=data)
                     .on_conflict_do_update(index_elements=["run_id", "name"], set_={"data": insert.excluded.data}))


def get_artifact(run_id: str, name: str, root: Optional[os.PathLike] = None) -> Optional[bytes]:
    """A run's file kept by put_artifact; None when it has none of that name."""
    check_run_id(run_id)
    with _transaction(root) as conn:
        data = conn.scalar(sa.select(ARTIFACTS.c.data).where(ARTIFACTS.c.run_id == run_id, ARTIFACTS.c.name == name))
    return bytes(data) if data is not None else None


def artifact_names(run_id: str, root: Optional[os.PathLike] = None) -> list[str]:
    """The names of a run's files in the registry, sorted."""
    check_run_id(run_id)
    with _transaction(root) as conn:
        return list(conn.scalars(sa.select(ARTIFACTS.c.name).where(ARTIFACTS.c.run_id == run_id)
                                 .order_by(ARTIFACTS.c.name)))

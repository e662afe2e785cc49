"""Where the registry is, this process's engines and connections to it, its transactions, and how a
fault in any of them is said.

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
  claim's cap) first takes a transaction-level advisory lock (QUEUE_LOCK), which serializes exactly
  those writes and is released by COMMIT or ROLLBACK whatever happens; row locks alone cannot stop two
  claimers from each counting one free slot and both taking it.

Every fault is a one-line RunError that names the registry as a visitor may see it, "the run
registry (registry.sqlite)" or "the run registry (PostgreSQL at host:port)", never a server path or
a password: a corrupt file, a folder that cannot be made, a server that cannot be reached. A SQLite
registry is created on first use (schema.py); once this process has used it, every transaction
checks that it is still that registry (by its random id): one deleted or replaced under a running
server is "gone", never silently recreated empty.
"""

from __future__ import annotations

import importlib.util
import os
import sqlite3
import threading
import urllib.parse
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

from ..errors import RunError, first_line
from ..runfiles import registry_path
from .schema import REGISTRY, create_or_upgrade

PAGE_WAIT_SECONDS = 3.0     # how long a page's transaction waits for a locked (or unreachable) registry
WORKER_WAIT_SECONDS = 30.0  # ... and a worker's or a runner's write, which nobody waits on

# PostgreSQL advisory lock keys (any two fixed 64-bit numbers: they only need to differ from each other).
SCHEMA_LOCK = 0x4D4E495354_01  # creating or upgrading the schema
QUEUE_LOCK = 0x4D4E495354_02   # counting the queue and acting on the count (create_run, the claim)

# How long this transaction waits for a locked or unreachable registry (PAGE_ or WORKER_WAIT_SECONDS).
_wait: ContextVar[float] = ContextVar("registry_wait", default=PAGE_WAIT_SECONDS)


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
    """schema.create_or_upgrade in one write transaction (BEGIN IMMEDIATE; on PostgreSQL, whose DDL is
    transactional, under an advisory lock): processes opening the same registry at once create or
    upgrade it once. The registry's id."""
    with _connection(where, engine, write=True, lock=SCHEMA_LOCK, check=False) as conn:
        return create_or_upgrade(conn, where.name)


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
            raise RunError(f"cannot open {where.name}: {first_line(exc)}") from None
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
        raise RunError(f"{where.name} cannot be used: {first_line(exc)}") from None
    except OSError as exc:
        raise RunError(f"{where.name} cannot be used: {exc.strerror or type(exc).__name__}") from None


def _registry_id(conn: Connection) -> Optional[str]:
    try:
        return conn.scalar(sa.select(REGISTRY.c.id))
    except sa.exc.OperationalError as exc:
        if "no such table" in str(exc.orig):
            return None  # an empty file, or some other database: not the registry we knew
        raise


def _reason(exc: BaseException) -> str:
    """Why a server could not be reached, without where it was looked for: psycopg says 'connection to
    server at "HOST", port N failed: REASON' (or 'on socket "/a/path" failed: ...'); the reason is enough,
    the registry's name says where."""
    line = first_line(exc)
    return line.rsplit("failed: ", 1)[-1].strip() or line


@contextmanager
def transaction(root: Optional[os.PathLike] = None, write: bool = False, lock: Optional[int] = None,
                patient: bool = False) -> Iterator[Connection]:
    """One transaction on the registry; `patient` for a worker's or a runner's (WORKER_WAIT_SECONDS for a
    locked or unreachable registry, instead of a page's PAGE_WAIT_SECONDS)."""
    where = _where(root)
    token = _wait.set(WORKER_WAIT_SECONDS if patient else PAGE_WAIT_SECONDS)
    try:
        try:
            engine = _engine(where)
        except sa.exc.SQLAlchemyError as exc:  # pragma: no cover - _connection turns these into RunError
            raise RunError(f"{where.name} cannot be used: {first_line(exc)}") from None
        with _connection(where, engine, write=write, lock=lock) as conn:
            yield conn
    finally:
        _wait.reset(token)


@contextmanager
def connect(root: Optional[os.PathLike] = None, patient: bool = False) -> Iterator[Connection]:
    """A write transaction on the registry (a SQLAlchemy Connection; the tables are schema.py's): commits on
    success, rolls back on an exception. Each call has its own: safe across threads. `patient`: it
    waits for a locked registry as a worker does (WORKER_WAIT_SECONDS), not as a page (PAGE_WAIT_SECONDS)."""
    with transaction(root, write=True, patient=patient) as conn:
        yield conn


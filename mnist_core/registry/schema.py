"""The registry's tables, its schema version, and the upgrades that bring an older registry up to it.

Five tables and a version: `runs` (one row a run: config, status, timestamps, error, checkpoint, final
metrics, the worker's pid, host and heartbeat, the executor's job id, its sweep, class and student),
`metrics` (its curves, one row a point), `artifacts` (its small files: checkpoint weights and sidecar,
replay snapshots), `drawings` (the visitors' drawing set, one row a drawing: mnist_core.drawings),
`registry` (one row: this registry's random id, so a file replaced under a running server is
noticed) and `schema_version`.

A fresh registry is created at SCHEMA_VERSION; an older one is upgraded in place on first use, its
data kept, each step in the one transaction that bumps the version. To add a table or a column:
declare it here, bump SCHEMA_VERSION, and add the upgrade from the version before to UPGRADES.
"""

from __future__ import annotations

import secrets

import sqlalchemy as sa
from sqlalchemy import Column, Float, Index, Integer, LargeBinary, MetaData, Table, Text
from sqlalchemy.engine import Connection

from ..errors import RunError
from ..records import LIVE

SCHEMA_VERSION = 3  # 1: before job_id, node, sweep, class_code, student and artifacts (no schema_version);
#                    2: before drawings

metadata = MetaData()

RUNS = Table(
    "runs", metadata,
    Column("id", Text, primary_key=True),
    Column("created_at", Float, nullable=False),
    Column("started_at", Float),
    Column("finished_at", Float),
    Column("status", Text, nullable=False),       # a RunStatus's value
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

DRAWINGS = Table(  # since version 3
    "drawings", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),  # never reused (SQLite: AUTOINCREMENT)
    Column("created_at", Float, nullable=False),
    Column("digit", Integer, nullable=False),          # what the giver says it is
    Column("predicted", Integer),                      # the model's answer
    Column("pointer", Text, nullable=False),           # mouse, touch or pen
    Column("picture", LargeBinary, nullable=False),    # uint8 [28,28], 784 bytes
    Column("picture_key", Text, nullable=False),       # its SHA-256: one drawing per picture
    Column("strokes", Text, nullable=False),           # JSON: the canvas side and the strokes
    Column("giver", Text, nullable=False),             # a hash of the owner token, never the token
    Column("class_code", Text),
    Index("drawings_picture", "picture_key", unique=True),
    Index("drawings_giver", "giver", "created_at"),    # "mine", and a browser's drawings in the last hour
    sqlite_autoincrement=True,
)

LIVE_STATUSES = [str(s) for s in LIVE]  # as stored: plain strings, for `RUNS.c.status.in_(...)`


def _upgrade_1_to_2(conn: Connection) -> None:
    # ADD COLUMN with the type as this database spells it: the same statement on SQLite and PostgreSQL.
    # (Alembic would do this too; for a few added columns it is one more dependency than it is worth.)
    for name in ("job_id", "node", "sweep", "class_code", "student"):
        column_type = RUNS.c[name].type.compile(dialect=conn.dialect)
        conn.execute(sa.text(f"ALTER TABLE runs ADD COLUMN {name} {column_type}"))
    ARTIFACTS.create(conn)


def _upgrade_2_to_3(conn: Connection) -> None:
    DRAWINGS.create(conn)  # with its indexes


# Version N -> N + 1, each in the one transaction that bumps the version.
UPGRADES = {1: _upgrade_1_to_2, 2: _upgrade_2_to_3}


def create_or_upgrade(conn: Connection, name: str) -> str:
    """Create a fresh registry at SCHEMA_VERSION, or bring an older one up to it, data kept; its id.
    `conn` is a write transaction that no other process can share the step with (db.py takes it);
    `name` is the registry as messages say it."""
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
        raise RunError(f"{name} is at schema version {version}, newer than this app's ({SCHEMA_VERSION}): "
                       "update the app")
    while version < SCHEMA_VERSION:
        UPGRADES[version](conn)
        version += 1
        conn.execute(VERSION.update().values(version=version))
    registry_id = conn.scalar(sa.select(REGISTRY.c.id))
    if registry_id is None:
        registry_id = secrets.token_hex(8)
        conn.execute(REGISTRY.insert().values(id=registry_id))
    return registry_id

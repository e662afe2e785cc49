"""The run registry: one database that every process shares, SQLite by default, PostgreSQL when shared.

A run is a row in `runs` (config, status, timestamps, error text, checkpoint, final metrics, the
worker's pid, host and heartbeat, the executor's job id and the node it ran on, its sweep, class
and student); its curves are rows in `metrics`; its small files (checkpoint weights and sidecar,
replay snapshots) are rows in `artifacts`, so a web host and worker hosts that share no disk both
reach them. The worker writes; pages and the CLI read. Code outside the package uses the names
below: `from mnist_core import registry; registry.list_runs(...)`.

The modules, top (what callers use) to bottom; read in this order:

    runs        the Run record; reads (list_runs, count_runs, recent_runs, get_run, run_status,
                get_metrics); the worker's writes (mark_running, heartbeat, add_metrics, finish_run);
                a visitor's changes to their own runs (request_cancel, delete_run)
    queue       the queue's one rule (waiting, starting, holding a slot); create_run and its
                limits; claim_next and set_job; queue_positions
    artifacts   a run's small files kept in the database (put_artifact, get_artifact)
    liveness    whether a live run's worker is still there (its pid through /proc on this host,
                its heartbeat lease elsewhere), and reaping the runs of dead ones
    db          where the registry is (MNIST_REGISTRY_URL), engines, connections and transactions,
                how long they wait, and every fault said in one line that names no server path
    schema      the tables, SCHEMA_VERSION, and the upgrades of an older registry, in place
"""

from .artifacts import get_artifact, put_artifact
from .db import close_connections, connect
from .queue import claim_next, create_run, queue_positions, set_job
from .runs import (Run, add_metrics, count_runs, delete_run, finish_run, get_metrics, get_run, heartbeat,
                   list_runs, mark_running, recent_runs, request_cancel, run_status)
from .schema import METRICS, RUNS

__all__ = [
    "Run", "list_runs", "count_runs", "recent_runs", "get_run", "run_status", "get_metrics",
    "mark_running", "heartbeat", "add_metrics", "finish_run", "request_cancel", "delete_run",
    "create_run", "claim_next", "set_job", "queue_positions",
    "put_artifact", "get_artifact",
    "connect", "close_connections", "RUNS", "METRICS",
]

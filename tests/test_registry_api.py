"""The run registry's API for executors, sweeps and classes: what a run records about where it ran,
the queue claim runner processes share, a run's files kept in the registry, and the upgrade of a
registry written by an older version of the app.

Every test runs against each database the `registry_db` fixture offers (SQLite always; PostgreSQL
when its server binaries are installed).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest

from mnist_core import registry
from mnist_core.errors import RunError
from mnist_core.paths import REPO_ROOT


# --- what a run records ---------------------------------------------------------------------------

def test_runs_of_a_class_and_of_a_sweep_are_listed_by_them_oldest_first(registry_db, tiny_config):
    a1 = registry.create_run(tiny_config(seed=1), class_code="MATH7", student="Ada")
    s1 = registry.create_run(tiny_config(seed=2), sweep="sweep-lr")
    a2 = registry.create_run(tiny_config(seed=3), owner="tok", class_code="MATH7", student="Grace")
    s2 = registry.create_run(tiny_config(seed=4), sweep="sweep-lr", class_code="MATH7")
    assert [r.id for r in registry.list_runs()] == [a1, s1, a2, s2]
    assert [r.id for r in registry.list_runs(class_code="MATH7")] == [a1, a2, s2]
    assert [r.id for r in registry.list_runs(sweep="sweep-lr")] == [s1, s2]
    assert [r.id for r in registry.list_runs(sweep="sweep-lr", class_code="MATH7")] == [s2]
    assert registry.list_runs(class_code="OTHER") == []
    ada = registry.get_run(a1)
    assert (ada.class_code, ada.student, ada.sweep, ada.job_id, ada.node) == ("MATH7", "Ada", None, None, None)


def test_a_run_records_its_executors_job_and_the_node_its_worker_ran_on(registry_db, tiny_config):
    run_id = registry.create_run(tiny_config())
    registry.set_job(run_id, "raysubmit_abc123")
    registry.mark_running(run_id, total_steps=10, node="10.0.0.7")
    run = registry.get_run(run_id)
    assert run.job_id == "raysubmit_abc123" and run.node == "10.0.0.7" and run.status == "running"

    other = registry.create_run(tiny_config())
    registry.mark_running(other)
    assert registry.get_run(other).node == socket.gethostname()  # by default, where the worker runs


# --- the queue claim ------------------------------------------------------------------------------

def test_claim_next_takes_the_oldest_unclaimed_run_while_under_the_cap(registry_db, tiny_config):
    first, second, third = (registry.create_run(tiny_config(seed=i)) for i in range(3))
    me = os.getpid()
    assert registry.claim_next(me, max_concurrent=2) == first
    assert registry.claim_next(me, max_concurrent=2) == second
    assert registry.claim_next(me, max_concurrent=2) is None  # two are active: the third waits
    claimed = registry.get_run(first)
    assert claimed.status == "queued" and claimed.pid == me and claimed.host == socket.gethostname()
    assert registry.queue_positions(registry.list_runs()) == {third: 1}

    registry.mark_running(first)
    registry.finish_run(first, "completed", test_accuracy=0.9)
    assert registry.claim_next(me, max_concurrent=2) == third
    assert registry.claim_next(me, max_concurrent=2) is None  # nothing left to claim


def test_claim_next_frees_the_slot_of_a_dead_worker_first(registry_db, tiny_config):
    stuck, waiting = registry.create_run(tiny_config()), registry.create_run(tiny_config())
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    assert registry.claim_next(dead.pid, max_concurrent=1) == stuck  # then that runner died
    assert registry.claim_next(os.getpid(), max_concurrent=1) == waiting
    assert registry.get_run(stuck).status == "failed" and "died" in registry.get_run(stuck).error


CLAIMANT = """
import os, sys, time
from mnist_core import registry
cap = int(sys.argv[1])
while True:
    run_id = registry.claim_next(os.getpid(), max_concurrent=cap)
    if run_id is None:
        if not any(r.status == "queued" and r.pid is None for r in registry.list_runs()):
            break
        time.sleep(0.01)  # the cap is full: another runner's run ends soon
        continue
    active = sum(r.status == "running" or (r.status == "queued" and r.pid is not None) for r in registry.list_runs())
    print(run_id, active, flush=True)
    registry.mark_running(run_id)
    registry.finish_run(run_id, "completed", test_accuracy=0.5)
"""


@pytest.mark.subprocess
def test_runners_in_several_processes_claim_each_run_once_and_never_exceed_the_cap(registry_db, tiny_config):
    cap, n_runs, n_procs = 2, 12, 3
    ids = [registry.create_run(tiny_config(seed=i)) for i in range(n_runs)]
    procs = [subprocess.Popen([sys.executable, "-c", CLAIMANT, str(cap)], cwd=REPO_ROOT, env=os.environ.copy(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(n_procs)]
    outputs = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=180)
            assert proc.returncode == 0, err
            outputs.append(out)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    claims = [line.split() for out in outputs for line in out.splitlines()]
    assert sorted(run_id for run_id, _ in claims) == sorted(ids), "each run claimed exactly once"
    assert max(int(active) for _, active in claims) <= cap
    assert {r.status for r in registry.list_runs()} == {"completed"}


# --- a run's files in the registry ------------------------------------------------------------------

def test_a_runs_files_are_kept_replaced_and_deleted_with_it(registry_db, tiny_config, isolated_dirs):
    run_id = registry.create_run(tiny_config())
    other = registry.create_run(tiny_config())
    weights = bytes(range(256)) * 4096  # 1 MB, every byte value
    registry.put_artifact(run_id, "model.safetensors", weights)
    registry.put_artifact(run_id, "model.json", b'{"v": 1}')
    registry.put_artifact(run_id, "model.json", b'{"v": 2}')  # replaced, not added
    registry.put_artifact(other, "model.json", b"other")
    assert registry.get_artifact(run_id, "model.safetensors") == weights
    assert registry.get_artifact(run_id, "model.json") == b'{"v": 2}'
    assert registry.get_artifact(run_id, "snapshots.npz") is None

    registry.finish_run(run_id, "completed")
    registry.delete_run(run_id)
    assert [registry.get_artifact(run_id, name) for name in ("model.safetensors", "model.json")] == [None, None]
    assert registry.get_artifact(other, "model.json") == b"other"


def test_a_file_over_the_cap_or_for_no_run_is_refused_in_one_line(registry_db, tiny_config, monkeypatch):
    run_id = registry.create_run(tiny_config())
    monkeypatch.setattr(registry.artifacts, "MAX_ARTIFACT_BYTES", 1000)
    with pytest.raises(RunError, match=r"over the .* MB a run's file may take") as excinfo:
        registry.put_artifact(run_id, "model.safetensors", b"x" * 1001)
    assert "\n" not in str(excinfo.value)
    assert registry.get_artifact(run_id, "model.safetensors") is None
    with pytest.raises(RunError, match="no run 20990101-000000-abcdef"):
        registry.put_artifact("20990101-000000-abcdef", "model.json", b"{}")
    with pytest.raises(RunError, match="is not a run id"):
        registry.get_artifact("../etc", "passwd")


# --- a registry written by an older app -------------------------------------------------------------

# The registry as the app created it before schema versions (copied from runs.SCHEMA of that day).
SCHEMA_V1 = """
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
    owner TEXT
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
"""

OLD_RUN = "20250101-120000-abcdef"


def test_an_old_registry_is_upgraded_in_place_on_first_use_with_its_runs_kept(registry_db, tiny_config):
    created = time.time() - 3600
    # PostgreSQL's REAL is 4 bytes (timestamps to the minute): there, the same tables in 8-byte floats.
    schema = SCHEMA_V1 if registry_db.kind == "sqlite" else SCHEMA_V1.replace(" REAL", " DOUBLE PRECISION")
    registry_db.execute_script(schema + f"""
        INSERT INTO registry (id) VALUES ('0123456789abcdef');
        INSERT INTO runs (id, created_at, started_at, finished_at, status, config, test_accuracy, steps, owner)
            VALUES ('{OLD_RUN}', {created}, {created + 1}, {created + 60}, 'completed',
                    '{{"model": "lenet5"}}', 0.99, 120, 'tok');
        INSERT INTO metrics (run_id, step, epoch, split, loss, accuracy, time)
            VALUES ('{OLD_RUN}', 120, 1.0, 'val', 0.05, 0.98, {created + 59});
    """)
    (old,) = registry.list_runs()
    assert (old.id, old.status, old.test_accuracy, old.steps, old.owner) == (OLD_RUN, "completed", 0.99, 120, "tok")
    assert old.config == {"model": "lenet5"} and old.created_at == pytest.approx(created, abs=1e-3)
    assert old.sweep is None and old.node is None
    assert [m["accuracy"] for m in registry.get_metrics(OLD_RUN)] == [0.98]
    assert registry_db.schema_version() == registry.schema.SCHEMA_VERSION

    # What is new works on it: a run's files, the new columns, the claim.
    registry.put_artifact(OLD_RUN, "model.json", b"{}")
    assert registry.get_artifact(OLD_RUN, "model.json") == b"{}"
    new = registry.create_run(tiny_config(), sweep="s1", class_code="C1", student="Ada")
    assert registry.claim_next(os.getpid(), max_concurrent=1) == new
    assert [r.id for r in registry.list_runs(sweep="s1")] == [new]


def test_a_fresh_registry_starts_at_the_current_version(registry_db):
    assert registry.list_runs() == []
    assert registry_db.schema_version() == registry.schema.SCHEMA_VERSION


# --- connections across fork ----------------------------------------------------------------------

def _backend() -> object:
    """Which database connection the registry hands this process: PostgreSQL's backend pid."""
    import sqlalchemy as sa

    with registry.connect() as conn:
        return conn.scalar(sa.select(sa.func.pg_backend_pid()))


def test_a_forked_runner_gets_connections_of_its_own_and_leaves_its_parents_alone(registry_db, tiny_config):
    """The local executor forks its runners: a child must never talk on its parent's pooled socket."""
    if registry_db.kind != "postgresql":
        pytest.skip("SQLite opens its file anew for every transaction: nothing is pooled to share")
    registry.create_run(tiny_config())
    parents = _backend()
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # the runner
        try:
            os.close(read)
            os.write(write, f"{_backend()} {len(registry.list_runs())}".encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        childs, listed = pipe.read().split()
    os.waitpid(child, 0)
    assert int(listed) == 1 and int(childs) != parents
    assert _backend() == parents  # the parent's own connection was neither used nor closed by the child


def test_claim_next_leaves_a_run_that_a_ray_job_will_train(registry_db, tiny_config):
    ray_run = registry.create_run(tiny_config())
    registry.set_job(ray_run, f"mnist-{ray_run}")
    local_run = registry.create_run(tiny_config())
    assert registry.claim_next(os.getpid(), max_concurrent=2) == local_run
    assert registry.claim_next(os.getpid(), max_concurrent=2) is None
    assert registry.get_run(ray_run).pid is None

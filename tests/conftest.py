"""Shared fixtures for the core package's tests.

Every test gets its own run registry and checkpoint folder (MNIST_RUNS_DIR, MNIST_CHECKPOINT_DIR
point into its tmp_path), so no test ever reads or writes the repository's runs/ or checkpoints/.
MNIST_DATA_DIR is left alone: tests that need the real data use the `mnist` fixture, which skips
them with a clear reason when it is absent.

The machine this runs on may have two busy cores: torch gets one thread, and every training config
here asks for threads=1 (two threads on two shared cores is several times slower, not faster).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mnist_core.paths import REPO_ROOT


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    torch.set_num_threads(1)
    yield


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path, monkeypatch):
    """Point the run registry and the checkpoint folder at fresh temporary folders."""
    runs = tmp_path / "runs"
    checkpoints = tmp_path / "checkpoints"
    monkeypatch.setenv("MNIST_RUNS_DIR", str(runs))
    monkeypatch.setenv("MNIST_CHECKPOINT_DIR", str(checkpoints))
    monkeypatch.setenv("MNIST_RUNNER_IDLE_SECONDS", "2")  # a test's runners leave soon after its queue empties
    monkeypatch.setenv("MNIST_WARM_RUNNER", "0")  # an AppTest of app.py starts no runner of its own
    monkeypatch.setenv("MNIST_RECORD_RETRY_SECONDS", "0")  # a registry broken at a run's end: one try, not minutes
    return {"runs": runs, "checkpoints": checkpoints}


@pytest.fixture(scope="session")
def mnist():
    """The real MNIST, where MNIST_DATA_DIR (or data/) says; skips the test when it is absent."""
    from mnist_core import data

    if not data.is_present():
        pytest.skip(f"MNIST is not in {data.raw_dir()}: run `python -m mnist_core fetch-data` (or `make data`)")
    return data.raw_dir()


# Helpers are handed out as fixtures (test modules never import conftest).

def _tiny_config(**overrides) -> dict:
    from mnist_core.training import TrainConfig

    values = dict(model="mlp-128-64", train_size=1000, val_size=500, epochs=1, batch_size=100,
                  optimizer="adamw", lr=0.003, schedule="onecycle", threads=1, device="cpu")
    values.update(overrides)
    return TrainConfig.from_dict(values).to_dict()


@pytest.fixture
def tiny_config():
    """tiny_config(**overrides): a validated config dict for a run of a second or two on one thread."""
    return _tiny_config


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mnist_core", *args], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=timeout, env=os.environ.copy())


@pytest.fixture
def cli():
    """cli(*args): run `python -m mnist_core ARGS` in a subprocess, with this test's environment."""
    return _cli


@pytest.fixture
def start_worker():
    """start_worker(run_id): launch the worker command for a queued run (`train --run-id`, as a Ray job does).

    Every process started is killed and reaped when the test ends, whatever happened.
    """
    procs: list[subprocess.Popen] = []

    def start(run_id: str) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-m", "mnist_core", "train", "--run-id", run_id, "--quiet"],
                                cwd=REPO_ROOT, env=os.environ.copy(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
        if proc.stderr:
            proc.stderr.close()


def _wait_for(predicate, timeout: float, interval: float = 0.05, what: str = "a condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


@pytest.fixture(scope="module")
def live_app(tmp_path_factory, request):
    """A real `streamlit run app.py` for a test module (it takes a while to start), with its own runs and
    checkpoint folders and no warm runner (nothing trains unless a test submits); stopped after it."""
    from harness import ServerError, StreamlitServer

    server = StreamlitServer(tmp_path_factory.mktemp(request.module.__name__.rpartition(".")[2]),
                             env={"MNIST_WARM_RUNNER": "0"})
    try:
        server.start()
    except ServerError as exc:
        pytest.fail(str(exc), pytrace=False)
    yield server
    server.stop()


@pytest.fixture
def wait_for():
    """wait_for(predicate, timeout, what=...): poll until truthy (returns it); fails the test on timeout."""
    return _wait_for


class SqliteRegistry:
    """The run registry as the default deployment has it: runs/registry.sqlite in MNIST_RUNS_DIR."""

    kind = "sqlite"

    def __init__(self, runs_dir: Path):
        self.path = runs_dir / "registry.sqlite"

    def execute_script(self, sql: str) -> None:
        """Run raw SQL on the registry's database, as an older app (or another tool) would have."""
        import sqlite3

        self.path.parent.mkdir(parents=True, exist_ok=True)
        with sqlite3.connect(self.path) as conn:
            conn.executescript(sql)
        conn.close()

    def schema_version(self) -> int:
        import sqlite3

        conn = sqlite3.connect(self.path)
        try:
            return conn.execute("SELECT version FROM schema_version").fetchone()[0]
        finally:
            conn.close()

    def refuse_finished_runs(self) -> None:
        """The registry refuses a run's last writes, as a full disk does: a checkpoint stored, a run
        marked completed ("database or disk is full"); everything else still works."""
        self.execute_script(
            "CREATE TRIGGER refuse_completed BEFORE UPDATE OF status ON runs WHEN NEW.status = 'completed' "
            "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END;"
            "CREATE TRIGGER refuse_checkpoint BEFORE INSERT ON artifacts WHEN NEW.name LIKE 'checkpoint%' "
            "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END;")

    def accept_finished_runs(self) -> None:
        self.execute_script("DROP TRIGGER refuse_completed; DROP TRIGGER refuse_checkpoint;")

    def go_away(self) -> None:
        """The registry file is moved away (an operator's mistake, a volume unmounted)..."""
        for name in ("registry.sqlite", "registry.sqlite-wal", "registry.sqlite-shm"):
            if (self.path.parent / name).exists():
                (self.path.parent / name).rename(self.path.parent / f"away-{name}")

    def come_back(self) -> None:
        """... and put back as it was."""
        for name in ("registry.sqlite", "registry.sqlite-wal", "registry.sqlite-shm"):
            if (self.path.parent / f"away-{name}").exists():
                (self.path.parent / f"away-{name}").rename(self.path.parent / name)


class PostgresRegistry:
    """The run registry on a PostgreSQL server: a fresh database of the session's test server."""

    kind = "postgresql"

    def __init__(self, url: str):
        self.url = url

    def execute_script(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(sql)  # several statements: fine without parameters

    def schema_version(self) -> int:
        import psycopg

        with psycopg.connect(self.url) as conn:
            return conn.execute("SELECT version FROM schema_version").fetchone()[0]

    def refuse_finished_runs(self) -> None:
        """The server refuses a run's last writes, as a full disk does: a checkpoint stored, a run marked
        completed ("could not extend file: No space left on device"); everything else still works."""
        self.execute_script(
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'could not extend file: No space left on device'; END $$;"
            "CREATE TRIGGER refuse_completed BEFORE UPDATE ON runs FOR EACH ROW "
            "WHEN (NEW.status = 'completed') EXECUTE FUNCTION refuse();"
            "CREATE TRIGGER refuse_checkpoint BEFORE INSERT ON artifacts FOR EACH ROW "
            "WHEN (NEW.name LIKE 'checkpoint%') EXECUTE FUNCTION refuse();")

    def accept_finished_runs(self) -> None:
        self.execute_script("DROP TRIGGER refuse_completed ON runs; DROP TRIGGER refuse_checkpoint ON artifacts;")

    def _admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
            conn.execute(sql)

    def go_away(self) -> None:
        """The database stops taking connections and drops the ones it has (a server going down)..."""
        name = self.url.rsplit("/", 1)[1]
        self._admin(f"ALTER DATABASE {name} ALLOW_CONNECTIONS false")
        self._admin(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")

    def come_back(self) -> None:
        """... and takes them again."""
        self._admin(f"ALTER DATABASE {self.url.rsplit('/', 1)[1]} ALLOW_CONNECTIONS true")


@pytest.fixture(scope="session")
def postgres_server():
    """A real PostgreSQL server for the session (tests/pg_server.py), stopped and removed at the end
    whatever happens; skips the tests that need it when the server binaries are not installed."""
    from pg_server import PostgresServer, PostgresUnavailable

    try:
        server = PostgresServer.start()
    except PostgresUnavailable as exc:
        pytest.skip(str(exc))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def registry_db(request, isolated_dirs, monkeypatch):
    """The run registry on each database the app supports, empty, named by MNIST_REGISTRY_URL (inherited
    by subprocesses): tests that take it run once per database."""
    if request.param == "sqlite":
        monkeypatch.setenv("MNIST_REGISTRY_URL", f"sqlite:///{isolated_dirs['runs'] / 'registry.sqlite'}")
        yield SqliteRegistry(isolated_dirs["runs"])
        return
    from mnist_core import registry

    server = request.getfixturevalue("postgres_server")
    url = server.create_database()
    monkeypatch.setenv("MNIST_REGISTRY_URL", url)
    try:
        yield PostgresRegistry(url)
    finally:
        registry.close_connections()
        server.drop_database(url)

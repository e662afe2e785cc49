"""A run registry that breaks or disappears: one clear line everywhere, and no trained model lost.

Every fault of the SQLite file (corrupt, not a database, deleted or replaced while in use) reaches
pages and the CLI as a one-line RunError that names "the run registry" and no server path; so does a
PostgreSQL registry that cannot be reached, without its password. A registry that this process has
used and that then disappears is an error, never a fresh empty one.
A worker saves its checkpoint before it records the run, so a registry that fails at the very end
leaves the trained model on disk and says where, and its outcome in a file that the next start
records once the registry is back. A page never waits on a locked registry more than a few seconds.
"""

from __future__ import annotations

import os
import sqlite3

import pytest

from mnist_core import artifacts, executors, registry, runfiles, worker
from mnist_core.__main__ import main
from mnist_core.checkpoints import load_checkpoint
from mnist_core.errors import RunError


def _registry_files():
    path = runfiles.registry_path()
    return [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]


def delete_registry() -> None:
    """What an operator's `rm runs/registry.sqlite` (or a wiped volume) does under a running server."""
    for f in _registry_files():
        f.unlink(missing_ok=True)


def corrupt_registry() -> None:
    """What a disk fault or a stray write does: the file is still there but is no database."""
    for f in _registry_files()[1:]:
        f.unlink(missing_ok=True)
    runfiles.registry_path().write_bytes(b"this is not an SQLite database\n" * 200)


def _assert_one_clean_line(message: str, tmp_path) -> None:
    assert "\n" not in message
    assert "the run registry" in message
    assert str(tmp_path) not in message and "/" not in message, f"a server path is shown: {message}"


@pytest.mark.parametrize("call", [
    lambda: registry.list_runs(),
    lambda: registry.get_run("20990101-000000-abcdef"),
    lambda: registry.create_run({"model": "lenet5"}, owner="alice"),
    lambda: registry.get_metrics("20990101-000000-abcdef"),
    lambda: registry.request_cancel("20990101-000000-abcdef", by="alice"),
    lambda: registry.claim_next(os.getpid()),
    lambda: registry.get_artifact("20990101-000000-abcdef", "model.json"),
], ids=["list", "get", "create", "metrics", "cancel", "claim", "artifact"])
def test_a_visitor_on_a_corrupt_registry_sees_one_line_without_paths(tiny_config, tmp_path, call):
    registry.create_run(tiny_config())
    corrupt_registry()
    with pytest.raises(RunError) as excinfo:
        call()
    _assert_one_clean_line(str(excinfo.value), tmp_path)
    assert "not a database" in str(excinfo.value)


def test_a_page_waits_seconds_for_a_locked_registry_and_a_worker_waits_longer(tiny_config, tmp_path):
    """Another process holds the registry file's lock: a page's read gives up after PAGE_WAIT_SECONDS
    (a few seconds), in one line; a worker's write waits WORKER_WAIT_SECONDS for its turn."""
    assert registry.db.PAGE_WAIT_SECONDS <= 5 < registry.db.WORKER_WAIT_SECONDS
    with registry.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == registry.db.PAGE_WAIT_SECONDS * 1000
    with registry.connect(patient=True) as conn:
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == registry.db.WORKER_WAIT_SECONDS * 1000

    run_id = registry.create_run(tiny_config())
    registry.close_connections()  # this process's own pooled connections would share the lock with it
    holder = sqlite3.connect(runfiles.registry_path(), isolation_level=None)
    try:
        holder.execute("PRAGMA locking_mode = EXCLUSIVE")
        holder.execute("BEGIN EXCLUSIVE")
        holder.execute("UPDATE runs SET error = NULL")
        for call in (registry.list_runs, lambda: registry.get_run(run_id), lambda: registry.get_metrics(run_id)):
            with pytest.raises(RunError, match="database is locked") as excinfo:
                call()
            _assert_one_clean_line(str(excinfo.value), tmp_path)
    finally:
        holder.close()
    assert registry.get_run(run_id).status == "queued"  # the lock let go, the registry is whole


def test_a_fresh_registry_file_that_is_not_a_database_is_a_run_error(tmp_path):
    runfiles.registry_path().parent.mkdir(parents=True, exist_ok=True)
    runfiles.registry_path().write_bytes(b"\x00" * 4096 + b"garbage" * 100)
    with pytest.raises(RunError) as excinfo:
        registry.list_runs()
    _assert_one_clean_line(str(excinfo.value), tmp_path)


def test_a_registry_deleted_while_in_use_is_gone_not_silently_recreated(tiny_config, tmp_path):
    run_id = registry.create_run(tiny_config())
    delete_registry()
    for call in (registry.list_runs, lambda: registry.get_run(run_id), lambda: registry.create_run(tiny_config())):
        with pytest.raises(RunError, match="the run registry .*is gone") as excinfo:
            call()
        _assert_one_clean_line(str(excinfo.value), tmp_path)
    assert not runfiles.registry_path().exists(), "the registry was recreated empty"


def test_a_registry_replaced_while_in_use_is_gone_too(tiny_config, tmp_path):
    """Another process recreating it (a worker that started after the delete) must not pass for it."""
    import sqlite3

    registry.create_run(tiny_config())
    delete_registry()
    sqlite3.connect(runfiles.registry_path()).close()  # a new, empty file where the old one was
    with pytest.raises(RunError, match="the run registry .*is gone"):
        registry.list_runs()


def test_the_cli_on_a_corrupt_registry_prints_one_line_and_exits_nonzero(capsys, tiny_config, tmp_path):
    registry.create_run(tiny_config())
    corrupt_registry()
    assert main(["runs"]) != 0
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err
    _assert_one_clean_line(lines[0].removeprefix("error: "), tmp_path)


@pytest.mark.parametrize("fault", [delete_registry, corrupt_registry], ids=["deleted", "corrupted"])
def test_a_registry_that_fails_at_the_end_of_a_run_keeps_the_trained_model(mnist, tiny_config, isolated_dirs,
                                                                            monkeypatch, capsys, fault):
    """The CLI trains; between saving the checkpoint and recording the run the registry breaks."""
    real_save = worker.save_checkpoint

    def save_then_break_the_registry(*args, **kwargs):
        saved = real_save(*args, **kwargs)
        fault()
        return saved

    monkeypatch.setattr(worker, "save_checkpoint", save_then_break_the_registry)
    argv = ["train", "--model", "mlp-50", "--train-size", "300", "--val-size", "100", "--epochs", "1",
            "--batch-size", "100", "--threads", "1", "--device", "cpu", "--quiet"]
    assert main(argv) != 0
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    (saved,) = isolated_dirs["checkpoints"].glob("mlp-50-*.safetensors")
    assert str(saved) in lines[0], "the CLI must say where the trained model is"
    assert "the run registry" in lines[0]
    model, meta = load_checkpoint(saved)
    assert meta["metrics"]["test_accuracy"] > 0.3


def test_a_registry_that_vanishes_during_training_does_not_end_the_run(mnist, tiny_config, isolated_dirs):
    """Metric writes that fail do not stop the training: the model is finished and saved."""
    run_id = registry.create_run(tiny_config(eval_every=3))
    deleted = []

    def delete_at_step_2(event):
        if event["split"] == "train" and event["step"] == 2 and not deleted:
            delete_registry()
            deleted.append(True)

    with pytest.raises(RunError, match="is gone") as excinfo:
        worker.execute_run(run_id, on_event=delete_at_step_2)
    (saved,) = isolated_dirs["checkpoints"].glob("*.safetensors")
    assert str(saved) in str(excinfo.value)
    assert load_checkpoint(saved)[1]["metrics"]["steps"] == 10


@pytest.mark.subprocess
def test_a_run_whose_final_record_failed_shows_its_model_once_the_registry_is_back(mnist, tiny_config, registry_db,
                                                                                    start_worker, tmp_path):
    """The registry refuses a run's last writes (a full disk) through all its worker's tries: the
    worker exits, its outcome left in a file. Meanwhile the run is not read as failed ("the worker
    died"); the next start (Executor.prepare, which the app calls) records it completed, with its
    accuracy and checkpoint, and its model loads wherever the registry is reached."""
    run_id = registry.create_run(tiny_config())
    registry_db.refuse_finished_runs()
    proc = start_worker(run_id)
    assert proc.wait(timeout=180) != 0
    assert "could not be recorded" in proc.stderr.read()
    waiting = registry.get_run(run_id)
    assert waiting.status == "running" and not registry.liveness.pid_alive(waiting.pid), waiting.error
    assert runfiles.outcome_path(run_id).is_file()

    registry_db.accept_finished_runs()
    executors.for_host().prepare()
    run = registry.get_run(run_id)
    assert run.status == "completed" and run.error is None and run.test_accuracy > 0.3
    assert not runfiles.outcome_path(run_id).exists()
    model, meta = artifacts.load_run_model(run_id)
    assert meta["run_id"] == run_id and meta["metrics"]["test_accuracy"] == run.test_accuracy
    assert all(registry.get_artifact(run_id, name) for name in (artifacts.WEIGHTS, artifacts.SIDECAR))


@pytest.mark.parametrize("page", ["app_pages/home.py", "app_pages/train.py", "app_pages/evaluate.py"])
def test_pages_on_a_corrupt_registry_say_so_in_one_line(tiny_config, tmp_path, page):
    from apptest_util import messages, open_page

    registry.create_run(tiny_config())
    corrupt_registry()
    at = open_page(page)
    said = messages(at)
    assert not at.exception, said
    assert any("the run registry" in e for e in said["error"]), said
    assert not any(str(tmp_path) in e for e in said["error"]), said


# --- a registry on PostgreSQL ----------------------------------------------------------------------

def _unused_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_postgresql_registry_that_cannot_be_reached_is_one_line_without_the_password(monkeypatch, capsys):
    port = _unused_port()  # nothing listens there
    monkeypatch.setenv("MNIST_REGISTRY_URL", f"postgresql://lab:s3cret-pw@127.0.0.1:{port}/mnist")
    with pytest.raises(RunError) as excinfo:
        registry.list_runs()
    message = str(excinfo.value)
    assert message.startswith(f"the run registry (PostgreSQL at 127.0.0.1:{port}) cannot be reached: "), message
    assert "\n" not in message and "s3cret-pw" not in message and "refused" in message.lower()

    assert main(["runs"]) != 0
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [f"error: {message}"] and "s3cret-pw" not in err


def test_a_registry_url_of_another_database_is_refused_in_one_line_without_the_password(monkeypatch):
    monkeypatch.setenv("MNIST_REGISTRY_URL", "mysql://lab:s3cret-pw@db.example/mnist")
    with pytest.raises(RunError, match=r"mysql:// is not supported \(sqlite:/// or postgresql://\)") as excinfo:
        registry.list_runs()
    assert "s3cret-pw" not in str(excinfo.value)


def test_a_postgresql_registry_that_goes_away_while_in_use_says_so_in_one_line(postgres_server, monkeypatch,
                                                                                tiny_config):
    url = postgres_server.create_database()
    monkeypatch.setenv("MNIST_REGISTRY_URL", url)
    try:
        run_id = registry.create_run(tiny_config())
        postgres_server.drop_database(url)  # its connections are closed under the app, as a restart does
        for call in (registry.list_runs, lambda: registry.get_run(run_id), lambda: registry.create_run(tiny_config())):
            with pytest.raises(RunError) as excinfo:
                call()
            message = str(excinfo.value)
            assert message.startswith(f"the run registry (PostgreSQL at 127.0.0.1:{postgres_server.port}) "
                                      "cannot be reached: ") and "\n" not in message, message
            assert "does not exist" in message
    finally:
        registry.close_connections()

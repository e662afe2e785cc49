"""mnist_core.registry: the run registry, and how it notices dead workers.

Tests that take the `registry_db` fixture run on SQLite and on PostgreSQL (conftest.py)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from mnist_core import registry, runfiles
from mnist_core.errors import RunError
from mnist_core.records import RunStatus


def _set(run_id: str, **columns) -> None:
    """Write registry columns directly, as a worker on another machine (or a stuck one) would leave them."""
    with registry.connect() as conn:
        conn.execute(registry.RUNS.update().where(registry.RUNS.c.id == run_id).values(**columns))


def _proc_state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


# --- create, list, get, finish ---------------------------------------------------------------------

def test_a_new_registry_is_empty_and_lives_in_mnist_runs_dir(isolated_dirs):
    assert registry.list_runs() == []
    assert runfiles.registry_path() == isolated_dirs["runs"] / "registry.sqlite"
    assert runfiles.registry_path().is_file()


def test_create_list_and_get_runs_oldest_first(registry_db, tiny_config):
    ids = [registry.create_run(tiny_config(seed=i), owner="tester") for i in range(3)]
    listed = registry.list_runs()
    assert [r.id for r in listed] == ids
    assert [r.config["seed"] for r in listed] == [0, 1, 2]
    assert all(r.status == "queued" and r.test_accuracy is None and r.is_live for r in listed)
    assert listed[0].created_at <= listed[1].created_at <= listed[2].created_at

    run = registry.get_run(ids[1])
    assert run.id == ids[1] and run.config == tiny_config(seed=1) and run.owner == "tester"
    assert run.started_at is None and run.pid is None and run.duration is None and run.progress == 0.0
    assert not run.cancel_requested


def test_get_run_of_an_unknown_id_is_a_run_error(registry_db):
    with pytest.raises(RunError, match="no run 20990101-000000-abcdef"):
        registry.get_run("20990101-000000-abcdef")


@pytest.mark.parametrize("bad", ["nope", "../../etc/passwd", "20990101-000000-abcdef/..", "", None])
def test_a_run_id_that_is_not_ours_is_refused_before_any_lookup(bad):
    with pytest.raises(RunError, match="is not a run id"):
        registry.get_run(bad)


def test_a_run_goes_from_queued_to_running_to_completed(registry_db, tiny_config):
    run_id = registry.create_run(tiny_config())
    registry.mark_running(run_id, total_steps=10)
    run = registry.get_run(run_id)
    assert run.status == "running" and run.pid == os.getpid() and run.started_at is not None
    assert run.total_steps == 10 and run.progress == 0.0

    registry.add_metrics(run_id, [{"step": s, "epoch": s / 10, "split": "train", "loss": 1.0 / s, "accuracy": 0.5,
                                   "images_per_s": 100.0} for s in range(1, 6)])
    registry.add_metrics(run_id, [{"step": 5, "epoch": 0.5, "split": "val", "loss": 0.3, "accuracy": 0.9}])
    assert registry.get_run(run_id).steps == 5 and registry.get_run(run_id).progress == 0.5
    assert registry.heartbeat(run_id, steps=7) is False
    assert registry.get_run(run_id).steps == 7

    registry.finish_run(run_id, "completed", checkpoint="/tmp/x.safetensors", best_val_accuracy=0.9,
                        test_accuracy=0.91, test_loss=0.3)
    run = registry.get_run(run_id)
    assert run.status == "completed" and not run.is_live and run.progress == 1.0
    assert run.test_accuracy == 0.91 and run.best_val_accuracy == 0.9 and run.checkpoint == "/tmp/x.safetensors"
    assert run.finished_at >= run.started_at and run.error is None and run.duration >= 0

    # A finished run stays finished.
    registry.finish_run(run_id, "failed", error="too late")
    assert registry.get_run(run_id).status == "completed"
    with pytest.raises(RunError, match="it is completed"):
        registry.mark_running(run_id)


def test_a_claimed_run_reads_starting_until_its_worker_runs_it(registry_db, tiny_config):
    """Queued means waiting in line until a process claims the run; from the claim to the worker's
    mark_running it is starting (its stored status still "queued") and holds a training slot."""
    run_id = registry.create_run(tiny_config())
    run = registry.get_run(run_id)
    assert (run.state, run.waiting, run.starting, run.holds_slot) == ("queued", True, False, False)
    assert registry.queue_positions([run]) == {run_id: 1}

    assert registry.claim_next(os.getpid()) == run_id
    run = registry.get_run(run_id)
    assert run.status == "queued" and registry.run_status(run_id) == "queued"
    assert (run.state, run.waiting, run.starting, run.holds_slot) == ("starting", False, True, True)
    assert registry.queue_positions([run]) == {}

    registry.mark_running(run_id, total_steps=10)
    run = registry.get_run(run_id)
    assert (run.state, run.waiting, run.starting, run.holds_slot) == ("running", False, False, True)


def test_the_cli_lists_a_claimed_run_as_starting(registry_db, tiny_config, capsys):
    from mnist_core.__main__ import main

    claimed, waiting = registry.create_run(tiny_config()), registry.create_run(tiny_config())
    assert registry.claim_next(os.getpid(), max_concurrent=1) == claimed
    assert main(["runs"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert next(line for line in lines if line.startswith(claimed)).split()[1] == "starting"
    assert next(line for line in lines if line.startswith(waiting)).split()[1] == "queued"


def test_metrics_read_back_by_split_and_after_a_step(registry_db, tiny_config):
    run_id = registry.create_run(tiny_config())
    registry.mark_running(run_id)
    registry.add_metrics(run_id, [{"step": s, "epoch": s, "split": "train", "loss": float(s)} for s in (1, 2, 3)]
                         + [{"step": 3, "epoch": 3, "split": "val", "loss": 0.5, "accuracy": 0.8}])
    registry.add_metrics(run_id, [])
    assert [m["step"] for m in registry.get_metrics(run_id)] == [1, 2, 3, 3]
    assert [m["step"] for m in registry.get_metrics(run_id, split="train", after_step=1)] == [2, 3]
    assert registry.get_metrics(run_id, split="val") == [
        {"step": 3, "epoch": 3.0, "split": "val", "loss": 0.5, "accuracy": 0.8, "images_per_s": None,
         "time": pytest.approx(time.time(), abs=60)}]


def test_finish_run_rejects_a_live_status(tiny_config):
    run_id = registry.create_run(tiny_config())
    with pytest.raises(RunError):
        registry.finish_run(run_id, "running")


def test_a_failed_run_keeps_its_error_text(tiny_config):
    run_id = registry.create_run(tiny_config())
    registry.mark_running(run_id)
    registry.finish_run(run_id, "failed", error="lr: -1 is outside the allowed range")
    run = registry.get_run(run_id)
    assert run.status == "failed" and run.error == "lr: -1 is outside the allowed range"


# --- cancel and delete --------------------------------------------------------------------------------

def test_request_cancel_of_a_queued_run_with_no_worker_cancels_it_at_once(registry_db, tiny_config):
    run_id = registry.create_run(tiny_config())
    registry.request_cancel(run_id)
    run = registry.get_run(run_id)
    assert run.status == "cancelled" and run.cancel_requested and run.finished_at is not None
    with pytest.raises(RunError, match="it is cancelled"):
        registry.mark_running(run_id)  # a worker arriving late does not start it


def test_request_cancel_of_a_running_run_asks_its_worker(registry_db, tiny_config):
    run_id = registry.create_run(tiny_config())
    registry.mark_running(run_id)
    assert registry.heartbeat(run_id) is False
    registry.request_cancel(run_id)
    run = registry.get_run(run_id)
    assert run.status == "running" and run.cancel_requested
    assert registry.heartbeat(run_id) is True  # the worker's next heartbeat learns of it


def test_request_cancel_of_a_finished_run_changes_nothing_and_unknown_runs_fail(registry_db, tiny_config):
    run_id = registry.create_run(tiny_config())
    registry.mark_running(run_id)
    registry.finish_run(run_id, "completed", test_accuracy=0.9)
    registry.request_cancel(run_id)
    assert registry.get_run(run_id).status == "completed"
    with pytest.raises(RunError):
        registry.request_cancel("nope")


def test_delete_run_refuses_a_live_run_and_removes_a_finished_one(registry_db, tiny_config):
    keep, live = registry.create_run(tiny_config()), registry.create_run(tiny_config())
    registry.mark_running(live)
    with pytest.raises(RunError, match="cancel it before deleting"):
        registry.delete_run(live)
    registry.add_metrics(live, [{"step": 1, "epoch": 0.1, "split": "train", "loss": 1.0}])
    registry.finish_run(live, "cancelled")
    registry.delete_run(live)
    assert [r.id for r in registry.list_runs()] == [keep]
    assert registry.get_metrics(live) == []
    with pytest.raises(RunError):
        registry.delete_run(live)


# --- dead workers ---------------------------------------------------------------------------------------

def _running_run_in_a_worker(start_worker, wait_for, tiny_config):
    # Enough work that the worker is still busy when it is killed.
    run_id = registry.create_run(tiny_config(model="lenet5", train_size=0, epochs=5))
    proc = start_worker(run_id)
    run = wait_for(lambda: (r := registry.get_run(run_id)).status != "queued" and r, timeout=90,
                   what="the worker to mark the run running")
    assert run.status == "running", run.error
    assert run.pid == proc.pid
    return run_id, proc


@pytest.mark.subprocess
@pytest.mark.parametrize("reaped", [True, False], ids=["reaped", "zombie"])
def test_killed_worker_marks_run_failed(mnist, start_worker, wait_for, tiny_config, monkeypatch, reaped):
    run_id, proc = _running_run_in_a_worker(start_worker, wait_for, tiny_config)
    # The heartbeat lease can never run out here: the dead pid alone must be what fails the run.
    monkeypatch.setattr(registry.liveness, "HEARTBEAT_TIMEOUT", 24 * 3600.0)
    os.kill(proc.pid, signal.SIGKILL)
    if reaped:
        assert proc.wait(timeout=30) == -signal.SIGKILL
    else:
        # Nobody waits for it: the pid stays taken by a zombie, which must not count as alive.
        wait_for(lambda: _proc_state(proc.pid) == "Z", timeout=10, what="the killed worker to become a zombie")
        assert registry.liveness.pid_alive(proc.pid) is False

    run = wait_for(lambda: next(r for r in registry.list_runs() if r.id == run_id).status == "failed"
                   and registry.get_run(run_id), timeout=60, what="the killed run to read as failed")
    assert run.error and f"pid {proc.pid}" in run.error and "died" in run.error
    assert run.finished_at is not None and run.test_accuracy is None
    if not reaped:
        assert _proc_state(proc.pid) == "Z"  # it was still a zombie when the registry judged it
        proc.wait(timeout=30)


def test_a_run_whose_claiming_process_died_before_starting_it_is_failed(registry_db, tiny_config):
    run_id = registry.create_run(tiny_config())
    dead_pid = _a_dead_pid()
    assert registry.claim_next(dead_pid) == run_id
    run = registry.get_run(run_id)
    assert run.status == "failed" and f"pid {dead_pid}" in run.error


def _a_dead_pid() -> int:
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_stale_heartbeat_on_another_host_reads_as_failed(registry_db, tiny_config):
    run_id = registry.create_run(tiny_config())
    registry.mark_running(run_id)
    # On another host the pid cannot be checked: the heartbeat is all there is to go by.
    _set(run_id, pid=os.getppid(), heartbeat=time.time() - 3600, host="another-host.example")
    run = registry.list_runs()[0]
    assert run.status == "failed"
    assert "no heartbeat" in run.error


@pytest.mark.subprocess
def test_a_stale_heartbeat_of_a_worker_alive_on_this_host_stays_running(tiny_config, monkeypatch, wait_for):
    """A paused worker (SIGSTOP, a VM freeze, a swap storm) is late, not dead: its process is there."""
    import subprocess
    import sys

    monkeypatch.setattr(registry.liveness, "HEARTBEAT_TIMEOUT", 0.2)
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])  # stands in for a worker
    try:
        run_id = registry.create_run(tiny_config())
        registry.mark_running(run_id)
        _set(run_id, pid=worker.pid, heartbeat=time.time())  # then it falls silent
        wait_for(lambda: time.time() - registry.get_run(run_id).heartbeat > 5 * registry.liveness.HEARTBEAT_TIMEOUT, 10,
                 what="the heartbeat to go stale")
        assert [r.status for r in registry.list_runs()] == ["running"]
    finally:
        worker.kill()
        worker.wait()
    run = registry.get_run(run_id)  # once its process is gone, it is dead
    assert run.status == "failed" and "died" in run.error


@pytest.mark.subprocess
def test_a_run_whose_worker_pid_now_belongs_to_a_newer_process_reads_as_failed(tiny_config):
    """After a reboot (or a recycled pid) the recorded pid can be alive and someone else's."""
    import subprocess
    import sys

    run_id = registry.create_run(tiny_config())
    registry.mark_running(run_id)
    _set(run_id, heartbeat=time.time() - 3600)  # the worker last wrote an hour ago
    newer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _set(run_id, pid=newer.pid)
        run = registry.get_run(run_id)
        assert run.status == "failed" and f"pid {newer.pid}" in run.error and "another process" in run.error
    finally:
        newer.kill()
        newer.wait()


def test_a_heartbeat_tells_the_worker_to_stop_once_its_run_was_given_up(registry_db, tiny_config):
    run_id = registry.create_run(tiny_config())
    registry.mark_running(run_id)
    assert registry.heartbeat(run_id, steps=3) is False
    registry.finish_run(run_id, "failed", error="the worker stopped responding (no heartbeat for 12 s)")
    assert registry.heartbeat(run_id, steps=9) is True
    run = registry.get_run(run_id)
    assert run.status == "failed" and run.steps == 3 and run.error.startswith("the worker stopped responding")


def test_a_fresh_heartbeat_on_another_host_stays_running(registry_db, tiny_config):
    run_id = registry.create_run(tiny_config())
    registry.mark_running(run_id)
    _set(run_id, pid=os.getppid(), host="another-host.example", heartbeat=time.time())
    assert registry.get_run(run_id).status == "running"
    # A pid that does not exist here says nothing about a process on another machine.
    _set(run_id, pid=_a_dead_pid())
    assert registry.get_run(run_id).status == "running"


def test_a_queued_run_waiting_for_a_slot_stays_queued(tiny_config):
    waiting = registry.create_run(tiny_config())
    _set(waiting, created_at=time.time() - 3600)
    assert registry.get_run(waiting).status == "queued"


def test_pid_alive():
    assert registry.liveness.pid_alive(os.getpid())
    assert not registry.liveness.pid_alive(_a_dead_pid())


# --- concurrency --------------------------------------------------------------------------------------

def test_concurrent_readers_while_a_writer_writes_do_not_raise(registry_db, tiny_config):
    run_id = registry.create_run(tiny_config())
    registry.mark_running(run_id)
    errors: list[BaseException] = []
    writing = threading.Event()
    writing.set()
    reads = [0]
    batches, rows_per_batch = 40, 10

    def writer():
        try:
            for b in range(batches):
                registry.add_metrics(run_id, [{"step": b * rows_per_batch + i + 1, "epoch": b, "split": "train",
                                               "loss": 1.0} for i in range(rows_per_batch)])
                registry.heartbeat(run_id, steps=(b + 1) * rows_per_batch)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            writing.clear()

    def reader():
        try:
            while writing.is_set():
                assert registry.get_run(run_id).status == "running"
                registry.list_runs()
                rows = registry.get_metrics(run_id, split="train")
                assert [r["step"] for r in rows] == list(range(1, len(rows) + 1))  # whole batches only
                reads[0] += 1
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(3)] + [threading.Thread(target=writer)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert reads[0] > 0
    assert len(registry.get_metrics(run_id)) == batches * rows_per_batch
    assert registry.get_run(run_id).steps == batches * rows_per_batch


@pytest.mark.subprocess
def test_readers_in_other_processes_see_a_consistent_registry(registry_db, tiny_config, isolated_dirs):
    """Another process (a second Streamlit server, the CLI) reads while this one writes."""
    import subprocess
    import sys

    run_id = registry.create_run(tiny_config())
    registry.mark_running(run_id)
    code = (
        "import sys, time\n"
        "from mnist_core import registry\n"
        "n = 0\n"
        "deadline = time.monotonic() + 1.5\n"
        "while time.monotonic() < deadline:\n"
        "    rows = registry.get_metrics(sys.argv[1])\n"
        "    assert len(rows) % 5 == 0, len(rows)\n"
        "    assert registry.get_run(sys.argv[1]).status in ('running', 'completed')\n"
        "    n += 1\n"
        "print(n)\n")
    reader = subprocess.Popen([sys.executable, "-c", code, run_id], cwd=Path(__file__).resolve().parent.parent,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        step = 0
        while reader.poll() is None:
            registry.add_metrics(run_id, [{"step": step + i, "epoch": 0, "split": "train", "loss": 1.0}
                                          for i in range(5)])
            step += 5
            time.sleep(0.01)
        out, err = reader.communicate(timeout=30)
    finally:
        if reader.poll() is None:
            reader.kill()
            reader.wait()
    assert reader.returncode == 0, err
    assert int(out) > 0 and step > 0


def test_a_runs_status_is_a_run_status_that_reads_as_its_word(tiny_config):
    run_id = registry.create_run(tiny_config())
    (run,) = registry.list_runs()
    assert run.status is RunStatus.QUEUED and run.status == "queued" and f"{run.status}" == "queued"
    assert run.is_live and run.progress == 0.0 and run.eta() is None
    registry.finish_run(run_id, RunStatus.CANCELLED)
    assert registry.get_run(run_id).status is RunStatus.CANCELLED
    with pytest.raises(RunError, match="cannot finish as"):
        registry.finish_run(run_id, "paused")


def test_a_file_written_atomically_is_whole_or_absent_never_half(tmp_path):
    from mnist_core.paths import atomic_write

    target = tmp_path / "deep" / "file.bin"
    atomic_write(target, lambda tmp: Path(tmp).write_bytes(b"first"))
    assert target.read_bytes() == b"first"

    def crash(tmp):
        Path(tmp).write_bytes(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(target, crash)
    assert target.read_bytes() == b"first" and sorted(p.name for p in target.parent.iterdir()) == ["file.bin"]


def test_a_worker_dead_past_its_time_limit_is_failed_for_the_limit_by_any_reader(monkeypatch, isolated_dirs):
    """Its runner fails it for the limit and kills it; a reader that finds the dead worker first says
    the same, not that the worker died."""
    monkeypatch.setenv("MNIST_MAX_RUN_SECONDS", "5")
    monkeypatch.setenv("MNIST_TIME_LIMIT_GRACE_SECONDS", "1")
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    now = time.time()
    row = {"id": "20261208-000000-abcdef", "status": "running", "pid": gone.pid, "host": socket.gethostname(),
           "heartbeat": now - 3, "created_at": now - 20}
    overdue, within = {**row, "started_at": now - 10}, {**row, "started_at": now - 4}
    assert registry.liveness.dead_reason(overdue, now) == "time limit 5 s reached"
    assert "died" in registry.liveness.dead_reason(within, now)

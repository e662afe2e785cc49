"""The local executor: runners take the queue on their own, a worker that dies fails only its run,
and nothing but a submit (or a runner finishing a run) moves the queue."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from mnist_core import artifacts, executors, registry, runfiles, runner
from mnist_core.errors import RunError
from mnist_core.records import RunStatus

pytestmark = pytest.mark.subprocess


@pytest.fixture(autouse=True)
def runners_end_with_the_test(monkeypatch, isolated_dirs, wait_for):
    """Runners of this test exit a second after their queue empties; any still there are killed."""
    monkeypatch.setenv("MNIST_RUNNER_IDLE_SECONDS", "1")
    yield
    for pid in executors.runners_alive():
        os.killpg(pid, signal.SIGKILL)  # its session: the runner, its forkserver and its workers
    wait_for(lambda: not executors.runners_alive(), 30, what="the killed runners to be collected")


def _long(tiny_config):
    """A run that only a cancel or a kill ends within the test: 20,000 steps of one image."""
    return tiny_config(model="mlp-50", train_size=2000, batch_size=1, epochs=10)


def test_submitted_runs_queue_past_the_cap_and_complete_in_order_without_any_page(mnist, tiny_config, wait_for,
                                                                                    monkeypatch):
    monkeypatch.setenv("MNIST_MAX_CONCURRENT", "1")
    first = executors.for_host().submit(tiny_config(), owner="alice")
    second = executors.for_host().submit(tiny_config(), owner="bob")
    wait_for(lambda: registry.get_run(second).status == RunStatus.COMPLETED, 180, what="the second run to complete")
    first_run, second_run = registry.get_run(first), registry.get_run(second)
    assert first_run.status == RunStatus.COMPLETED
    assert second_run.started_at >= first_run.finished_at - 0.5, "the cap of 1 let both train at once"


def test_a_worker_killed_mid_run_fails_its_run_at_once_and_the_next_run_still_trains(mnist, tiny_config, wait_for,
                                                                                      monkeypatch):
    monkeypatch.setenv("MNIST_MAX_CONCURRENT", "1")
    doomed = executors.for_host().submit(_long(tiny_config), owner="alice")
    after = executors.for_host().submit(tiny_config(), owner="bob")
    running = wait_for(lambda: (r := registry.get_run(doomed)).status == RunStatus.RUNNING and (r.steps or 0) > 0 and r,
                       180, what="the first run to train")
    os.kill(running.pid, signal.SIGKILL)
    failed = wait_for(lambda: (r := registry.get_run(doomed)).status != RunStatus.RUNNING and r, 60,
                      what="the killed run to end")
    assert failed.status == RunStatus.FAILED
    assert failed.error in ("the worker was killed by SIGKILL", f"the worker process (pid {running.pid}) died")
    wait_for(lambda: registry.get_run(after).status == RunStatus.COMPLETED, 180,
             what="the queued run to train after the kill")


def test_cancel_reaches_a_run_trained_by_a_runner(mnist, tiny_config, wait_for):
    run_id = executors.for_host().submit(_long(tiny_config), owner="alice")
    wait_for(lambda: (registry.get_run(run_id).steps or 0) > 0, 180, what="the run to train")
    with pytest.raises(RunError, match="someone else"):
        executors.for_host().cancel(run_id, by="mallory")
    executors.for_host().cancel(run_id, by="alice")
    ended = wait_for(lambda: (r := registry.get_run(run_id)).status != RunStatus.RUNNING and r, 60, what="the cancel")
    assert ended.status == RunStatus.CANCELLED and ended.error is None


def test_a_runner_leaves_when_idle_and_frees_its_slot(mnist, tiny_config, wait_for):
    run_id = executors.for_host().submit(tiny_config(), owner="alice")
    wait_for(lambda: registry.get_run(run_id).status == RunStatus.COMPLETED, 180, what="the run")
    wait_for(lambda: not executors.runners_alive(), 60, what="the idle runner to exit")
    assert runner.free_slots() == 1


def test_no_runner_starts_while_every_slot_is_held_and_one_does_when_a_slot_frees(monkeypatch):
    monkeypatch.setenv("MNIST_MAX_CONCURRENT", "2")
    held = [runner.take_slot(), runner.take_slot()]
    assert runner.take_slot() is None and runner.free_slots() == 0
    assert executors.ensure_runners() == 0
    held.pop().close()  # a runner ends (or dies: the kernel drops its lock the same way)
    assert runner.free_slots() == 1
    held.pop().close()
    assert runner.free_slots() == 2


def test_a_runner_whose_launcher_ended_finishes_the_queue_then_leaves(mnist, tiny_config, wait_for, monkeypatch,
                                                                       isolated_dirs, cli):
    """`submit` from the command line returns at once; its runner trains the run, then leaves at once
    (not after MNIST_RUNNER_IDLE_SECONDS: nobody is left to submit to it)."""
    monkeypatch.setenv("MNIST_RUNNER_IDLE_SECONDS", "600")
    submit = ("import json, sys\nfrom mnist_core import executors\n"
              "print(executors.for_host().submit(json.loads(sys.argv[1])))")
    launcher = subprocess.run([sys.executable, "-c", submit, json.dumps(tiny_config())],
                              capture_output=True, text=True, timeout=120, env=os.environ.copy())
    run_id = launcher.stdout.strip()
    assert launcher.returncode == 0, launcher.stderr
    wait_for(lambda: registry.get_run(run_id).status == RunStatus.COMPLETED, 180, what="the run to complete")
    log = isolated_dirs["runs"] / "runners" / "runner.log"
    pid = int(log.read_text().split("runner ")[1].split()[0])
    wait_for(lambda: not registry.liveness.pid_alive(pid), 60, what="the runner to leave")
    assert runner.free_slots() == 1


def test_a_sigstopped_worker_fails_at_its_time_limit_and_the_next_queued_run_then_trains(
        mnist, tiny_config, wait_for, monkeypatch, isolated_dirs):
    """A stopped worker never looks at its own clock: its runner kills it once the limit and the grace
    have passed, fails the run in the worker's words, and takes the next run."""
    monkeypatch.setenv("MNIST_MAX_CONCURRENT", "1")
    monkeypatch.setenv("MNIST_MAX_RUN_SECONDS", "5")
    monkeypatch.setenv("MNIST_TIME_LIMIT_GRACE_SECONDS", "1")
    stopped = executors.for_host().submit(_long(tiny_config), owner="alice")
    after = executors.for_host().submit(tiny_config(), owner="bob")
    running = wait_for(lambda: (r := registry.get_run(stopped)).status != RunStatus.QUEUED and r, 180,
                       what="the first run to start")
    os.kill(running.pid, signal.SIGSTOP)
    try:
        assert registry.get_run(stopped).status == RunStatus.RUNNING, "the worker ended before it could be stopped"
        ended = wait_for(lambda: (r := registry.get_run(stopped)).status != RunStatus.RUNNING and r, 120,
                         what="the runner to end the stopped run")
    finally:
        if registry.liveness.pid_alive(running.pid):
            os.kill(running.pid, signal.SIGCONT)
    assert ended.status == RunStatus.FAILED and ended.error == "time limit 5 s reached"
    log = isolated_dirs["runs"] / "runners" / "runner.log"
    wait_for(lambda: f"run {stopped}: its worker outlived its time limit 5 s" in log.read_text(), 60,
             what="the runner to say it killed the worker")  # the runner ended the run, not the worker's clock
    assert not registry.liveness.pid_alive(running.pid)
    done = wait_for(lambda: (r := registry.get_run(after)).status not in (RunStatus.QUEUED, RunStatus.RUNNING) and r,
                    180, what="the queued run to train")
    assert done.status == RunStatus.COMPLETED, done.error


def test_a_run_whose_final_record_fails_is_recorded_completed_by_its_runner_once_the_registry_is_back(
        mnist, tiny_config, wait_for, monkeypatch, isolated_dirs, registry_db):
    """The registry refuses a run's last writes (a full disk) through every try of its worker. The
    worker exits, leaving its outcome in a file; the runner does not fail the run as "the worker
    died", and records it, completed with its accuracy and checkpoint, once the registry takes writes."""
    monkeypatch.setenv("MNIST_RUNNER_IDLE_SECONDS", "600")  # it stays while this test (its launcher) lives
    registry.list_runs()  # the registry exists
    registry_db.refuse_finished_runs()
    run_id = executors.for_host().submit(tiny_config(), owner="alice")
    log = isolated_dirs["runs"] / "runners" / "runner.log"
    wait_for(lambda: log.exists() and f"run {run_id} could not be recorded" in log.read_text(), 180,
             what="the runner to find the worker's outcome unrecorded")
    waiting = registry.get_run(run_id)  # what a page reads meanwhile
    assert waiting.status == RunStatus.RUNNING and not registry.liveness.pid_alive(waiting.pid), waiting.error
    assert runfiles.outcome_path(run_id).is_file()

    registry_db.accept_finished_runs()
    run = wait_for(lambda: (r := registry.get_run(run_id)).status != RunStatus.RUNNING and r, 120,
                   what="the runner to record the waiting outcome")
    assert run.status == RunStatus.COMPLETED and run.error is None and run.test_accuracy > 0.3
    assert not runfiles.outcome_path(run_id).exists()
    model, meta = artifacts.load_run_model(run_id)
    assert meta["run_id"] == run_id and meta["metrics"]["test_accuracy"] == run.test_accuracy
    # other hosts see it too
    assert all(registry.get_artifact(run_id, name) for name in (artifacts.WEIGHTS, artifacts.SIDECAR))

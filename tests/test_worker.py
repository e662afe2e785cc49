"""mnist_core.worker: executing a queued run from the registry, start to finish."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from mnist_core import artifacts, outcomes, registry, runfiles, worker
from mnist_core.checkpoints import load_checkpoint
from mnist_core.data import load_mnist
from mnist_core.errors import ConfigError, DataError, RunError
from mnist_core.predict import predict_proba
from mnist_core.records import RunStatus


@pytest.fixture
def heartbeat_tells(monkeypatch):
    """The registry's heartbeat, as the worker calls it, with `.stop`: an event set the first time it
    answers "stop" (a cancel request, or the run given up), so a test can hold the worker until then."""
    heartbeat = registry.heartbeat
    stop = threading.Event()

    def heartbeat_that_tells(*args, **kwargs):
        if heartbeat(*args, **kwargs):
            stop.set()
            return True
        return False

    heartbeat_that_tells.stop = stop
    monkeypatch.setattr(registry, "heartbeat", heartbeat_that_tells)
    return heartbeat_that_tells


def test_execute_run_trains_records_metrics_and_saves_a_loadable_checkpoint(mnist, tiny_config, isolated_dirs):
    config = tiny_config(eval_every=4)  # 1,000 images in batches of 100: 10 steps, validation at 4, 8, 10
    run_id = registry.create_run(config)
    events = []
    run = worker.execute_run(run_id, on_event=events.append)

    assert run.status == "completed" and run.error is None
    assert run.test_accuracy > 0.5 and run.best_val_accuracy > 0.5 and run.test_loss > 0
    assert run.started_at <= run.finished_at and run.steps == 10

    metrics = registry.get_metrics(run_id)
    assert {m["split"] for m in metrics} == {"train", "val", "test"}
    assert [m["step"] for m in metrics if m["split"] == "train"] == list(range(1, 11))
    assert [m["step"] for m in metrics if m["split"] == "val"] == [4, 8, 10]
    test_rows = [m for m in metrics if m["split"] == "test"]
    assert len(test_rows) == 1 and test_rows[0]["accuracy"] == run.test_accuracy
    assert events == metrics  # one row type, end to end, stamped when it was measured

    # The checkpoint lands in MNIST_CHECKPOINT_DIR, named after the model and the run.
    assert run.checkpoint == str(isolated_dirs["checkpoints"] / f"mlp-128-64-{run_id}.safetensors")
    model, meta = load_checkpoint(run.checkpoint)
    assert meta["architecture"] == "mlp-128-64" and meta["run_id"] == run_id
    assert meta["config"] == config
    assert meta["metrics"]["test_accuracy"] == run.test_accuracy and meta["metrics"]["steps"] == 10
    images, labels = load_mnist("test")
    predicted = predict_proba(model, images[:1000].float() / 255).argmax(1)
    assert (predicted == labels[:1000].numpy()).mean() == pytest.approx(run.test_accuracy, abs=0.05)


def test_a_running_run_knows_its_planned_steps_progress_and_eta_from_its_first_step(mnist, tiny_config):
    run_id = registry.create_run(tiny_config(model="mlp-50", train_size=1000, batch_size=100, epochs=2))  # 20 steps
    seen = []

    def look(row) -> None:  # called after the worker has handed the row to the registry's writer
        if (row["split"], row["step"]) in (("train", 1), ("val", 10)):  # a val row is written at once
            seen.append(registry.get_run(run_id))

    worker.execute_run(run_id, on_event=look)
    first, middle = seen
    assert first.status == RunStatus.RUNNING == "running"
    assert first.total_steps == 20  # planned when it started, not learnt from a heartbeat later
    assert first.progress < 0.5
    assert middle.progress == 0.5 and middle.eta() is not None and middle.eta() > 0
    assert registry.get_run(run_id).progress == 1.0 and registry.get_run(run_id).eta() is None


def test_execute_run_writes_the_checkpoint_where_asked(mnist, tiny_config, tmp_path):
    run_id = registry.create_run(tiny_config(model="mlp-50", train_size=200, batch_size=100))
    run = worker.execute_run(run_id, checkpoint_path=tmp_path / "mine" / "digits")
    assert run.checkpoint == str(tmp_path / "mine" / "digits.safetensors")
    assert (tmp_path / "mine" / "digits.json").is_file()


def test_cancel_from_another_thread_mid_run_ends_it_cancelled(mnist, tiny_config, monkeypatch, isolated_dirs,
                                                               heartbeat_tells):
    """The worker is held at its fifth step until its heartbeat has read the cancel request, so the
    cancel lands mid-run however fast this machine trains."""
    monkeypatch.setattr(worker, "HEARTBEAT_SECONDS", 0.1)
    # 20,000 steps of one image: only the cancel can end it early.
    run_id = registry.create_run(tiny_config(model="mlp-50", train_size=2000, batch_size=1, epochs=10))
    at_step_5 = threading.Event()

    def hold_at_step_5(event):
        if event["split"] == "train" and event["step"] == 5:
            at_step_5.set()
            assert heartbeat_tells.stop.wait(60), "the heartbeat never read the cancel request"

    canceller = threading.Thread(target=lambda: at_step_5.wait(60) and registry.request_cancel(run_id))
    canceller.start()
    run = worker.execute_run(run_id, on_event=hold_at_step_5)
    canceller.join(timeout=10)

    assert run.status == "cancelled" and run.cancel_requested
    assert run.test_accuracy is None and run.error is None
    assert 5 <= run.steps < 20_000
    assert not any(isolated_dirs["checkpoints"].glob("*.safetensors")), "a cancelled run writes no checkpoint"
    assert "test" not in {m["split"] for m in registry.get_metrics(run_id)}


@pytest.mark.parametrize("stored, field", [
    ({"model": "lenet5", "lr": -1.0}, "lr"),
    ({"model": "lenet5", "learning_rate": 0.1}, "learning_rate"),
    ({"model": "transformer"}, "model"),
])
def test_a_run_with_an_invalid_stored_config_ends_failed_with_the_error(stored, field):
    run_id = registry.create_run(stored)
    with pytest.raises(ConfigError):
        worker.execute_run(run_id)
    run = registry.get_run(run_id)
    assert run.status == "failed"
    assert field in run.error and "\n" not in run.error


def test_a_run_without_data_ends_failed_with_the_data_error(tiny_config, tmp_path):
    run_id = registry.create_run(tiny_config())
    with pytest.raises(DataError):
        worker.execute_run(run_id, data_root=tmp_path / "no-data")
    run = registry.get_run(run_id)
    assert run.status == "failed" and "fetch-data" in run.error


def test_an_unexpected_exception_ends_the_run_failed_with_its_type(mnist, tiny_config, monkeypatch):
    def broken_train(*args, **kwargs):
        raise RuntimeError("out of memory\nwith a second line")

    monkeypatch.setattr(worker, "train", broken_train)
    run_id = registry.create_run(tiny_config())
    with pytest.raises(RuntimeError):
        worker.execute_run(run_id)
    run = registry.get_run(run_id)
    assert run.status == "failed" and run.error == "RuntimeError: out of memory"


def test_a_finished_run_cannot_be_executed_again(tiny_config):
    run_id = registry.create_run(tiny_config())
    registry.request_cancel(run_id)
    with pytest.raises(RunError, match="cannot start"):
        worker.execute_run(run_id)
    assert registry.get_run(run_id).status == "cancelled"


def test_execute_run_restores_the_sigterm_handler(mnist, tiny_config):
    before = signal.getsignal(signal.SIGTERM)
    worker.execute_run(registry.create_run(tiny_config(model="mlp-50", train_size=100, batch_size=100)))
    assert signal.getsignal(signal.SIGTERM) == before


@pytest.mark.subprocess
def test_sigterm_ends_a_worker_process_cancelled(mnist, start_worker, wait_for, tiny_config):
    """The hosting platform stopping the worker leaves the run cancelled, not half-written or failed."""
    run_id = registry.create_run(tiny_config(model="mlp-50", train_size=2000, batch_size=1, epochs=10))
    proc = start_worker(run_id)
    # Once the first heartbeat has come (a second after start) the handler is certainly installed.
    wait_for(lambda: (r := registry.get_run(run_id)).status == "running" and r.heartbeat > r.started_at + 0.5,
             timeout=90, interval=0.1, what="the worker's first heartbeat")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 1, proc.stderr.read()  # the CLI's exit status for a run that did not complete
    run = registry.get_run(run_id)
    assert run.status == "cancelled" and run.error == "stopped by SIGTERM" and run.test_accuracy is None


# --- a worker that is late, and a run that was given up on ---------------------------------------------

def test_a_worker_whose_run_was_given_up_at_the_end_saves_and_records_nothing(mnist, tiny_config, isolated_dirs):
    """The registry declared the run dead while it trained: its record stays as the registry left it."""
    run_id = registry.create_run(tiny_config())
    verdict = "the worker stopped responding (no heartbeat for 12 s)"

    def give_up_when_training_is_over(event):
        if event["split"] == "test":
            registry.finish_run(run_id, "failed", error=verdict)

    run = worker.execute_run(run_id, on_event=give_up_when_training_is_over)
    assert run.status == "failed" and run.error == verdict
    assert run.checkpoint is None and run.test_accuracy is None
    assert not any(isolated_dirs["checkpoints"].glob("*.safetensors")), "a given-up run left a checkpoint nobody sees"


def test_a_worker_whose_run_was_given_up_mid_run_stops_at_its_next_heartbeat(mnist, tiny_config, monkeypatch,
                                                                            heartbeat_tells):
    monkeypatch.setattr(worker, "HEARTBEAT_SECONDS", 0.1)
    # 20,000 steps of one image, held at step 5 until the heartbeat has read the verdict: only the stop ends it early.
    run_id = registry.create_run(tiny_config(model="mlp-50", train_size=2000, batch_size=1, epochs=10))
    verdict = "the worker stopped responding (no heartbeat for 12 s)"
    steps = []

    def give_up_at_step_5(event):
        if event["split"] == "train":
            steps.append(event["step"])
            if event["step"] == 5:
                registry.finish_run(run_id, "failed", error=verdict)
                assert heartbeat_tells.stop.wait(60), "the heartbeat never read the verdict"

    run = worker.execute_run(run_id, on_event=give_up_at_step_5)
    assert run.status == "failed" and run.error == verdict
    assert 5 <= max(steps) < 20_000


@pytest.mark.subprocess
def test_a_paused_worker_is_not_declared_dead_and_no_second_run_starts(mnist, tiny_config, start_worker, wait_for,
                                                                       monkeypatch):
    """SIGSTOP for longer than the heartbeat timeout: the run stays running, the cap of 1 holds, and
    once resumed the worker carries on (here until the test cancels it)."""
    monkeypatch.setattr(registry.liveness, "HEARTBEAT_TIMEOUT", 1.0)
    monkeypatch.setenv("MNIST_MAX_CONCURRENT", "1")
    paused = registry.create_run(tiny_config(model="mlp-50", train_size=2000, batch_size=1, epochs=10))
    waiting = registry.create_run(tiny_config())
    assert registry.claim_next(os.getpid()) == paused  # as a runner claims a run, then forks its worker
    procs = {paused: start_worker(paused)}
    run = wait_for(lambda: (r := registry.get_run(paused)).status != "queued" and ((r.steps or 0) > 0 or not r.is_live)
                   and r, 90, what="the worker to train")
    assert run.status == "running", run.error  # a busy machine's late heartbeat is no death either
    pid = procs[paused].pid
    os.kill(pid, signal.SIGSTOP)
    try:
        wait_for(lambda: time.time() - registry.get_run(paused).heartbeat > 3 * registry.liveness.HEARTBEAT_TIMEOUT, 30,
                 what="the paused worker's heartbeat to go stale")
        assert registry.get_run(paused).status == "running", registry.get_run(paused).error
        assert registry.claim_next(os.getpid()) is None  # the cap of 1 holds
        assert [r.status for r in registry.list_runs()] == ["running", "queued"]
        assert registry.get_run(waiting).pid is None
    finally:
        os.kill(pid, signal.SIGCONT)
    resumed = time.time()
    wait_for(lambda: registry.get_run(paused).heartbeat > resumed, 30, what="a heartbeat after the resume")
    assert registry.get_run(paused).status == "running"

    registry.request_cancel(waiting)  # queued, no worker: cancelled at once (so nothing starts it)
    registry.request_cancel(paused)
    assert procs[paused].wait(timeout=60) == 1
    assert registry.get_run(paused).status == "cancelled" and registry.get_run(paused).error is None


def test_deleting_a_finished_run_removes_its_log_snapshots_and_checkpoint(mnist, tiny_config, isolated_dirs):
    run_id = registry.create_run(tiny_config(model="cnn-small", train_size=200, batch_size=100))
    runfiles.log_path(run_id).write_text("what a launched worker printed\n")  # worker.launch writes it
    run = worker.execute_run(run_id)
    files = [runfiles.log_path(run_id), runfiles.snapshot_path(run_id), Path(run.checkpoint),
             Path(run.checkpoint).with_suffix(".json")]
    assert all(f.is_file() for f in files), [f.name for f in files if not f.exists()]
    registry.delete_run(run_id)
    assert [f.name for f in files if f.exists()] == []
    assert run_id not in {r.id for r in registry.list_runs()}


def test_deleting_a_run_keeps_a_checkpoint_written_where_the_operator_said(mnist, tiny_config, tmp_path):
    run_id = registry.create_run(tiny_config(model="mlp-50", train_size=200, batch_size=100))
    run = worker.execute_run(run_id, checkpoint_path=tmp_path / "keep.safetensors")
    registry.delete_run(run_id)
    assert Path(run.checkpoint).is_file() and (tmp_path / "keep.json").is_file()


# --- a final record that fails ---------------------------------------------------------------------------

@pytest.mark.parametrize("fault", ["full", "gone"])
def test_a_final_record_that_fails_is_tried_again_and_the_run_ends_completed_with_its_model(
        mnist, tiny_config, registry_db, monkeypatch, fault):
    """Right after the checkpoint is saved the registry refuses the run's last writes (a full disk) or
    goes away (a deleted file, a server down); it is back after the first try. The worker tries again:
    the run ends completed, its checkpoint in the registry too, and the outcome file it left is gone."""
    monkeypatch.setenv("MNIST_RECORD_RETRY_SECONDS", "300")
    monkeypatch.setattr(worker, "RECORD_FIRST_WAIT", 0.01)
    breaks, mends = {"full": (registry_db.refuse_finished_runs, registry_db.accept_finished_runs),
                     "gone": (registry_db.go_away, registry_db.come_back)}[fault]
    real_save, real_leave = worker.save_checkpoint, outcomes.leave
    left = []

    def save_then_break_the_registry(*args, **kwargs):
        saved = real_save(*args, **kwargs)
        breaks()
        return saved

    def leave_the_outcome_then_mend_the_registry(run_id, outcome, root=None):
        path = real_leave(run_id, outcome, root)
        left.append(json.loads(path.read_text()))
        mends()
        return path

    monkeypatch.setattr(worker, "save_checkpoint", save_then_break_the_registry)
    monkeypatch.setattr(outcomes, "leave", leave_the_outcome_then_mend_the_registry)
    run_id = registry.create_run(tiny_config())
    run = worker.execute_run(run_id)

    assert [o["status"] for o in left] == ["completed"], "the first try did not fail"
    assert left[0]["checkpoint"] == run.checkpoint and left[0]["test_accuracy"] == run.test_accuracy
    assert run.status == "completed" and run.error is None and run.test_accuracy > 0.3
    assert load_checkpoint(run.checkpoint)[1]["run_id"] == run_id
    assert all(registry.get_artifact(run_id, name) for name in (artifacts.WEIGHTS, artifacts.SIDECAR))
    assert not runfiles.outcome_path(run_id).exists()

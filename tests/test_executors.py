"""The executor interface: one submit, cancel and prepare for every backend, the place in line of the
queue the host's executor serves, and the web server's background reconcile. No worker runs here:
each backend is the real class with its start told to do nothing (test_runner.py and
test_ray_cluster.py run real workers)."""

from __future__ import annotations

import threading

import pytest

from mnist_core import executors, live, registry
from mnist_core.errors import ConfigError, RunError
from mnist_core.ray_executor import RayExecutor


class Idle(executors.LocalExecutor):
    """The local executor, less the runner a submit would start."""

    def start(self, run_id, config, root=None):
        pass


def test_a_submit_admits_the_config_and_queues_the_run_with_its_owner_and_tags(tiny_config):
    run_id = Idle().submit(tiny_config(), owner="alice", sweep="sweep-1", class_code="period-3", student="Ada")
    run = registry.get_run(run_id)
    assert run.status == "queued" and run.owner == "alice" and run.sweep == "sweep-1"
    assert run.class_code == "period-3" and run.student == "Ada"
    with pytest.raises(ConfigError, match="lr"):
        Idle().submit(tiny_config(lr=-1.0))
    assert [r.id for r in registry.list_runs()] == [run_id]  # a refused config queues nothing


def test_a_run_its_executor_cannot_start_is_failed_at_once_not_left_queued(tiny_config):
    class Broken(executors.LocalExecutor):
        def start(self, run_id, config, root=None):
            raise OSError(28, "No space left on device", "/srv/lab/runs/runners/runner.log")

    with pytest.raises(RunError, match=r"^the run could not be started: No space left on device$"):
        Broken().submit(tiny_config())
    (run,) = registry.list_runs()
    assert run.status == "failed" and run.error == "the run could not be started: No space left on device"


def test_a_start_failure_without_words_is_named_by_its_type(tiny_config):
    class Mute(executors.LocalExecutor):
        def start(self, run_id, config, root=None):
            raise RuntimeError()

    with pytest.raises(RunError, match=r"^the run could not be started: RuntimeError$"):
        Mute().submit(tiny_config())
    (run,) = registry.list_runs()
    assert run.status == "failed" and run.error == "the run could not be started: RuntimeError"


def test_cancel_sets_the_owners_flag_then_tells_the_backend(tiny_config):
    told = []

    class Telling(Idle):
        def stop(self, run_id, root=None):
            told.append(run_id)

    run_id = Telling().submit(tiny_config(), owner="alice")
    with pytest.raises(RunError, match="someone else"):
        Telling().cancel(run_id, by="mallory")
    assert told == [] and registry.get_run(run_id).status == "queued"
    Telling().cancel(run_id, by="alice")
    assert told == [run_id] and registry.get_run(run_id).status == "cancelled"  # no worker had it yet


def test_the_local_line_leaves_out_the_runs_free_slots_will_take(tiny_config, monkeypatch):
    monkeypatch.delenv("MNIST_RAY_ADDRESS", raising=False)
    monkeypatch.setenv("MNIST_MAX_CONCURRENT", "2")
    first, second, third = (Idle().submit(tiny_config()) for _ in range(3))
    everyone = registry.list_runs()
    assert live.places_in_line(everyone) == {third: 1}  # two slots free: the first two are starting
    assert live.progress(registry.get_run(third), None, everyone).text == (
        "Queued: number 1 in line. It starts by itself when a training slot frees (2 at a time).")


def test_under_ray_a_waiting_run_is_in_the_clusters_line_whatever_the_local_cap(tiny_config, monkeypatch):
    monkeypatch.setenv("MNIST_MAX_CONCURRENT", "4")
    first, second = (Idle().submit(tiny_config()) for _ in range(2))
    everyone = registry.list_runs()
    monkeypatch.setenv("MNIST_RAY_ADDRESS", "http://head:8265")
    assert isinstance(executors.for_host(), RayExecutor)
    assert live.places_in_line(everyone) == {first: 1, second: 2}
    assert live.progress(registry.get_run(second), None, everyone).text == (
        "Queued: number 2 in line. It starts by itself when the cluster has room.")
    assert "queued, number 2 in line" in live.short_progress(registry.get_run(second), everyone).text


def test_the_server_reconciles_its_executor_in_the_background_and_keeps_going_past_a_fault(capsys, isolated_dirs):
    calls, twice = [], threading.Event()

    class Flaky(executors.LocalExecutor):
        def reconcile(self, root=None):
            calls.append(root)
            if len(calls) == 1:
                raise RunError("the registry cannot be reached")
            if len(calls) == 2:
                raise OSError("disk full")  # not the package's own error: the loop goes on all the same
            if len(calls) >= 3:
                twice.set()
            return []

    reconciler = executors.Reconciler(Flaky(), every=0.01)
    reconciler.start()
    try:
        assert twice.wait(30), "the reconciler did not try again after a fault"
    finally:
        reconciler.stop()
        reconciler.join(timeout=30)
    assert not reconciler.is_alive() and calls[0] == isolated_dirs["runs"]  # this host's runs folder
    err = capsys.readouterr().err
    assert "the runs could not be brought up to date: the registry cannot be reached" in err
    assert "the runs could not be brought up to date: OSError: disk full" in err

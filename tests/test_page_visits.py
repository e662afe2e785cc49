"""Visiting a page only reads and draws: it never starts a worker (the queue moves when a run is
submitted and when a worker ends, in mnist_core)."""

import os
import signal

import pytest

from mnist_core import executors, registry
from mnist_core.training import TrainConfig

from apptest_util import messages, open_page


@pytest.fixture
def runners_started(monkeypatch):
    """The local runners this host would start (none is: each call is recorded instead)."""
    started = []
    monkeypatch.setattr(executors, "launch_runner", lambda root=None: started.append(root) or 0)
    return started


def test_visiting_pages_leaves_a_queued_run_waiting(runners_started, monkeypatch):
    monkeypatch.setenv("MNIST_MAX_CONCURRENT", "4")  # free slots: only a page visit could start the run now
    at = open_page("app_pages/home.py")  # the server starts (and may warm a runner: not a page's doing)
    runners_started.clear()
    run_id = registry.create_run(TrainConfig(model="mlp-50", epochs=1, train_size=1000, threads=1).to_dict())
    try:
        for page in ("app_pages/inside.py", "app_pages/draw.py", "app_pages/home.py"):
            at.switch_page(page)
            at.run()
            assert not at.exception, messages(at)
        run = registry.get_run(run_id)
        assert (run.status, run.pid) == ("queued", None)  # still waiting, no worker claimed it
        assert runners_started == []
    finally:
        run = registry.get_run(run_id)
        if run.pid:  # a worker a page should not have started: stop it
            os.kill(run.pid, signal.SIGTERM)
        if run.is_live:
            registry.finish_run(run_id, "cancelled")

"""Visiting a page only reads and draws: it never starts a worker (the queue moves when a run is
submitted and when a worker ends, in mnist_core)."""

import os
import signal

import pytest

from mnist_core import runs
from mnist_core.training import TrainConfig

from apptest_util import messages, open_page


@pytest.fixture
def queued_run(monkeypatch):
    """A run waiting in the registry with a free slot: only a page visit could start it now."""
    monkeypatch.setenv("MNIST_MAX_CONCURRENT", "4")
    run_id = runs.create_run(TrainConfig(model="mlp-50", epochs=1, train_size=1000, threads=1).to_dict())
    yield run_id
    run = runs.get_run(run_id)
    if run.pid:  # a worker the page should not have started: stop it
        os.kill(run.pid, signal.SIGTERM)
    if run.is_live:
        runs.finish_run(run_id, "cancelled")


def test_visiting_a_page_leaves_a_queued_run_waiting(queued_run):
    at = open_page("app_pages/home.py")
    assert not at.exception, messages(at)
    run = runs.get_run(queued_run)
    assert (run.status, run.pid) == ("queued", None)  # still waiting, no worker claimed it

"""Heavy work a visitor asks for (mnist_core.heavy): at most MNIST_MAX_HEAVY jobs on the server and one
per visitor, each in a child process that is killed when its visitor leaves; and the t-SNE map a demo
server offers sized to finish in seconds.

The jobs here are the standard library's own functions (time.sleep, math.factorial), so a child needs
nothing from the tests."""

from __future__ import annotations

import math
import os
import time

import pytest
from streamlit.testing.v1 import AppTest

from apptest_util import messages, open_page
from mnist_core import data, explain, heavy
from mnist_core.checkpoints import default_checkpoint
from mnist_core.errors import BusyError

SERVER_BUSY = "the server is busy with {} heavy computation{}; try again in a moment"
YOURS_RUNNING = "another heavy computation of yours is running; wait for it"


@pytest.fixture
def jobs():
    """Jobs a test starts, all cancelled at its end (the children killed, the slots given back)."""
    started: list[heavy.Job] = []
    yield started
    for job in started:
        job.cancel()
    assert heavy.running() == []


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_a_job_runs_in_a_child_and_gives_its_result_or_its_error():
    assert heavy.run("visitor-a", math.factorial, 20) == 2432902008176640000
    with pytest.raises(ValueError, match="math domain error"):
        heavy.run("visitor-a", math.sqrt, -1)
    assert heavy.running() == []


def test_at_most_max_heavy_jobs_run_at_once_on_the_server(monkeypatch, jobs):
    monkeypatch.setenv("MNIST_MAX_HEAVY", "2")
    jobs += [heavy.start("visitor-a", time.sleep, 600), heavy.start("visitor-b", time.sleep, 600)]
    with pytest.raises(BusyError) as refused:
        heavy.start("visitor-c", time.sleep, 600, wait=0)
    assert str(refused.value) == SERVER_BUSY.format(2, "s")
    jobs[0].cancel()
    jobs.append(heavy.start("visitor-c", time.sleep, 600, wait=0))  # a slot given back is free again


def test_a_demo_server_runs_one_heavy_job_at_a_time(monkeypatch, jobs):
    monkeypatch.delenv("MNIST_MAX_HEAVY", raising=False)
    monkeypatch.setenv("MNIST_DEMO", "1")
    jobs.append(heavy.start("visitor-a", time.sleep, 600))
    with pytest.raises(BusyError, match=SERVER_BUSY.format(1, "")):
        heavy.start("visitor-b", time.sleep, 600, wait=0)


def test_a_visitor_runs_one_heavy_job_at_a_time(monkeypatch, jobs):
    monkeypatch.setenv("MNIST_MAX_HEAVY", "4")
    jobs.append(heavy.start("visitor-a", time.sleep, 600))
    with pytest.raises(BusyError) as refused:
        heavy.start("visitor-a", math.factorial, 5, wait=0)
    assert str(refused.value) == YOURS_RUNNING
    jobs.append(heavy.start("visitor-b", time.sleep, 600, wait=0))  # another visitor is not held up


def _page_whose_visitor_leaves():
    """A page run waiting on a job, stopped the way Streamlit stops a closed tab's run
    (Runtime.disconnect_session -> AppSession.request_script_stop -> ScriptRequests.request_stop):
    the stop lands at the run's next check, in the job's wait."""
    import os
    import threading
    import time

    import streamlit as st
    from streamlit.runtime.scriptrunner_utils.script_run_context import get_script_run_ctx

    from app_pages._frame import run_heavy
    from mnist_core import heavy

    requests = get_script_run_ctx().script_requests

    def leave():
        while not (jobs := heavy.running()) or jobs[0].pid is None:
            time.sleep(0.05)
        with open(os.environ["HEAVY_TEST_PID_FILE"], "w") as f:
            f.write(str(jobs[0].pid))
        requests.request_stop()

    threading.Thread(target=leave, daemon=True).start()
    run_heavy(time.sleep, 3600)
    st.write("the job finished")


def test_a_job_whose_visitor_leaves_is_cancelled_and_its_child_is_gone(tmp_path, monkeypatch):
    pid_file = tmp_path / "pid"
    monkeypatch.setenv("HEAVY_TEST_PID_FILE", str(pid_file))
    at = AppTest.from_function(_page_whose_visitor_leaves, default_timeout=120)
    try:
        at.run()  # returns once the run has stopped; were the stop never to land, it times out
    finally:
        for job in heavy.running():  # a job the stop did not end: ended here, so nothing is left behind
            job.cancel()
    assert not at.exception, messages(at)
    assert not at.markdown  # the run stopped in the wait: nothing after it was drawn
    assert _gone(int(pid_file.read_text()))
    assert heavy.running() == []  # the visitor's slot is free again


@pytest.mark.skipif(not data.is_present() or default_checkpoint("lenet5") is None,
                    reason="needs MNIST and the committed lenet5 checkpoint")
def test_a_demo_server_offers_t_sne_only_on_samples_it_maps_in_seconds(tmp_path, monkeypatch):
    monkeypatch.setenv("MNIST_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("MNIST_DEMO", "1")
    at = open_page("app_pages/explain.py")
    assert at.select_slider(key="explain_size").options[-1] == "5000"  # PCA: every sample
    at.radio(key="explain_method").set_value("tsne").run()
    assert not at.exception and not at.error, messages(at)
    slider = at.select_slider(key="explain_size")
    assert [int(o) for o in slider.options] == [n for n in explain.MAP_SIZES if n <= 1000]
    assert slider.value == 1000 and at.metric[0].value == "1,000"  # the 2,000 it showed brought inside
    assert any("t-SNE maps at most 1,000 images on this server" in c.value for c in at.caption)


def test_t_sne_on_a_server_that_is_not_a_demo_offers_every_sample(monkeypatch):
    monkeypatch.delenv("MNIST_DEMO", raising=False)
    assert explain.map_sizes("tsne") == list(explain.MAP_SIZES) == explain.map_sizes("pca")
    monkeypatch.setenv("MNIST_DEMO", "1")
    assert max(explain.map_sizes("tsne")) == explain.DEMO_TSNE_POINTS <= 2000
    assert explain.map_sizes("pca") == list(explain.MAP_SIZES)

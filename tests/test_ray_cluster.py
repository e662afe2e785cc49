"""Runs on a real two-node Ray cluster on this one machine, nothing shared with the "web host" but the
registry and the cluster.

Two `ray start` nodes (a head and a worker, one CPU each), each with its own temp dir, ports, runs
folder and checkpoint folder, the registry on the test PostgreSQL server; the submitting side (this
test, and `python -m mnist_core` processes standing in for the web host) has folders of its own too.
Runs go through `submit`, so through the Ray executor (MNIST_RAY_ADDRESS). The cluster and its
folders are removed whatever happens: every process the two `ray start --block` commands started (and
anything still running in the cluster's folders) is killed by pid, never by name, so another Ray on
this machine is left alone (benchmarks/ray_local.py).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from benchmarks.ray_local import LocalCluster
from mnist_core import executors, registry
from mnist_core.paths import REPO_ROOT

pytestmark = [pytest.mark.slow, pytest.mark.subprocess, pytest.mark.timeout(1200)]

TINY = ["--model", "mlp-128-64", "--train-size", "1000", "--val-size", "500", "--epochs", "1", "--batch-size", "100",
        "--threads", "1", "--device", "cpu"]
LONG = ["--model", "mlp-128-64", "--train-size", "50000", "--val-size", "500", "--epochs", "5", "--batch-size", "10",
        "--threads", "1", "--device", "cpu"]   # minutes of training: long enough to be cancelled or killed midway


@pytest.fixture(scope="module")
def cluster(mnist, postgres_server):
    """A head and a worker node, one CPU each, and the registry in a fresh database of the test
    PostgreSQL server; yields the web host's environment. Each node's own folders come from its
    environment (`ray start`'s), MNIST from the shared data folder."""
    def own_folders(name, folder):
        return {"MNIST_RUNS_DIR": str(folder / name / "runs"),
                "MNIST_CHECKPOINT_DIR": str(folder / name / "checkpoints")}

    registry_url = postgres_server.create_database()
    try:
        with LocalCluster(nodes=2, node_env={"MNIST_DATA_DIR": str(mnist.parent.parent)},
                          per_node_env=own_folders) as nodes:
            web = nodes.folder / "web"
            yield {
                "address": nodes.address,
                "env": {"MNIST_RAY_ADDRESS": nodes.address, "MNIST_REGISTRY_URL": registry_url,
                        "MNIST_RUNS_DIR": str(web / "runs"), "MNIST_CHECKPOINT_DIR": str(web / "checkpoints")},
            }
    finally:
        registry.close_connections()
        postgres_server.drop_database(registry_url)


@pytest.fixture
def web_host(cluster, monkeypatch):
    """This test process as the web host: the cluster's registry and address, folders of its own."""
    for key, value in cluster["env"].items():
        monkeypatch.setenv(key, value)
    return cluster


def _cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mnist_core", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=timeout, env=os.environ.copy())


def _submit(*flags: str) -> str:
    result = _cli("submit", *flags)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def _job(address: str, job_id: str) -> dict:
    with urllib.request.urlopen(f"{address}/api/jobs/{job_id}", timeout=30) as response:
        return json.loads(response.read())


def test_four_runs_submitted_to_the_cluster_all_complete_on_both_nodes(web_host, wait_for):
    submits = [subprocess.Popen([sys.executable, "-m", "mnist_core", "submit", *TINY], cwd=REPO_ROOT, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(4)]  # a class at once
    outputs = [proc.communicate(timeout=600) for proc in submits]
    assert [proc.returncode for proc in submits] == [0] * 4, [err for _, err in outputs]
    run_ids = [out.strip() for out, _ in outputs]
    wait_for(lambda: all(registry.get_run(r).status not in ("queued", "running") for r in run_ids), timeout=900,
             interval=1.0, what="the four runs to end")

    ended = [registry.get_run(r) for r in run_ids]
    assert [r.status for r in ended] == ["completed"] * 4, [(r.id, r.status, r.error) for r in ended]
    for run in ended:
        rows = registry.get_metrics(run.id, split="train")
        assert len(rows) == run.steps == run.total_steps == 10   # one row per step: 1000 images / 100
        assert [r["step"] for r in rows] == list(range(1, 11))
        assert run.job_id == f"mnist-{run.id}"
    def jobs_ended():  # the worker records the run, then its process exits: the job ends a moment later
        jobs = [_job(web_host["address"], run.job_id) for run in ended]
        return all(j["status"] not in ("PENDING", "RUNNING") for j in jobs) and jobs

    jobs = wait_for(jobs_ended, timeout=120, interval=0.5, what="the four jobs to end")
    assert {j["status"] for j in jobs} == {"SUCCEEDED"}
    assert len({j["driver_node_id"] for j in jobs}) == 2, "every run ran on the same node"
    assert len({r.node for r in ended}) == 2, [r.node for r in ended]   # the runs table says where, too

    listed = [json.loads(line) for line in _cli("runs", "--json").stdout.splitlines()]
    assert {r["id"]: (r["status"], r["job_id"]) for r in listed} == {r.id: ("completed", r.job_id) for r in ended}

    # The web host evaluates each checkpoint: its own runs and checkpoint folders never held them.
    web = Path(os.environ["MNIST_CHECKPOINT_DIR"])
    assert not web.exists() or not list(web.glob("*.safetensors"))
    for run in ended:
        result = _cli("evaluate", run.id)
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith(f"mlp-128-64: test accuracy {run.test_accuracy:.4f}")


def test_a_run_training_on_the_cluster_shows_live_metrics_and_can_be_cancelled(web_host, wait_for):
    run_id = _submit(*LONG)

    def live_rows():  # training now, and its curve already in the registry
        return registry.get_run(run_id).status == "running" and registry.get_metrics(run_id, split="train")

    rows = wait_for(live_rows, timeout=600, interval=0.5, what="the run's first metric rows while it trains")
    assert [r["step"] for r in rows] == list(range(1, len(rows) + 1))
    wait_for(lambda: len(registry.get_metrics(run_id, split="train")) > len(rows), timeout=120, interval=0.5,
             what="more rows as it goes on")
    executors.for_host().cancel(run_id)
    run = wait_for(lambda: (r := registry.get_run(run_id)).status not in ("queued", "running") and r, timeout=120,
                   interval=0.5, what="the run to end")
    assert run.status == "cancelled" and run.error is None
    job = wait_for(lambda: (j := _job(web_host["address"], run.job_id))["status"] not in ("PENDING", "RUNNING") and j,
                   timeout=120, interval=0.5, what="the job to end")
    assert job["status"] in ("SUCCEEDED", "FAILED", "STOPPED")   # the worker ends with exit status 1 (not completed)


def test_a_worker_killed_on_the_cluster_reads_as_failed(web_host, wait_for):
    run_id = _submit(*LONG)
    run = wait_for(lambda: (r := registry.get_run(run_id)).steps and r, timeout=600, interval=0.5,
                   what="the run to train")
    os.kill(run.pid, signal.SIGKILL)   # the worker itself (a process on this machine), not its Ray job
    run = wait_for(lambda: (r := registry.get_run(run_id)).status != "running" and r,
                   timeout=registry.liveness.HEARTBEAT_TIMEOUT + 60, interval=0.5, what="the run to read as failed")
    assert run.status == "failed" and ("died" in run.error or "heartbeat" in run.error), run.error


def test_a_job_that_cannot_start_its_worker_fails_its_run_with_rays_reason(web_host, wait_for, monkeypatch, capsys,
                                                                          tiny_config):
    from mnist_core.__main__ import main

    monkeypatch.setenv("MNIST_RAY_PYTHON", "no-such-python")   # the nodes have no such interpreter
    run_id = executors.for_host().submit(tiny_config())
    job_id = registry.get_run(run_id).job_id
    wait_for(lambda: _job(web_host["address"], job_id)["status"] == "FAILED", timeout=300, interval=0.5,
             what="the job to fail")
    assert registry.get_run(run_id).status == "queued"   # the worker never ran: nothing told the registry

    assert main(["runs", "--json"]) == 0   # listing the runs asks Ray about the queued runs' jobs
    listed = {r["id"]: r for r in map(json.loads, capsys.readouterr().out.splitlines())}
    assert listed[run_id]["status"] == "failed"
    assert listed[run_id]["error"].startswith(f"the Ray job {job_id} ended before the run started: ")

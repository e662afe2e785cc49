"""The Ray executor's job, without a cluster: what a run's job asks for and carries, and a cluster that
cannot be reached. tests/test_ray_cluster.py runs real jobs on a real two-node cluster."""

from __future__ import annotations

import socket
import time

import pytest

from mnist_core import executors, ray_executor, registry
from mnist_core.errors import RunError
from mnist_core.paths import REPO_ROOT

RUN_ID = "20260101-000000-abcdef"


def test_a_runs_job_asks_ray_for_its_threads_and_a_gpu_only_when_it_trains_on_cuda(tiny_config):
    assert ray_executor.job_resources(tiny_config(threads=3)) == {"entrypoint_num_cpus": 3, "entrypoint_num_gpus": 0}
    assert ray_executor.job_resources(tiny_config(threads=0)) == {"entrypoint_num_cpus": 1, "entrypoint_num_gpus": 0}
    cuda = dict(tiny_config(), device="cuda")  # admitted on the GPU host, not necessarily here
    assert ray_executor.job_resources(cuda) == {"entrypoint_num_cpus": 1, "entrypoint_num_gpus": 1}
    assert "CUDA_VISIBLE_DEVICES" not in ray_executor.job_env(RUN_ID, cuda, environ={})
    assert ray_executor.job_env(RUN_ID, tiny_config(device="auto"), environ={})["CUDA_VISIBLE_DEVICES"] == ""


def test_a_job_carries_the_registry_and_the_bounds_but_no_folder_of_this_host(tiny_config):
    here = {"MNIST_REGISTRY_URL": "postgresql://lab:secret@db:5432/lab", "MNIST_MAX_RUN_SECONDS": "600",
            "MNIST_DATA_DIR": "/srv/web/data", "MNIST_RUNS_DIR": "/srv/web/runs", "MNIST_CHECKPOINT_DIR": "/srv/ck",
            "MNIST_RAY_ADDRESS": "http://head:8265", "HOME": "/home/web"}
    env = ray_executor.job_env(RUN_ID, tiny_config(), environ=here)
    assert env["MNIST_REGISTRY_URL"] == "postgresql://lab:secret@db:5432/lab"
    assert env["MNIST_MAX_RUN_SECONDS"] == "600" and env["MNIST_FETCH_MISSING_DATA"] == "1"
    assert env["MNIST_RAY_JOB"] == f"mnist-{RUN_ID}" and env["MNIST_RAY_ADDRESS"] == "http://head:8265"
    assert not {"MNIST_DATA_DIR", "MNIST_RUNS_DIR", "MNIST_CHECKPOINT_DIR", "HOME"} & set(env)


def test_without_a_registry_url_a_job_is_pointed_at_this_hosts_sqlite_file(tiny_config, isolated_dirs):
    env = ray_executor.job_env(RUN_ID, tiny_config(), environ={})
    assert env["MNIST_REGISTRY_URL"] == f"sqlite:///{(isolated_dirs['runs'] / 'registry.sqlite').resolve()}"


def test_the_code_is_uploaded_without_the_venv_and_data_unless_every_node_has_it(tiny_config):
    uploaded = ray_executor.runtime_env(RUN_ID, tiny_config(), environ={})
    assert uploaded["working_dir"] == str(REPO_ROOT)
    assert {".venv", "data", "runs", ".git"} <= set(uploaded["excludes"])
    assert ray_executor.entrypoint(RUN_ID, environ={}) == f"python -m mnist_core train --quiet --run-id {RUN_ID}"

    image = {"MNIST_RAY_CODE_DIR": "/opt/mnist lab", "MNIST_RAY_PYTHON": "/opt/venv/bin/python"}
    assert "working_dir" not in ray_executor.runtime_env(RUN_ID, tiny_config(), environ=image)
    assert ray_executor.entrypoint(RUN_ID, environ=image) == \
        f"cd '/opt/mnist lab' && /opt/venv/bin/python -m mnist_core train --quiet --run-id {RUN_ID}"


def test_a_submit_to_a_cluster_that_cannot_be_reached_fails_the_run_in_one_line(tiny_config, monkeypatch):
    monkeypatch.setenv("MNIST_RAY_ADDRESS", "http://127.0.0.1:9")  # the discard port: nothing answers
    with pytest.raises(RunError) as excinfo:
        executors.for_host().submit(tiny_config())
    message = str(excinfo.value)
    assert message.startswith("the run could not be started: the Ray cluster at http://127.0.0.1:9 cannot be "
                              "reached") and "\n" not in message
    (run,) = registry.list_runs()
    assert run.status == "failed" and run.job_id == f"mnist-{run.id}" and run.error == message


def test_a_worker_outside_a_ray_job_names_no_ray_node(monkeypatch):
    monkeypatch.delenv("MNIST_RAY_JOB", raising=False)
    assert ray_executor.node_here() is None


def test_no_address_no_ray_executor(monkeypatch):
    monkeypatch.delenv("MNIST_RAY_ADDRESS", raising=False)
    with pytest.raises(RunError, match="set MNIST_RAY_ADDRESS"):
        ray_executor.RayExecutor()


def test_reconcile_fails_a_run_past_its_time_limit_whose_heartbeat_stopped_and_stops_its_job(tiny_config,
                                                                                            monkeypatch):
    """A stopped worker on this host (a one-machine cluster): its process lives, its heartbeat is old.
    Past the limit and the grace since it started, reconcile fails the run in the worker's words and
    stops its job; a run still within them is left alone."""
    monkeypatch.setenv("MNIST_MAX_RUN_SECONDS", "60")
    monkeypatch.setenv("MNIST_TIME_LIMIT_GRACE_SECONDS", "30")
    stopped = []

    class Cluster:  # as much of Ray's JobSubmissionClient as reconcile needs here
        def stop_job(self, job_id):
            stopped.append(job_id)
            return True

    executor = ray_executor.RayExecutor("http://head:8265", client=Cluster)
    overdue, within = registry.create_run(tiny_config()), registry.create_run(tiny_config())
    now = time.time()
    with registry.connect() as conn:
        for run_id, started in ((overdue, now - 100), (within, now - 80)):
            # pid 1 lives and started before the heartbeat: the registry itself never gives up on it
            conn.execute(registry.RUNS.update().where(registry.RUNS.c.id == run_id).values(
                status="running", started_at=started, heartbeat=started + 5, pid=1, host=socket.gethostname(),
                job_id=ray_executor.job_id_for(run_id)))

    assert executor.reconcile() == [overdue]
    failed = registry.get_run(overdue)
    assert failed.status == "failed" and failed.error == "time limit 1 min reached"
    assert stopped == [ray_executor.job_id_for(overdue)]
    assert registry.get_run(within).status == "running"

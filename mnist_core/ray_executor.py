"""The Ray executor: every run is a Ray Job on a cluster (MNIST_RAY_ADDRESS, e.g. http://head:8265).

The job's entrypoint is the worker command itself, `python -m mnist_core train --quiet --run-id ID`,
so a run on a cluster node runs the very code a local run does; Ray's scheduler, not our queue,
decides where and when. Nothing is held in the web process: the job's id is derived from the run id
(`mnist-RUN_ID`) and recorded in the registry (registry.set_job) before the job is submitted, so a
restarted web app, or any other process, finds every job again.

What a job asks Ray for comes from the run's config: CPUs = threads (or 1), one GPU when the device
asks for cuda (and none otherwise: CUDA_VISIBLE_DEVICES is emptied so "auto" never takes a GPU
another job reserved).

How the code reaches the nodes: by default the project folder is uploaded as the job's runtime_env
working_dir (Ray skips what .gitignore names, and EXCLUDES besides: the venv, MNIST, runs, user
checkpoints), and each node's Python runs it. With MNIST_RAY_CODE_DIR set, nothing is uploaded: every
node has the same image with the project at that path, and the job runs there. Either way the
node's Python (MNIST_RAY_PYTHON, default `python` on the node's PATH) must have the requirements.

What the worker learns from the job's environment: the registry (MNIST_REGISTRY_URL) and the
hosting bounds (every other MNIST_* variable of the submitting process), never a folder of this host
(MNIST_DATA_DIR, MNIST_RUNS_DIR, MNIST_CHECKPOINT_DIR, MNIST_KERNEL_DIR are the node's own, from the
environment `ray start` ran in). A node without MNIST fetches and MD5-verifies it on first use
(MNIST_FETCH_MISSING_DATA, read by `train --run-id`).

Cancel: the registry's flag first (executor_base.Executor.cancel: the worker stops at its next
heartbeat and records the run cancelled); `stop_job` is the backstop, at once for a job that has not
started its run, else after CANCEL_GRACE_SECONDS if the job has not ended by then.

The queue is Ray's: a run waits in line from its submit until its worker starts it, however many
slots MNIST_MAX_CONCURRENT gives a local host (places_in_line).

The time limit: the worker stops itself at MNIST_MAX_RUN_SECONDS. No process on the node watches it
from outside (a local runner does); reconcile (which the web server runs every few seconds, and the
CLI's `runs` and `submit --wait` call) fails a run still running past its limit plus the grace
(limits.time_limit_grace) whose heartbeat has stopped (a stopped or hung worker on this host; the
registry gives up on one elsewhere by its lease), with the worker's own words, then stops its job.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import socket
import sys
import threading
import time
import urllib.request
from typing import Optional, Sequence

from . import limits, outcomes, registry
from .errors import RunError, first_line
from .executor_base import Executor
from .paths import REPO_ROOT
from .records import LIVE, RunStatus
from .runfiles import check_run_id, registry_path

NOT_INSTALLED = "Ray is not installed: pip install 'mnist-lab[cluster]'"
JOB_PREFIX = "mnist-"
CANCEL_GRACE_SECONDS = 15.0   # a worker sees the flag within a heartbeat (1 s); this is for one that cannot
EXCLUDES = [".git", ".venv", "data", "runs", "build", "test-results", "tests/e2e", "*.log"]
HOST_FOLDERS = ("MNIST_DATA_DIR", "MNIST_RUNS_DIR", "MNIST_CHECKPOINT_DIR", "MNIST_KERNEL_DIR")


def job_id_for(run_id: str) -> str:
    """The Ray job (submission) id of a run: derived, so it is known before the job exists."""
    return JOB_PREFIX + check_run_id(run_id)


def job_resources(config: dict) -> dict:
    """entrypoint_num_cpus / entrypoint_num_gpus for a run's config."""
    wants_gpu = str(config.get("device", "")).startswith("cuda")
    return {"entrypoint_num_cpus": max(1, int(config.get("threads") or 1)),
            "entrypoint_num_gpus": 1 if wants_gpu else 0}


def job_env(run_id: str, config: dict, root=None, environ: Optional[dict] = None) -> dict:
    """The environment variables a run's job carries to its node (see the module docstring)."""
    environ = os.environ if environ is None else environ
    env = {k: v for k, v in environ.items()
           if k.startswith("MNIST_") and k not in HOST_FOLDERS and not k.startswith("MNIST_RAY_")}
    # The registry every host reaches. Without MNIST_REGISTRY_URL it is this host's SQLite file, which
    # only nodes on this same machine can open (a one-machine cluster).
    env["MNIST_REGISTRY_URL"] = environ.get("MNIST_REGISTRY_URL") or f"sqlite:///{registry_path(root).resolve()}"
    env["MNIST_RAY_ADDRESS"] = environ.get("MNIST_RAY_ADDRESS", "")   # the worker asks it which node it is on
    env["MNIST_RAY_JOB"] = job_id_for(run_id)
    env["MNIST_FETCH_MISSING_DATA"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    if not job_resources(config)["entrypoint_num_gpus"]:
        env["CUDA_VISIBLE_DEVICES"] = ""
    return env


def entrypoint(run_id: str, environ: Optional[dict] = None) -> str:
    """The worker command the job runs: the same as a local run's."""
    environ = os.environ if environ is None else environ
    python = environ.get("MNIST_RAY_PYTHON", "python")
    command = f"{shlex.quote(python)} -m mnist_core train --quiet --run-id {check_run_id(run_id)}"
    code_dir = environ.get("MNIST_RAY_CODE_DIR")
    return f"cd {shlex.quote(code_dir)} && {command}" if code_dir else command


def runtime_env(run_id: str, config: dict, root=None, environ: Optional[dict] = None) -> dict:
    environ = os.environ if environ is None else environ
    env: dict = {"env_vars": job_env(run_id, config, root, environ)}
    if not environ.get("MNIST_RAY_CODE_DIR"):
        env.update(working_dir=str(REPO_ROOT), excludes=list(EXCLUDES))
    return env


class RayExecutor(Executor):
    """Runs as Ray Jobs. Holds only the cluster's address (and how to reach it: Ray's JobSubmissionClient
    unless `client` gives another maker of one): every fact about a run is in the registry."""

    def __init__(self, address: Optional[str] = None, client=None):
        self.address = address or os.environ.get("MNIST_RAY_ADDRESS", "")
        self._make_client = client
        if not self.address:
            raise RunError("no Ray cluster is configured (set MNIST_RAY_ADDRESS, e.g. http://head:8265)")
        if importlib.util.find_spec("ray") is None:  # Ray is the `cluster` extra, not the base install
            raise RunError(f"MNIST_RAY_ADDRESS is set, but {NOT_INSTALLED}")

    def _client(self):
        if self._make_client is not None:
            return self._make_client()
        from ray.job_submission import JobSubmissionClient  # here: Ray is the cluster extra, not the base install

        try:
            return JobSubmissionClient(self.address)
        except Exception as exc:  # noqa: BLE001 - Ray raises ConnectionError, RuntimeError, ValueError...
            raise RunError(f"the Ray cluster at {self.address} cannot be reached ({first_line(exc)})") from None

    def start(self, run_id: str, config: dict, root=None) -> None:
        """Submit the run's job and record its id (first: the id is derived, so a crash between the two
        leaves a run that names the job it may have)."""
        job_id = job_id_for(run_id)
        registry.set_job(run_id, job_id, root=root)
        client = self._client()
        try:
            client.submit_job(entrypoint=entrypoint(run_id), submission_id=job_id,
                              runtime_env=runtime_env(run_id, config, root), metadata={"mnist_run_id": run_id},
                              **job_resources(config))
        except Exception as exc:  # noqa: BLE001 - an unreachable or refusing cluster is one line
            raise RunError(f"the Ray cluster at {self.address} refused the run ({first_line(exc)})") from None

    def stop(self, run_id: str, root=None) -> None:
        """The flag is set: stop the job now if its run has not started, else after a grace period
        unless it has ended by itself (a background thread; the flag alone is enough when this process
        exits first)."""
        run = registry.get_run(run_id, root=root)
        if not run.job_id:
            return
        if run.status != RunStatus.RUNNING:  # queued (or already ended by the registry): nothing to wait for
            self._stop_job(run.job_id)
            return
        threading.Thread(target=self._backstop, args=(run_id, run.job_id, root), daemon=True,
                         name=f"ray-cancel-{run_id}").start()

    def _backstop(self, run_id: str, job_id: str, root) -> None:
        deadline = time.monotonic() + CANCEL_GRACE_SECONDS
        while time.monotonic() < deadline:
            try:
                if registry.get_run(run_id, root=root).status not in LIVE:
                    return
            except RunError:
                pass
            time.sleep(0.5)
        self._stop_job(job_id)

    def warm(self, root=None) -> None:
        pass  # a cluster is ready by itself

    def places_in_line(self, all_runs: Sequence[registry.Run]) -> dict[str, int]:
        """Every run whose worker has not started it waits in Ray's queue: the cluster's scheduler, not
        MNIST_MAX_CONCURRENT, decides when it has room."""
        return registry.queue_positions(all_runs)

    def capacity(self) -> None:
        return None  # Ray's scheduler decides, from the cluster's free CPUs and GPUs

    def _fail_overdue(self, running: list, root) -> list[str]:
        """Fail the runs past their time limit and its grace (counted from when they started) whose
        heartbeat has stopped, in the worker's words; then stop their jobs."""
        limit, now = limits.max_run_seconds(), time.time()
        if not limit:
            return []
        overdue = [r for r in running if r.started_at and now - r.started_at > limit + limits.time_limit_grace()
                   and now - (r.heartbeat or r.started_at) > registry.liveness.HEARTBEAT_TIMEOUT]
        failed = []
        for run in overdue:
            # First the record, then the job: a worker that wakes finds its run given up and records nothing.
            why = f"{limits.time_limit_text(limit)} reached"
            if registry.finish_run(run.id, RunStatus.FAILED, root=root, error=why):
                failed.append(run.id)
            self._stop_job(run.job_id)
        return failed

    def _stop_job(self, job_id: str) -> None:
        try:
            self._client().stop_job(job_id)
        except Exception as exc:  # noqa: BLE001 - the backstop failing leaves the flag, which still works
            print(f"could not stop Ray job {job_id}: {first_line(exc)}", file=sys.stderr)

    def reconcile(self, root=None) -> list[str]:
        """Fail the queued runs whose job ended before its worker could start the run (the entrypoint
        could not run, the runtime env failed, the job was stopped), and the running ones past their
        time limit and its grace whose heartbeat stopped (their job is stopped); return their ids.
        Other running runs' workers keep their own lease: the registry judges those. Outcomes that
        workers on this host could not record are recorded first (outcomes.py)."""
        outcomes.reconcile(root)
        ended = []
        every = registry.list_runs(root=root)
        ended += self._fail_overdue([r for r in every if r.status == RunStatus.RUNNING and r.job_id], root)
        waiting = [r for r in every if r.status == RunStatus.QUEUED and r.job_id]
        if not waiting:
            return ended
        client = self._client()
        for run in waiting:
            try:
                info = client.get_job_info(run.job_id)
            except Exception:  # noqa: BLE001 - a job Ray no longer knows (its head restarted) stays as it was
                continue
            if info.status.is_terminal() and registry.get_run(run.id, root=root).status == RunStatus.QUEUED:
                reason = first_line(info.message) if info.message else str(info.status).lower()
                if registry.finish_run(run.id, RunStatus.FAILED, root=root,
                                       error=f"the Ray job {run.job_id} ended before the run started: {reason}"):
                    ended.append(run.id)
        return ended


def node_here(timeout: float = 5.0) -> Optional[str]:
    """Where this worker runs, as the runs table shows it: 'HOST/NODE' with the first 8 hex digits of
    the Ray node id (several Ray nodes may share a host), read from the Jobs REST API of the cluster
    that started this job (no `import ray` in the worker). None outside a Ray job, or when the
    cluster cannot say: the registry then records the host name."""
    address, job_id = os.environ.get("MNIST_RAY_ADDRESS"), os.environ.get("MNIST_RAY_JOB")
    if not address or not job_id:
        return None
    try:
        with urllib.request.urlopen(f"{address.rstrip('/')}/api/jobs/{job_id}", timeout=timeout) as response:
            node_id = json.loads(response.read(1 << 20)).get("driver_node_id")
    except (OSError, ValueError):
        return None
    return f"{socket.gethostname()}/{node_id[:8]}" if isinstance(node_id, str) and node_id else None

"""A throwaway Ray cluster on this one machine: a head and worker nodes, each its own `ray start`.

For tests/test_ray_cluster.py and benchmarks/classroom.py. Each node has its own temp dir, its own
ports (taken free all at once) and its own environment (so its own MNIST_RUNS_DIR and
MNIST_CHECKPOINT_DIR: nothing shared with the submitting side but the registry and Ray).

Stopping kills, by pid, every process the `ray start --block` commands started and any process
still naming or working in the cluster's folder (a job's worker whose parent died first); never
`ray stop`, which would stop every Ray of this user on the machine.

Ray gives a node 30 s to register (hard-coded in ray._private.node); on a machine whose two cores
are busy a start can miss that. So the nodes start one after another, each once the one before
answers (the head's Jobs API), without prestarted Python workers (RAY_enable_worker_prestart=0:
a job's entrypoint needs none), and a node that fails to come up is killed and started again.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

VENV_BIN = Path(sys.executable).parent
STARTUP_TIMEOUT = 240.0
ATTEMPTS = 6


def free_ports(count: int) -> list[int]:
    """`count` distinct free ports, taken at once (ports taken one call at a time may come back twice)."""
    socks = [socket.socket() for _ in range(count)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _node_ports(folder: Path, ports: list[int], cpus: int) -> list[str]:
    low = 20000 + (ports[0] % 80) * 150   # worker ports below the ephemeral range (32768 and up)
    return ["--num-cpus", str(cpus), "--node-ip-address", "127.0.0.1", "--temp-dir", str(folder),
            "--object-store-memory", str(80 * 2**20), "--disable-usage-stats",
            "--node-manager-port", str(ports[0]), "--object-manager-port", str(ports[1]),
            "--metrics-export-port", str(ports[2]), "--dashboard-agent-listen-port", str(ports[3]),
            "--dashboard-agent-grpc-port", str(ports[4]), "--runtime-env-agent-port", str(ports[5]),
            "--min-worker-port", str(low), "--max-worker-port", str(low + 100)]


def kill_processes(starters: list[subprocess.Popen], folder: Path) -> None:
    """SIGKILL what the starters started and whatever names or works in `folder`; wait for them."""
    import psutil

    doomed = []
    for proc in starters:
        try:
            parent = psutil.Process(proc.pid)
            doomed += [parent, *parent.children(recursive=True)]
        except psutil.NoSuchProcess:
            pass
    for p in psutil.process_iter(["cmdline", "cwd"]):
        try:
            if str(folder) in " ".join(p.info["cmdline"] or []) or (p.info["cwd"] or "").startswith(str(folder)):
                doomed.append(p)
        except (psutil.Error, TypeError):
            continue
    for p in doomed:
        try:
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(doomed, timeout=30)
    for proc in starters:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass


class LocalCluster:
    """`LocalCluster(nodes=2, env=...)` as a context manager: .address (the Jobs API URL), .folder, .timings
    (seconds each node took to come up), .stop()."""

    def __init__(self, nodes: int = 2, cpus_per_node: int = 1, node_env: Optional[dict] = None,
                 per_node_env=None):
        """`node_env`: the environment every node runs in (MNIST_* of this process are left out);
        `per_node_env(name, folder) -> dict`: what each node adds (its own folders, below the cluster's
        `folder`)."""
        self.folder = Path(tempfile.mkdtemp(prefix="mnist-ray-"))  # short: Ray's socket paths must fit 107 bytes
        self.nodes, self.cpus = nodes, cpus_per_node
        base = {k: v for k, v in os.environ.items() if not k.startswith("MNIST_")}
        base.update(PATH=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}", RAY_USAGE_STATS_ENABLED="0",
                    RAY_enable_worker_prestart="0")
        self.node_env = {**base, **(node_env or {})}
        self.per_node_env = per_node_env or (lambda name, folder: {})
        self.starters: list[subprocess.Popen] = []
        self.timings: dict[str, float] = {}
        self.address = ""

    def __enter__(self) -> "LocalCluster":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        ports = free_ports(3 + 6 * self.nodes)
        gcs, dashboard, client = ports[:3]
        self.address = f"http://127.0.0.1:{dashboard}"
        head = ["--head", "--port", str(gcs), "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dashboard),
                "--include-dashboard", "true", "--ray-client-server-port", str(client)]
        for i in range(self.nodes):
            name = "head" if i == 0 else f"node{i}"
            role = head if i == 0 else ["--address", f"127.0.0.1:{gcs}"]
            self._start_node(name, role, ports[3 + 6 * i: 9 + 6 * i])
            if i == 0:
                self._wait_for_jobs_api()

    def _wait_for_jobs_api(self) -> None:
        import urllib.request

        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            try:
                with urllib.request.urlopen(f"{self.address}/api/version", timeout=10):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("the head's Jobs API did not answer") from None
                time.sleep(1.0)

    def _start_node(self, name: str, role: list[str], ports: list[int]) -> None:
        env = {**self.node_env, **self.per_node_env(name, self.folder)}
        for attempt in range(1, ATTEMPTS + 1):
            folder = self.folder / f"{name}-{attempt}"
            log = self.folder / f"{name}-{attempt}.log"
            t0 = time.monotonic()
            with open(log, "wb") as out:
                proc = subprocess.Popen([str(VENV_BIN / "ray"), "start", "--block", *role,
                                         *_node_ports(folder, ports, self.cpus)],
                                        env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        start_new_session=True)
            while b"Ray runtime started" not in log.read_bytes():
                if proc.poll() is not None or time.monotonic() - t0 > STARTUP_TIMEOUT:
                    break
                time.sleep(0.5)
            else:
                self.starters.append(proc)
                self.timings[name] = round(time.monotonic() - t0, 1)
                return
            kill_processes([proc], folder)
            if attempt == ATTEMPTS:
                raise RuntimeError(f"ray start ({name}) did not come up in {ATTEMPTS} attempts:\n"
                                   f"{log.read_text(errors='replace')[-2000:]}")

    def stop(self) -> None:
        kill_processes(self.starters, self.folder)
        self.starters = []
        shutil.rmtree(self.folder, ignore_errors=True)

    def rss_mb(self) -> dict[str, float]:
        """Resident memory of each node's processes now (MB), by node name."""
        import psutil

        sizes = {}
        for proc in self.starters:
            try:
                parent = psutil.Process(proc.pid)
                family = [parent, *parent.children(recursive=True)]
                name = next(a.split("/")[-1].rsplit("-", 1)[0] for a in parent.cmdline()
                            if a.startswith(str(self.folder)))
                sizes[name] = round(sum(p.memory_info().rss for p in family if p.is_running()) / 2**20, 1)
            except (psutil.Error, StopIteration):
                continue
        return sizes

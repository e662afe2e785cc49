"""How long a 12-run sweep takes: the same `python -m mnist_core sweep --wait` through each executor.

The sweep is 4 learning rates x 3 seeds (`--param lr=0.001,0.003,0.01,0.03 --seeds 3`) of one config
(benchmarks.classroom's CONFIGS: `demo` is the Train form's run under the public-demo bounds, `small`
a seconds-long MLP run), timed from the command's start to its exit (every run ended), on:

    local1, local2   the local executor, MNIST_MAX_CONCURRENT = 1 and 2 (runners on this host, started
                     cold by the sweep's first submit: no server warmed one)
    ray              a throwaway Ray cluster of --nodes nodes with one CPU each (benchmarks/ray_local.py)

Reported per executor: the wall time, the runs' own time summed (marked running -> ended), and the
slowest run. The registry is a SQLite file in a temporary folder (the Ray nodes are on this machine).

    python -m benchmarks.sweep_time [--config demo|small] [--executors local1,local2,ray] [--nodes 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._common import REPO_ROOT, LoadMonitor, machine_info, print_table, result_line, write_result
from benchmarks.classroom import CONFIGS, _environment

PARAMS = ["--param", "lr=0.001,0.003,0.01,0.03", "--seeds", "3"]
RUNS = 12


def flags(config: dict) -> list[str]:
    return [arg for name, value in config.items() for arg in (f"--{name.replace('_', '-')}", str(value))]


def time_sweep(folder: Path, config: dict, extra_env: dict) -> dict:
    env = {**os.environ, **_environment(folder, RUNS), "MNIST_MAX_QUEUED_PER_OWNER": str(RUNS), **extra_env}
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "mnist_core", "sweep", *PARAMS, *flags(config), "--wait"],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=7200)
    wall = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"the sweep failed: {done.stderr.strip().splitlines()[-1:]}")
    os.environ.update({k: env[k] for k in ("MNIST_RUNS_DIR", "MNIST_REGISTRY_URL")})
    from mnist_core import registry

    ended = [r for r in registry.list_runs() if r.sweep]
    registry.close_connections()
    times = [r.finished_at - r.started_at for r in ended if r.started_at and r.finished_at]
    return {"wall_s": round(wall, 1), "runs": len(ended), "completed": sum(r.status == "completed" for r in ended),
            "run_time_sum_s": round(sum(times), 1), "slowest_run_s": round(max(times), 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", choices=sorted(CONFIGS), default="demo")
    ap.add_argument("--executors", default="local1,local2,ray")
    ap.add_argument("--nodes", type=int, default=2)
    args = ap.parse_args()
    from benchmarks.classroom import _config

    os.environ["MNIST_DEMO"] = "1"
    config = _config(args.config)
    results = {}
    with LoadMonitor() as load:
        for name in args.executors.split(","):
            folder = Path(tempfile.mkdtemp(prefix="sweep-time-"))
            try:
                if name.startswith("local"):
                    results[name] = time_sweep(folder, config, {"MNIST_MAX_CONCURRENT": name[len("local"):]})
                else:
                    from benchmarks.ray_local import LocalCluster
                    from mnist_core import data

                    with LocalCluster(nodes=args.nodes, node_env={"MNIST_DATA_DIR": str(data.raw_dir().parent.parent)},
                                      per_node_env=lambda node, f: {"MNIST_RUNS_DIR": str(f / "runs"),
                                                                   "MNIST_CHECKPOINT_DIR": str(f / "checkpoints")}
                                      ) as cluster:
                        results[name] = time_sweep(folder, config, {"MNIST_RAY_ADDRESS": cluster.address})
            finally:
                shutil.rmtree(folder, ignore_errors=True)
            print(name, results[name], flush=True)
    rows = [{"executor": name, **r} for name, r in results.items()]
    print_table(rows, title=f"A 12-run sweep (4 learning rates x 3 seeds), config {args.config}")
    write_result("sweep_time", {"machine": machine_info(), "load": load.summary(), "config": config,
                                "params": PARAMS, "executors": results}, variant=args.config)
    result_line(**{f"{name}_wall_s": r["wall_s"] for name, r in results.items()}, load=load.summary()["mean_1min"])


if __name__ == "__main__":
    main()

"""A class presses Start: S simulated students each submit one run within a few seconds.

Each student submits the same config (Executor.submit, as the Train page does, each with an owner of
their own) at a random moment within --window seconds; the benchmark waits for every run to end and
reads what happened from the registry (and, on Ray, from the Jobs API):

    makespan          first submit -> last run ended
    queue wait        submit -> the worker marked the run running (on Ray this includes the job's
                      scheduling, its runtime env and the worker's imports: all before mark_running)
    first step        submit -> the run's first training step (its first "train" metric row)
    run time          the worker's own time: marked running -> ended (Ray's job times are not
                      used: a job's start_time is its submission, its wait for a node included)
    busy per run      slots x (last run ended - first run started) / runs: what a slot spends per
                      run, everything between runs (a worker's start, a job's scheduling) included

for each executor asked for: the local executor with MNIST_MAX_CONCURRENT = 1 and 2 (runners on
this host), and a Ray cluster of --nodes nodes of one CPU each, started here (benchmarks/ray_local.py;
how long each node took to come up and its memory are recorded too). The projection assumes a
node runs one run at a time (threads = 1, one CPU) and the registry is not the bottleneck: makespan
for N nodes ~ the first run's submit -> first step + ceil(S / N) x the measured busy time per run
(slots x (last run ended - first run started) / runs: all that happens between runs included).

Configs: `demo` is the Train form's default run under the public-demo bounds (MNIST_DEMO=1:
LeNet-5, 3 epochs, 20,000 training images) on one thread; `small` is a seconds-long MLP run (1,000
images), for a machine where the full class would take too long.

    python -m benchmarks.classroom [--students 30] [--window 10] [--config demo|small]
                                   [--executors local1,local2,ray] [--nodes 2] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from benchmarks._common import LoadMonitor, machine_info, percentile, print_table, result_line, write_result

CONFIGS = {
    "demo": dict(train_size=20_000, threads=1, device="cpu"),   # on top of TrainConfig's defaults (the form's)
    "small": dict(model="mlp-128-64", train_size=1000, val_size=500, epochs=1, batch_size=100, threads=1,
                  device="cpu"),
}
PROJECTED_NODES = (1, 4, 16)


def _config(name: str) -> dict:
    from mnist_core.training import TrainConfig, admit

    return admit(TrainConfig.from_dict(CONFIGS[name])).to_dict()  # admitted under the demo bounds set below


def _environment(folder: Path, students: int) -> dict:
    return {"MNIST_RUNS_DIR": str(folder / "runs"), "MNIST_CHECKPOINT_DIR": str(folder / "checkpoints"),
            "MNIST_REGISTRY_URL": f"sqlite:///{folder / 'registry.sqlite'}", "MNIST_DEMO": "1",
            "MNIST_MAX_QUEUED": str(4 * students), "MNIST_MAX_QUEUED_PER_OWNER": "2",
            "MNIST_RUNNER_IDLE_SECONDS": "5", "MNIST_MAX_RUN_SECONDS": "0"}


def _class_submits(config: dict, students: int, window: float, seed: int) -> list[str]:
    """Each student submits once, at a random moment within `window` seconds; returns the run ids."""
    from mnist_core import executors

    moments = sorted(random.Random(seed).uniform(0, window) for _ in range(students))
    start, ids = time.monotonic(), []
    for i, moment in enumerate(moments):
        time.sleep(max(0.0, start + moment - time.monotonic()))
        ids.append(executors.for_host().submit(config, owner=f"student-{i:03d}"))
    return ids


def _wait_all(run_ids: list[str], timeout: float) -> None:
    from mnist_core import registry

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(r.status not in ("queued", "running") for r in registry.list_runs()):
            return
        time.sleep(1.0)
    print(f"warning: not every run ended within {timeout:.0f} s", file=sys.stderr)


def _wait_jobs(address: str, run_ids: list[str], timeout: float = 120) -> None:
    from mnist_core import registry

    jobs = [registry.get_run(r).job_id for r in run_ids]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = []
        for job_id in jobs:
            with urllib.request.urlopen(f"{address}/api/jobs/{job_id}", timeout=30) as response:
                states.append(json.loads(response.read())["status"])
        if all(s not in ("PENDING", "RUNNING") for s in states):
            return
        time.sleep(1.0)


def _measure(run_ids: list[str]) -> dict:
    from mnist_core import registry

    rows = []
    for run_id in run_ids:
        run = registry.get_run(run_id)
        steps = registry.get_metrics(run_id, split="train")
        first = min((r["time"] for r in steps), default=math.nan)
        slot = (run.finished_at or math.nan) - (run.started_at or math.nan)
        rows.append(dict(status=str(run.status), node=run.node or run.host, created=run.created_at,
                         started=run.started_at or math.nan, wait=(run.started_at or math.nan) - run.created_at,
                         first_step=first - run.created_at, slot=slot, finished=run.finished_at or math.nan))
    done = [r for r in rows if r["status"] == "completed"]
    waits, firsts, slots = ([r[k] for r in done] for k in ("wait", "first_step", "slot"))
    return {
        "runs": len(rows), "completed": len(done),
        "statuses": {s: sum(r["status"] == s for r in rows) for s in {r["status"] for r in rows}},
        "nodes": sorted({r["node"] for r in done if r["node"]}),
        "makespan_s": round(max(r["finished"] for r in rows) - min(r["created"] for r in rows), 1),
        "queue_wait_p50_s": round(percentile(waits, 50), 2), "queue_wait_p95_s": round(percentile(waits, 95), 2),
        "first_step_p50_s": round(percentile(firsts, 50), 2), "first_step_p95_s": round(percentile(firsts, 95), 2),
        "first_step_min_s": round(min(firsts, default=math.nan), 2),
        "run_mean_s": round(statistics.fmean(slots), 2) if slots else math.nan,
        # What a slot spends per run, everything between runs included: slots x (last end - first start) / runs.
        "busy_per_run_s": round((max(r["finished"] for r in done) - min(r["started"] for r in done)) / len(done), 2)
        if done else math.nan,
    }


def run_local(cap: int, config: dict, args) -> dict:
    from mnist_core import executors

    folder = Path(tempfile.mkdtemp(prefix="mnist-class-"))
    saved = dict(os.environ)
    try:
        os.environ.update(_environment(folder, args.students), MNIST_MAX_CONCURRENT=str(cap))
        os.environ.pop("MNIST_RAY_ADDRESS", None)
        ids = _class_submits(config, args.students, args.window, args.seed)
        _wait_all(ids, args.timeout)
        result = _measure(ids)
        deadline = time.monotonic() + 120  # the runners leave MNIST_RUNNER_IDLE_SECONDS after the queue empties
        while executors.runners_alive() and time.monotonic() < deadline:
            time.sleep(0.2)
        result["busy_per_run_s"] = round(result["busy_per_run_s"] * cap, 2)
        return {"executor": f"local, {cap} at once", "slots": cap, **result}
    finally:
        os.environ.clear()
        os.environ.update(saved)
        shutil.rmtree(folder, ignore_errors=True)


def run_ray(config: dict, args) -> dict:
    from benchmarks.ray_local import LocalCluster
    from mnist_core import data

    folder = Path(tempfile.mkdtemp(prefix="mnist-class-"))
    saved = dict(os.environ)

    def own_folders(name, cluster_folder):
        return {"MNIST_RUNS_DIR": str(cluster_folder / name / "runs"),
                "MNIST_CHECKPOINT_DIR": str(cluster_folder / name / "checkpoints")}

    try:
        t0 = time.monotonic()
        with LocalCluster(nodes=args.nodes, node_env={"MNIST_DATA_DIR": str(data.raw_dir().parent.parent)},
                          per_node_env=own_folders) as cluster:
            up_s = round(time.monotonic() - t0, 1)
            time.sleep(5)   # let the nodes settle before reading their memory
            idle_rss = cluster.rss_mb()
            os.environ.update(_environment(folder, args.students), MNIST_RAY_ADDRESS=cluster.address)
            ids = _class_submits(config, args.students, args.window, args.seed)
            _wait_all(ids, args.timeout)
            _wait_jobs(cluster.address, ids)   # a job ends a moment after its worker recorded the run
            result = _measure(ids)
        result["busy_per_run_s"] = round(result["busy_per_run_s"] * args.nodes, 2)
        return {"executor": f"Ray, {args.nodes} nodes x 1 CPU", "slots": args.nodes, **result,
                "cluster_up_s": up_s, "node_up_s": cluster.timings, "node_rss_idle_mb": idle_rss}
    finally:
        os.environ.clear()
        os.environ.update(saved)
        shutil.rmtree(folder, ignore_errors=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.classroom", description=__doc__.split("\n")[0])
    parser.add_argument("--students", type=int, default=30)
    parser.add_argument("--window", type=float, default=10.0, help="seconds over which the students submit")
    parser.add_argument("--config", choices=sorted(CONFIGS), default="demo")
    parser.add_argument("--executors", default="local1,local2,ray", help="comma-separated: local1, local2, ray")
    parser.add_argument("--nodes", type=int, default=2, help="Ray nodes (one CPU each)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the submit moments")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds to wait for one executor's runs")
    args = parser.parse_args(argv)

    os.environ["MNIST_DEMO"] = "1"
    config = _config(args.config)
    print(f"{args.students} students within {args.window:g} s, config {args.config}: {json.dumps(config)}")
    results = []
    with LoadMonitor() as load:
        for name in args.executors.split(","):
            if name.startswith("local"):
                results.append(run_local(int(name[5:] or 1), config, args))
            elif name == "ray":
                results.append(run_ray(config, args))
            else:
                parser.error(f"unknown executor {name!r}")
            print(json.dumps(results[-1]), flush=True)

    print_table(results, ["executor", "completed", "makespan_s", "queue_wait_p50_s", "queue_wait_p95_s",
                          "first_step_p50_s", "first_step_p95_s", "run_mean_s", "busy_per_run_s"], title="measured")
    projection = []
    on_ray = [r for r in results if r["executor"].startswith("Ray")]
    for r in on_ray or results:  # the first run's start-up, then the runs in waves of N at the measured cost per run
        row = {"executor": r["executor"], "first_step_min_s": r["first_step_min_s"],
               "busy_per_run_s": r["busy_per_run_s"]}
        for n in PROJECTED_NODES:
            row[f"{n} nodes (s)"] = round(r["first_step_min_s"] + math.ceil(args.students / n) * r["busy_per_run_s"])
        projection.append(row)
    print_table(projection, title=f"projected makespan for {args.students} students, one run per node at a time")
    write_result("classroom", {"machine": machine_info(), "load": load.summary(), "students": args.students,
                               "window_s": args.window, "config_name": args.config, "config": config,
                               "results": results, "projection": projection},
                 variant="" if (args.config, args.students) == ("demo", 30) else f"{args.config}-{args.students}")
    result_line(**{f"{r['executor'].split(',')[0].split()[0].lower()}{r['slots']}_makespan_s": r["makespan_s"]
                   for r in results})
    return 0


if __name__ == "__main__":
    sys.exit(main())

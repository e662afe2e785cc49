"""Submit to first step: how long a run waits between Start and its first training step.

Two ways to start a run on this host, the same config (the Train form's first run: LeNet-5, 20,000
images, batch 32, one thread), each run cancelled once its first step is recorded:

    warm   the local executor: Executor.submit hands the run to a runner that is already waiting
           (runner.py: a forkserver preloaded with torch, torch._dynamo, the training code and MNIST)
    cold   what the Train page did before: a new `python -m mnist_core train --run-id ID` process

Reported per side: submit -> running (the worker marked it) and submit -> first step (the first
training row's own timestamp, MetricRow.time), p50 and max over --runs runs, alternating sides; and
the memory the waiting runner holds on the web host (RSS of the runner and its forkserver).
Target: the warm first step within 1 s of submit.

    python -m benchmarks.first_step [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._common import REPO_ROOT, LoadMonitor, machine_info, percentile, print_table, result_line, write_result

TARGET_S = 1.0


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def descendants(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids = [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
        for kid in kids:
            found += [kid, *descendants(kid)]
    return found


def wait(predicate, timeout: float = 300, interval: float = 0.01):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise SystemExit(f"timed out after {timeout} s")


def first_step(run_id: str) -> tuple[float, float]:
    """(submit -> running, submit -> first step) in seconds, then cancels the run and waits for its end."""
    from mnist_core import registry

    rows = wait(lambda: registry.get_metrics(run_id, split="train"))
    run = registry.get_run(run_id)
    registry.request_cancel(run_id)
    wait(lambda: not registry.get_run(run_id).is_live)
    return run.started_at - run.created_at, rows[0]["time"] - run.created_at


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5, help="runs per side")
    args = ap.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="first-step-"))
    os.environ.update(MNIST_RUNS_DIR=str(workdir / "runs"), MNIST_CHECKPOINT_DIR=str(workdir / "checkpoints"),
                      MNIST_RUNNER_IDLE_SECONDS="120", MNIST_MAX_CONCURRENT="1")
    from mnist_core import executors, registry
    from mnist_core.form import FIRST_RUN
    from mnist_core.training import TrainConfig

    config = TrainConfig.from_dict(FIRST_RUN).to_dict()
    executors.ensure_runners()
    log = workdir / "runs" / "runners" / "runner.log"
    wait(lambda: log.is_file() and "ready" in log.read_text(), timeout=120)
    runner_pid = executors.runners_alive()[0]
    memory = {"runner_mb": rss_mb(runner_pid), "forkserver_mb": sum(rss_mb(c) for c in descendants(runner_pid))}

    times = {"warm": [], "cold": []}
    with LoadMonitor() as load:
        for i in range(args.runs):
            for side in (("warm", "cold") if i % 2 == 0 else ("cold", "warm")):
                if side == "warm":
                    run_id = executors.for_host().submit(config)
                    times[side].append(first_step(run_id))
                else:
                    run_id = registry.create_run(config, worker_pid=os.getpid())  # claimed: the runner leaves it alone
                    proc = subprocess.Popen([sys.executable, "-m", "mnist_core", "train", "--quiet",
                                             "--run-id", run_id],
                                            cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    times[side].append(first_step(run_id))
                    proc.wait(timeout=120)
    for pid in executors.runners_alive():
        os.kill(pid, signal.SIGTERM)

    rows, summary = [], {}
    for side, pairs in times.items():
        running, stepped = [p[0] for p in pairs], [p[1] for p in pairs]
        summary[side] = {"running_p50_s": percentile(running, 50), "first_step_p50_s": percentile(stepped, 50),
                         "first_step_max_s": max(stepped), "runs": len(pairs)}
        rows.append({"start": side, "to running p50 s": summary[side]["running_p50_s"],
                     "to first step p50 s": summary[side]["first_step_p50_s"],
                     "to first step max s": summary[side]["first_step_max_s"]})
    print_table(rows, title=f"Submit -> first step, Train form's first run, {args.runs} runs a side")
    print(f"the waiting runner holds {memory['runner_mb']:.0f} MB + its forkserver and resource tracker "
          f"{memory['forkserver_mb']:.0f} MB (RSS)")
    meets = summary["warm"]["first_step_p50_s"] <= TARGET_S
    write_result("first_step", {"machine": machine_info(), "load": load.summary(), "config": config,
                                "sides": summary, "memory": memory, "target_s": TARGET_S, "meets_target": meets})
    result_line(warm_p50_s=summary["warm"]["first_step_p50_s"], warm_max_s=summary["warm"]["first_step_max_s"],
                cold_p50_s=summary["cold"]["first_step_p50_s"], runner_mb=memory["runner_mb"],
                forkserver_mb=memory["forkserver_mb"], meets=int(meets), load=load.summary()["mean_1min"])


if __name__ == "__main__":
    main()

"""Threads on a busy host: the `fast` preset at each thread choice, on a quiet machine and with another
process holding one core.

Each run is a fresh `python -m mnist_core train --preset fast` (what a worker does), timed by its own
train() wall time (the checkpoint sidecar's train_seconds: no interpreter start). The choices:

    1                one thread
    2                one thread per core, OpenMP's default wait policy (its threads spin while they wait)
    2 passive        the same with OMP_WAIT_POLICY=PASSIVE (waiting threads sleep)
    0 (default)      threads = 0: one per core the other processes leave free (training/cpu.py)

"busy" starts one process that spins on a core for the whole run (a pure-Python loop, like a
neighbour's job), started before the training. The goals (issue 23): the default within 1.3x of one
thread when busy, and within 10% of the best choice when quiet.

    python -m benchmarks.busy_threads [--rounds 1] [--wait-quiet 60]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks._common import (REPO_ROOT, LoadMonitor, machine_info, print_table, result_line, wait_for_quiet,
                                write_result)

CHOICES = {"1": ("1", {}), "2": ("2", {}), "2 passive": ("2", {"OMP_WAIT_POLICY": "PASSIVE"}),
           "0 (default)": ("0", {})}


def timed_run(threads: str, env_extra: dict, folder: Path) -> float:
    """train()'s wall seconds for the fast preset at `threads`, in a fresh process."""
    checkpoint = folder / f"fast-{threads}.safetensors"
    env = {**os.environ, "MNIST_RUNS_DIR": str(folder / "runs"), "MNIST_CHECKPOINT_DIR": str(folder), **env_extra}
    subprocess.run([sys.executable, "-m", "mnist_core", "train", "--preset", "fast", "--threads", threads, "--quiet",
                    "--checkpoint", str(checkpoint)], cwd=REPO_ROOT, env=env, check=True, capture_output=True)
    meta = json.loads(checkpoint.with_suffix(".json").read_text())
    return float(meta["metrics"]["train_seconds"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1, help="runs of each choice in each condition")
    parser.add_argument("--wait-quiet", type=float, default=60.0, help="seconds to wait for a quiet machine first")
    args = parser.parse_args()

    rows, raw = [], {}
    with LoadMonitor() as load, tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for condition in ("quiet", "busy"):
            quiet = wait_for_quiet(args.wait_quiet) if condition == "quiet" else None
            spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if condition == "busy" else None
            try:
                for name, (threads, env_extra) in CHOICES.items():
                    times = [timed_run(threads, env_extra, folder) for _ in range(args.rounds)]
                    raw[f"{condition} {name}"] = times
                    print(f"{condition:5}  threads {name:12} {', '.join(f'{t:.2f}' for t in times)} s "
                          f"(load {os.getloadavg()[0]:.2f})", flush=True)
                    rows.append({"condition": condition, "threads": name, "median s": statistics.median(times),
                                 "load_1min": round(os.getloadavg()[0], 2), "quiet check": quiet})
            finally:
                if spinner is not None:
                    spinner.kill()
                    spinner.wait()
    one = {c: statistics.median(raw[f"{c} 1"]) for c in ("quiet", "busy")}
    best_quiet = min(statistics.median(raw[f"quiet {n}"]) for n in CHOICES)
    for row in rows:
        row["x one thread"] = round(row["median s"] / one[row["condition"]], 2)
        row["x best"] = round(row["median s"] / (best_quiet if row["condition"] == "quiet" else one["busy"]), 2)
    print_table(rows, ["condition", "threads", "median s", "x one thread", "x best", "load_1min"],
                title="fast preset, train() wall seconds")
    default_busy = statistics.median(raw["busy 0 (default)"]) / one["busy"]
    default_quiet = statistics.median(raw["quiet 0 (default)"]) / best_quiet
    write_result("busy_threads", {"machine": machine_info(), "load": load.summary(), "rounds": args.rounds,
                                  "rows": rows, "seconds": raw})
    result_line(default_busy_x_one_thread=default_busy, default_quiet_x_best=default_quiet,
                busy_goal_met=default_busy <= 1.3, quiet_goal_met=default_quiet <= 1.10)


if __name__ == "__main__":
    main()

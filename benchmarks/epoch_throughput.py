"""A whole epoch, ours against the tutorials': steps, validation, the test pass and everything else.

train_throughput.py times steps alone; a run is more than its steps. This times what a visitor waits
for, one LeNet-5 epoch at batch 64:

Ours      one whole `mnist_core.training.train()` call, as the worker makes it: 1 epoch over the 55,000
          training images, validation on the 5,000 held out, the best weights kept and put back, the
          test pass over 10,000 images, snapshots recorded (snapshots.Recorder into a temporary runs
          folder that holds no registry: its copy into the registry is tried and fails; the
          worker's registry writes are not made either), the trained model handed back. The figure
          is `TrainResult.seconds`, the very `train_seconds` a checkpoint records. Its phases are
          read from the metric rows' arrival times (no patching): setup (train() called -> first
          step starts), steps, validation (last step -> "val" row), test pass ("val" -> "test"
          row), finish ("test" row -> returned).
Theirs    the tutorials' pipeline (benchmarks/train_throughput.py's Baseline: torchvision MNIST, their
          per-sample transforms, DataLoader(batch_size=64, shuffle=True), the stock-layer model): one
          full epoch over the 60,000 training images, then their test pass: model.eval(),
          torch.no_grad(), DataLoader(test set, batch_size=1000) (pytorch/examples' test batch; a
          larger batch than the training one only helps them).

Both sides use the tutorial's optimizer (SGD lr 0.2, no schedule) and the same thread count, in ONE
process, alternating (ours, theirs), (theirs, ours), ... so that the load other processes put on the
machine hits both alike; the ratio is the median of their epoch + test pass over the median of ours.
A process's first train() would also pay one-time costs (torch._dynamo's import by the first
optimizer, the kernels' library, reading MNIST): as in the runner's warm template, which every worker
is forked from, `training.warm_up()` loads them first; its time is reported apart ("warm-up"). A
process that has not warmed up pays it inside its first train() (see BENCHMARKS.md).

    python -m benchmarks.epoch_throughput [--rounds 3] [--threads 0] [--wait-quiet S]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F

from benchmarks._common import LoadMonitor, machine_info, print_table, result_line, wait_for_quiet, write_result
from benchmarks.train_throughput import BATCH, RECIPES, Baseline, tutorial_transforms
from mnist_core import kernels
from mnist_core.data import raw_dir
from mnist_core.runfiles import new_run_id
from mnist_core.snapshots import FRAMES_PER_RUN, Recorder
from mnist_core.training import TrainConfig, train, warm_up

MODEL = "lenet5"
TEST_BATCH = 1000


def our_config(threads: int, seed: int) -> TrainConfig:
    recipe = RECIPES[MODEL]
    return TrainConfig(model=MODEL, optimizer=recipe["optimizer"], lr=recipe["lr"], batch_size=BATCH, epochs=1,
                       schedule="none", seed=seed, threads=threads, device="cpu")


def ours_epoch(threads: int, seed: int, runs_root: str) -> dict:
    """One whole train() call, timed by phase from its metric rows' arrival times."""
    at: dict[str, list[float]] = {"train": [], "val": [], "test": []}

    def on_event(row: dict) -> None:
        at[row["split"]].append(time.perf_counter())

    recorder = Recorder(new_run_id(), runs_root)
    cpu0, t0 = time.process_time(), time.perf_counter()
    result = train(our_config(threads, seed), on_event=on_event, on_snapshot=recorder.record,
                   snapshot_frames=FRAMES_PER_RUN)
    t_end, cpu = time.perf_counter(), time.process_time() - cpu0
    recorder.close()
    steps = at["train"]
    step_s = (steps[-1] - steps[0]) / (len(steps) - 1)  # the first row comes after the first step
    phases = {
        "setup": steps[0] - step_s - t0,
        "steps": steps[-1] - steps[0] + step_s,
        "validation": at["val"][-1] - steps[-1],
        "test_pass": at["test"][-1] - at["val"][-1],
        "finish": t_end - at["test"][-1],
    }
    return {"seconds": result.seconds, "cpu_s": cpu, "phases": phases, "steps": result.steps,
            "test_accuracy": result.test_accuracy, "best_val_accuracy": result.best_val_accuracy}


def prime_snapshots(runs_root: str) -> None:
    """One snapshot written ahead: its first copy into the registry imports and opens the registry
    code (about 0.5 CPU s), which a worker has open before its run starts; untimed."""
    from mnist_core.models import create_model

    recorder = Recorder(new_run_id(), runs_root)
    recorder.record(create_model(MODEL), 0, 0.0)
    recorder.write()


class Tutorial(Baseline):
    """The tutorials' pipeline for one epoch and a test pass."""

    def __init__(self, threads: int):
        import torchvision

        super().__init__(MODEL, threads)
        root = raw_dir().parent.parent
        test = torchvision.datasets.MNIST(root=str(root), train=False, download=False,
                                          transform=tutorial_transforms(MODEL))
        self.test_loader = torch.utils.data.DataLoader(test, batch_size=TEST_BATCH)

    def epoch(self) -> dict:
        torch.set_num_threads(self.threads)
        cpu0, t0 = time.process_time(), time.perf_counter()
        self.model.train()
        for x, y in self.loader:
            loss = F.cross_entropy(self.model(x), y)
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            self.last_loss = loss.item()
        t_epoch = time.perf_counter()
        self.model.eval()
        correct = 0
        with torch.no_grad():
            for x, y in self.test_loader:
                correct += (self.model(x).argmax(1) == y).sum().item()
        t_end = time.perf_counter()
        return {"seconds": t_end - t0, "cpu_s": time.process_time() - cpu0,
                "phases": {"steps": t_epoch - t0, "test_pass": t_end - t_epoch},
                "test_accuracy": correct / len(self.test_loader.dataset)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3, help="rounds of one epoch each side")
    ap.add_argument("--threads", type=int, default=0, help="torch threads for both sides (0 = one per core, "
                    "train()'s default)")
    ap.add_argument("--wait-quiet", type=float, default=0.0, metavar="S",
                    help="before each round, wait up to S seconds for other processes to leave the cores idle")
    args = ap.parse_args()
    threads = args.threads or os.cpu_count() or 1

    runs_root = tempfile.mkdtemp(prefix="epoch_throughput-")
    ours_runs, their_runs, quiet = [], [], []
    with LoadMonitor() as load:
        t = time.perf_counter()
        cpu0 = time.process_time()
        warm_up()  # what the runner's template does once for all its workers (reading MNIST included)
        warm = {"seconds": time.perf_counter() - t, "cpu_s": time.process_time() - cpu0}
        print(f"  warm-up (once per process): {warm['seconds']:.2f} s, load {os.getloadavg()[0]:.2f}", flush=True)
        prime_snapshots(runs_root)
        tutorial = Tutorial(threads)
        for k in range(args.rounds):
            quiet.append(wait_for_quiet(args.wait_quiet))
            for side in (("ours", "theirs") if k % 2 == 0 else ("theirs", "ours")):
                if side == "ours":
                    ours_runs.append(ours_epoch(args.threads, seed=k, runs_root=runs_root))
                else:
                    their_runs.append(tutorial.epoch())
            o, b = ours_runs[-1], their_runs[-1]
            print(f"  round {k + 1}/{args.rounds}: ours {o['seconds']:.2f} s ("
                  + ", ".join(f"{p} {v:.2f}" for p, v in o["phases"].items())
                  + f"), theirs {b['seconds']:.2f} s (epoch {b['phases']['steps']:.2f}, test "
                  f"{b['phases']['test_pass']:.2f}), ratio {b['seconds'] / o['seconds']:.2f}, "
                  f"load {os.getloadavg()[0]:.2f}", flush=True)
        wall = time.perf_counter() - t

    med = statistics.median
    ours_s, theirs_s = med(r["seconds"] for r in ours_runs), med(r["seconds"] for r in their_runs)
    ours_phases = {p: med(r["phases"][p] for r in ours_runs) for p in ours_runs[0]["phases"]}
    their_phases = {p: med(r["phases"][p] for r in their_runs) for p in their_runs[0]["phases"]}
    ratios = [b["seconds"] / o["seconds"] for o, b in zip(ours_runs, their_runs)]
    # CPU time is less sensitive than wall time to how busy the machine was while each side ran
    ratio_cpu = med(r["cpu_s"] for r in their_runs) / med(r["cpu_s"] for r in ours_runs)
    rows = [{"side": "ours (train())", "whole s": ours_s, **{p: round(v, 3) for p, v in ours_phases.items()},
             "CPU s": med(r["cpu_s"] for r in ours_runs)},
            {"side": "tutorials", "whole s": theirs_s, "steps": round(their_phases["steps"], 3),
             "test_pass": round(their_phases["test_pass"], 3), "CPU s": med(r["cpu_s"] for r in their_runs)}]
    print_table(rows, title=f"One LeNet-5 epoch at batch {BATCH}, {threads} thread(s), median of {args.rounds} "
                            f"rounds; ratio {theirs_s / ours_s:.2f} (per round: "
                            + ", ".join(f"{r:.2f}" for r in ratios) + f"); in CPU time {ratio_cpu:.2f}")
    payload = {"machine": machine_info(), "load": load.summary(), "threads": threads, "rounds": args.rounds,
               "wall_s": round(wall, 1), "kernels": kernels.status(), "goal": "ratio >= 4",
               "ours_seconds": ours_s, "theirs_seconds": theirs_s, "ratio": theirs_s / ours_s,
               "ratios_per_round": ratios, "ratio_cpu": ratio_cpu, "ours_phases": ours_phases,
               "their_phases": their_phases,
               "warm_up": warm, "ours_runs": ours_runs, "their_runs": their_runs, "wait_for_quiet": quiet}
    write_result("epoch_throughput", payload, variant=f"threads{args.threads}" if args.threads else "")
    result_line(ours_s=round(ours_s, 3), theirs_s=round(theirs_s, 3), ratio=round(theirs_s / ours_s, 2),
                ratio_cpu=round(ratio_cpu, 2),
                warm_up_s=round(warm["seconds"], 3), threads=threads, load=load.summary()["mean_1min"])


if __name__ == "__main__":
    main()

"""Time to accuracy: the `fast` preset to >= 99.0% test accuracy on CPU, over 5 seeds.

The figure is train()'s own wall time (model built, the training loop, validation, the final test
evaluation) with the data already in memory: no interpreter start, no file reading. Every seed must
reach the target; the headline is the median time. The default TrainConfig() (LeNet-5 defaults) is
timed the same way for comparison (one seed unless --default-seeds says more).

CPU time (user + system of this process) is recorded beside the wall time: on a shared machine the
wall time includes waiting for a core, the CPU time mostly does not.

    python -m benchmarks.time_to_accuracy [--seeds 0,1,2,3,4] [--default-seeds 0] [--skip-default]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from benchmarks._common import (LoadMonitor, OthersShare, machine_info, print_table, result_line, wait_for_quiet,
                                write_result)
from mnist_core.data import load_mnist
from mnist_core.training import PRESETS, TrainConfig, preset_config, train

TARGET = 0.99
BUDGET_S = 10.0


DISTURBED = 0.15  # other processes used more than this share of the machine during a run


def timed_train(config: TrainConfig, wait_quiet: float = 0.0, retries: int = 0) -> dict:
    """One timed run; with retries, runs that others disturbed are repeated (all attempts are kept)."""
    attempts = []
    for attempt in range(retries + 1):
        attempts.append(_timed_train_once(config, wait_quiet))
        if not attempts[-1]["others_share"] > DISTURBED:  # (nan: unknown, taken as undisturbed)
            break
        print(f"    (seed {config.seed}: other processes used {attempts[-1]['others_share']:.0%} of the machine "
              f"meanwhile{'; again' if attempt < retries else ''})", flush=True)
    best = min(attempts, key=lambda r: (r["others_share"] > DISTURBED, r["seconds"]))
    return {**best, "attempts": [{k: a[k] for k in ("seconds", "cpu_seconds", "others_share", "load_1min")}
                                 for a in attempts]}


def _timed_train_once(config: TrainConfig, wait_quiet: float) -> dict:
    quiet = wait_for_quiet(wait_quiet)
    load_before = os.getloadavg()[0]
    cpu = time.process_time()
    with OthersShare() as others:
        result = train(config)
    cpu = time.process_time() - cpu
    val = [e["accuracy"] for e in result.history if e["split"] == "val"]
    return {"seed": config.seed, "seconds": result.seconds, "cpu_seconds": cpu, "test_accuracy": result.test_accuracy,
            "best_val_accuracy": result.best_val_accuracy, "val_accuracies": val, "steps": result.steps,
            "threads": torch.get_num_threads(), "load_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
            "wait_for_quiet": quiet, "others_share": others.fraction}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--default-seeds", default="0", help="seeds for the default TrainConfig() run")
    ap.add_argument("--skip-default", action="store_true", help="do not time the default TrainConfig()")
    ap.add_argument("--threads", type=int, default=0, help="override the config's threads (0 = keep: one per core)")
    ap.add_argument("--wait-quiet", type=float, default=0.0, metavar="S",
                    help="before each run, wait up to S seconds for the other processes to leave the cores idle")
    ap.add_argument("--retries", type=int, default=0, metavar="K",
                    help=f"repeat a run up to K times when other processes used more than {DISTURBED:.0%} of the "
                         "machine during it (every attempt is kept in the JSON)")
    args = ap.parse_args()
    extra = {"threads": args.threads} if args.threads else {}
    seeds = [int(s) for s in args.seeds.split(",") if s != ""]

    load_mnist("train")
    load_mnist("test")  # the data load is not part of the figure
    # A one-time process cost, like `import torch`: the first torch.optim optimizer built in a process
    # imports torch._dynamo (about 1.4 s here). A fresh worker pays it once; it is timed apart.
    t = time.perf_counter()
    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    first_optimizer_s = time.perf_counter() - t
    print(f"first optimizer in this process (imports torch._dynamo): {first_optimizer_s:.2f} s, not counted")
    runs, default_runs = [], []
    with LoadMonitor() as load:
        for seed in seeds:
            r = timed_train(preset_config(args.preset, seed=seed, **extra), args.wait_quiet, args.retries)
            runs.append(r)
            print(f"  {args.preset} seed {seed}: {r['test_accuracy']:.2%} in {r['seconds']:.2f} s "
                  f"(CPU {r['cpu_seconds']:.1f} s, load {r['load_1min'][0]} -> {r['load_1min'][1]}"
                  f", others {r['others_share']:.0%})", flush=True)
        if not args.skip_default:
            for seed in [int(s) for s in args.default_seeds.split(",") if s != ""]:
                r = timed_train(TrainConfig(seed=seed, **extra), args.wait_quiet, args.retries)
                default_runs.append(r)
                print(f"  TrainConfig() seed {seed}: {r['test_accuracy']:.2%} in {r['seconds']:.2f} s "
                      f"(CPU {r['cpu_seconds']:.1f} s, load {r['load_1min'][0]} -> {r['load_1min'][1]}"
                  f", others {r['others_share']:.0%})", flush=True)

    rows = [{"config": args.preset, "seed": r["seed"], "test acc %": round(100 * r["test_accuracy"], 2),
             "wall s": round(r["seconds"], 2), "CPU s": round(r["cpu_seconds"], 1), "steps": r["steps"],
             "load": r["load_1min"][1], "others %": round(100 * r["others_share"])} for r in runs]
    rows += [{"config": "TrainConfig()", "seed": r["seed"], "test acc %": round(100 * r["test_accuracy"], 2),
              "wall s": round(r["seconds"], 2), "CPU s": round(r["cpu_seconds"], 1), "steps": r["steps"],
              "load": r["load_1min"][1], "others %": round(100 * r["others_share"])} for r in default_runs]
    print_table(rows, title=f"Time to accuracy ({torch.get_num_threads()} threads; target {TARGET:.1%}, "
                            f"budget {BUDGET_S:g} s median)")

    median_s = statistics.median(r["seconds"] for r in runs)
    median_cpu = statistics.median(r["cpu_seconds"] for r in runs)
    accs = [r["test_accuracy"] for r in runs]
    all_reach = all(a >= TARGET for a in accs)
    summary = {
        "preset": args.preset, "config": preset_config(args.preset, **extra).to_dict(),
        "preset_description": PRESETS[args.preset].description,
        "target_accuracy": TARGET, "budget_s": BUDGET_S,
        "median_seconds": median_s, "median_cpu_seconds": median_cpu,
        "min_accuracy": min(accs), "median_accuracy": statistics.median(accs),
        "all_seeds_reach_target": all_reach, "within_budget": median_s <= BUDGET_S,
        "disturbed_threshold": DISTURBED,
        "first_optimizer_import_seconds": first_optimizer_s,
        "disturbed_runs": sum(1 for r in runs if r["others_share"] > DISTURBED),
        "runs": runs,
        "default_config": TrainConfig(**extra).to_dict(), "default_runs": default_runs,
    }
    print(f"{args.preset}: median {median_s:.2f} s (CPU {median_cpu:.1f} s), accuracy min {min(accs):.2%} "
          f"median {statistics.median(accs):.2%}; every seed >= {TARGET:.1%}: {all_reach}")
    variant = "-".join(([args.preset] if args.preset != "fast" else [])
                       + ([f"threads{args.threads}"] if args.threads else []))
    write_result("time_to_accuracy", {"machine": machine_info(), "load": load.summary(), **summary}, variant=variant)
    line = dict(median_s=round(median_s, 2), median_cpu_s=round(median_cpu, 1), min_acc=round(min(accs), 4),
                all_reach=int(all_reach), within_budget=int(median_s <= BUDGET_S),
                disturbed=sum(1 for r in runs if r["others_share"] > DISTURBED))
    if default_runs:
        line["default_s"] = round(statistics.median(r["seconds"] for r in default_runs), 1)
        line["default_acc"] = round(statistics.median(r["test_accuracy"] for r in default_runs), 4)
    line["load"] = load.summary()["mean_1min"]
    result_line(**line)


if __name__ == "__main__":
    main()

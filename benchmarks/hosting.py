"""Hosting speed: eight visitors browsing and predicting while a training runs, and a refused bomb.

The functional side (every visitor is answered correctly, a decompression bomb is refused without
being decoded) is tested in tests/test_hosting.py; how fast it happens depends on the machine, so it
is measured here:

Visitors  8 threads, each `--rounds` times: list the runs and read every run's validation metrics (the
          registry), pick the Dataset page's first 100 images of a label (the dataset), predict one
          280x280 drawing with LeNet-5 (canvas_to_mnist + predict_proba) -- the core paths the pages
          take -- while a LeNet-5 worker trains on 8,000 images in its own process. Target: p95 of a
          round < 2 s.
Bomb      a 30,000 x 30,000 PNG (~900 MB of pixels, under 2 MB of file) handed to load_image: the
          time until it is refused. Target: < 1 s (decoding it would take far longer and all the memory).

The registry and checkpoints go to a temporary folder; the worker is killed at the end whatever happens.
Exits 1 when a figure misses its target.

    python -m benchmarks.hosting [--rounds 15] [--visitors 8] [--no-training]
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

from benchmarks._common import LoadMonitor, machine_info, percentile, print_table, result_line, write_result

P95_TARGET_S, BOMB_TARGET_S = 2.0, 1.0


def bomb_seconds() -> float:
    """Seconds load_image takes to refuse a decompression bomb (it must refuse it)."""
    from PIL import Image

    from mnist_core.errors import ImageError
    from mnist_core.preprocess import load_image

    buf = io.BytesIO()
    Image.new("L", (30_000, 30_000)).save(buf, format="PNG")
    bomb = buf.getvalue()
    started = time.perf_counter()
    try:
        load_image(bomb)
    except ImageError:
        return time.perf_counter() - started
    raise SystemExit("the bomb was decoded instead of refused")


def start_training(repo_root) -> tuple[str, subprocess.Popen]:
    """A LeNet-5 run on 8,000 images, 4 epochs, in its own worker process (as the app starts it)."""
    from mnist_core import registry
    from mnist_core.training import TrainConfig

    config = TrainConfig.from_dict(dict(model="lenet5", train_size=8000, val_size=500, epochs=4, batch_size=100,
                                        threads=1, device="cpu")).to_dict()
    run_id = registry.create_run(config)
    proc = subprocess.Popen([sys.executable, "-m", "mnist_core", "train", "--run-id", run_id, "--quiet"],
                            cwd=repo_root, env=os.environ.copy(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    return run_id, proc


def visitor_latencies(visitors: int, rounds: int) -> list[float]:
    """Seconds per round, every visitor's rounds together. A wrong answer stops the benchmark."""
    from mnist_core import registry
    from mnist_core.checkpoints import default_checkpoint, load_checkpoint
    from mnist_core.data import load_mnist
    from mnist_core.inspection import browse_order
    from mnist_core.predict import predict_proba
    from mnist_core.preprocess import canvas_to_mnist

    model, _ = load_checkpoint(default_checkpoint("lenet5"))
    images, labels = load_mnist("test")
    latencies: list[float] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def visitor(seed: int) -> None:
        rng = np.random.default_rng(seed)
        try:
            for _ in range(rounds):
                t = time.perf_counter()
                for r in registry.list_runs():
                    registry.get_metrics(r.id, split="val")
                order = browse_order(labels.numpy(), int(rng.integers(10)), seed)
                grid = images[order[:100]]
                canvas = np.zeros((280, 280, 4), np.uint8)
                canvas[..., 3] = 255
                canvas[rng.integers(20, 60):rng.integers(200, 260), 130:150, :3] = 255
                probs = predict_proba(model, canvas_to_mnist(canvas))
                elapsed = time.perf_counter() - t
                if grid.shape != (100, 28, 28) or int(probs.argmax()) != 1:
                    raise AssertionError(f"visitor {seed}: a wrong answer ({int(probs.argmax())} for a drawn 1)")
                with lock:
                    latencies.append(elapsed)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=visitor, args=(i,)) for i in range(visitors)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise SystemExit(f"a visitor failed: {errors[0]}")
    return latencies


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--visitors", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=15, help="rounds per visitor")
    ap.add_argument("--no-training", action="store_true", help="measure the visitors without a training running")
    args = ap.parse_args()

    from mnist_core.paths import REPO_ROOT

    with tempfile.TemporaryDirectory(prefix="mnist-hosting-") as tmp:
        os.environ["MNIST_RUNS_DIR"] = os.path.join(tmp, "runs")
        os.environ["MNIST_CHECKPOINT_DIR"] = os.path.join(tmp, "checkpoints")
        proc = None
        try:
            with LoadMonitor() as load:
                if not args.no_training:
                    _, proc = start_training(REPO_ROOT)
                latencies = visitor_latencies(args.visitors, args.rounds)
                bomb = bomb_seconds()
        finally:
            if proc is not None:
                proc.kill()
                proc.wait(timeout=30)

    p50, p95 = percentile(latencies, 50), percentile(latencies, 95)
    rows = [{"figure": f"{args.visitors} visitors, p50 of a round (s)", "value": p50, "target": ""},
            {"figure": f"{args.visitors} visitors, p95 of a round (s)", "value": p95, "target": f"< {P95_TARGET_S:g}"},
            {"figure": "bomb refused after (s)", "value": bomb, "target": f"< {BOMB_TARGET_S:g}"}]
    print_table(rows, title=f"hosting ({'no training' if args.no_training else 'a LeNet-5 worker training'})")
    ok = p95 < P95_TARGET_S and bomb < BOMB_TARGET_S
    default = args.visitors == 8 and args.rounds == 15 and not args.no_training
    write_result("hosting", {"machine": machine_info(), "load": load.summary(), "visitors": args.visitors,
                             "rounds": args.rounds, "training": not args.no_training, "p50_s": p50, "p95_s": p95,
                             "bomb_refused_s": bomb, "targets_met": ok},
                 variant="" if default else "custom")
    result_line(p50_s=p50, p95_s=p95, bomb_refused_s=bomb, targets_met=ok)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

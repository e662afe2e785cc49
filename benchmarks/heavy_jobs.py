"""Heavy page work as the pages run it (mnist_core.heavy): what a job costs beyond its own work, and
the embedding map's t-SNE on one thread for the sample sizes a page offers.

Measures, in this process as a web server would: the first job (which starts the forkserver template
and imports torch, scikit-learn and captum there), then a trivial job from asking to the child gone
(the median of --repeats), the template's memory (psutil: resident and private), and for each model
the network pass over the sample and t-SNE on it, each a job of its own. The 1-minute load average is
printed beside each figure: the machine may be shared.

    python -m benchmarks.heavy_jobs [--models lenet5 cnn-small] [--sizes 1000 2000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time

import psutil

from mnist_core import data, explain, heavy
from mnist_core.checkpoints import default_checkpoint, load_checkpoint


def _load() -> str:
    return f"load {os.getloadavg()[0]:.1f}"


def _timed(fn, *args, **kwargs) -> tuple[float, object]:
    start = time.perf_counter()
    result = heavy.run("benchmark", fn, *args, **kwargs)
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["lenet5", "cnn-small"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[1000, 2000])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    first, _ = _timed(math.factorial, 5)
    print(f"first job (starts the template): {first:.2f} s, {_load()}", flush=True)
    overhead = statistics.median(_timed(math.factorial, 5)[0] for _ in range(args.repeats))
    print(f"a trivial job, asked to child gone: median {overhead:.2f} s of {args.repeats}, {_load()}", flush=True)
    for child in psutil.Process().children():
        if "forkserver" in " ".join(child.cmdline()):
            memory = child.memory_full_info()
            print(f"template: {memory.rss / 1e6:.0f} MB resident, {memory.uss / 1e6:.0f} MB private", flush=True)

    images, labels = (t.numpy() for t in data.load_mnist("test"))
    for name in args.models:
        model, _ = load_checkpoint(default_checkpoint(name))
        for size in args.sizes:
            idx = explain.sample_indices(len(images), size, 0)
            network, features = _timed(explain.penultimate, model, images[idx])
            tsne, _ = _timed(explain.embedding_map, None, None, labels, "tsne", size, 0, features=features)
            print(f"{name}, {size} images: network {network:.1f} s, t-SNE {tsne:.1f} s (one thread), {_load()}",
                  flush=True)


if __name__ == "__main__":
    main()

"""Drawn digits: every committed checkpoint's accuracy on digits redrawn as a visitor would draw them.

Two held-out sets, drawn with benchmarks.redraw (each picture's skeleton traced into strokes,
redrawn with the Draw canvas's round brush at a random size, place, slant and rotation, along a mouse's
or a finger's jittery path, then mnist_core.preprocess.canvas_to_mnist, the Draw page's own path):

  mnist-drawn   the 10,000 MNIST test digits, one drawing each (no training ever sees them)
  optdigits     scikit-learn's load_digits: 1,797 digits by 43 other writers (UCI optdigits, 8x8),
                each drawn by 3 visitors: another writer population, the harder test

Beside them, each checkpoint's accuracy on the MNIST test pictures as they are, and the drawn sets'
accuracy by pointer (mouse, finger). `--extra PATH` measures other checkpoints too (a candidate, the
previous default). The drawings are seeded (--seed): the same code gives the same drawings, and they
are kept in build/drawn-digits/ under a key of the renderer's and preprocessing's source, so a second
run only evaluates.

    python -m benchmarks.drawn_digits [--extra PATH ...] [--seed 0] [--mnist 10000] [--optdigits-repeats 3]
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits

from benchmarks import redraw
from benchmarks._common import LoadMonitor, REPO_ROOT, machine_info, print_table, result_line, write_result
from mnist_core import preprocess
from mnist_core.checkpoints import DRAW_DEFAULT, default_checkpoint, load_checkpoint
from mnist_core.data import load_mnist
from mnist_core.models import list_models
from mnist_core.paths import atomic_write
from mnist_core.predict import predict_proba

CACHE_DIR = REPO_ROOT / "build" / "drawn-digits"
TARGETS = {"mnist-drawn": 0.993, "optdigits": 0.96}  # issue 26: what the Draw page's default model must reach


def drawn_sets(seed: int, n_mnist: int, optdigits_repeats: int) -> dict[str, dict[str, np.ndarray]]:
    """{set name: {"images": float32 [N,28,28], "labels": int64 [N], "pointers": str [N]}}, from the cache
    when the renderer, the preprocessing and the arguments are the same."""
    source = inspect.getsource(redraw) + inspect.getsource(preprocess)
    key = hashlib.sha256(f"{source}|{seed}|{n_mnist}|{optdigits_repeats}".encode()).hexdigest()[:16]
    path = CACHE_DIR / f"{key}.npz"
    if path.is_file():
        with np.load(path) as z:
            return {name: {part: z[f"{name}/{part}"] for part in ("images", "labels", "pointers")}
                    for name in ("mnist-drawn", "optdigits")}
    x, y = load_mnist("test")
    digits = load_digits()
    sources = {
        "mnist-drawn": (x[:n_mnist].numpy() / 255.0, y[:n_mnist].numpy()),
        "optdigits": (np.tile(digits.images / 16.0, (optdigits_repeats, 1, 1)),
                      np.tile(digits.target, optdigits_repeats)),
    }
    sets = {}
    for k, (name, (pictures, labels)) in enumerate(sources.items()):
        t = time.perf_counter()
        images = redraw.render_many(pictures, seed=seed + k)
        pointers = np.array([redraw.visitor_style(seed + k, i).pointer for i in range(len(pictures))])
        print(f"drew {len(images):,} {name} digits in {time.perf_counter() - t:.0f} s", flush=True)
        sets[name] = {"images": images, "labels": labels.astype(np.int64), "pointers": pointers}
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: np.savez_compressed(
        open(tmp, "wb"), **{f"{name}/{part}": v for name, s in sets.items() for part, v in s.items()}))
    return sets


def accuracy(model, images: np.ndarray, labels: np.ndarray) -> float:
    return float((predict_proba(model, images).argmax(1) == labels).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--extra", nargs="*", default=[], metavar="PATH", help="other checkpoints to measure")
    ap.add_argument("--seed", type=int, default=0, help="the visitors' seed")
    ap.add_argument("--mnist", type=int, default=10_000, help="MNIST test digits to draw (the first N)")
    ap.add_argument("--optdigits-repeats", type=int, default=3, help="visitors drawing each optdigits digit")
    ap.add_argument("--variant", default="", help="results file benchmarks/results/drawn_digits.VARIANT.json")
    args = ap.parse_args()

    torch.set_num_threads(1)
    checkpoints = {m: default_checkpoint(m) for m in list_models() if default_checkpoint(m)}
    checkpoints.update({Path(p).stem + " (extra)": Path(p) for p in args.extra})
    with LoadMonitor() as load:
        sets = drawn_sets(args.seed, args.mnist, args.optdigits_repeats)
        x_test, y_test = load_mnist("test")
        plain = x_test.numpy()[:, None].astype(np.float32) / 255.0
        rows = []
        for name, path in checkpoints.items():
            model, _ = load_checkpoint(path)
            row = {"checkpoint": name + (" (Draw's default)" if name == DRAW_DEFAULT else ""),
                   "MNIST test": accuracy(model, plain, y_test.numpy())}
            for set_name, s in sets.items():
                right = predict_proba(model, s["images"]).argmax(1) == s["labels"]
                row[set_name] = float(right.mean())
                for pointer in redraw.POINTERS:
                    row[f"{set_name} {pointer}"] = float(right[s["pointers"] == pointer].mean())
            rows.append(row)
    sizes = ", ".join(f"{len(s['labels']):,} {n}" for n, s in sets.items())
    columns = ["checkpoint", "MNIST test", *(f"{s}{p}" for s in sets for p in ("", " mouse", " finger"))]
    print_table([{c: (f"{r[c]:.2%}" if isinstance(r[c], float) else r[c]) for c in columns} for r in rows], columns,
                title=f"Accuracy on drawn digits (seed {args.seed}; {sizes})")
    default = next((r for r in rows if r["checkpoint"].endswith("(Draw's default)")), None)
    meets = default is not None and all(default[s] >= t for s, t in TARGETS.items())
    if default is not None:
        against = ", ".join(f"{s} {default[s]:.2%} (target >= {t:.1%})" for s, t in TARGETS.items())
        print(f"Draw's default ({DRAW_DEFAULT}): {against}: {'met' if meets else 'MISSED'}")
    write_result("drawn_digits", {"machine": machine_info(), "load": load.summary(), "seed": args.seed,
                                  "sizes": {n: len(s["labels"]) for n, s in sets.items()}, "targets": TARGETS,
                                  "draw_default": DRAW_DEFAULT, "meets_targets": meets, "checkpoints": rows},
                 variant=args.variant)
    figures = {"mnist_drawn": round(default["mnist-drawn"], 4), "optdigits": round(default["optdigits"], 4)} \
        if default else {}
    result_line(default=DRAW_DEFAULT, meets=int(meets), **figures, load=load.summary()["mean_1min"])

if __name__ == "__main__":
    main()

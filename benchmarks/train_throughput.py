"""Training throughput: our engine against the tutorials' input pipeline, same model, same optimizer.

Ours      mnist_core.training.train(): the whole split in memory as uint8 tensors, a batch is one tensor
          index plus one conversion to float (and channels_last for conv nets on CPU). Measured
          through the real loop: train() with a train_size subset, its step events timestamped,
          stopped through should_stop after warm-up + N steps.
Baseline  what the tutorials write: torchvision.datasets.MNIST + their per-sample transforms
          (tutorial 4 for LeNet-5: Resize(32) + ToTensor + Normalize(0.5, 0.5); tutorial 5 for
          cnn-small: ToTensor only) + DataLoader(batch_size=64, shuffle=True), the same architecture
          built with torch's stock layers (`tutorial_model`: LeNet-5 takes the resized 32x32 input
          instead of padding inside, and its C5 is a plain nn.Conv2d), the same optimizer
          (make_optimizer with the tutorial's settings), a plain training loop.

Both run in one process with the same thread count, alternating A B, B A, A B ... in timed windows
of N steps, each after W warm-up steps; the figure is the median of the windows' images/s. The
input pipeline alone (batches produced, no model) is timed the same way, to show where the
difference comes from. For a model with fused CPU kernels (LeNet-5, mnist_core.kernels) a third
side, ours with the kernels off (MNIST_KERNELS=0: PyTorch's stock layers), rotates in with the two,
to show what the kernels add.

    python -m benchmarks.train_throughput [--models lenet5,cnn-small] [--windows 5] [--steps 100]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import time

import torch
import torch.nn.functional as F

from benchmarks._common import LoadMonitor, wait_for_quiet, machine_info, print_table, result_line, write_result
from mnist_core import kernels
from mnist_core.data import load_mnist, raw_dir
from mnist_core.models import MnistNet, create_model
from mnist_core.training import TrainConfig, train
from mnist_core.training.torch_engine import make_optimizer, to_input, uses_channels_last

BATCH = 64
# The tutorials' own optimizer for each model (tutorial 4: SGD lr 0.2; tutorial 5: Adam lr 0.01).
RECIPES = {
    "lenet5": dict(optimizer="sgd", lr=0.2, transforms="Resize(32)+ToTensor+Normalize(0.5,0.5)"),
    "cnn-small": dict(optimizer="adam", lr=0.01, transforms="ToTensor"),
}


def tutorial_transforms(model: str):
    from torchvision import transforms

    if model == "lenet5":
        return transforms.Compose([transforms.Resize(32), transforms.ToTensor(),
                                   transforms.Normalize((0.5,), (0.5,))])
    return transforms.ToTensor()


def tutorial_model(model: str) -> torch.nn.Module:
    """The architecture as a tutorial writes it, with torch's stock layers and our initial weights."""
    net = create_model(model)
    if model == "lenet5":
        # the plain MnistNet (no fused kernels, not even their per-forward check), and no padding: the
        # tutorial resizes to 32x32 in its transforms instead
        net = MnistNet(net.body, pad=0, feature_layers=net.feature_layers)
        fast = net.body.C5.conv
        plain = torch.nn.Conv2d(fast.in_channels, fast.out_channels, fast.kernel_size)
        plain.load_state_dict(fast.state_dict())
        net.body.C5.conv = plain
    return net


def config_for(model: str, seed: int, steps: int, threads: int) -> TrainConfig:
    r = RECIPES[model]
    return TrainConfig(model=model, optimizer=r["optimizer"], lr=r["lr"], batch_size=BATCH, epochs=1,
                       schedule="none", val_size=0, train_size=min(60_000, (steps + 1) * BATCH), seed=seed,
                       threads=threads, device="cpu")


def ours_window(model: str, warmup: int, steps: int, seed: int, threads: int) -> dict:
    """One train() call: W warm-up steps, then N steps timed from the step events, then stop."""
    stamps: list[float] = []
    cpu: list[float] = []
    done = {"steps": 0}

    def on_event(event: dict) -> None:
        if event["split"] == "train":
            done["steps"] = event["step"]
            if event["step"] in (warmup, warmup + steps):
                stamps.append(time.perf_counter())
                cpu.append(time.process_time())

    result = train(config_for(model, seed, warmup + steps, threads), on_event=on_event,
                   should_stop=lambda: done["steps"] >= warmup + steps)
    assert result.steps == warmup + steps and len(stamps) == 2, (result.steps, stamps)
    wall, cpu_s = stamps[1] - stamps[0], cpu[1] - cpu[0]
    return {"images_per_s": steps * BATCH / wall, "images_per_cpu_s": steps * BATCH / cpu_s}


class Baseline:
    """The tutorials' pipeline, kept alive across windows (its DataLoader iterator continues)."""

    def __init__(self, model: str, threads: int, seed: int = 0):
        import torchvision

        root = raw_dir().parent.parent  # torchvision looks for <root>/MNIST/raw
        self.dataset = torchvision.datasets.MNIST(root=str(root), train=True, download=False,
                                                  transform=tutorial_transforms(model))
        torch.manual_seed(seed)
        self.loader = torch.utils.data.DataLoader(self.dataset, batch_size=BATCH, shuffle=True)
        self.model = tutorial_model(model)
        self.optimizer = make_optimizer(config_for(model, seed, 1, threads), self.model.parameters())
        self.threads = threads
        self._it = iter(self.loader)
        self.last_loss = float("nan")

    def batch(self):
        try:
            return next(self._it)
        except StopIteration:
            self._it = iter(self.loader)
            return next(self._it)

    def step(self) -> None:
        x, y = self.batch()
        loss = F.cross_entropy(self.model(x), y)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self.last_loss = loss.item()

    def window(self, warmup: int, steps: int) -> dict:
        torch.set_num_threads(self.threads)
        self.model.train()
        for _ in range(warmup):
            self.step()
        t, c = time.perf_counter(), time.process_time()
        for _ in range(steps):
            self.step()
        wall, cpu_s = time.perf_counter() - t, time.process_time() - c
        return {"images_per_s": steps * BATCH / wall, "images_per_cpu_s": steps * BATCH / cpu_s}


@contextlib.contextmanager
def stock_layers():
    """train() inside runs on PyTorch's stock layers (the fused kernels off), as without a compiler."""
    old = os.environ.get("MNIST_KERNELS")
    os.environ["MNIST_KERNELS"] = "0"
    kernels.reset()
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("MNIST_KERNELS", None)
        else:
            os.environ["MNIST_KERNELS"] = old
        kernels.reset()


def pipeline_only(baseline: Baseline, model: str, batches: int) -> dict:
    """Images/s of producing float batches alone: DataLoader vs our tensor indexing."""
    images, labels = load_mnist("train")
    torch.set_num_threads(baseline.threads)
    net = create_model(model)
    kernels.fuse(net)  # as the training engine does: a LeNet-5 on the kernels takes its input unpermuted
    channels_last = uses_channels_last(net, torch.device("cpu"))
    gen = torch.Generator().manual_seed(0)
    perm = torch.randperm(len(images), generator=gen)
    ours_w, base_w = [], []
    for _ in range(5):  # alternating, median of 5
        t = time.perf_counter()
        for i in range(batches):
            idx = perm[(i * BATCH) % 59_000:(i * BATCH) % 59_000 + BATCH]
            x = to_input(images[idx], torch.device("cpu"), channels_last)
            y = labels[idx]
        ours_w.append(batches * BATCH / (time.perf_counter() - t))
        t = time.perf_counter()
        for _ in range(batches):
            x, y = baseline.batch()
        base_w.append(batches * BATCH / (time.perf_counter() - t))
    ours, base = statistics.median(ours_w), statistics.median(base_w)
    return {"ours_images_per_s": ours, "baseline_images_per_s": base, "ratio": ours / base}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="lenet5,cnn-small")
    ap.add_argument("--windows", type=int, default=5, help="timed windows per side")
    ap.add_argument("--steps", type=int, default=100, help="steps per timed window (N)")
    ap.add_argument("--warmup", type=int, default=10, help="warm-up steps before each window (W)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads for both sides (0 = one per core, "
                    "as train() does by default)")
    ap.add_argument("--wait-quiet", type=float, default=0.0, metavar="S",
                    help="before each round (one window of each side), wait up to S seconds for the other "
                         "processes to leave the cores idle")
    args = ap.parse_args()
    models = [m for m in args.models.split(",") if m]
    threads = args.threads or os.cpu_count() or 1  # 0: what train() does by default, one per core

    load_mnist("train")  # data loading is not part of the figure
    results, rows = {}, []
    with LoadMonitor() as load:
        for model in models:
            base = Baseline(model, threads)
            fused = kernels.fits(create_model(model))
            sides = ("ours", "base", "stock") if fused else ("ours", "base")
            windows: dict[str, list] = {side: [] for side in sides}
            # first-use costs (oneDNN primitives, allocator)
            ours_window(model, args.warmup, 5, seed=99, threads=args.threads)
            base.window(args.warmup, 5)
            if fused:
                with stock_layers():
                    ours_window(model, args.warmup, 5, seed=99, threads=args.threads)
            quiet_rounds = []
            for k in range(args.windows):
                quiet_rounds.append(wait_for_quiet(args.wait_quiet))
                order = sides[k % len(sides):] + sides[:k % len(sides)]  # each side first in turn
                if k % 2:
                    order = order[::-1]
                for side in order:
                    if side == "base":
                        windows[side].append(base.window(args.warmup, args.steps))
                        continue
                    with stock_layers() if side == "stock" else contextlib.nullcontext():
                        windows[side].append(ours_window(model, args.warmup, args.steps, seed=k, threads=args.threads))
                print(f"  {model} window {k + 1}/{args.windows}: "
                      + ", ".join(f"{side} {w[-1]['images_per_s']:,.0f} img/s" for side, w in windows.items())
                      + f", load {os.getloadavg()[0]:.2f}", flush=True)
            ours_w, base_w = windows["ours"], windows["base"]
            pipe = pipeline_only(base, model, batches=args.steps)
            med = lambda ws, key: statistics.median(w[key] for w in ws)  # noqa: E731
            entry = {
                "model": model, "optimizer": RECIPES[model]["optimizer"], "lr": RECIPES[model]["lr"],
                "batch_size": BATCH, "threads": threads,
                "baseline_transforms": RECIPES[model]["transforms"],
                "ours_images_per_s": med(ours_w, "images_per_s"),
                "baseline_images_per_s": med(base_w, "images_per_s"),
                "ours_images_per_cpu_s": med(ours_w, "images_per_cpu_s"),
                "baseline_images_per_cpu_s": med(base_w, "images_per_cpu_s"),
                "ours_windows": [round(w["images_per_s"]) for w in ours_w],
                "baseline_windows": [round(w["images_per_s"]) for w in base_w],
                "baseline_last_loss": base.last_loss,
                "pipeline_only": pipe,
                "wait_for_quiet": quiet_rounds,
                "kernels": kernels.status() if fused else "none for this model",
            }
            if fused:
                entry["ours_stock_layers_images_per_s"] = med(windows["stock"], "images_per_s")
                entry["ours_stock_layers_windows"] = [round(w["images_per_s"]) for w in windows["stock"]]
                entry["kernels_gain"] = entry["ours_images_per_s"] / entry["ours_stock_layers_images_per_s"]
            entry["ratio"] = entry["ours_images_per_s"] / entry["baseline_images_per_s"]
            entry["ratio_per_cpu_s"] = entry["ours_images_per_cpu_s"] / entry["baseline_images_per_cpu_s"]
            results[model] = entry
            rows.append({"model": model, "optimizer": f"{entry['optimizer']} {entry['lr']}",
                         "ours img/s": entry["ours_images_per_s"], "tutorial img/s": entry["baseline_images_per_s"],
                         "ratio": round(entry["ratio"], 2), "ratio (CPU time)": round(entry["ratio_per_cpu_s"], 2),
                         "input pipeline ratio": round(pipe["ratio"], 1),
                         "ours, stock layers": round(entry.get("ours_stock_layers_images_per_s", 0)) or "-",
                         "kernels' gain": round(entry["kernels_gain"], 2) if fused else "-"})

    print_table(rows, title=f"Training throughput, batch {BATCH}, {threads} thread(s), "
                            f"median of {args.windows} windows x {args.steps} steps")
    payload = {"machine": machine_info(), "load": load.summary(), "threads": threads, "windows": args.windows,
               "steps": args.steps,
               "warmup": args.warmup, "goal": "ours >= 5x baseline on lenet5", "models": results}
    write_result("train_throughput", payload, variant=f"threads{args.threads}" if args.threads else "")
    line = {}
    for model, e in results.items():
        key = model.replace("-", "_")
        line[f"{key}_ours"] = round(e["ours_images_per_s"])
        line[f"{key}_baseline"] = round(e["baseline_images_per_s"])
        line[f"{key}_ratio"] = round(e["ratio"], 2)
        if "kernels_gain" in e:
            line[f"{key}_kernels_gain"] = round(e["kernels_gain"], 2)
    line["threads"] = threads
    line["load"] = load.summary()["mean_1min"]
    result_line(**line)


if __name__ == "__main__":
    main()

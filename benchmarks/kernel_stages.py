"""LeNet-5's two fused kernel stages against PyTorch's stock operators, forward + backward, alone.

train_throughput.py times whole steps; this times what the kernels replace, at batch 64:
  stage 1  pad + normalize + C1 (1 -> 6 maps, 5x5) + ReLU + S2 max-pool: kernels.conv_relu_maxpool,
           gradients for the weight and bias (LeNet-5's input needs none)
  stage 2  C3 (6 -> 16 maps, 5x5) + ReLU + S4 average pool: kernels.conv_relu_avgpool, gradients for
           the input, weight and bias
against the same functions written with torch.nn.functional. Each is checked against the other
first (outputs and gradients), then timed in windows of N calls, fused and stock alternating, after
a warm-up; the figure is the median window's milliseconds a call.

Which vector width the kernels were built with follows the CPU (lenet5.c: 16 floats with AVX-512,
else 8); MNIST_KERNEL_CFLAGS=-DMNIST_LANES=8 (or 16) chooses, MNIST_KERNEL_DIR keeps such a build
apart from the default one.

    python -m benchmarks.kernel_stages [--threads 1] [--windows 5] [--calls 100]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from benchmarks._common import LoadMonitor, machine_info, print_table, result_line, write_result
from mnist_core import kernels
from mnist_core.data import MNIST_MEAN, MNIST_STD

BATCH = 64


def stages() -> dict:
    """For each stage: (fused call, stock call), each running forward + backward once."""
    g = torch.Generator().manual_seed(0)
    x1 = torch.rand(BATCH, 1, 28, 28, generator=g)
    w1 = (torch.randn(6, 1, 5, 5, generator=g) * 0.3).requires_grad_()
    b1 = (torch.randn(6, generator=g) * 0.1).requires_grad_()
    x2 = torch.relu(torch.randn(BATCH, 6, 14, 14, generator=g)).requires_grad_()
    w2 = (torch.randn(16, 6, 5, 5, generator=g) * 0.2).requires_grad_()
    b2 = (torch.randn(16, generator=g) * 0.1).requires_grad_()
    g1, g2 = torch.randn(BATCH, 6, 14, 14, generator=g), torch.randn(BATCH, 16, 5, 5, generator=g)

    def stock1():
        padded = F.pad(x1, (2,) * 4)
        return F.max_pool2d(F.relu(F.conv2d((padded - MNIST_MEAN) / MNIST_STD, w1, b1)), 2)

    def stock2():
        return F.avg_pool2d(F.relu(F.conv2d(x2, w2, b2)), 2)

    return {
        "stage 1 (C1+ReLU+S2)": (lambda: kernels.conv_relu_maxpool(x1, w1, b1, MNIST_MEAN, MNIST_STD), stock1,
                                 (w1, b1), g1),
        "stage 2 (C3+ReLU+S4)": (lambda: kernels.conv_relu_avgpool(x2, w2, b2), stock2, (x2, w2, b2), g2),
    }


def check(fused, stock, wrt, grad) -> None:
    ours, ref = fused(), stock()
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)
    for a, r in zip(torch.autograd.grad(ours, wrt, grad), torch.autograd.grad(ref, wrt, grad)):
        torch.testing.assert_close(a, r, rtol=1e-4, atol=1e-4 * r.abs().max().item())


def window_ms(call, wrt, grad, calls: int) -> float:
    t = time.perf_counter()
    for _ in range(calls):
        torch.autograd.grad(call(), wrt, grad)
    return (time.perf_counter() - t) / calls * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--windows", type=int, default=5, help="timed windows per side")
    ap.add_argument("--calls", type=int, default=100, help="calls per window")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if not kernels.available():
        raise SystemExit(f"the kernels cannot run here: {kernels.status()}")
    rows, payload = [], {}
    with LoadMonitor() as load:
        for name, (fused, stock, wrt, grad) in stages().items():
            check(fused, stock, wrt, grad)
            for call in (fused, stock):
                window_ms(call, wrt, grad, 10)  # warm-up
            times = {"fused": [], "stock": []}
            for _ in range(args.windows):
                times["fused"].append(window_ms(fused, wrt, grad, args.calls))
                times["stock"].append(window_ms(stock, wrt, grad, args.calls))
            fused_ms, stock_ms = statistics.median(times["fused"]), statistics.median(times["stock"])
            rows.append({"stage": name, "fused ms": round(fused_ms, 3), "stock ms": round(stock_ms, 3),
                         "stock / fused": round(stock_ms / fused_ms, 2)})
            payload[name] = {"fused_ms": fused_ms, "stock_ms": stock_ms, "windows": times}
    print_table(rows, title=f"forward + backward at batch {BATCH}, {args.threads} thread(s), median of "
                            f"{args.windows} windows of {args.calls} calls; kernels {kernels.status()}")
    write_result("kernel_stages", {"machine": machine_info(), "load": load.summary(), "threads": args.threads,
                                   "kernels": kernels.status(), "stages": payload},
                 variant=f"threads{args.threads}")
    result_line(**{f"stage{i + 1}_ratio": r["stock / fused"] for i, r in enumerate(rows)}, threads=args.threads,
                load=load.summary()["mean_1min"])


if __name__ == "__main__":
    main()

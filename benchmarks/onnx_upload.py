"""Bring your own model: an uploaded ONNX file's cost to the server.

Upload to first prediction  mnist_core.onnx_import.load_onnx (static checks in the server, the checks,
                            conversion and the scoring of every admitted convention in a heavy job's
                            limited child, then the server's own conversion) + predict_proba on one
                            image, for a LeNet-5 exported by torch's TorchScript exporter expecting
                            NHWC pixels in 0..255 (eight conventions to score). "cold" is the first
                            upload of the process (it starts heavy's forkserver), "warm" the median of
                            the next --uploads.
Predict latency             predict_proba on one image, the uploaded model beside the zoo's lenet5 it
                            was exported from, one thread, alternating blocks; p50 and p99 of
                            wall-clock time.
Peak RSS during a check     after those uploads (imports done, the forkserver up, the sample of training
                            images loaded), a 20 MB upload (an MLP 784-6000-10 in float32, 18.2 MB) is
                            checked while this process's RSS (the server's) and its children's are
                            sampled every 10 ms: the server's baseline and peak, the largest child's peak.

    python -m benchmarks.onnx_upload [--uploads 3] [--calls 1000]
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import threading
import time
import warnings

import numpy as np
import psutil
import torch

from benchmarks._common import LoadMonitor, machine_info, percentile, print_table, result_line, write_result
from mnist_core.checkpoints import load_checkpoint
from mnist_core.data import load_mnist
from mnist_core.onnx_import import load_onnx
from mnist_core.paths import REPO_ROOT
from mnist_core.predict import predict_proba

MB = 1 << 20


class _NHWC255(torch.nn.Module):
    """lenet5 behind another convention: NHWC, pixels 0..255."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x.permute(0, 3, 1, 2) / 255)


def _export(module: torch.nn.Module, shape: tuple[int, ...]) -> bytes:
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), (torch.rand(2, *shape),), f, dynamo=False, opset_version=17,
                          input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "n"}, "y": {0: "n"}})
    return f.getvalue()


def upload_to_first_prediction(data: bytes, image: np.ndarray, uploads: int) -> dict:
    times = []
    for i in range(uploads + 1):
        t = time.perf_counter()
        loaded = load_onnx(data, "lenet5-nhwc.onnx", owner=f"bench-{i}")
        predict_proba(loaded.model, image)
        times.append(time.perf_counter() - t)
    return {"cold_s": times[0], "warm_s": statistics.median(times[1:]), "warm_all_s": times[1:],
            "reading": loaded.meta["reading"], "model": loaded.model}


def latency(models: dict[str, torch.nn.Module], image: np.ndarray, calls: int, block: int = 100) -> dict:
    torch.set_num_threads(1)
    times = {name: [] for name in models}
    for model in models.values():  # warm-up
        for _ in range(20):
            predict_proba(model, image)
    for _ in range(max(1, calls // block)):
        for name, model in models.items():
            for _ in range(block):
                t = time.perf_counter()
                predict_proba(model, image)
                times[name].append(time.perf_counter() - t)
    return {name: {"p50_ms": percentile(ts, 50) * 1000, "p99_ms": percentile(ts, 99) * 1000}
            for name, ts in times.items()}


def peak_rss_during_check(data: bytes) -> dict:
    me = psutil.Process()
    baseline = me.memory_info().rss
    peaks = {"server": baseline, "child": 0}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            try:
                peaks["server"] = max(peaks["server"], me.memory_info().rss)
                for child in me.children(recursive=True):
                    try:
                        peaks["child"] = max(peaks["child"], child.memory_info().rss)
                    except psutil.Error:
                        pass
            except psutil.Error:
                pass
            done.wait(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t = time.perf_counter()
    try:
        loaded = load_onnx(data, "mlp-20mb.onnx", owner="bench-20mb")
        outcome = loaded.meta["reading"]
    finally:
        done.set()
        sampler.join()
    return {"file_mb": len(data) / MB, "seconds": time.perf_counter() - t, "server_baseline_mb": baseline / MB,
            "server_peak_mb": peaks["server"] / MB, "child_peak_mb": peaks["child"] / MB, "reading": outcome}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uploads", type=int, default=3, help="warm uploads after the cold one (default 3)")
    parser.add_argument("--calls", type=int, default=1000, help="predictions per model (default 1000)")
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    zoo, _ = load_checkpoint(REPO_ROOT / "checkpoints" / "lenet5.safetensors")
    zoo.eval()
    lenet_bytes = _export(_NHWC255(zoo), (28, 28, 1))
    big = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 6000), torch.nn.ReLU(),
                              torch.nn.Linear(6000, 10))
    big_bytes = _export(big, (1, 28, 28))
    image = load_mnist("test")[0][0].numpy().astype(np.float32) / 255

    with LoadMonitor() as load:
        upload = upload_to_first_prediction(lenet_bytes, image, args.uploads)  # the cold one imports and forks
        peak = peak_rss_during_check(big_bytes)
        lat = latency({"uploaded lenet5 (ONNX, NHWC 0..255)": upload.pop("model"), "zoo lenet5": zoo}, image,
                      args.calls)
    rows = [{"measure": "upload to first prediction, cold (s)", "value": upload["cold_s"]},
            {"measure": "upload to first prediction, warm median (s)", "value": upload["warm_s"]},
            *({"measure": f"predict one image p50 / p99 (ms): {name}",
               "value": f"{v['p50_ms']:.2f} / {v['p99_ms']:.2f}"} for name, v in lat.items()),
            {"measure": f"20 MB upload ({peak['file_mb']:.1f} MB) checked in (s)", "value": peak["seconds"]},
            {"measure": "server RSS baseline / peak during the check (MB)",
             "value": f"{peak['server_baseline_mb']:.0f} / {peak['server_peak_mb']:.0f}"},
            {"measure": "check child's peak RSS (MB)", "value": f"{peak['child_peak_mb']:.0f}"}]
    print_table(rows, title=f"ONNX upload (read as: {upload['reading']})")
    write_result("onnx_upload", {"machine": machine_info(), "load": load.summary(), "upload": upload,
                                 "latency": lat, "check_20mb": peak})
    result_line(cold_s=upload["cold_s"], warm_s=upload["warm_s"],
                uploaded_p50_ms=lat["uploaded lenet5 (ONNX, NHWC 0..255)"]["p50_ms"],
                zoo_p50_ms=lat["zoo lenet5"]["p50_ms"], server_peak_mb=peak["server_peak_mb"],
                server_baseline_mb=peak["server_baseline_mb"], child_peak_mb=peak["child_peak_mb"])
    return 0


if __name__ == "__main__":
    sys.exit(main())

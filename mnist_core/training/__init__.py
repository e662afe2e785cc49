"""Training: the config, one loop, two engines.

Read in this order:

    config.py        TrainConfig (the one list of fields: CLI flags, the form, validation) and PRESETS
    admission.py     admit(config): may this valid config run here (engine, host, hosting bounds)
    loop.py          the loop both engines share, top to bottom: batches, validation, best weights,
                     cancel, the test pass, the result; and the events it reports
    torch_engine.py  PyTorch models: device, optimizer, schedule, augmentation, CUDA-graph steps
    numpy_engine.py  the tutorials' from-scratch NumPy MLPs (mnist_core/scratch)
    mixing.py        the visitors' drawings in a run: a share of its training images, and its test on
                     the held-out ones (drawings_weight)

`train(config, on_event, should_stop, data_root, on_snapshot)` picks the engine for
`config.backend` from `ENGINES` and runs the loop with it. The worker (worker.py) calls it for the
CLI and the dashboard alike. `warm_up()` does ahead of time what a process's first run would
otherwise do inside its timed `train()` call (a process that forks workers calls it once).
"""

from __future__ import annotations

import time
from typing import Callable, Optional

from torch import nn

from .. import kernels
from ..data import load_mnist
from ..errors import MnistLabError
from ..records import RunStatus, metric_row

from .config import (AUGMENTS, BACKENDS, DEVICES, LOSSES, OPTIMIZERS, PRESETS, SCHEDULES, Preset, TrainConfig,
                     preset_config)
from .admission import admit, check_engine
from .loop import TrainResult, run, select_data
from .mixing import held_out
from .numpy_engine import NumpyEngine
from .torch_engine import TorchEngine, available_devices, evaluate, pick_device

ENGINES = {"torch": TorchEngine, "numpy": NumpyEngine}  # config.backend -> engine


def train(config: TrainConfig, on_event: Optional[Callable[[dict], None]] = None,
          should_stop: Optional[Callable[[], bool]] = None, data_root=None,
          on_snapshot: Optional[Callable[[nn.Module, int, float], None]] = None, snapshot_frames: int = 0,
          cuda_graphs: bool = True) -> TrainResult:
    """Train `config.model` as the config says (see loop.py for the events, the snapshots and the result).

    `cuda_graphs=False` keeps every CUDA step eager (benchmarks/gpu.py times both).
    """
    config.validate()
    check_engine(config)  # the engine must support it; hosting policy is admit()'s, at submit and worker start
    started = time.perf_counter()
    engine_type = ENGINES[config.backend]
    with engine_type.threads(config):
        engine = engine_type(config, data_root=data_root, cuda_graphs=cuda_graphs)
        result = run(config, engine, on_event=on_event, should_stop=should_stop, on_snapshot=on_snapshot,
                     snapshot_frames=snapshot_frames, started=started)
        if config.drawings_weight and result.status == RunStatus.COMPLETED:
            _test_on_held_out_drawings(config, result, on_event)
    return result


def _test_on_held_out_drawings(config: TrainConfig, result: TrainResult,
                               on_event: Optional[Callable[[dict], None]]) -> None:
    """A run trained on the visitors' drawings is tested on the held-out ones too (mixing.py): a
    "drawings" row after the "test" row, and result.drawings_accuracy. Nothing when none are held out."""
    held = held_out()
    if held is None:
        return
    loss, accuracy = evaluate(result.model, *held, config)
    row = metric_row("drawings", result.steps, float(config.epochs), loss, accuracy)
    result.history.append(row)
    result.drawings_accuracy = accuracy
    if on_event:
        on_event(row)


def warm_up(data_root=None) -> None:
    """Load now what the first run in this process would load inside `train()`: `torch._dynamo` (the
    first optimizer imports it: about 900 modules, among them sympy), LeNet-5's fused kernels (built if
    need be, fingerprinted with `cc --version`, loaded) and the MNIST tensors (cached by load_mnist).

    For a process that forks training workers (the runner's template, mnist_core/warm.py): it runs no
    torch operation and starts no thread, so forking afterwards is safe, and the children share
    what it loaded. Training processes only: the web server must never load the kernels. Missing
    data is not an error here; the run that needs it says so.
    """
    import torch._dynamo  # noqa: F401 - torch.optim's first step (and Optimizer.__init__) import it lazily

    kernels.available()
    for split in ("train", "test"):
        try:
            load_mnist(split, root=data_root)
        except (MnistLabError, OSError):
            break


__all__ = ["AUGMENTS", "BACKENDS", "DEVICES", "ENGINES", "LOSSES", "OPTIMIZERS", "PRESETS", "SCHEDULES", "Preset",
           "TrainConfig", "TrainResult", "admit", "available_devices", "evaluate", "pick_device", "preset_config",
           "select_data", "train", "warm_up"]

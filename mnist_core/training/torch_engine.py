"""The torch engine: how a PyTorch model learns a batch and is scored, for the shared loop (loop.py).

`TorchEngine(config)` sets the seeds, loads the data (the whole small dataset stays resident on an
accelerator), builds the zoo model (a LeNet-5 on the CPU runs on the fused kernels where they are
built: kernels.fuse, the one seam), its optimizer and schedule, and on CUDA captures the training
step as a graph (`CudaGraphStep`, unless `cuda_graphs=False`); `TorchEngine.threads(config)` sets
torch's thread count around it. The helpers
here (optimizer, schedule, augmentation, loss, evaluation) are also what the benchmarks and the CLI's
`evaluate` use. The same seed gives the same run on CPU.
"""

from __future__ import annotations

import contextlib
import copy
import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .. import kernels
from ..errors import ConfigError
from ..limits import host_cores
from ..models import create_model
from .config import TrainConfig
from .cpu import FreeCores, free_now
from .loop import select_data


def pick_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: cuda was asked for but no CUDA GPU is available")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError("device: mps was asked for but is not available")
    return torch.device(name)


def available_devices() -> tuple[str, ...]:
    """The `device` values that can run on this machine: auto and cpu always, cuda and mps where torch sees
    them (the Train form offers only these)."""
    here = ["auto", "cpu"]
    if torch.cuda.is_available():
        here.append("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        here.append("mps")
    return tuple(here)


def make_optimizer(config: TrainConfig, params, capturable: bool = False) -> torch.optim.Optimizer:
    """The config's optimizer. `capturable` (CUDA graphs) keeps the learning rate in a device tensor,
    so the scheduler's updates reach a captured step, and Adam's step count on the device."""
    wd = config.weight_decay
    params = list(params)
    # The fused kernels update every tensor in one pass: faster optimizer steps on CPU and CUDA
    # (BENCHMARKS.md, "What helped": fused optimizers).
    fused = {"fused": True} if params and all(p.device.type in ("cpu", "cuda") for p in params) else {}
    lr = torch.tensor(config.lr, device=params[0].device) if capturable else config.lr
    adam = {"capturable": True} if capturable else {}
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=wd, **fused)
    if config.optimizer == "sgd-momentum":
        return torch.optim.SGD(params, lr=lr, momentum=config.momentum, weight_decay=wd, **fused)
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd, **fused, **adam)
    return torch.optim.AdamW(params, lr=lr, weight_decay=wd, **fused, **adam)


def make_schedule(config: TrainConfig, optimizer, total_steps: int, cycle_momentum: bool = True):
    """The config's learning-rate schedule. `cycle_momentum=False` keeps momentum / beta1 fixed under
    onecycle (a captured CUDA graph holds them as constants)."""
    if config.schedule == "onecycle" and total_steps >= 10:  # shorter runs are too short for a cycle
        # (OneCycleLR divides by its phase lengths, which round to zero on a handful of steps)
        cycle_momentum = cycle_momentum and config.optimizer != "sgd"
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=total_steps,
                                                   pct_start=0.25, cycle_momentum=cycle_momentum)
    if config.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=max(1, (2 * total_steps) // 3), gamma=0.1)
    return None


def random_affine(x: torch.Tensor, generator: torch.Generator, degrees: float = 10.0,
                  scale: float = 0.1, shift: float = 2.0) -> torch.Tensor:
    """A different small rotation, scale and shift for every image of the batch, in one grid_sample."""
    n = x.shape[0]
    u = torch.rand(n, 4, generator=generator, device="cpu").to(x.device) * 2 - 1
    angle = u[:, 0] * math.radians(degrees)
    s = 1 + u[:, 1] * scale
    tx, ty = u[:, 2] * shift * 2 / 28, u[:, 3] * shift * 2 / 28
    cos, sin = torch.cos(angle) / s, torch.sin(angle) / s
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, align_corners=False, padding_mode="zeros")


def compute_loss(config: TrainConfig, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    if config.loss == "mse-onehot":
        return F.mse_loss(logits.softmax(1), F.one_hot(labels, 10).to(logits.dtype))
    if config.loss == "mse-logits":
        return F.mse_loss(logits, F.one_hot(labels, 10).to(logits.dtype))
    return F.cross_entropy(logits, labels)


def to_input(images_u8: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    x = images_u8.to(device, non_blocking=True).unsqueeze(1).float().div_(255)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


@torch.inference_mode()
def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, config: Optional[TrainConfig] = None,
             batch_size: int = 2000) -> tuple[float, float]:
    """(mean loss, accuracy) over uint8 images, in large inference-mode batches."""
    if len(images) == 0:
        return float("nan"), float("nan")
    device = next(model.parameters()).device
    config = config or TrainConfig()
    channels_last = uses_channels_last(model, device)
    was_training = model.training
    model.eval()
    total_loss, correct = 0.0, 0
    for i in range(0, len(images), batch_size):
        x = to_input(images[i:i + batch_size], device, channels_last)
        y = labels[i:i + batch_size].to(device)
        logits = model(x)
        total_loss += compute_loss(config, logits, y).item() * len(y)
        correct += (logits.argmax(1) == y).sum().item()
    model.train(was_training)
    return total_loss / len(images), correct / len(images)


def uses_channels_last(model: nn.Module, device: torch.device) -> bool:
    """Whether to train this model in channels_last memory: on the CPU, for convolutions, where
    oneDNN's kernels are faster in it (BENCHMARKS.md). Not for a LeNet-5 on the fused kernels, where
    the layout would only cost weight copies."""
    if device.type != "cpu" or kernels.is_fused(model):
        return False
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


def learn(model: nn.Module, optimizer: torch.optim.Optimizer, config: TrainConfig, x: torch.Tensor,
          y: torch.Tensor) -> torch.Tensor:
    """Forward, loss, backward and the optimizer's update on one batch (gradients already cleared, or
    static in a CUDA graph); returns [loss, batch accuracy] on the device, without a sync."""
    logits = model(x)
    loss = compute_loss(config, logits, y)
    loss.backward()
    optimizer.step()
    return torch.stack([loss.detach(), (logits.argmax(1) == y).float().mean()])


class CudaGraphStep:
    """One whole training step (batch gather, forward, loss, backward, optimizer update) captured once
    as a CUDA graph and replayed for every full batch.

    A small net on a big GPU is bound by kernel launches, not arithmetic: an eager LeNet-5 step costs
    the same whatever the batch size, nearly all of it Python and launch overhead (benchmarks/gpu.py,
    BENCHMARKS.md section 5). A replay is one launch. Capturing needs a few warm-up steps
    on a side stream; they run on a throwaway batch, so the weights, buffers and optimizer state are
    put back afterwards and the run starts exactly where an eager one would.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, config: TrainConfig,
                 images: torch.Tensor, labels: torch.Tensor, warmup: int = 3):
        self.model, self.optimizer, self.config = model, optimizer, config
        self.images, self.labels = images, labels
        self.idx = torch.zeros(config.batch_size, dtype=torch.long, device=images.device)
        saved = [t.detach().clone() for t in model.state_dict().values()]
        try:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(warmup):
                    optimizer.zero_grad(set_to_none=True)
                    self._step()
            torch.cuda.current_stream().wait_stream(side)
            self.graph = torch.cuda.CUDAGraph()
            optimizer.zero_grad(set_to_none=True)
            with torch.cuda.graph(self.graph):
                self.result = self._step()
        finally:
            with torch.no_grad():
                for tensor, value in zip(model.state_dict().values(), saved):
                    tensor.copy_(value)
                for state in optimizer.state.values():  # Adam's moments and step, SGD's momentum buffer
                    for value in state.values():
                        if torch.is_tensor(value):
                            value.zero_()

    def _step(self) -> torch.Tensor:
        x = to_input(self.images[self.idx], self.images.device, channels_last=False)
        return learn(self.model, self.optimizer, self.config, x, self.labels[self.idx])

    def __call__(self, idx: torch.Tensor) -> torch.Tensor:
        """Train on the images at `idx` (exactly batch_size of them); returns [loss, accuracy]."""
        self.idx.copy_(idx)
        self.graph.replay()
        return self.result


class TorchEngine:
    """The loop's engine for PyTorch models (see loop.Engine)."""

    def __init__(self, config: TrainConfig, data_root=None, cuda_graphs: bool = True):
        self.config = config
        torch.manual_seed(config.seed)
        self.gen = torch.Generator().manual_seed(config.seed)  # the subset, the shuffles, the augmentation
        self.device = device = pick_device(config.device)

        x_train, y_train, self.x_val, self.y_val, self.x_test, self.y_test = select_data(config, self.gen, data_root)
        if device.type != "cpu":  # keep the whole (small) dataset resident on the accelerator
            x_train, y_train = x_train.to(device), y_train.to(device)
        self.x_train, self.y_train = x_train, y_train
        self.n_train, self.n_val = len(x_train), len(self.x_val)

        model = create_model(config.model).to(device)
        if device.type == "cpu":
            kernels.fuse(model)  # LeNet-5's fused CPU kernels, where they are built (kernels/__init__.py)
        self.channels_last = uses_channels_last(model, device)
        # threads = 0 on the CPU: follow the cores other processes leave free (cpu.py)
        self.free_cores = FreeCores(host_cores(), torch.get_num_threads(), torch.set_num_threads) \
            if config.threads == 0 and device.type == "cpu" else None
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = self.snapshot_model = model
        # On CUDA the step is captured as a graph (see CudaGraphStep); affine augmentation draws its
        # random transforms on the host, so it stays eager.
        graphs = (cuda_graphs and device.type == "cuda" and config.augment == "none"
                  and len(x_train) >= config.batch_size)
        self.optimizer = make_optimizer(config, model.parameters(), capturable=graphs)
        total_steps = math.ceil(len(x_train) / config.batch_size) * config.epochs
        self.scheduler = make_schedule(config, self.optimizer, total_steps, cycle_momentum=not graphs)
        self.graphed = CudaGraphStep(model, self.optimizer, config, x_train, y_train) if graphs else None
        model.train()

    @staticmethod
    @contextlib.contextmanager
    def threads(config: TrainConfig):
        """`threads` CPU threads for torch (0: one per free core, see cpu.py), the previous count
        restored after."""
        previous = torch.get_num_threads()
        torch.set_num_threads(config.threads or free_now(host_cores()))
        try:
            yield
        finally:
            torch.set_num_threads(previous)

    def shuffle(self) -> torch.Tensor:
        return torch.randperm(self.n_train, generator=self.gen).to(self.x_train.device)

    def train_step(self, idx: torch.Tensor, step: int) -> tuple[float, float]:
        config = self.config
        if self.free_cores is not None:
            self.free_cores.check()
        if self.graphed is not None and len(idx) == config.batch_size:
            result = self.graphed(idx)
        else:
            x = to_input(self.x_train[idx], self.device, self.channels_last)
            y = self.y_train[idx].to(self.device)
            if config.augment == "affine":
                x = random_affine(x, self.gen)
            self.optimizer.zero_grad(set_to_none=True)
            result = learn(self.model, self.optimizer, config, x, y)
        if self.scheduler is not None:
            self.scheduler.step()
        loss, acc = result.tolist()  # one device sync a step
        return loss, acc

    def evaluate(self, split: str) -> tuple[float, float]:
        images, labels = (self.x_val, self.y_val) if split == "val" else (self.x_test, self.y_test)
        return evaluate(self.model, images, labels, self.config)

    def weights(self) -> dict:
        return copy.deepcopy(self.model.state_dict())

    def load_weights(self, weights: dict) -> None:
        self.model.load_state_dict(weights)

    def trained_model(self) -> nn.Module:
        model = kernels.unfuse(self.model)  # the plain zoo model leaves the engine
        return model.to("cpu").to(memory_format=torch.contiguous_format).eval()

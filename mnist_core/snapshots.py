"""Training snapshots: how a network's kernels, and what it makes of one fixed probe image, change over a run.

The training loop hands the model to a `Recorder` before the first step, at every validation and,
between them, every total_steps // FRAMES_PER_RUN steps, so a replay is about FRAMES_PER_RUN frames
long whatever the validation cadence. A frame is the step, the epoch, the convolution kernels (an
MLP's first-layer templates instead) and the feature maps of the probe image (test image
PROBE_INDEX, a 7). The Train and Inside the network pages replay the frames (a slider, and Play).

One file per run, runs/snapshots/<run id>.npz (plain arrays, compressed, loaded with
allow_pickle=False), written to a temporary name and renamed, at most every WRITE_SECONDS and at the
end of the run.
Bounded: float16, layers larger than MAX_LAYER_VALUES left out (the first convolution is always
kept), and at most MAX_FRAMES frames; past that every other frame is dropped, the first and last
kept, so the replay still spans the whole run at a coarser step: at most about 2 MB per run before compression.

Recording must never break a run: any failure is printed once (it reaches the run's log) and
recording stops, the training goes on.

Every write is also kept in the run registry (artifacts.store_snapshots), so a web host that shares
no disk with the worker (a Ray cluster) still replays the run, live and after; `load_snapshots`
falls back to that copy when the file is not here. A registry that refuses the copy is reported
once and tried again at the next write; the local file goes on regardless.

The committed default checkpoints were trained on another machine, so their runs' files are not in
this server's runs folder: `make pretrained` ships each run's file beside its checkpoint
(checkpoints/NAME.snapshots.npz, `python -m mnist_core.snapshots CKPT`), and `find_snapshots` looks
there for a run it does not have.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
from torch import nn

from .artifacts import store_snapshots, stored_snapshots
from .checkpoints import checkpoint_dirs, read_meta, weights_path
from .data import load_mnist
from .errors import MnistLabError, RunError
from .inspection import conv_kernels, feature_maps, first_layer_templates, is_convnet
from .paths import atomic_write
from .runfiles import snapshot_path  # runs/snapshots/RUN_ID.npz

FRAMES_PER_RUN = 30          # the loop's step schedule: a frame every total_steps // FRAMES_PER_RUN steps
MAX_FRAMES = 60              # validations add frames of their own; past this the recorder thins them
MAX_LAYER_VALUES = 5_000     # per layer: lenet5 keeps C1 and C3 (not C5's 48,000), cnn-small all three
MAX_TEMPLATES = 16           # an MLP's first-layer units recorded (of 50 to 256)
PROBE_INDEX = 0              # test image 0: a clear 7
WRITE_SECONDS = 2.0
FORMAT_VERSION = 1
SHIPPED_SUFFIX = ".snapshots.npz"  # beside a checkpoint: checkpoints/NAME.snapshots.npz


def shipped_path(checkpoint: os.PathLike) -> Path:
    """Where a checkpoint's training snapshots are shipped: NAME.snapshots.npz beside NAME.safetensors."""
    weights = weights_path(checkpoint)
    return weights.with_name(weights.stem + SHIPPED_SUFFIX)


def find_snapshots(run_id: str, root: Optional[os.PathLike] = None) -> Optional[Path]:
    """The file holding a run's snapshots: the run's own (runs/snapshots/RUN_ID.npz) or, for the run
    that made a checkpoint in the checkpoint folders, the one shipped beside it; None when neither is."""
    own = snapshot_path(run_id, root)
    if own.is_file():
        return own
    for folder in checkpoint_dirs():
        for shipped in sorted(folder.glob(f"*{SHIPPED_SUFFIX}")):
            weights = shipped.with_name(shipped.name[:-len(SHIPPED_SUFFIX)] + ".safetensors")
            try:
                if read_meta(weights).get("run_id") == run_id:
                    return shipped
            except MnistLabError:
                continue  # a broken sidecar is that checkpoint's problem, not this run's
    return None


def ship(checkpoint: os.PathLike, root: Optional[os.PathLike] = None) -> Path:
    """Copy the snapshots of the run that made `checkpoint` (its sidecar's run_id) beside it, checked
    first and compressed; returns the new file. Raises RunError when that run recorded none here."""
    run_id = read_meta(checkpoint).get("run_id")
    if not isinstance(run_id, str):
        raise RunError(f"{Path(checkpoint).name} names no training run")
    source = snapshot_path(run_id, root)
    if read_snapshots(source, run_id) is None:
        raise RunError(f"run {run_id} (which made {Path(checkpoint).name}) has no snapshots here")
    target = shipped_path(checkpoint)
    with np.load(source, allow_pickle=False) as z:
        arrays = {name: z[name] for name in z.files}
    atomic_write(target, lambda tmp: _savez(tmp, arrays))
    return target


def probe_image(data_root=None) -> tuple[np.ndarray, int]:
    """(uint8 [28,28], label): the fixed image every run's feature maps are recorded for."""
    images, labels = load_mnist("test", root=data_root)
    return images[PROBE_INDEX].numpy().copy(), int(labels[PROBE_INDEX])


def capture(model: nn.Module, probe: np.ndarray) -> tuple[list[tuple[str, np.ndarray]], list[tuple[str, np.ndarray]]]:
    """(kernels, maps) of the model now, each [(layer name, float32 array)], within the size caps.

    kernels: every Conv2d's weights [out, in, kh, kw] (the first always, the others up to
    MAX_LAYER_VALUES), or for an MLP its first MAX_TEMPLATES first-layer units as [units, 1, 28, 28].
    maps: the probe's feature maps for each of model.feature_layers up to MAX_LAYER_VALUES * 2.
    """
    if is_convnet(model):
        kernels = [(name, w) for i, (name, w) in enumerate(conv_kernels(model)) if i == 0 or w.size <= MAX_LAYER_VALUES]
    else:
        kernels = [("fc1", first_layer_templates(model)[:MAX_TEMPLATES, None])]
    maps, _ = feature_maps(model, probe)  # eval mode and inference mode inside; no random numbers drawn
    return kernels, [(name, m) for name, m in maps if m.size <= 2 * MAX_LAYER_VALUES]


@dataclass
class Snapshots:
    """A run's frames: arrays whose first axis is the frame, in step order."""
    steps: np.ndarray                      # int64 [T]
    epochs: np.ndarray                     # float32 [T]
    probe: np.ndarray                      # uint8 [28,28]
    probe_label: int
    kernels: dict = field(default_factory=dict)   # layer name -> float32 [T, ...]
    maps: dict = field(default_factory=dict)      # layer name -> float32 [T, ...]

    def __len__(self) -> int:
        return len(self.steps)


class Recorder:
    """Collects frames during a run and writes them to snapshot_path(run_id). Never raises."""

    def __init__(self, run_id: str, root: Optional[os.PathLike] = None, data_root=None,
                 max_frames: int = MAX_FRAMES, write_seconds: float = WRITE_SECONDS):
        self.run_id, self.root, self.data_root = run_id, root, data_root
        self.max_frames, self.write_seconds = max(2, max_frames), write_seconds
        self.frames: list[tuple[int, float, list, list]] = []
        self.probe: Optional[tuple[np.ndarray, int]] = None
        self.failed = False
        self.last_write = 0.0
        self.dirty = False
        self.store_failed = False

    def _fail(self, what: str, exc: BaseException) -> None:
        self.failed = True
        print(f"snapshots: {what} failed, recording stops ({type(exc).__name__}: {exc})", file=sys.stderr)

    def record(self, model: nn.Module, step: int, epoch: float) -> None:
        """Keep a frame of `model` at `step` (the training.train on_snapshot callback)."""
        if self.failed:
            return
        try:
            if self.probe is None:
                self.probe = probe_image(self.data_root)
            kernels, maps = capture(model, self.probe[0])
            self.frames.append((int(step), float(epoch), kernels, maps))
            if len(self.frames) > self.max_frames:  # thin out evenly, keeping the first and the newest
                self.frames = self.frames[:-1][::2] + self.frames[-1:]
            self.dirty = True
        except Exception as exc:  # noqa: BLE001 - a snapshot is never worth a failed run
            self._fail("capturing a frame", exc)
            return
        if time.monotonic() - self.last_write >= self.write_seconds:
            self.write()

    def close(self) -> None:
        """Write what is left (call when the run ends, whatever its outcome)."""
        if self.dirty and not self.failed:
            self.write()

    def write(self) -> None:
        try:
            path = snapshot_path(self.run_id, self.root)
            path.parent.mkdir(parents=True, exist_ok=True)
            first_kernels, first_maps = self.frames[0][2], self.frames[0][3]
            arrays = {
                "format_version": np.int64(FORMAT_VERSION),
                "steps": np.array([f[0] for f in self.frames], np.int64),
                "epochs": np.array([f[1] for f in self.frames], np.float32),
                "probe": self.probe[0], "probe_label": np.int64(self.probe[1]),
                "kernel_names": np.array([n for n, _ in first_kernels], dtype=str),
                "map_names": np.array([n for n, _ in first_maps], dtype=str),
            }
            for i in range(len(first_kernels)):
                arrays[f"kernel_{i}"] = np.stack([f[2][i][1] for f in self.frames]).astype(np.float16)
            for i in range(len(first_maps)):
                arrays[f"map_{i}"] = np.stack([f[3][i][1] for f in self.frames]).astype(np.float16)
            atomic_write(path, lambda tmp: _savez(tmp, arrays))
            self.dirty = False
            self.last_write = time.monotonic()
        except Exception as exc:  # noqa: BLE001 - see record()
            self._fail("writing", exc)
            return
        self._store(path)

    def _store(self, path: Path) -> None:
        """Copy the file just written into the registry, for hosts without this disk."""
        try:
            store_snapshots(self.run_id, path.read_bytes(), self.root)
            self.store_failed = False
        except Exception as exc:  # noqa: BLE001 - the local file is written; the next write tries again
            if not self.store_failed:
                print(f"snapshots: keeping them in the run registry failed, the next write tries again "
                      f"({type(exc).__name__}: {exc})", file=sys.stderr)
            self.store_failed = True


def _savez(path: str, arrays: dict) -> None:
    """Compressed (about half the size: feature maps are mostly zeros after ReLU)."""
    with open(path, "wb") as f:  # a file object: given a name, np.savez would add ".npz" to it
        np.savez_compressed(f, **arrays)


def load_snapshots(run_id: str, root: Optional[os.PathLike] = None) -> Optional[Snapshots]:
    """A run's snapshots (see find_snapshots; else the copy in the run registry), or None when it has
    none (a run from before snapshots, the NumPy engine). Raises RunError for a file or a stored copy
    that exists but cannot be read."""
    path = find_snapshots(run_id, root)
    if path is not None:
        return read_snapshots(path, run_id)
    data = stored_snapshots(run_id, root)
    return None if data is None else _parse(io.BytesIO(data), run_id)


def read_snapshots(path: os.PathLike, run_id: str) -> Optional[Snapshots]:
    """The snapshots in `path` (of run `run_id`, for messages), or None when there is no such file.
    Raises RunError for a file that exists but cannot be read."""
    path = Path(path)
    if not path.is_file():
        return None
    return _parse(path, run_id)


def _parse(source, run_id: str) -> Snapshots:
    """The snapshots in an npz file or file object, read without pickle; RunError when unreadable."""
    try:
        with np.load(source, allow_pickle=False) as z:
            if int(z["format_version"]) != FORMAT_VERSION:
                raise ValueError(f"format version {int(z['format_version'])}")
            kernels = {str(n): z[f"kernel_{i}"].astype(np.float32) for i, n in enumerate(z["kernel_names"])}
            maps = {str(n): z[f"map_{i}"].astype(np.float32) for i, n in enumerate(z["map_names"])}
            snaps = Snapshots(steps=z["steps"].astype(np.int64), epochs=z["epochs"].astype(np.float32),
                              probe=z["probe"].astype(np.uint8), probe_label=int(z["probe_label"]),
                              kernels=kernels, maps=maps)
    except Exception as exc:  # noqa: BLE001 - a damaged file is reported as one line
        raise RunError(f"the training snapshots of run {run_id} cannot be read ({type(exc).__name__})") from None
    if any(len(a) != len(snaps) for a in (*kernels.values(), *maps.values())):
        raise RunError(f"the training snapshots of run {run_id} are inconsistent")
    return snaps


def main(argv: Optional[list[str]] = None) -> int:
    """`python -m mnist_core.snapshots CKPT...`: ship each checkpoint's run snapshots beside it (make pretrained)."""
    parser = argparse.ArgumentParser(prog="python -m mnist_core.snapshots",
                                     description="Copy the training snapshots of the run that made each "
                                                 "checkpoint beside it, as NAME.snapshots.npz.")
    parser.add_argument("checkpoints", nargs="+", help="checkpoint files (NAME.safetensors)")
    args = parser.parse_args(argv)
    for checkpoint in args.checkpoints:
        try:
            target = ship(checkpoint)
        except MnistLabError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        snaps = read_snapshots(target, "")
        print(f"{target.name}: {len(snaps)} frames, {target.stat().st_size / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Where things live on disk. Each folder can be moved with an environment variable."""

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def _dir(env: str, default: str) -> Path:
    value = os.environ.get(env)
    return Path(value).expanduser().resolve() if value else REPO_ROOT / default


def data_dir() -> Path:
    """MNIST files, in torchvision's layout below this folder (MNIST/raw/...)."""
    return _dir("MNIST_DATA_DIR", "data")


def runs_dir() -> Path:
    """The run registry (registry.sqlite)."""
    return _dir("MNIST_RUNS_DIR", "runs")


def checkpoint_dir() -> Path:
    """Default checkpoints (committed) and the ones training writes."""
    return _dir("MNIST_CHECKPOINT_DIR", "checkpoints")

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


def shown(path: Path) -> str:
    """A folder as messages name it: relative to the project (data/MNIST/raw), or below the environment
    variable that moved it ($MNIST_DATA_DIR/MNIST/raw). The operator can find it from either; a visitor
    who sees the message on a page learns nothing of the server's file system."""
    path = Path(path).resolve()
    for env in ("MNIST_DATA_DIR", "MNIST_RUNS_DIR", "MNIST_CHECKPOINT_DIR"):
        base = os.environ.get(env)
        if base and path.is_relative_to(Path(base).expanduser().resolve()):
            return str(Path(f"${env}") / path.relative_to(Path(base).expanduser().resolve()))
    if path.is_relative_to(REPO_ROOT):
        return str(path.relative_to(REPO_ROOT))
    return str(Path(*path.parts[-2:]))  # e.g. MNIST/raw: the layout below a root passed in code

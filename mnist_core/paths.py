"""Where things live on disk, and how a file that must not be half-written is written.

Each folder can be moved with an environment variable. A run's own files (its log, its snapshots,
its default checkpoint name) are named in runfiles.py.
"""

import os
import tempfile
from pathlib import Path
from typing import Callable

REPO_ROOT = Path(__file__).resolve().parent.parent


def _dir(env: str, default: str) -> Path:
    value = os.environ.get(env)
    return Path(value).expanduser().resolve() if value else REPO_ROOT / default


def data_dir() -> Path:
    """MNIST files, in torchvision's layout below this folder (MNIST/raw/...)."""
    return _dir("MNIST_DATA_DIR", "data")


def runs_dir() -> Path:
    """The run registry (registry.sqlite) and each run's files (runfiles.py)."""
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


def atomic_write(path: os.PathLike, write: Callable[[str], None]) -> Path:
    """Write a file that must never be seen half-written: the one write-then-rename helper.

    `write(tmp)` writes the whole file at `tmp`, a temporary name beside `path` (same folder, so the
    rename is atomic); it is flushed to disk (fsync) and renamed over `path`. Readers see the old file
    or the new one, never a part, even across a crash; a failure leaves no temporary behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path

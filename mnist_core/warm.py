"""What every training worker needs before its first step, loaded once ahead of time.

Imported by the local runner's forkserver (runner.py) and nowhere else: each worker forked from it
starts with torch, `torch._dynamo` (which the first optimizer step would otherwise import), the
training code and the MNIST tensors already in memory. Importing must not run torch operations on
real data or start threads: the process that imports this is forked afterwards.
"""

import torch  # noqa: F401
import torch._dynamo  # noqa: F401 - imported by the first optimizer step otherwise

from . import data, training, worker  # noqa: F401
from .errors import MnistLabError

try:
    for _split in ("train", "test"):
        data.load_mnist(_split)  # cached: forked workers share these pages until they write
except (MnistLabError, OSError):
    pass  # no data here: the worker says so in its run's error, as it would without a warm start

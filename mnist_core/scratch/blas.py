"""NumPy's BLAS thread count, set for a block of code.

NumPy's wheels bundle OpenBLAS, which starts one thread per core. For the small matrices of a
training step that is a loss, and on a busy machine a large one: an epoch of mlp-50 on two shared
cores is many times slower than on one thread (BENCHMARKS.md). torch has set_num_threads; NumPy has no
such call, so this opens the bundled OpenBLAS (already loaded: the same library) and calls its own.
Where the BLAS is another one, or not found, the block runs unchanged.
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import os

import numpy as np


def _openblas_thread_functions():
    """(get, set) for the OpenBLAS that numpy's wheels bundle, or None (another BLAS, or none found).

    What threadpoolctl does, for the one library we need: the wheel's OpenBLAS is already loaded,
    so opening it again by path returns the same library, whose thread count we can then set.
    """
    folder = os.path.dirname(np.__file__)
    # Linux and Windows wheels keep it in numpy.libs/, macOS wheels in numpy/.dylibs/.
    candidates = glob.glob(os.path.join(folder + ".libs", "*openblas*"))
    candidates += glob.glob(os.path.join(folder, ".dylibs", "*openblas*"))
    for path in candidates:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix, suffix in (("scipy_openblas_", "64_"), ("openblas_", "64_"), ("openblas_", "")):
            get = getattr(lib, f"{prefix}get_num_threads{suffix}", None)
            set_ = getattr(lib, f"{prefix}set_num_threads{suffix}", None)
            if get is not None and set_ is not None:
                return get, set_
    return None


@contextlib.contextmanager
def blas_threads(n: int):
    """Run the block with NumPy's BLAS on n threads (where we can set them), then restore the count."""
    functions = _openblas_thread_functions()
    if functions is None:
        yield
        return
    get, set_ = functions
    previous = get()
    set_(n)
    try:
        yield
    finally:
        set_(previous)

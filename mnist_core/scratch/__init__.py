"""From scratch in NumPy: the tutorials' networks and operators, with their backward passes.

mlp.py holds tutorials 1 and 3's layers (affine, ReLU, softmax with cross-entropy or squared
error) and tutorial 2's squared error on the raw outputs, their initialisations, the MLP and SGD;
training/numpy_engine.py trains it like any run.
conv.py holds tutorial 4's im2col convolution and pooling, and `lenet5_speed_table()` comparing
them with torch's. blas.py sets NumPy's BLAS threads for a block. Everything here is plain NumPy
except the comparison with torch itself.
"""

from .blas import blas_threads
from .conv import avg_pool2d, conv2d, im2col, lenet5_speed_table, max_pool2d
from .mlp import (LOSSES, MLP, SGD, Affine, Flatten, Normalize, ReLU, SoftmaxCrossEntropy, SoftmaxSquaredError,
                  SquaredError, normal_init, xavier_uniform_init)

__all__ = ["blas_threads", "avg_pool2d", "conv2d", "im2col", "lenet5_speed_table", "max_pool2d", "LOSSES", "MLP", "SGD",
           "Affine", "Flatten", "Normalize", "ReLU", "SoftmaxCrossEntropy", "SoftmaxSquaredError", "SquaredError",
           "normal_init", "xavier_uniform_init"]

"""What every training worker needs before its first step, loaded once ahead of time.

Imported by the local runner's forkserver (runner.py) and nowhere else: each worker forked from it
starts with torch, `torch._dynamo` (which the first optimizer would otherwise import), LeNet-5's
kernels, the training and worker code and the MNIST tensors already in memory (training.warm_up).
It runs no torch operation and starts no thread: the process that imports this is forked afterwards.
Never imported by the web server (it loads the kernels).
"""

from . import training, worker  # noqa: F401

training.warm_up()

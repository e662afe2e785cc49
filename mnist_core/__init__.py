"""mnist_core: everything in MNIST Lab that is not UI.

data (fetch, verify, load MNIST), models (the model zoo), training (config, presets, loop),
runs (the SQLite run registry), worker (what executes a queued run), checkpoints (safetensors +
JSON), preprocess (canvas -> 28x28), predict (probabilities), inspect (feature maps, kernels) and
kernels (LeNet-5's fused CPU kernels, in C).
The CLI lives in __main__.py: `python -m mnist_core --help`.
"""

__version__ = "0.1.0"

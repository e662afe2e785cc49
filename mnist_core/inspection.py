"""Looking inside: kernels, feature maps and activations for the inspection pages, and dataset stats.

Everything here is plain NumPy out, so the pages only draw and the tests need no browser.

- `conv_kernels(model)`: every Conv2d's weights, under a name a person would use ("C1", "block2.conv1").
- `feature_maps(model, image)`: the output of each layer in `model.feature_layers` for one 28x28 image,
  caught with forward hooks (so the model's own forward, padding and normalization included, runs
  unchanged), and the class probabilities. The hooks go on a private copy of the model: the server
  shares one model object between every visitor's session, and hooks on it would catch their passes.
- `first_layer_templates(model)`: an MLP's first-layer weights as 28x28 pictures, one per hidden unit.
- `class_means`, `pixel_stats`, `browse_order`: what the Dataset page shows and how it pages.
- `mosaic(tiles, cols)`: tiles laid out in a grid with NaN gaps, which Plotly draws as thin seams.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .models import private_copy
from .predict import as_batch


def is_convnet(model: nn.Module) -> bool:
    """True when the model has at least one convolution (LeNet-5, the CNNs), False for the MLPs."""
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


def _body(model: nn.Module) -> nn.Module:
    # Zoo models keep their layers in `body` (see models.MnistNet); anything else is its own body.
    return getattr(model, "body", model)


def _is_conv_wrapper(module: nn.Module) -> bool:
    """A block that is just a conv plus its batch norm / ReLU: its name stands for the conv itself."""
    children = dict(module.named_children())
    return (isinstance(children.get("conv"), nn.Conv2d)
            and all(isinstance(m, (nn.Conv2d, nn.BatchNorm2d, nn.ReLU)) for m in children.values())
            and sum(isinstance(m, nn.Conv2d) for m in children.values()) == 1)


def conv_kernels(model: nn.Module) -> list[tuple[str, np.ndarray]]:
    """[(layer name, weights float32 [out, in, kh, kw])] for every Conv2d, in forward order.

    Names drop a trailing ".conv" when the block around it is only conv + norm + ReLU, so LeNet-5
    gives "C1", "C3", "C5", cnn-small "block1.conv", "block2.conv", "block3", and cnn-strong
    "block1.conv", "block2.conv1", "block2.conv2", "block3".
    """
    body = _body(model)
    modules = dict(body.named_modules())
    out = []
    for name, module in body.named_modules():
        if not isinstance(module, nn.Conv2d):
            continue
        parent, _, leaf = name.rpartition(".")
        if leaf == "conv" and parent and _is_conv_wrapper(modules[parent]):
            name = parent
        out.append((name, module.weight.detach().float().cpu().numpy().copy()))
    return out


def feature_maps(model: nn.Module, image) -> tuple[list[tuple[str, np.ndarray]], np.ndarray]:
    """(maps, probabilities) for one image: float [28,28] in [0,1] (uint8 0-255 is scaled too).

    maps is [(layer name, float32 array)] for each name in `model.feature_layers`: [C,H,W] after a
    convolutional layer, [units] after an MLP's hidden ReLU. probabilities is float32 [10].
    """
    image = np.asarray(image)
    if image.dtype == np.uint8:
        image = image.astype(np.float32) / 255.0
    x = as_batch(image)
    if len(x) != 1:
        raise ValueError(f"expected one image, got {len(x)}")
    model = private_copy(model)  # our hooks, on a model no other session runs
    body = _body(model)
    names = tuple(getattr(model, "feature_layers", ()))
    captured: dict[str, torch.Tensor] = {}

    def keep(name):
        def hook(module, inputs, output):
            captured[name] = output.detach()
        return hook

    for name in names:
        body.get_submodule(name).register_forward_hook(keep(name))
    with torch.inference_mode():
        probs = model(x.to(next(model.parameters()).device)).softmax(1)[0].float().cpu().numpy()
    maps = [(name, captured[name][0].float().cpu().numpy()) for name in names]
    return maps, probs


def first_layer_templates(model: nn.Module) -> np.ndarray:
    """An MLP's first-layer weights as float32 [hidden, 28, 28]: what each hidden unit looks for."""
    weight = getattr(model, "first_layer_weight", None)  # an imported model finds its own (onnx_import)
    if weight is not None:
        return np.asarray(weight, np.float32).reshape(-1, 28, 28).copy()
    fc1 = getattr(_body(model), "fc1", None)
    if not isinstance(fc1, nn.Linear) or fc1.in_features != 28 * 28:
        raise ValueError("first-layer templates need an MLP whose first layer (fc1) reads the 784 pixels")
    return fc1.weight.detach().float().cpu().numpy().reshape(-1, 28, 28).copy()


# --- the dataset page ---------------------------------------------------------------------------

def class_means(images: np.ndarray, labels: np.ndarray, num_classes: int = 10) -> np.ndarray:
    """The mean image of each class, float32 [num_classes, H, W] in [0,1] (uint8 input is /255).

    A class with no images gives zeros.
    """
    images, labels = np.asarray(images), np.asarray(labels)
    scale = 255.0 if images.dtype == np.uint8 else 1.0
    out = np.zeros((num_classes,) + images.shape[1:], np.float32)
    for c in range(num_classes):
        members = images[labels == c]
        if len(members):
            out[c] = members.mean(axis=0, dtype=np.float64) / scale
    return out


def pixel_stats(images: np.ndarray, chunk: int = 8192) -> tuple[float, float]:
    """(mean, std) of every pixel of every image, in [0,1] units (uint8 input is /255).

    This is how MNIST_MEAN and MNIST_STD are defined (population std). Sums run in chunks so the
    60,000 training images never need a float copy of the whole set.
    """
    images = np.asarray(images)
    scale = 255.0 if images.dtype == np.uint8 else 1.0
    n = images.size
    if n == 0:
        raise ValueError("pixel_stats needs at least one pixel")
    total = total_sq = 0.0
    for i in range(0, len(images), chunk):
        block = images[i:i + chunk].astype(np.float64) / scale
        total += float(block.sum())
        total_sq += float(np.square(block).sum())
    mean = total / n
    return mean, float(np.sqrt(max(total_sq / n - mean * mean, 0.0)))


def browse_order(labels: np.ndarray, label: int | None = None, seed: int | None = None) -> np.ndarray:
    """Dataset indices in the order the grid shows them: all (or only `label`), ascending or shuffled.

    The same seed always gives the same order.
    """
    labels = np.asarray(labels)
    order = np.arange(len(labels)) if label is None else np.flatnonzero(labels == label)
    if seed is not None:
        order = order[np.random.default_rng(seed).permutation(len(order))]
    return order


def mosaic(tiles: np.ndarray, cols: int, gap: int = 1, fill: float = np.nan) -> np.ndarray:
    """Tiles [N,H,W] laid out row by row in `cols` columns, `gap` pixels of `fill` between them.

    Returns float32 [rows*H + (rows-1)*gap, cols*W + (cols-1)*gap]; cells after the last tile are
    `fill` too. With NaN as fill a Plotly heatmap leaves the seams blank.
    """
    tiles = np.asarray(tiles, dtype=np.float32)
    if tiles.ndim != 3:
        raise ValueError(f"expected tiles [N,H,W], got shape {tiles.shape}")
    n, h, w = tiles.shape
    cols = max(1, min(cols, n)) if n else 1
    rows = max(1, -(-n // cols))
    out = np.full((rows * h + (rows - 1) * gap, cols * w + (cols - 1) * gap), fill, np.float32)
    for i in range(n):
        r, c = divmod(i, cols)
        out[r * (h + gap):r * (h + gap) + h, c * (w + gap):c * (w + gap) + w] = tiles[i]
    return out


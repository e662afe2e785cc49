"""Explaining a model: which pixels drove an answer, and how the model arranges the test set.

Attribution (captum does the work; nothing here re-implements it):

- `attribute(model, image, method, target)`: one 28x28 map for one image and one class (the
  predicted one unless `target` names another), by
    "saliency"              |d logit / d pixel| (Simonyan et al., 2013), one backward pass;
    "integrated-gradients"  gradients averaged along the straight path from a black image to the
                            input, times the input (Sundararajan et al., 2017): the map sums to
                            logit(input) - logit(black), which the tests check;
    "occlusion"             how much the logit drops when a 4x4 patch is blacked out (Zeiler and
                            Fergus, 2014), sliding by 2 pixels.
  All three explain the class's logit (the score before softmax): gradients of a saturated softmax
  probability are close to zero and explain nothing. `attributions` makes all three in one call (a
  page runs it as one bounded heavy job, mnist_core.heavy).

Embedding map:

- `penultimate(model, images)`: what the final Linear layer reads (the network's last
  representation), caught with a forward pre-hook on it, so the model's own forward runs unchanged.
- `embedding_map(model, images, labels, method)`: those features projected to 2-D with PCA or t-SNE
  (scikit-learn), with each image's prediction, for a scatter plot coloured by label.
- `map_sizes(method)`: the sample sizes a page offers: t-SNE's cost grows fastest with the sample,
  so under MNIST_DEMO it maps at most DEMO_TSNE_POINTS images.

Everything returns plain NumPy, so the pages only draw. The server shares one model object between
every visitor's session, so hooks and mode switches happen on a private copy (models.private_copy),
never on the model passed in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from . import limits
from .models import private_copy
from .predict import as_batch

METHODS = {
    "saliency": "Gradient saliency",
    "integrated-gradients": "Integrated Gradients",
    "occlusion": "Occlusion",
}
PROJECTIONS = {"pca": "PCA", "tsne": "t-SNE"}
IG_STEPS = 64            # Gauss-Legendre steps: the completeness gap is ~1e-3 of the logit at 64
OCCLUSION_WINDOW = 4     # pixels; about a pen stroke's width in a 28x28 MNIST digit
OCCLUSION_STRIDE = 2
DEFAULT_SAMPLE = 2000    # test images on the embedding map
MAP_SIZES = (250, 500, 1000, 2000, 5000)   # the samples a page offers
DEMO_TSNE_POINTS = 1000  # t-SNE's largest sample under MNIST_DEMO: a map in seconds on one core (BENCHMARKS.md)


@dataclass
class Attribution:
    method: str
    target: int              # the class explained
    predicted: int           # the model's answer for the image
    values: np.ndarray       # float32 [28,28], same layout as the image
    probs: np.ndarray        # float32 [10]


def _float_batch(images) -> torch.Tensor:
    """as_batch, with uint8 pixels (0-255, as the dataset stores them) scaled to [0,1] first."""
    images = images.numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    return as_batch(images.astype(np.float32) / 255.0 if images.dtype == np.uint8 else images)


def _final_linear(model: nn.Module) -> nn.Linear:
    """The layer that turns the last representation into the 10 logits (MnistNet: body's last module;
    an imported model names its own Gemm or MatMul in `final_layer`, onnx_import)."""
    body = getattr(model, "body", model)
    if getattr(model, "final_layer", None):
        return body.get_submodule(model.final_layer)
    last = list(body.children())[-1:]
    if not last or not isinstance(last[0], nn.Linear):
        raise ValueError("expected a zoo model whose body ends with the final Linear layer")
    return last[0]


def attribute(model: nn.Module, image, method: str = "saliency", target: int | None = None) -> Attribution:
    """Attribution of one 28x28 image (float in [0,1], or uint8) for class `target` (default: predicted)."""
    from captum.attr import IntegratedGradients, Occlusion, Saliency  # here: seconds to load, Explain's only

    if method not in METHODS:
        raise ValueError(f"unknown attribution method {method!r}: choose one of {', '.join(METHODS)}")
    if target is not None and not (isinstance(target, (int, np.integer)) and 0 <= target < 10):
        raise ValueError(f"target must be a digit 0-9, got {target!r}")
    x = _float_batch(image)
    if len(x) != 1:
        raise ValueError(f"expected one image, got {len(x)}")
    model = private_copy(model)  # eval mode, and captum's passes out of everyone else's way
    x = x.to(next(model.parameters()).device)
    with torch.no_grad():
        probs = model(x).softmax(1)[0].float().cpu().numpy()
    predicted = int(probs.argmax())
    cls = predicted if target is None else int(target)
    if method == "saliency":
        x.requires_grad_()  # captum would set it, with a warning
        values = Saliency(model).attribute(x, target=cls, abs=True)
    elif method == "integrated-gradients":
        values = IntegratedGradients(model).attribute(x, baselines=torch.zeros_like(x), target=cls,
                                                      n_steps=IG_STEPS, internal_batch_size=IG_STEPS)
    else:
        values = Occlusion(model).attribute(x, sliding_window_shapes=(1, OCCLUSION_WINDOW, OCCLUSION_WINDOW),
                                            strides=(1, OCCLUSION_STRIDE, OCCLUSION_STRIDE), baselines=0.0,
                                            target=cls, perturbations_per_eval=64)
    return Attribution(method=method, target=cls, predicted=predicted,
                       values=values.detach()[0, 0].float().cpu().numpy(), probs=probs)


def attributions(model: nn.Module, image, target: int | None = None,
                 methods: tuple[str, ...] = tuple(METHODS)) -> dict[str, Attribution]:
    """`attribute` by each of `methods`, for one image and one class: {method: Attribution}."""
    return {method: attribute(model, image, method, target) for method in methods}


# --- the embedding map --------------------------------------------------------------------------

def map_sizes(method: str) -> list[int]:
    """The sample sizes offered for a `method` map on this host: MAP_SIZES, and for t-SNE under
    MNIST_DEMO only those up to DEMO_TSNE_POINTS."""
    if method == "tsne" and limits.current().demo:
        return [n for n in MAP_SIZES if n <= DEMO_TSNE_POINTS]
    return list(MAP_SIZES)


def sample_indices(count: int, size: int, seed: int = 0) -> np.ndarray:
    """`size` distinct indices of `count` items, ascending; the same seed gives the same sample."""
    size = min(int(size), int(count))
    return np.sort(np.random.default_rng(seed).choice(count, size, replace=False))


@torch.inference_mode()
def penultimate(model: nn.Module, images, batch_size: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """(features float32 [N,D], probabilities float32 [N,10]): the final Linear layer's input for each image.

    lenet5 gives D=84 (F6), cnn-small 1568 (its flattened last feature maps), cnn-strong 128 (after
    global average pooling), the MLPs their last hidden layer.
    """
    x = _float_batch(images)
    model = private_copy(model)  # the hook goes on a model no other session runs
    head = _final_linear(model)
    device = next(model.parameters()).device
    feats, probs = [], []
    head.register_forward_pre_hook(lambda module, inputs: feats.append(inputs[0].detach().float().cpu()))
    for i in range(0, len(x), batch_size):
        probs.append(model(x[i:i + batch_size].to(device)).softmax(1).float().cpu())
    if not feats:
        return np.zeros((0, getattr(head, "in_features", 0)), np.float32), np.zeros((0, 10), np.float32)
    return torch.cat(feats).flatten(1).numpy(), torch.cat(probs).numpy()


def project(features: np.ndarray, method: str = "pca", seed: int = 0) -> np.ndarray:
    """Features [N,D] -> float32 [N,2] by PCA, or by t-SNE (after PCA to 50 dimensions, the usual recipe)."""
    from sklearn.decomposition import PCA  # here: scikit-learn takes seconds to load, for embedding maps only
    from sklearn.manifold import TSNE

    if method not in PROJECTIONS:
        raise ValueError(f"unknown projection {method!r}: choose one of {', '.join(PROJECTIONS)}")
    features = np.asarray(features, np.float32)
    n, d = features.shape
    if n < 3:
        raise ValueError(f"a 2-D map needs at least 3 images, got {n}")
    if method == "pca":
        return PCA(2, svd_solver="randomized", random_state=seed).fit_transform(features).astype(np.float32)
    if d > 50 and n > 50:  # t-SNE's neighbour search on 50 PCA components is faster and as good
        features = PCA(50, svd_solver="randomized", random_state=seed).fit_transform(features)
    perplexity = min(30.0, (n - 1) / 3)  # t-SNE needs more points than the perplexity
    tsne = TSNE(2, perplexity=perplexity, init="pca", learning_rate="auto", random_state=seed)
    return tsne.fit_transform(features).astype(np.float32)


@dataclass
class EmbeddingMap:
    indices: np.ndarray      # int64 [N]: which images of the split
    xy: np.ndarray           # float32 [N,2]
    labels: np.ndarray       # int64 [N]
    predicted: np.ndarray    # int64 [N]
    confidence: np.ndarray   # float32 [N]: the predicted class's probability

    @property
    def mistakes(self) -> np.ndarray:
        return self.predicted != self.labels


def embedding_map(model: nn.Module, images, labels, method: str = "pca", size: int = DEFAULT_SAMPLE,
                  seed: int = 0, features: tuple[np.ndarray, np.ndarray] | None = None) -> EmbeddingMap:
    """A 2-D map of `size` sampled images: the penultimate features projected with `method`.

    `features` may pass in penultimate()'s result for exactly these sampled images, so switching
    between PCA and t-SNE does not run the network again.
    """
    labels = np.asarray(labels)
    idx = sample_indices(len(labels), size, seed)
    feats, probs = features if features is not None else penultimate(model, np.asarray(images)[idx])
    if len(feats) != len(idx):
        raise ValueError(f"features are for {len(feats)} images, the sample has {len(idx)}")
    return EmbeddingMap(indices=idx, xy=project(feats, method, seed), labels=labels[idx].astype(np.int64),
                        predicted=probs.argmax(1).astype(np.int64), confidence=probs.max(1).astype(np.float32))

"""Explain: attribution maps (captum) and the embedding map (penultimate features, PCA and t-SNE)."""

import numpy as np
import pytest
import torch

from mnist_core import explain
from mnist_core.checkpoints import default_checkpoint, load_checkpoint
from mnist_core.models import create_model


@pytest.fixture(scope="module")
def lenet5():
    path = default_checkpoint("lenet5")
    if path is None:
        pytest.skip("the committed lenet5 checkpoint is missing")
    return load_checkpoint(path)[0]


@pytest.fixture(scope="module")
def test_images(mnist):
    from mnist_core.data import load_mnist

    images, labels = load_mnist("test")
    return images.numpy(), labels.numpy()


def logit(model, image: np.ndarray, digit: int) -> float:
    with torch.no_grad():
        return model(torch.as_tensor(image, dtype=torch.float32)[None, None])[0, digit].item()


@pytest.mark.parametrize("method", list(explain.METHODS))
def test_each_method_explains_the_predicted_digit_by_default(lenet5, test_images, method):
    images, labels = test_images
    result = explain.attribute(lenet5, images[0], method)
    assert result.values.shape == (28, 28) and result.values.dtype == np.float32
    assert np.isfinite(result.values).all() and np.abs(result.values).max() > 0
    assert result.target == result.predicted == labels[0] == int(result.probs.argmax())


def test_any_digit_can_be_explained(lenet5, test_images):
    image = test_images[0][0]
    for_seven = explain.attribute(lenet5, image, "integrated-gradients")
    for_one = explain.attribute(lenet5, image, "integrated-gradients", target=1)
    assert for_one.target == 1 and for_one.predicted == for_seven.predicted == 7
    assert not np.allclose(for_one.values, for_seven.values)


def test_saliency_is_the_gradient_magnitude(lenet5, test_images):
    image = test_images[0][0].astype(np.float32) / 255
    x = torch.tensor(image)[None, None].requires_grad_()
    lenet5(x)[0, 7].backward()
    result = explain.attribute(lenet5, image, "saliency", target=7)
    np.testing.assert_allclose(result.values, x.grad[0, 0].abs().numpy(), rtol=1e-5, atol=1e-7)


def test_integrated_gradients_add_up_to_the_score_change(lenet5, test_images):
    """Completeness: the map sums to logit(image) - logit(black image)."""
    image = test_images[0][1].astype(np.float32) / 255
    result = explain.attribute(lenet5, image, "integrated-gradients")
    change = logit(lenet5, image, result.target) - logit(lenet5, np.zeros_like(image), result.target)
    assert result.values.sum() == pytest.approx(change, rel=0.01)


def test_occlusion_of_empty_background_changes_nothing(lenet5, test_images):
    image = test_images[0][0]
    result = explain.attribute(lenet5, image, "occlusion")
    # Every 4x4 window over the top-left corner is black already: blacking it out changes no score.
    assert np.abs(result.values[:3, :3]).max() < 1e-4
    ink = image > 128
    assert np.abs(result.values[ink]).mean() > 100 * np.abs(result.values[:3, :3]).mean() + 1e-3


def test_attribution_works_for_every_architecture_and_a_drawing():
    drawing = np.zeros((28, 28), np.float32)
    drawing[4:24, 13:15] = 1.0
    for name in ("mlp-50", "cnn-small", "cnn-strong"):
        model = create_model(name).eval()
        for method in explain.METHODS:
            assert explain.attribute(model, drawing, method).values.shape == (28, 28)
        assert not model.training


def test_bad_requests_are_refused(lenet5):
    image = np.zeros((28, 28), np.float32)
    with pytest.raises(ValueError, match="unknown attribution method"):
        explain.attribute(lenet5, image, "lime")
    with pytest.raises(ValueError, match="digit 0-9"):
        explain.attribute(lenet5, image, "saliency", target=10)
    with pytest.raises(ValueError):
        explain.attribute(lenet5, np.zeros((2, 28, 28), np.float32), "saliency")


@pytest.mark.parametrize("name, width", [("lenet5", 84), ("cnn-small", 1568), ("cnn-strong", 128), ("mlp-256-64", 64)])
def test_penultimate_features_are_what_the_final_layer_reads(name, width):
    model = create_model(name).eval()
    x = torch.rand(5, 1, 28, 28)
    feats, probs = explain.penultimate(model, x)
    assert feats.shape == (5, width) and probs.shape == (5, 10)
    head = list(model.body.children())[-1]
    with torch.no_grad():
        np.testing.assert_allclose(head(torch.from_numpy(feats)).numpy(), model(x).numpy(), rtol=1e-4, atol=1e-5)
    assert not head._forward_pre_hooks  # the hook is gone


def test_sample_is_fixed_by_its_seed():
    a = explain.sample_indices(10_000, 300, seed=0)
    assert len(np.unique(a)) == 300 and (np.diff(a) > 0).all()
    assert (a == explain.sample_indices(10_000, 300, seed=0)).all()
    assert not (a == explain.sample_indices(10_000, 300, seed=1)).all()
    assert len(explain.sample_indices(50, 300)) == 50


def test_pca_map_marks_the_mistakes(lenet5, test_images):
    images, labels = test_images
    emap = explain.embedding_map(lenet5, images, labels, "pca", size=300)
    assert emap.xy.shape == (300, 2) and np.isfinite(emap.xy).all()
    assert (emap.labels == labels[emap.indices]).all()
    probs = explain.penultimate(lenet5, images[emap.indices])[1]
    assert (emap.predicted == probs.argmax(1)).all()
    assert (emap.mistakes == (emap.predicted != emap.labels)).all()


def test_tsne_map_is_reproducible_and_keeps_digits_together(lenet5, test_images):
    images, labels = test_images
    idx = explain.sample_indices(len(labels), 200)
    features = explain.penultimate(lenet5, images[idx])
    a = explain.embedding_map(lenet5, images, labels, "tsne", size=200, features=features)
    b = explain.embedding_map(lenet5, images, labels, "tsne", size=200, features=features)
    np.testing.assert_array_equal(a.xy, b.xy)
    # A trained network's map: each point's nearest neighbour on the map is nearly always the same digit.
    d = ((a.xy[:, None] - a.xy[None]) ** 2).sum(-1) + np.eye(len(a.xy)) * 1e9
    assert (a.labels[d.argmin(1)] == a.labels).mean() > 0.9


def test_projection_refuses_unknown_methods_and_tiny_samples():
    with pytest.raises(ValueError, match="unknown projection"):
        explain.project(np.zeros((10, 4)), "umap")
    with pytest.raises(ValueError, match="at least 3"):
        explain.project(np.zeros((2, 4)), "pca")

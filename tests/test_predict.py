"""mnist_core.predict: class probabilities for 28x28 images."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mnist_core.checkpoints import default_checkpoint, load_checkpoint
from mnist_core.models import create_model
from mnist_core.predict import as_batch, predict_proba


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return create_model("lenet5")


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).random((5, 28, 28), dtype=np.float32)


def _check_probabilities(p: np.ndarray, n: int) -> None:
    assert isinstance(p, np.ndarray) and p.dtype == np.float32 and p.shape == (n, 10)
    assert (p >= 0).all() and (p <= 1).all()
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-5)


def test_a_single_28x28_image(model, images):
    _check_probabilities(predict_proba(model, images[0]), 1)
    _check_probabilities(predict_proba(model, torch.from_numpy(images[0])), 1)


@pytest.mark.parametrize("kind", ["numpy", "torch", "numpy-4d", "torch-4d", "float64", "list"])
def test_a_batch_in_any_container_gives_the_same_probabilities(model, images, kind):
    reference = predict_proba(model, images)
    _check_probabilities(reference, 5)
    given = {"numpy": images, "torch": torch.from_numpy(images), "numpy-4d": images[:, None],
             "torch-4d": torch.from_numpy(images)[:, None], "float64": images.astype(np.float64),
             "list": images.tolist()}[kind]
    np.testing.assert_allclose(predict_proba(model, given), reference, atol=1e-6)


def test_predicting_in_small_batches_gives_the_same_result(model, images):
    np.testing.assert_allclose(predict_proba(model, images, batch_size=2), predict_proba(model, images), atol=1e-6)


def test_an_empty_batch_gives_no_rows(model):
    p = predict_proba(model, np.zeros((0, 28, 28), np.float32))
    assert p.shape == (0, 10)


@pytest.mark.parametrize("shape", [(28, 27), (784,), (3, 3, 28, 28), (2, 28, 28, 1), (1, 2, 28, 28), (28, 28, 4)])
def test_a_wrong_shape_is_a_value_error(model, shape):
    with pytest.raises(ValueError, match=r"\[28,28\] or \[N,28,28\]"):
        predict_proba(model, np.zeros(shape, np.float32))


def test_predict_puts_a_training_model_in_eval_mode_and_is_deterministic(images):
    model = create_model("cnn-strong").train()  # dropout and batch norm behave differently in training
    first = predict_proba(model, images)
    assert not model.training
    np.testing.assert_array_equal(predict_proba(model, images), first)


def test_as_batch_adds_the_batch_and_channel_dimensions():
    assert as_batch(np.zeros((28, 28))).shape == (1, 1, 28, 28)
    assert as_batch(np.zeros((3, 28, 28))).dtype == torch.float32


def test_the_default_lenet5_recognises_real_test_digits(mnist):
    from mnist_core.data import load_mnist

    path = default_checkpoint("lenet5")
    if path is None:
        pytest.skip("no committed lenet5 checkpoint (make pretrained)")
    model, _ = load_checkpoint(path)
    images, labels = load_mnist("test")
    p = predict_proba(model, images[:1000].float() / 255)
    accuracy = (p.argmax(1) == labels[:1000].numpy()).mean()
    assert accuracy > 0.97, accuracy

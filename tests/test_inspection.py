"""mnist_core.inspection: kernels, feature maps, templates and dataset statistics, on untrained zoo models."""

import numpy as np
import pytest
import torch

from mnist_core import data, inspection
from mnist_core.models import create_model
from mnist_core.predict import predict_proba


def digit(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((28, 28), dtype=np.float32)


def shapes(named):
    return [(name, array.shape) for name, array in named]


def test_lenet5_feature_maps_have_the_classic_shapes():
    maps, probs = inspection.feature_maps(create_model("lenet5"), digit())
    assert shapes(maps) == [("C1", (6, 28, 28)), ("S2", (6, 14, 14)), ("C3", (16, 10, 10)),
                            ("S4", (16, 5, 5)), ("C5", (120, 1, 1))]
    assert all(array.dtype == np.float32 for _, array in maps)
    assert probs.shape == (10,) and probs.sum() == pytest.approx(1.0, abs=1e-5)


def test_lenet5_kernels_are_named_c1_c3_c5():
    model = create_model("lenet5")
    assert inspection.is_convnet(model)
    assert shapes(inspection.conv_kernels(model)) == [("C1", (6, 1, 5, 5)), ("C3", (16, 6, 5, 5)),
                                                      ("C5", (120, 16, 5, 5))]
    c1 = dict(inspection.conv_kernels(model))["C1"]
    np.testing.assert_array_equal(c1, model.body.C1.conv.weight.detach().numpy())


def test_cnn_small_shows_its_three_blocks():
    model = create_model("cnn-small")
    maps, _ = inspection.feature_maps(model, digit())
    assert shapes(maps) == [("block1", (8, 14, 14)), ("block2", (16, 7, 7)), ("block3", (32, 7, 7))]
    assert shapes(inspection.conv_kernels(model)) == [("block1.conv", (8, 1, 3, 3)), ("block2.conv", (16, 8, 3, 3)),
                                                   ("block3", (32, 16, 3, 3))]


def test_cnn_strong_kernels_and_blocks():
    model = create_model("cnn-strong")
    names = [name for name, _ in inspection.conv_kernels(model)]
    assert names == ["block1.conv", "block2.conv1", "block2.conv2", "block3"]
    maps, _ = inspection.feature_maps(model, digit())
    assert shapes(maps) == [("block1", (32, 14, 14)), ("block2", (64, 7, 7)), ("block3", (128, 7, 7))]


def test_mlp_gives_templates_and_hidden_activations_not_kernels():
    model = create_model("mlp-256-64")
    assert not inspection.is_convnet(model)
    assert inspection.conv_kernels(model) == []
    templates = inspection.first_layer_templates(model)
    assert templates.shape == (256, 28, 28)
    np.testing.assert_array_equal(templates[3], model.body.fc1.weight.detach().numpy()[3].reshape(28, 28))
    maps, _ = inspection.feature_maps(model, digit())
    assert shapes(maps) == [("relu1", (256,)), ("relu2", (64,))]
    assert all((array >= 0).all() for _, array in maps)  # they are ReLU outputs


def test_first_layer_templates_refuse_a_convnet():
    with pytest.raises(ValueError, match="MLP"):
        inspection.first_layer_templates(create_model("lenet5"))


def test_feature_maps_are_what_the_layers_compute():
    model = create_model("lenet5").eval()
    image = digit(1)
    maps, probs = inspection.feature_maps(model, image)
    x = torch.nn.functional.pad(torch.from_numpy(image)[None, None], (2, 2, 2, 2))
    with torch.no_grad():
        c1 = model.body.C1((x - data.MNIST_MEAN) / data.MNIST_STD)[0].numpy()
    np.testing.assert_allclose(dict(maps)["C1"], c1, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(probs, predict_proba(model, image)[0], rtol=1e-5, atol=1e-6)


def test_feature_maps_take_uint8_pixels_and_leave_no_hooks_behind():
    model = create_model("cnn-small")
    image_u8 = (digit(2) * 255).round().astype(np.uint8)
    maps_u8, probs_u8 = inspection.feature_maps(model, image_u8)
    maps_f, probs_f = inspection.feature_maps(model, image_u8.astype(np.float32) / 255)
    np.testing.assert_allclose(probs_u8, probs_f, rtol=1e-6)
    np.testing.assert_allclose(maps_u8[0][1], maps_f[0][1], rtol=1e-6)
    assert all(not m._forward_hooks for m in model.modules())


def test_feature_maps_reject_a_batch():
    with pytest.raises(ValueError):
        inspection.feature_maps(create_model("lenet5"), np.zeros((2, 28, 28), np.float32))


def test_class_means_average_each_class_and_leave_missing_ones_zero():
    labels = np.array([0, 0, 1, 3, 3, 3])
    images = np.zeros((6, 4, 4), np.uint8)
    images[0], images[1] = 0, 255          # class 0: mean 127.5
    images[2] = 51                         # class 1: 51
    images[3:, 0, 0] = [30, 60, 90]        # class 3: one pixel averaging 60
    means = inspection.class_means(images, labels)
    assert means.shape == (10, 4, 4) and means.dtype == np.float32
    np.testing.assert_allclose(means[0], 0.5)
    np.testing.assert_allclose(means[1], 0.2)
    assert means[3, 0, 0] == pytest.approx(60 / 255) and means[3, 1:].max() == 0
    assert not means[[2, 4, 5, 6, 7, 8, 9]].any()


def test_pixel_stats_match_numpy_in_chunks():
    images = np.random.default_rng(0).integers(0, 256, (1000, 28, 28), dtype=np.uint8)
    mean, std = inspection.pixel_stats(images, chunk=64)
    scaled = images.astype(np.float64) / 255
    assert mean == pytest.approx(scaled.mean(), rel=1e-9)
    assert std == pytest.approx(scaled.std(), rel=1e-9)
    assert inspection.pixel_stats(np.full((3, 2, 2), 0.25, np.float32)) == pytest.approx((0.25, 0.0))


@pytest.mark.skipif(not data.is_present(), reason="MNIST is not downloaded")
def test_training_pixels_give_the_normalization_constants():
    images, _ = data.load_mnist("train")
    mean, std = inspection.pixel_stats(images.numpy())
    assert round(mean, 4) == data.MNIST_MEAN and round(std, 4) == data.MNIST_STD


def test_browse_order_filters_by_label_and_shuffles_reproducibly():
    labels = np.array([3, 1, 3, 0, 3, 2])
    np.testing.assert_array_equal(inspection.browse_order(labels), np.arange(6))
    np.testing.assert_array_equal(inspection.browse_order(labels, label=3), [0, 2, 4])
    assert len(inspection.browse_order(labels, label=9)) == 0
    shuffled = inspection.browse_order(labels, seed=7)
    assert sorted(shuffled) == list(range(6))
    np.testing.assert_array_equal(shuffled, inspection.browse_order(labels, seed=7))
    assert sorted(inspection.browse_order(labels, label=3, seed=1)) == [0, 2, 4]


def test_mosaic_lays_tiles_out_row_by_row_with_nan_seams():
    tiles = np.arange(5)[:, None, None] * np.ones((5, 2, 3))
    grid = inspection.mosaic(tiles, cols=3)
    assert grid.shape == (2 * 2 + 1, 3 * 3 + 2)
    assert grid[0, 0] == 0 and grid[0, 4] == 1 and grid[3, 4] == 4
    assert np.isnan(grid[2]).all() and np.isnan(grid[:, 3]).all()   # the seams
    assert np.isnan(grid[3:, 8:]).all()                              # past the last tile

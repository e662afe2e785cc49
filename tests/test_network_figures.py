"""How Inside the network and the replay draw kernels and feature maps (app_pages/_network_figures.py)."""

import numpy as np
import pytest

from app_pages._network_figures import FULL_GRID_MAX, kernel_figure, map_figure


def kernels(out, cin, k=5, seed=0):
    return np.random.default_rng(seed).normal(size=(out, cin, k, k)).astype(np.float32)


def test_a_first_layer_shows_each_kernel_once():
    fig, what = kernel_figure(kernels(6, 1))
    assert what == "6 kernels of 5x5"
    (heatmap,) = fig.data
    assert heatmap.zmid == 0.0 and heatmap.colorscale[0][1] != heatmap.colorscale[-1][1]  # diverging


def test_a_small_multi_input_layer_shows_a_row_per_output_and_a_column_per_input():
    fig, what = kernel_figure(kernels(16, 6))
    assert what.startswith("16 x 6 kernels of 5x5")
    assert list(fig.layout.xaxis.ticktext) == [f"in {i}" for i in range(6)]
    assert list(fig.layout.yaxis.ticktext) == [f"out {o}" for o in range(16)]


@pytest.mark.parametrize("view, words", [(None, "averaged over their 32 input channels"), (3, "on input channel 3")])
def test_a_large_layer_shows_the_mean_or_one_input_channel(view, words):
    w = kernels(64, 32, k=3)
    assert 64 * 32 > FULL_GRID_MAX
    fig, what = kernel_figure(w, view=view)
    assert words in what
    tiles = w.mean(axis=1) if view is None else w[:, view]
    z = np.asarray(fig.data[0].z, dtype=np.float32)
    np.testing.assert_allclose(z[:3, :3], tiles[0], rtol=1e-6)  # the first tile, top left


def test_one_value_per_unit_or_channel_is_a_bar_chart():
    hidden = map_figure(np.arange(50, dtype=np.float32))
    assert hidden.data[0].type == "bar" and hidden.layout.xaxis.title.text == "unit"
    channels = map_figure(np.ones((120, 1, 1), np.float32))
    assert channels.data[0].type == "bar" and channels.layout.xaxis.title.text == "channel"


def test_feature_maps_are_a_grid_scaled_over_every_frame_when_given():
    frames = np.random.default_rng(1).uniform(0, 1, size=(5, 6, 14, 14)).astype(np.float32)
    frames[4] *= 10  # the last frame is much brighter: the first keeps the common scale
    fig = map_figure(frames[0], over=frames)
    (heatmap,) = fig.data
    assert heatmap.type == "heatmap" and heatmap.zmin == 0.0
    assert heatmap.zmax == pytest.approx(float(frames.max()))

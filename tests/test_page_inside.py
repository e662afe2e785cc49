"""Inside the network: feature maps and kernels for a dataset image or a drawing, MLPs, bad checkpoints."""

import numpy as np
import pytest

from apptest_util import messages, open_page
from mnist_core import data
from mnist_core.checkpoints import default_checkpoint, save_checkpoint
from mnist_core.models import create_model

pytestmark = pytest.mark.skipif(not data.is_present(), reason="MNIST is not downloaded")

LENET5_MAPS = ["C1 · 6 x 28 x 28", "S2 · 6 x 14 x 14", "C3 · 16 x 10 x 10", "S4 · 16 x 5 x 5", "C5 · 120 x 1 x 1"]


@pytest.fixture(scope="module")
def checkpoint_dir(tmp_path_factory):
    """A checkpoint folder with untrained MLP and CNN checkpoints, a broken one, and lenet5.

    The committed lenet5 is used when present; otherwise a quick one is trained here.
    """
    folder = tmp_path_factory.mktemp("checkpoints")
    if default_checkpoint("lenet5") is None:
        from mnist_core.training import TrainConfig, train
        result = train(TrainConfig(model="lenet5", epochs=1, train_size=2_000, val_size=500, threads=1))
        save_checkpoint(result.model, {"metrics": {"test_accuracy": result.test_accuracy}},
                        folder / "lenet5.safetensors")
    save_checkpoint(create_model("mlp-256-64"), {}, folder / "test-mlp.safetensors")
    save_checkpoint(create_model("cnn-small"), {}, folder / "test-cnn-small.safetensors")
    (folder / "test-broken.safetensors").write_bytes(b"not a safetensors file")
    (folder / "test-broken.json").write_text('{"architecture": "lenet5"}')
    return folder


@pytest.fixture
def env(tmp_path, monkeypatch, checkpoint_dir):
    monkeypatch.setenv("MNIST_RUNS_DIR", str(tmp_path))
    monkeypatch.setenv("MNIST_CHECKPOINT_DIR", str(checkpoint_dir))


def subheaders(at) -> list[str]:
    return [s.value for s in at.subheader]


def test_lenet5_feature_maps_and_kernels_for_a_test_image(env):
    at = open_page("app_pages/inside.py")
    assert not at.exception and not at.error, messages(at)
    assert at.selectbox(key="inside_checkpoint").value == "lenet5.safetensors"
    assert at.radio(key="inside_kind").value == "dataset" and at.radio(key="inside_split").value == "test"
    heads = subheaders(at)
    assert [h for h in heads if h in LENET5_MAPS] == LENET5_MAPS
    assert {"C1 · 6 kernels of 1x5x5", "C3 · 16 kernels of 6x5x5", "C5 · 120 kernels of 16x5x5"} <= set(heads)
    assert any(m.value.startswith("Predicts ") for m in at.markdown)
    assert at.session_state["inspect_source"] == {"kind": "dataset", "split": "test", "index": 0}


def test_use_this_model_elsewhere_opens_inside_on_it_and_the_visitors_next_pick_stays(env):
    at = open_page("app_pages/home.py")
    at.session_state["mnist_default_model"] = "test-cnn-small.safetensors"  # the sweep view's "use this model"
    at.switch_page("app_pages/inside.py").run()
    assert not at.exception, messages(at)
    picker = at.selectbox(key="inside_checkpoint")
    assert picker.value == "test-cnn-small.safetensors"
    picker.set_value("lenet5.safetensors").run()
    at.switch_page("app_pages/home.py").run()
    at.switch_page("app_pages/inside.py").run()
    assert at.selectbox(key="inside_checkpoint").value == "lenet5.safetensors"


def test_follows_the_image_sent_by_the_dataset_page(env):
    at = open_page("app_pages/home.py")
    at.session_state["inspect_source"] = {"kind": "dataset", "split": "train", "index": 123}
    at.switch_page("app_pages/inside.py").run()
    assert not at.exception, messages(at)
    assert at.radio(key="inside_split").value == "train"
    assert at.number_input(key="inside_index").value == 123


def test_pick_by_label_first_and_random(env):
    at = open_page("app_pages/inside.py")
    at.radio(key="inside_pick").set_value("label").run()
    at.selectbox(key="inside_label").select(4).run()
    _, labels = data.load_mnist("test")
    first_four = int(np.flatnonzero(labels.numpy() == 4)[0])
    assert at.session_state["inspect_source"]["index"] == first_four
    at.button(key="inside_random").click().run()
    assert not at.exception, messages(at)
    assert labels[at.session_state["inspect_source"]["index"]] == 4


def test_a_drawing_from_the_draw_page(env):
    at = open_page("app_pages/home.py")
    drawing = np.zeros((28, 28), np.float32)
    drawing[4:24, 13:16] = 1.0  # a "1"
    at.session_state["drawing"] = drawing
    at.session_state["inspect_source"] = {"kind": "drawing"}
    at.switch_page("app_pages/inside.py").run()
    assert not at.exception and not at.error, messages(at)
    assert at.radio(key="inside_kind").value == "drawing"
    assert [h for h in subheaders(at) if h in LENET5_MAPS] == LENET5_MAPS


def test_drawing_chosen_without_one_says_where_to_draw(env):
    at = open_page("app_pages/inside.py")
    at.radio(key="inside_kind").set_value("drawing").run()
    assert not at.exception, messages(at)
    assert "Draw page" in at.info[0].value
    assert not any(h in LENET5_MAPS for h in subheaders(at))


def test_mlp_shows_templates_and_hidden_activations(env):
    at = open_page("app_pages/inside.py")
    at.selectbox(key="inside_checkpoint").select("test-mlp.safetensors").run()
    assert not at.exception and not at.error, messages(at)
    assert {"First-layer templates", "Hidden activations"} <= {h.value for h in at.header}
    assert {"relu1 · 256 units", "relu2 · 64 units"} <= set(subheaders(at))


def test_cnn_small_shows_its_blocks(env):
    at = open_page("app_pages/inside.py")
    at.selectbox(key="inside_checkpoint").select("test-cnn-small.safetensors").run()
    assert not at.exception and not at.error, messages(at)
    assert {"block1 · 8 x 14 x 14", "block2 · 16 x 7 x 7", "block3 · 32 x 7 x 7",
            "block3 · 32 kernels of 16x3x3"} <= set(subheaders(at))
    at.selectbox(key="inside_view_block3").select(5).run()  # one input channel's kernels
    assert not at.exception, messages(at)


def test_broken_checkpoint_is_one_error_line(env):
    at = open_page("app_pages/inside.py")
    at.selectbox(key="inside_checkpoint").select("test-broken.safetensors").run()
    assert not at.exception, messages(at)
    assert len(at.error) == 1 and "\n" not in at.error[0].value and "test-broken" in at.error[0].value


def test_how_it_learned_replays_the_default_checkpoints_training(tmp_path, monkeypatch):
    """A fresh server has none of the default checkpoints' runs: their snapshots ship beside them."""
    from mnist_core.checkpoints import read_meta

    monkeypatch.setenv("MNIST_RUNS_DIR", str(tmp_path / "runs"))
    at = open_page("app_pages/inside.py")  # lenet5, the default
    assert not at.exception and not at.error, messages(at)
    steps = read_meta(default_checkpoint("lenet5"))["metrics"]["steps"]
    slider = next(s for s in at.select_slider if s.label == "Training step")
    assert len(slider.options) >= 30
    assert slider.options[0].startswith("step 0 · ") and slider.options[-1].startswith(f"step {steps:,} · ")
    assert slider.value == len(slider.options) - 1  # the trained network first
    assert "Play" in [b.label for b in at.button]


def test_a_visit_to_draw_leaves_the_model_and_the_by_label_pick_as_they_were(env):
    at = open_page("app_pages/inside.py")
    at.selectbox(key="inside_checkpoint").select("test-cnn-small.safetensors").run()
    at.radio(key="inside_pick").set_value("label").run()
    at.selectbox(key="inside_label").select(3).run()
    at.number_input(key="inside_nth").set_value(5).run()
    shown = at.session_state["inspect_source"]
    at.switch_page("app_pages/draw.py").run()
    at.switch_page("app_pages/inside.py").run()
    assert not at.exception, messages(at)
    assert at.selectbox(key="inside_checkpoint").value == "test-cnn-small.safetensors"
    assert at.radio(key="inside_pick").value == "label"
    assert (at.selectbox(key="inside_label").value, at.number_input(key="inside_nth").value) == (3, 5)
    assert at.session_state["inspect_source"] == shown

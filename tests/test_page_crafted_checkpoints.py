"""Crafted checkpoints in the checkpoint folder, picked on the pages that load them: one error line each.

A sidecar whose metrics are a list, or whose accuracy is a string, crashed Inside the network; weights
holding NaN loaded, and Draw said "Prediction 0 ... nan%". Each is now refused when it is loaded, and the
page says why in one line that names the file, not the server's folder.
"""

import json

import pytest
import torch
from safetensors.torch import save_file

from apptest_util import messages, open_page
from mnist_core import data
from mnist_core.checkpoints import save_checkpoint, sidecar_path
from mnist_core.models import create_model


@pytest.fixture
def crafted(tmp_path, monkeypatch):
    """A checkpoint folder holding one lenet5 checkpoint per way of crafting it."""
    folder = tmp_path / "checkpoints"
    monkeypatch.setenv("MNIST_CHECKPOINT_DIR", str(folder))
    monkeypatch.setenv("MNIST_RUNS_DIR", str(tmp_path / "runs"))
    torch.manual_seed(0)
    model = create_model("lenet5")
    for name, metrics in [("metrics-a-list", [0.99]), ("accuracy-a-string", {"test_accuracy": "99%"})]:
        path = save_checkpoint(model, {}, folder / f"{name}.safetensors")
        meta = json.loads(sidecar_path(path).read_text())
        sidecar_path(path).write_text(json.dumps({**meta, "metrics": metrics}))
    # NaN weights written by hand over a good checkpoint (save_checkpoint itself refuses them)
    path = save_checkpoint(model, {}, folder / "nan-weights.safetensors")
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["body.F7.bias"][0] = float("nan")
    save_file(state, path, metadata={"architecture": "lenet5"})
    return folder


def pick(page: str, key: str, name: str):
    at = open_page(page)
    at.selectbox(key=key).select(f"{name}.safetensors").run()
    return at


def refused_in_one_line(at, folder, *words) -> None:
    said = messages(at)
    assert not at.exception, said
    assert len(at.error) == 1 and "\n" not in at.error[0].value, said
    assert all(word in at.error[0].value for word in words), said
    assert str(folder) not in at.error[0].value, said


@pytest.mark.skipif(not data.is_present(), reason="MNIST is not downloaded")
@pytest.mark.parametrize("name, words", [("metrics-a-list", ["metrics-a-list.json", "metrics must be"]),
                                         ("accuracy-a-string", ["accuracy-a-string.json", "test_accuracy must be"]),
                                         ("nan-weights", ["nan-weights.safetensors", "F7.bias", "not finite"])])
def test_picking_a_crafted_checkpoint_inside_the_network_says_why_in_one_line(crafted, name, words):
    refused_in_one_line(pick("app_pages/inside.py", "inside_checkpoint", name), crafted, *words)


def test_picking_a_checkpoint_with_nan_weights_to_draw_with_says_why_in_one_line(crafted):
    at = pick("app_pages/draw.py", "draw_checkpoint", "nan-weights")
    refused_in_one_line(at, crafted, "nan-weights.safetensors", "not finite")
    assert not any("nan%" in m.value for m in at.markdown)

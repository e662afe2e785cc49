"""Explain page (the embedding map), and the explain sections of Draw, Inside the network and Train:
attribution maps, export downloads, a bundle upload, the training replay slider."""

import base64
import json

import numpy as np
import pytest
import torch

from apptest_util import messages, open_page
from mnist_core import data, explain, export, registry
from mnist_core.checkpoints import default_checkpoint, load_checkpoint, save_checkpoint
from mnist_core.models import create_model
from mnist_core.snapshots import Recorder
from mnist_core.training import TrainConfig

pytestmark = pytest.mark.skipif(not data.is_present() or default_checkpoint("lenet5") is None,
                                reason="needs MNIST and the committed lenet5 checkpoint")


def charts(at) -> list[dict]:
    """The Plotly figures on the page, as the JSON the browser gets."""
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def array(value) -> np.ndarray:
    """A figure's data array: Plotly sends numpy arrays as {"dtype", "bdata" (base64), "shape"}."""
    if isinstance(value, dict) and "bdata" in value:
        out = np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
        return out.reshape([int(n) for n in str(value["shape"]).split(",")]) if "shape" in value else out
    return np.asarray(value)


def select_points(at, places):
    """Select points as Streamlit 1.67 reports them: each by (curve_number, point_index), its customdata an
    object {"0": test index, ...} (plotly.js holds numpy arrays as typed arrays), never a list."""
    points = [{"curve_number": c, "point_number": k, "point_index": k, "x": 0.0, "y": 0.0,
               "customdata": {"0": -1, "1": 0, "2": 0, "3": 0.5}} for c, k in places]
    key = at.get("plotly_chart")[0].proto.id.rsplit("-", 1)[1]  # the map's key names the map it shows
    at.session_state[key] = {"selection": {"points": points, "point_indices": [k for _, k in places],
                                           "box": [], "lasso": []}}
    return at.run()


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("MNIST_RUNS_DIR", str(tmp_path / "runs"))


def test_embedding_map_colours_digits_and_rings_mistakes(env):
    at = open_page("app_pages/explain.py")
    assert not at.exception and not at.error, messages(at)
    assert at.select_slider(key="explain_size").value == 2000 and at.radio(key="explain_method").value == "pca"
    model, _ = load_checkpoint(default_checkpoint("lenet5"))
    images, labels = data.load_mnist("test")
    idx = explain.sample_indices(10_000, 2000)
    predicted = explain.penultimate(model, images.numpy()[idx])[1].argmax(1)
    wrong = int((predicted != labels.numpy()[idx]).sum())
    assert [m.value for m in at.metric] == ["2,000", f"{wrong:,}", "84"]
    traces = charts(at)[0]["data"]
    assert [t["name"] for t in traces] == [str(d) for d in range(10)] + ["mistake"]
    assert sum(len(array(t["x"])) for t in traces[:10]) == 2000 and len(array(traces[10]["x"])) == wrong
    assert "predicted" in traces[0]["hovertemplate"]
    assert any("Select points" in i.value for i in at.info)


def test_selected_points_show_those_images_and_open_inside(env):
    at = open_page("app_pages/explain.py")
    traces = charts(at)[0]["data"]
    rings = array(traces[10]["customdata"])
    wrong, digit = int(rings[0, 0]), int(rings[0, 1])  # the first mistake: its test index and true digit
    own = int(np.flatnonzero(array(traces[digit]["customdata"])[:, 0] == wrong)[0])
    other = int(array(traces[3]["customdata"])[5, 0])
    select_points(at, [(3, 5), (10, 0), (digit, own)])  # a mistake's point and its ring: shown once
    assert not at.exception, messages(at)
    assert at.subheader[0].value == "2 selected image(s)"
    captions = [c for img in at.get("image") for c in img.captions]
    assert [int(c.split(" ")[0][1:]) for c in captions] == [other, wrong]
    assert captions[1].startswith(f"#{wrong} · {digit} → ")
    next(b for b in at.button if b.label == "Open in Inside the network").click().run()
    assert at.session_state["inspect_source"] == {"kind": "dataset", "split": "test", "index": other}


def test_tsne_map_of_a_small_sample(env):
    at = open_page("app_pages/explain.py")
    at.select_slider(key="explain_size").set_value(250)
    at.radio(key="explain_method").set_value("tsne").run()
    assert not at.exception and not at.error, messages(at)
    assert at.metric[0].value == "250"
    assert sum(len(array(t["x"])) for t in charts(at)[0]["data"][:10]) == 250


# --- Draw and Inside the network: attribution, export, bundle upload ---------------------------

def test_draw_explains_the_prediction_and_any_digit(env):
    from test_page_draw import CANVAS, canvas_state, drawn

    at = open_page("app_pages/draw.py")
    at.session_state[CANVAS] = canvas_state(drawn("one"))
    at.run()
    assert "Bundle" in {b.label for b in at.get("download_button")}
    at.toggle(key="draw_explain").set_value(True).run()
    assert not at.exception and not at.error, messages(at)
    titles = [m.value for m in at.markdown if m.value.startswith("**")]
    assert titles == ["**Gradient saliency** · digit 1", "**Integrated Gradients** · digit 1",
                      "**Occlusion** · digit 1"]
    at.selectbox(key="draw_attr_target").set_value(7).run()
    assert [m.value for m in at.markdown if m.value.startswith("**")][0] == "**Gradient saliency** · digit 7"
    overlay = charts(at)[-1]["data"]  # occlusion: the drawing in grey, the signed map over it
    assert [t["type"] for t in overlay] == ["heatmap", "heatmap"] and overlay[1]["zmin"] == -overlay[1]["zmax"]


def test_inside_explains_the_image_and_offers_downloads(env):
    at = open_page("app_pages/inside.py")
    assert not at.exception and not at.error, messages(at)
    assert "Why this answer" in [h.value for h in at.header]
    assert "**Occlusion** · digit 7" in [m.value for m in at.markdown]  # test image 0 is a 7
    assert "Bundle" in {b.label for b in at.get("download_button")}


def test_the_onnx_file_is_prepared_on_request_then_offered_to_every_visitor(env):
    """Making ONNX takes seconds (half a minute the first time): a Prepare button runs it under a spinner,
    instead of a download that silently hangs; once made, the download is there for the next visitor."""
    at = open_page("app_pages/inside.py")
    assert {b.label for b in at.get("download_button")} == {"Bundle"}
    prepare = next(b for b in at.button if b.label == "Prepare ONNX")
    assert "half a minute" in prepare.help
    prepare.click().run(timeout=300)
    assert not at.exception and not at.error, messages(at)
    assert {b.label for b in at.get("download_button")} == {"ONNX", "Bundle"}
    assert "Prepare ONNX" not in [b.label for b in at.button]

    again = open_page("app_pages/inside.py")  # another session, same checkpoint: ready at once
    assert {b.label for b in again.get("download_button")} == {"ONNX", "Bundle"}


def test_a_bundle_uploads_as_one_file(env):
    model, meta = load_checkpoint(default_checkpoint("cnn-small"))
    bundle = export.bundle_bytes(model, meta)
    at = open_page("app_pages/inside.py")
    uploader = next(u for u in at.get("file_uploader") if u.key == "inside_checkpoint_upload")
    uploader.set_value(("cnn-small.bundle.safetensors", bundle, "application/octet-stream")).run()
    assert not at.exception and not at.error, messages(at)
    assert any(m.value.startswith("**uploaded cnn-small.bundle**") for m in at.markdown), messages(at)

    uploader = next(u for u in at.get("file_uploader") if u.key == "inside_checkpoint_upload")
    uploader.set_value(("broken.safetensors", bundle[:100], "application/octet-stream")).run()
    assert not at.exception and at.error[0].value.startswith("the bundle is not a safetensors file"), messages(at)


# --- the replay slider, on Inside the network and on Train --------------------------------------

@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A finished lenet5 run with three snapshots (steps 0, 2, 4) and its checkpoint, in their own folders.

    The weights move by hand between frames: the worker's recording is tested in test_snapshots.py,
    this only needs frames to replay, quickly.
    """
    root = tmp_path_factory.mktemp("replay")
    config = TrainConfig(model="lenet5", train_size=400, val_size=200, epochs=1, threads=1)
    run_id = registry.create_run(config.to_dict(), root=root / "runs")
    registry.mark_running(run_id, root=root / "runs")
    model = create_model("lenet5")
    recorder = Recorder(run_id, root=root / "runs", write_seconds=1e9)
    generator = torch.Generator().manual_seed(0)
    for step in (0, 2, 4):
        recorder.record(model, step, step / 4)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.05 * torch.randn(p.shape, generator=generator))
    recorder.close()
    path = save_checkpoint(model, {"run_id": run_id}, root / "checkpoints" / "replay-lenet5.safetensors")
    registry.finish_run(run_id, "completed", root=root / "runs", checkpoint=str(path), test_accuracy=0.1)
    return {"runs": root / "runs", "checkpoints": root / "checkpoints", "run_id": run_id}


def test_inside_replays_the_run_that_trained_the_checkpoint(trained_run, monkeypatch):
    monkeypatch.setenv("MNIST_RUNS_DIR", str(trained_run["runs"]))
    monkeypatch.setenv("MNIST_CHECKPOINT_DIR", str(trained_run["checkpoints"]))
    at = open_page("app_pages/inside.py")
    at.selectbox(key="inside_checkpoint").set_value("replay-lenet5.safetensors").run()
    assert not at.exception and not at.error, messages(at)
    slider = at.select_slider[-1]
    assert slider.label == "Training step" and slider.options == ["step 0 · epoch 0.00", "step 2 · epoch 0.50",
                                                                   "step 4 · epoch 1.00"]
    assert "**C1** · 6 kernels of 5x5" in [m.value for m in at.markdown]
    first = array(charts(at)[-2]["data"][0]["z"])
    slider.set_value(0).run()
    assert not at.exception, messages(at)
    assert not np.array_equal(array(charts(at)[-2]["data"][0]["z"]), first)  # the kernels as they were at step 0


def test_train_page_replays_the_watched_run(trained_run, monkeypatch):
    monkeypatch.setenv("MNIST_RUNS_DIR", str(trained_run["runs"]))
    monkeypatch.setenv("MNIST_CHECKPOINT_DIR", str(trained_run["checkpoints"]))
    at = open_page("app_pages/train.py")
    assert not at.exception, messages(at)
    slider = next(s for s in at.select_slider if s.label == "Training step")
    assert len(slider.options) == 3 and slider.value == 2
    at.selectbox(key=f"train_replay_{trained_run['run_id']}_map_layer").set_value("C3").run()
    assert not at.exception and not at.error, messages(at)

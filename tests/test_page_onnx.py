"""Bring your own model on the pages: an uploaded ONNX file is refused in one line, or used like a checkpoint.

Every file is made by the test itself (tests/onnx_files.py): hostile files written with onnx.helper, and
the committed lenet5 checkpoint exported behind the NHWC layout, so its true accuracy is lenet5's.
"""

import numpy as np
import pytest

import onnx_files
from apptest_util import messages, open_page
from mnist_core import evaluate as ev
from mnist_core.checkpoints import default_checkpoint, load_checkpoint
from mnist_core.data import load_mnist
from mnist_core.models import create_model
from mnist_core.paths import REPO_ROOT
from test_page_draw import CANVAS, canvas_state, drawn

CHECK_SECONDS = 300  # the first check of a file starts the sandbox's process: long on a busy machine


@pytest.fixture(scope="module")
def nhwc_lenet() -> bytes:
    """lenet5 as a Keras-style file: images [N,28,28,1], pixels 0..1, logits."""
    return onnx_files.convention_model("lenet5", "NHWC", "0..1")


def upload(at, key: str, name: str, data: bytes):
    """Give the page's model uploader (under `key`) one file, as a browser does."""
    uploader = next(u for u in at.get("file_uploader") if u.key == key)
    uploader.set_value((name, data, "application/octet-stream")).run(timeout=CHECK_SECONDS)
    assert not at.exception, messages(at)
    return at


@pytest.mark.parametrize("hostile", list(onnx_files.HOSTILE))
def test_each_hostile_onnx_file_is_refused_in_one_line_on_the_draw_page(mnist, hostile):
    at = upload(open_page("app_pages/draw.py"), "draw_checkpoint_upload", f"{hostile}.onnx",
                onnx_files.HOSTILE[hostile]())
    said = messages(at)
    assert len(at.error) == 1 and "\n" not in at.error[0].value, said
    assert onnx_files.HOSTILE_REASONS[hostile] in at.error[0].value, said
    assert "Traceback" not in at.error[0].value and str(REPO_ROOT) not in at.error[0].value, said
    assert not [i for i in at.info if "Model in use" in i.value], said
    assert any("still using" in c.value for c in at.caption), said  # the listed model goes on answering


def test_an_nhwc_model_answers_a_drawing_and_says_how_it_was_read(mnist, nhwc_lenet):
    at = upload(open_page("app_pages/draw.py"), "draw_checkpoint_upload", "keras-lenet.onnx", nhwc_lenet)
    assert not at.error, messages(at)
    assert any(i.value.startswith("Model in use: uploaded keras-lenet") for i in at.info), messages(at)
    assert any(c.value.startswith("Read as NHWC, pixels 0..1, logits:") for c in at.caption)
    assert [s.label for s in at.selectbox if s.label == "Input convention"] == ["Input convention"]

    at.session_state[CANVAS] = canvas_state(drawn("one"))
    at.run(timeout=CHECK_SECONDS)
    assert not at.exception and not at.error, messages(at)
    assert at.metric[0].label == "Prediction" and at.metric[0].value == "1"

    at.toggle(key="draw_compare").set_value(True).run(timeout=CHECK_SECONDS)  # every model on one drawing
    assert not at.exception and not at.error, messages(at)
    assert [m.value for m in at.metric if m.label == "uploaded keras-lenet"] == ["1"]


def test_an_nhwc_model_shows_its_answer_kernels_and_feature_maps_inside_the_network(mnist, nhwc_lenet):
    at = open_page("app_pages/inside.py")
    at.number_input(key="inside_index").set_value(0).run()  # test image 0: a 7
    upload(at, "inside_checkpoint_upload", "keras-lenet.onnx", nhwc_lenet)
    assert not at.error, messages(at)
    assert any(m.value.startswith("**uploaded keras-lenet**: an uploaded ONNX file") for m in at.markdown)
    assert any(m.value.startswith("Predicts **7**") for m in at.markdown), messages(at)
    headers = [h.value for h in at.header]
    assert "Kernels" in headers and "Feature maps" in headers
    subheaders = [s.value for s in at.subheader]
    assert any("(Conv) · 6 x 28 x 28" in s for s in subheaders), subheaders
    assert any("(MaxPool) · 6 x 14 x 14" in s for s in subheaders), subheaders
    assert any("(Relu) · 84 units" in s for s in subheaders), subheaders  # a dense layer's activation


def test_evaluate_gives_an_nhwc_model_the_accuracy_of_the_checkpoint_it_was_exported_from(mnist, nhwc_lenet):
    model, _ = load_checkpoint(default_checkpoint("lenet5"))
    images, labels = load_mnist("test")
    lenet = ev.predictions(model, images.numpy(), labels.numpy())

    at = upload(open_page("app_pages/evaluate.py"), "eval_checkpoint_upload", "keras-lenet.onnx", nhwc_lenet)
    assert not at.error, messages(at)
    assert at.metric[0].label == "Test accuracy" and at.metric[0].value == f"{lenet.accuracy:.2%}"
    assert len(at.dataframe) >= 1 and np.allclose(at.dataframe[0].value["support"].sum(), 10_000)

    at.toggle(key="eval_compare").set_value(True).run(timeout=CHECK_SECONDS)  # beside the checkpoint itself
    assert not at.exception and not at.error, messages(at)
    at.selectbox(key="eval_compare_checkpoint").select("lenet5.safetensors").run(timeout=CHECK_SECONDS)
    said = {m.label: m.value for m in at.metric}
    assert said["They disagree on"] == "0" and said["lenet5"] == f"{lenet.accuracy:.2%}", said


def test_explain_maps_what_an_nhwc_models_last_linear_layer_reads(mnist, nhwc_lenet):
    at = upload(open_page("app_pages/explain.py"), "explain_checkpoint_upload", "keras-lenet.onnx", nhwc_lenet)
    assert not at.error, messages(at)
    said = {m.label: m.value for m in at.metric}
    assert said["Features per image"] == "84", said  # lenet5's F6: what its last Gemm reads
    assert int(said["Mistakes"].replace(",", "")) < 0.05 * int(said["Images"].replace(",", "")), said


def test_the_found_convention_can_be_overridden_and_near_chance_is_said(mnist, nhwc_lenet):
    at = upload(open_page("app_pages/draw.py"), "draw_checkpoint_upload", "keras-lenet.onnx", nhwc_lenet)
    pick = next(s for s in at.selectbox if s.label == "Input convention")
    pick.select("NHWC, pixels 0..1 inverted (dark ink on white)").run(timeout=CHECK_SECONDS)
    assert not at.exception and not at.error, messages(at)
    said = [c.value for c in at.caption if c.value.startswith("Read as")]
    assert said and said[0].startswith("Read as NHWC, pixels 0..1 inverted (dark ink on white), logits: "), said
    assert [i.value for i in at.info if i.value.startswith("Model in use: uploaded keras-lenet")]

    untrained = onnx_files.onnx_bytes(create_model("mlp-256-64"), (1, 28, 28))  # its best is chance
    at = upload(open_page("app_pages/draw.py"), "draw_checkpoint_upload", "untrained.onnx", untrained)
    said = [w.value for w in at.warning]
    assert len(said) == 1 and "near chance" in said[0] and "no better than guessing" in said[0], messages(at)


def test_an_onnx_mlp_shows_its_first_layer_templates_inside_the_network(mnist):
    flat = onnx_files.convention_model("mlp-256-64", "flat", "-1..1", output="probabilities")
    at = upload(open_page("app_pages/inside.py"), "inside_checkpoint_upload", "sklearn-mlp.onnx", flat)
    assert not at.error, messages(at)
    assert any(c.value.startswith("Read as flat, pixels -1..1, probabilities:") for c in at.caption), messages(at)
    headers = [h.value for h in at.header]
    assert "First-layer templates" in headers and "Hidden activations" in headers, headers
    assert any(s.value.endswith(" · 256 units") for s in at.subheader), [s.value for s in at.subheader]

"""Dataset page: the paged grid, the label filter, paging, jumping to an index, and the way to Inside."""

import base64
import json

import numpy as np
import pytest

from apptest_util import messages, open_page
from mnist_core import data

pytestmark = pytest.mark.skipif(not data.is_present(), reason="MNIST is not downloaded")


@pytest.fixture
def at(tmp_path, monkeypatch):
    monkeypatch.setenv("MNIST_RUNS_DIR", str(tmp_path))
    app = open_page("app_pages/dataset.py")
    assert not app.exception, messages(app)
    return app


def array(value) -> np.ndarray:
    """A figure's data array: Plotly sends numpy arrays as {"dtype", "bdata" (base64), "shape"}."""
    if isinstance(value, dict) and "bdata" in value:
        out = np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
        return out.reshape([int(n) for n in str(value["shape"]).split(",")]) if "shape" in value else out
    return np.asarray(value)


def showing(at) -> str:
    return next(c.value for c in at.caption if c.value.startswith("Showing"))


def page_labels(at) -> list[str]:
    return at.code[0].value.split()  # the "Labels on this page" block


def test_dataset_page_shows_the_first_hundred_training_digits(at):
    assert at.title[0].value == "Dataset"
    assert at.radio(key="ds_split").value == "train"
    assert at.selectbox(key="ds_label").value is None
    assert at.number_input(key="ds_page").value == 1
    assert at.button(key="ds_prev").disabled and not at.button(key="ds_next").disabled
    assert showing(at) == "Showing 1-100 of 60,000 images in the train split."
    _, labels = data.load_mnist("train")
    assert page_labels(at) == [str(v) for v in labels[:100].tolist()]
    assert [s.value for s in at.subheader][:1] == ["train image 0 · label 5"]
    assert {"Images per class", "Normalization"} <= {s.value for s in at.subheader}
    assert {m.label: m.value for m in at.metric} == {
        "Pixel mean (train)": "0.1307", "Pixel std (train)": "0.3081",
        "Mean the models subtract": "0.1307", "Std the models divide by": "0.3081"}


def test_label_filter_shows_only_that_digit(at):
    at.selectbox(key="ds_label").select(3).run()
    assert not at.exception, messages(at)
    _, labels = data.load_mnist("train")
    assert showing(at) == f"Showing 1-100 of {int((labels == 3).sum()):,} images with label 3 in the train split."
    assert set(page_labels(at)) == {"3"} and len(page_labels(at)) == 100


def test_next_page_and_test_split(at):
    at.button(key="ds_next").click().run()
    assert at.number_input(key="ds_page").value == 2
    assert showing(at).startswith("Showing 101-200 of 60,000")
    at.radio(key="ds_split").set_value("test").run()
    assert not at.exception, messages(at)
    assert at.number_input(key="ds_page").value == 1  # a new filter starts again at page 1
    assert showing(at) == "Showing 1-100 of 10,000 images in the test split."


def test_shuffle_is_reproducible_with_its_seed(at):
    plain = page_labels(at)
    at.checkbox(key="ds_shuffle").check().run()
    shuffled = page_labels(at)
    assert shuffled != plain and "shuffled with seed 0" in showing(at)
    at.number_input(key="ds_seed").set_value(5).run()
    assert page_labels(at) != shuffled
    at.number_input(key="ds_seed").set_value(0).run()
    assert page_labels(at) == shuffled


def test_jumping_to_an_index_shows_it_large_on_its_page(at):
    _, labels = data.load_mnist("train")
    at.number_input(key="ds_index").set_value(250).run()
    assert not at.exception, messages(at)
    assert at.subheader[0].value == f"train image 250 · label {labels[250]}"
    assert at.number_input(key="ds_page").value == 3
    assert at.session_state["inspect_source"] == {"kind": "dataset", "split": "train", "index": 250}


@pytest.mark.parametrize("typed, kept", [(70_000, 59_999), (-5, 0)])
def test_an_index_out_of_range_says_the_allowed_range_and_shows_the_nearest_image(at, typed, kept):
    """Seen: 70000 typed in Index turned the field red with no reason."""
    assert "0 to 59,999" in at.number_input(key="ds_index").label
    at.number_input(key="ds_index").set_value(typed).run()
    assert not at.exception, messages(at)
    assert [w.value for w in at.warning] == [f"There is no train image {typed:,}: the train split's indices go "
                                             f"from 0 to 59,999. Showing image {kept:,}."]
    assert at.number_input(key="ds_index").value == kept
    assert at.subheader[0].value.startswith(f"train image {kept:,} ·")


def test_switching_to_the_shorter_test_split_keeps_the_index_in_range(at):
    at.number_input(key="ds_index").set_value(59_999).run()
    at.radio(key="ds_split").set_value("test").run()
    assert not at.exception, messages(at)
    assert at.number_input(key="ds_index").value == 9_999


def test_open_in_inside_the_network_takes_the_image_along(at):
    at.number_input(key="ds_index").set_value(42).run()
    at.button(key="ds_open").click().run()
    assert not at.exception, messages(at)
    assert at.title[0].value == "Inside the network"
    assert at.radio(key="inside_split").value == "train"
    assert at.number_input(key="inside_index").value == 42


def test_pixel_values_are_shown_large_enough_to_read(at):
    """784 numbers printed on the small square overlapped: the values come on their own figure, just the
    digit's ink (and a pixel around it), each cell tall enough for "255" at a readable size."""
    at.toggle(key="ds_values").set_value(True).run()
    assert not at.exception, messages(at)
    image = data.load_mnist("train")[0][0].numpy()
    figures = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    printed = [f for f in figures if f["data"][0].get("texttemplate")]
    assert len(printed) == 1
    trace, layout = printed[0]["data"][0], printed[0]["layout"]
    z = array(trace["z"])
    assert z.sum() == image.sum() and z.shape[0] < 28 and z.shape[1] < 28  # all of the ink, none of the empty rim
    font = trace["textfont"]["size"]
    cell = (layout["height"] - layout["margin"]["t"] - layout["margin"]["b"]) / z.shape[0]
    assert font >= 10 and cell >= 2.2 * font, (font, cell)
    assert array(trace["y"])[0] > 0  # rows keep their numbers in the full image

"""Bring your own model through a real browser: a hostile ONNX file is refused in one line; a model exported
in the NHWC layout answers a drawing on Draw and shows its feature maps of that drawing Inside the network."""

import re

import pytest
from playwright.sync_api import expect

import onnx_files
from test_draw import one

pytestmark = pytest.mark.timeout(600)

CHECK_MS = 180_000  # an ONNX file's first check starts a sandboxed process and scores it: long on a busy host


def upload_model(app, path) -> None:
    """Give the page's one model uploader (under "Upload a model") a file, as a person picking it does."""
    uploader = app.page.get_by_test_id("stFileUploader").filter(has_text=".onnx")
    uploader.locator("input[type=file]").set_input_files(str(path))


def test_a_hostile_onnx_file_is_refused_in_one_line_and_the_listed_model_keeps_answering(app, tmp_path):
    app.goto("draw")
    app.draw(one())
    expect(app.metric_value("Prediction")).to_have_text("1")

    upload_model(app, onnx_files.write(tmp_path, "loop", onnx_files.loop()))
    error = app.page.get_by_test_id("stAlertContentError")
    expect(error).to_have_count(1, timeout=CHECK_MS)
    expect(error).to_contain_text("uses Loop")
    assert "\n" not in error.inner_text().strip() and "Traceback" not in error.inner_text()
    expect(app.page.get_by_text(re.compile("The upload was refused: still using"))).to_be_visible()
    expect(app.metric_value("Prediction")).to_have_text("1")
    app.wait_idle()
    app.assert_no_exception()


def test_an_nhwc_model_answers_a_drawing_and_shows_its_feature_maps_of_it(app, tmp_path):
    path = onnx_files.write(tmp_path, "keras-lenet", onnx_files.convention_model("lenet5", "NHWC", "0..1"))
    app.goto("draw")
    upload_model(app, path)
    expect(app.page.get_by_text(re.compile("^Model in use: uploaded keras-lenet"))).to_be_visible(timeout=CHECK_MS)
    expect(app.page.get_by_text(re.compile(r"^Read as NHWC, pixels 0\.\.1, logits: \d+\.\d% on 512 training "
                                           "images"))).to_be_visible()
    app.draw(one())
    expect(app.metric_value("Prediction")).to_have_text("1")
    expect(app.page.get_by_text("Probabilities · uploaded keras-lenet")).to_be_visible()

    app.nav("Inside the network")  # the same session: the drawing goes with it; the model is uploaded here too
    app.page.get_by_test_id("stRadio").get_by_text("My drawing", exact=True).click()
    expect(app.page.get_by_role("radio", name="My drawing")).to_be_checked()
    upload_model(app, path)
    expect(app.page.get_by_text(re.compile(r"^uploaded keras-lenet: an uploaded ONNX file"))).to_be_visible(
        timeout=CHECK_MS)
    expect(app.page.get_by_text(re.compile(r"^Predicts 1 with [\d.]+% probability\.$"))).to_be_visible()
    conv = app.heading(r"\(Conv\) · 6 x 28 x 28$")
    expect(conv).to_be_visible()
    chart = app.page.locator("[data-testid=stElementContainer]", has=conv).locator(
        "xpath=following-sibling::*[.//*[contains(@class,'js-plotly-plot')]][1]").locator(".js-plotly-plot")
    maps = app.wait_for(lambda: app.plotly_data(chart)[0]["z"], "the first convolution's maps of the drawing")
    assert len(maps) == 28 and len(maps[0]) == 6 * 29 - 1, "six 28x28 maps side by side, with seams"
    assert any(v for row in maps for v in row if v == v), "the maps of a drawing are not all empty"
    app.wait_idle()
    app.assert_no_exception()

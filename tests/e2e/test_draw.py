"""Draw: strokes anywhere on the canvas reach the model, Undo and Clear work, an upload says it is in use and
gives the canvas back, and on a phone a finger draws and the answer is on the same screen as the canvas."""

import io
import math
import re

import numpy as np
import pytest
from playwright.sync_api import expect

from mnist_core.paths import REPO_ROOT

pytestmark = pytest.mark.timeout(240)

SIZE = 280  # the canvas, in its own pixels
CHECKPOINTS = REPO_ROOT / "checkpoints"
DOCS = REPO_ROOT / "docs"


def one() -> list[tuple[float, float]]:
    """A vertical stroke down the middle."""
    return [(SIZE / 2, 40 + 10 * i) for i in range(21)]


def zero() -> list[tuple[float, float]]:
    """An upright ellipse, closed with a little overlap."""
    n = 40
    return [(SIZE / 2 + 70 * math.sin(2 * math.pi * k / n), SIZE / 2 - 100 * math.cos(2 * math.pi * k / n))
            for k in range(n + 3)]


def dash(x0: float, y0: float, x1: float, y1: float) -> list[tuple[float, float]]:
    """A short straight stroke from (x0, y0) to (x1, y1)."""
    return [(x0 + (x1 - x0) * t / 8, y0 + (y1 - y0) * t / 8) for t in range(9)]


def ink(app) -> int:
    """How many pixels of the drawing canvas hold white ink, read from the canvas the person sees."""
    return app.canvas().evaluate(
        """c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                  let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0 && d[i - 1] > 128) n++; return n; }""")


def digit_png(points_mask: np.ndarray) -> bytes:
    """A photo-like picture of a digit: black ink on white, as a PNG file's bytes."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.where(points_mask, 0, 255).astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def ring(size: int = 200) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    r = np.sqrt(((yy - size / 2) / (size * 0.34)) ** 2 + ((xx - size / 2) / (size * 0.23)) ** 2)
    return (r > 0.8) & (r < 1.0)


def touch_stroke(app, points: list[tuple[float, float]]) -> None:
    """One stroke with a finger (real touch events through the DevTools protocol), in canvas pixels."""
    canvas = app.canvas()
    box = canvas.bounding_box()
    scale = box["width"] / canvas.evaluate("c => c.width")
    at = [{"x": box["x"] + x * scale, "y": box["y"] + y * scale} for x, y in points]
    cdp = app.page.context.new_cdp_session(app.page)
    try:
        cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [at[0]]})
        for p in at[1:]:
            cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [p]})
        cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    finally:
        cdp.detach()


def test_draw_one_then_zero_and_clear(app):
    app.goto("draw")
    expect(app.title("Draw")).to_be_visible()
    expect(app.widget("stSelectbox", "Model").locator("input")).to_have_value("lenet5")
    prediction = app.metric_value("Prediction")
    expect(prediction).to_have_text("–")
    expect(app.canvas()).to_be_visible()

    app.draw(one())
    expect(prediction).to_have_text("1")
    app.wait_idle()
    app.assert_no_exception()
    expect(app.page.get_by_test_id("stMetric").filter(has_text="Prediction")).to_contain_text("confidence")

    app.button("Clear").click()
    expect(prediction).to_have_text("–")
    app.wait_idle()
    expect(app.canvas()).to_have_count(1)
    assert ink(app) == 0, "Clear left ink on the canvas"

    app.draw(zero())
    expect(prediction).to_have_text("0")
    app.wait_idle()
    app.assert_no_exception()
    assert ink(app) > 0
    app.screenshot("draw")

    app.button("Clear").click()
    expect(prediction).to_have_text("–")
    app.wait_idle()
    assert ink(app) == 0, "Clear left ink on the canvas"
    app.assert_no_exception()


def test_the_model_named_is_the_model_answering_when_the_first_run_is_cut_short(app):
    """The checkpoint picker starts on lenet5, which is not its first option. A first run cut short by
    another (app.nav_while_rerunning) left the picker on its first option while lenet5 answered."""
    app.goto("")
    for _ in range(2):
        app.nav_while_rerunning("Draw")
        expect(app.widget("stSelectbox", "Model").locator("input")).to_have_value("lenet5")
        app.nav("Home")


def test_strokes_in_every_corner_and_the_top_right_reach_the_model(app):
    """Every pixel of the canvas takes ink: a short stroke in each corner, and one in the top-right band
    (x >= 140, y < 32), under where the toolbar sits, each gives a prediction."""
    app.goto("draw")
    prediction = app.metric_value("Prediction")
    expect(prediction).to_have_text("–")
    regions = {"top right band": dash(150, 6, 272, 26), "top left": dash(6, 6, 40, 40),
               "top right": dash(274, 6, 240, 40), "bottom left": dash(6, 274, 40, 240),
               "bottom right": dash(274, 274, 240, 240)}
    for where, stroke in regions.items():
        app.draw(stroke)
        expect(prediction, f"a stroke in the {where} gave no prediction").to_have_text(re.compile(r"^\d$"))
        assert ink(app) > 0, where
        app.button("Clear").click()
        expect(prediction).to_have_text("–")
        app.wait_idle()
    expect(app.page.get_by_role("button", name="Edit")).to_have_count(0)  # no mode that silently stops drawing
    app.assert_no_exception()


def test_a_browser_sending_a_crafted_drawing_gets_one_error_line(app):
    """The canvas's value comes from the browser: here the page's toDataURL is replaced, so a real stroke sends a
    2 KB PNG that declares 30,000 x 30,000 pixels. The server refuses it in one line, before decoding it."""
    import base64
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 30_000, 30_000, 8, 6, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(b"\0" * 30_001 * 4 * 8, 9)) + chunk(b"IEND", b""))
    app.goto("draw")
    app.page.evaluate("url => { HTMLCanvasElement.prototype.toDataURL = () => url; }",
                      "data:image/png;base64," + base64.b64encode(png).decode())
    app.draw(one())
    expect(app.page.get_by_test_id("stAlert").filter(has_text="drawing sent by the browser")).to_have_text(
        re.compile(r"^\W*the drawing sent by the browser is 30000x30000 pixels; the canvas is 280x280\W*$"))
    expect(app.metric_value("Prediction")).to_have_text("–")
    app.wait_idle()
    app.assert_no_exception()


def test_undo_takes_back_the_last_stroke(app):
    app.goto("draw")
    prediction = app.metric_value("Prediction")
    app.draw(one())
    expect(prediction).to_have_text("1")
    after_one = ink(app)
    app.draw(dash(60, 140, 220, 140))
    app.wait_for(lambda: ink(app) > after_one, "the second stroke on the canvas")
    app.button("Undo").click()
    app.wait_for(lambda: ink(app) == after_one, "the canvas back to the first stroke")
    expect(prediction).to_have_text("1")
    app.wait_idle()
    app.assert_no_exception()


def test_uploading_a_picture_says_it_is_used_and_the_canvas_comes_back(app):
    app.goto("draw")
    prediction = app.metric_value("Prediction")
    app.draw(one())
    expect(prediction).to_have_text("1")

    uploader = app.page.get_by_test_id("stFileUploader").filter(has_text="picture of a digit")
    uploader.locator("input[type=file]").set_input_files(
        files=[{"name": "zero.png", "mimeType": "image/png", "buffer": digit_png(ring())}])
    expect(app.page.get_by_text(re.compile(r"Predicting: your uploaded picture zero\.png"))).to_be_visible()
    expect(prediction).to_have_text("0")

    app.button("Use the canvas instead").click()
    expect(prediction).to_have_text("1")  # the drawing was kept
    expect(app.page.get_by_text(re.compile("Predicting: your uploaded picture"))).to_have_count(0)
    expect(uploader.get_by_text("zero.png")).to_have_count(0)
    app.wait_idle()
    app.assert_no_exception()


def test_uploading_a_checkpoint_says_which_model_is_used_and_goes_back(app):
    app.goto("draw")
    app.draw(one())
    expect(app.metric_value("Prediction")).to_have_text("1")

    uploader = app.page.get_by_test_id("stFileUploader").filter(has_text=".json sidecar")
    uploader.locator("input[type=file]").set_input_files(
        [str(CHECKPOINTS / "mlp-256-64.safetensors"), str(CHECKPOINTS / "mlp-256-64.json")])
    expect(app.page.get_by_text("Model in use: uploaded mlp-256-64")).to_be_visible()
    expect(app.page.get_by_text("Probabilities · uploaded mlp-256-64")).to_be_visible()
    assert ink(app) > 0, "the drawing left the canvas when the model changed"

    app.button("Back to lenet5").click()
    expect(app.page.get_by_text("Model in use: uploaded mlp-256-64")).to_have_count(0)
    expect(app.page.get_by_text("Probabilities · lenet5")).to_be_visible()
    expect(uploader.get_by_text("mlp-256-64.json")).to_have_count(0)
    expect(app.metric_value("Prediction")).to_have_text("1")
    assert ink(app) > 0
    app.wait_idle()
    app.assert_no_exception()


def test_a_refused_checkpoint_upload_says_why_and_the_chosen_model_keeps_predicting(app, tmp_path):
    """Bad input loses nothing: the drawing keeps its prediction from the model the picker shows."""
    app.goto("draw")
    app.draw(one())
    expect(app.metric_value("Prediction")).to_have_text("1")

    broken = tmp_path / "broken.json"
    broken.write_text('{"metrics": [0.99]}')
    uploader = app.page.get_by_test_id("stFileUploader").filter(has_text=".json sidecar")
    uploader.locator("input[type=file]").set_input_files([str(CHECKPOINTS / "mlp-256-64.safetensors"), str(broken)])
    expect(app.page.get_by_test_id("stAlertContentError")).to_have_count(1)
    expect(app.page.get_by_text("still using lenet5")).to_be_visible()
    expect(app.metric_value("Prediction")).to_have_text("1")
    expect(app.page.get_by_text("Probabilities · lenet5")).to_be_visible()
    app.wait_idle()
    app.assert_no_exception()


def test_on_a_phone_a_finger_draws_and_the_answer_is_on_the_first_screen_with_the_canvas(phone_app):
    """Pixel 7, touch: the canvas spans the screen's width, and the canvas and the prediction are both on the
    screen the page opens on, so a finger draws and the answer shows without any scrolling."""
    app = phone_app
    app.goto("draw")
    canvas = app.canvas()
    expect(canvas).to_be_in_viewport(ratio=1)
    width = app.page.viewport_size["width"]
    box = canvas.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= width, f"the canvas {box} sticks out of a {width} px screen"
    assert box["width"] >= 0.8 * width, f"the canvas is {box['width']:.0f} px wide on a {width} px screen"

    touch_stroke(app, one())
    prediction = app.metric_value("Prediction")
    expect(prediction).to_have_text("1")
    expect(prediction).to_be_in_viewport(ratio=1)
    expect(canvas).to_be_in_viewport(ratio=1)
    assert app.page.evaluate("() => document.querySelector('[data-testid=stMain]').scrollTop + window.scrollY") == 0
    app.wait_idle()
    app.assert_no_exception()
    app.page.screenshot(path=str(DOCS / "draw-phone.png"), animations="disabled")  # the first screen, as on a phone


def test_the_drawing_is_on_the_canvas_again_after_a_look_inside_the_network(app):
    """Streamlit forgets a page's widgets when it is left: the canvas came back empty, and Inside the
    network's "My drawing" had nothing to show. Now the canvas is drawn again as it was left."""
    app.goto("draw")
    prediction = app.metric_value("Prediction")
    app.draw(one())
    expect(prediction).to_have_text("1")
    app.wait_idle()
    drawn = ink(app)
    app.button("Open in Inside the network").click()
    expect(app.title("Inside the network")).to_be_visible(timeout=60_000)
    expect(app.page.get_by_text("Predicts 1 with")).to_be_visible(timeout=60_000)
    app.nav("Draw")
    expect(prediction).to_have_text("1")
    app.wait_for(lambda: ink(app) == drawn, "the drawing back on the canvas, pixel for pixel")
    app.button("Undo").click()  # the drawing it came back with goes in one step
    expect(prediction).to_have_text("–")
    assert ink(app) == 0
    app.wait_idle()
    app.assert_no_exception()

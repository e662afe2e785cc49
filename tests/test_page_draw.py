"""Draw page: a drawing injected into the canvas's state gives a prediction."""

import base64
import io

import numpy as np
import pytest
from PIL import Image

from apptest_util import messages, open_page


CANVAS = "draw_canvas"  # the canvas component's key


def canvas_state(rgba: np.ndarray | None) -> dict:
    """What the Draw page's canvas sends back: a PNG data URL of the drawing (None once it is empty)."""
    if rgba is None:
        return {"drawing": None}
    buf = io.BytesIO()
    Image.fromarray(rgba).save(buf, format="PNG")
    return {"drawing": "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()}


def drawn(shape: str) -> np.ndarray:
    img = np.zeros((280, 280, 4), np.uint8)
    img[..., 3] = 255  # the canvas has an opaque black background
    if shape == "one":
        img[40:240, 130:150, :3] = 255
    else:  # a ring: "zero"
        yy, xx = np.mgrid[:280, :280]
        r = np.sqrt(((yy - 140) / 95.0) ** 2 + ((xx - 140) / 65.0) ** 2)
        img[(r > 0.8) & (r < 1.0), :3] = 255
    return img


def test_empty_canvas_shows_no_prediction(tmp_path, monkeypatch):
    monkeypatch.setenv("MNIST_RUNS_DIR", str(tmp_path))
    at = open_page("app_pages/draw.py")
    assert not at.exception, messages(at)
    assert at.metric[0].label == "Prediction" and at.metric[0].value == "–"
    assert at.selectbox(key="draw_checkpoint").value == "lenet5.safetensors"


def test_drawing_injected_into_canvas_gives_prediction(tmp_path, monkeypatch):
    monkeypatch.setenv("MNIST_RUNS_DIR", str(tmp_path))
    at = open_page("app_pages/draw.py")
    at.session_state[CANVAS] = canvas_state(drawn("one"))
    at.run()
    assert not at.exception, messages(at)
    assert at.metric[0].value == "1"
    seen = at.session_state["drawing"]
    assert seen.shape == (28, 28) and seen.max() > 0.5

    at.session_state[CANVAS] = canvas_state(drawn("zero"))
    at.run()
    assert at.metric[0].value == "0"


def test_clear_resets_the_prediction(tmp_path, monkeypatch):
    monkeypatch.setenv("MNIST_RUNS_DIR", str(tmp_path))
    at = open_page("app_pages/draw.py")
    at.session_state[CANVAS] = canvas_state(drawn("one"))
    at.run()
    assert at.metric[0].value == "1"
    at.session_state[CANVAS] = canvas_state(None)  # what the canvas sends after Clear
    at.run()
    assert not at.exception, messages(at)
    assert at.metric[0].value == "–"
    assert "drawing" not in at.session_state


def test_every_model_can_be_chosen(tmp_path, monkeypatch):
    monkeypatch.setenv("MNIST_RUNS_DIR", str(tmp_path))
    at = open_page("app_pages/draw.py")
    at.session_state[CANVAS] = canvas_state(drawn("one"))
    for option in at.selectbox(key="draw_checkpoint").options:
        at.selectbox(key="draw_checkpoint").set_value(f"{option}.safetensors")
        at.run()
        assert not at.exception, (option, messages(at))
        assert at.metric[0].value in [str(d) for d in range(10)]


def test_compare_models_shows_every_checkpoint(tmp_path, monkeypatch):
    from mnist_core.checkpoints import list_checkpoints

    monkeypatch.setenv("MNIST_RUNS_DIR", str(tmp_path))
    at = open_page("app_pages/draw.py")
    at.session_state[CANVAS] = canvas_state(drawn("one"))
    at.run()
    at.toggle(key="draw_compare").set_value(True).run()
    assert not at.exception, messages(at)
    names = [m.label for m in at.metric]
    assert names[0] == "Prediction"
    assert names[1:] == [p.stem for p in list_checkpoints()]
    # the strong models agree on a clean vertical stroke
    assert {m.value for m in at.metric if m.label in ("lenet5", "cnn-small")} == {"1"}


def png_declaring(width: int, height: int) -> bytes:
    """A 2 KB PNG whose header says width x height (grey): the 'fake drawing' of the report."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    rows = zlib.compress(b"\0" * ((width + 1) * 16), 9)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", rows) + chunk(b"IEND", b""))


@pytest.mark.parametrize("value", [
    "data:image/png;base64," + base64.b64encode(png_declaring(20_000, 20_000)).decode(),
    "data:image/png;base64,not base64 at all",
    12345,
    {"raw": {"objects": []}, "data": "data:image/png;base64,AAAA"},
], ids=["huge-png", "garbage", "number", "object"])
def test_a_crafted_canvas_value_is_refused_in_one_line(tmp_path, monkeypatch, value):
    monkeypatch.setenv("MNIST_RUNS_DIR", str(tmp_path))
    at = open_page("app_pages/draw.py")
    at.session_state[CANVAS] = {"drawing": value}
    at.run()
    assert not at.exception, messages(at)
    assert len(at.error) == 1 and "\n" not in at.error[0].value, messages(at)
    assert "drawing sent by the browser" in at.error[0].value
    assert at.metric[0].value == "–"


def test_open_in_inside_the_network_takes_the_drawing_there(tmp_path, monkeypatch):
    monkeypatch.setenv("MNIST_RUNS_DIR", str(tmp_path))
    at = open_page("app_pages/draw.py")
    at.session_state[CANVAS] = canvas_state(drawn("zero"))
    at.run()
    next(b for b in at.button if b.label == "Open in Inside the network").click()
    at.run()
    assert not at.exception, messages(at)
    assert at.title[0].value == "Inside the network"
    assert at.session_state["inspect_source"] == {"kind": "drawing"}


# --- which model the picker starts on -------------------------------------------------------------

def open_draw_after(default_model: str):
    """The app opened on Home, "use this model" pressed elsewhere (it sets mnist_default_model), then Draw."""
    from streamlit.testing.v1 import AppTest
    from apptest_util import APP

    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    at.session_state["mnist_default_model"] = default_model
    at.switch_page("app_pages/draw.py")
    at.run()
    return at


def test_use_this_model_elsewhere_opens_draw_on_that_checkpoint():
    at = open_draw_after("cnn-small.safetensors")
    assert not at.exception, messages(at)
    assert at.selectbox(key="draw_checkpoint").value == "cnn-small.safetensors"


def test_use_this_model_on_a_run_opens_draw_on_the_runs_checkpoint(isolated_dirs):
    import shutil
    from mnist_core.checkpoints import default_checkpoint

    run_id = "20261130-101010-abc123"
    isolated_dirs["checkpoints"].mkdir(parents=True, exist_ok=True)
    src = default_checkpoint("lenet5")
    for suffix in (".safetensors", ".json"):
        shutil.copy(src.with_suffix(suffix), isolated_dirs["checkpoints"] / f"lenet5-{run_id}{suffix}")
    at = open_draw_after(f"run:{run_id}")
    assert not at.exception, messages(at)
    assert at.selectbox(key="draw_checkpoint").value == f"lenet5-{run_id}.safetensors"


def test_a_run_kept_only_in_the_registry_is_offered_and_predicts(tmp_path):
    """A completed run trained on another host: its checkpoint lives in the registry alone."""
    from mnist_core import registry
    from mnist_core.checkpoints import default_checkpoint, load_checkpoint, save_checkpoint
    from mnist_core.training import TrainConfig

    artifacts = pytest.importorskip("mnist_core.artifacts")
    if not hasattr(registry, "put_artifact"):
        pytest.skip("this registry keeps no artifacts yet")
    run_id = registry.create_run(TrainConfig(model="lenet5", epochs=1).to_dict())
    registry.mark_running(run_id, total_steps=10)
    model, meta = load_checkpoint(default_checkpoint("lenet5"))
    elsewhere = save_checkpoint(model, {**meta, "run_id": run_id},
                                tmp_path / "other-host" / f"lenet5-{run_id}.safetensors")
    artifacts.store_checkpoint(run_id, elsewhere)
    registry.finish_run(run_id, "completed", checkpoint=str(elsewhere), test_accuracy=0.991)
    for leftover in elsewhere.parent.iterdir():  # the other host's disk is not this one's
        leftover.unlink()

    at = open_draw_after(f"run:{run_id}")
    at.session_state[CANVAS] = canvas_state(drawn("one"))
    at.run()
    assert not at.exception, messages(at)
    picker = at.selectbox(key="draw_checkpoint")
    assert picker.value == f"run:{run_id}"
    assert f"run {run_id} · lenet5 · 99.1%" in picker.options
    assert at.metric[0].value == "1"


def test_the_drawing_and_my_drawing_on_inside_survive_going_back_and_forth(tmp_path, monkeypatch):
    """Draw, look at it Inside the network, come back to Draw, and back Inside: the same drawing all along."""
    monkeypatch.setenv("MNIST_RUNS_DIR", str(tmp_path))
    at = open_page("app_pages/draw.py")
    at.session_state[CANVAS] = canvas_state(drawn("one"))
    at.run()
    next(b for b in at.button if b.label == "Open in Inside the network").click()
    at.run()
    assert at.radio(key="inside_kind").value == "drawing"
    at.switch_page("app_pages/draw.py").run()
    assert not at.exception, messages(at)
    assert at.metric[0].value == "1"  # the canvas came back with the drawing, and answers for it
    at.switch_page("app_pages/inside.py").run()
    assert not at.exception, messages(at)
    assert at.radio(key="inside_kind").value == "drawing"
    assert not at.info, messages(at) | {"info": [i.value for i in at.info]}  # not "No drawing yet"
    assert any(m.value.startswith("Predicts **1**") for m in at.markdown)


PICTURE_UPLOADER = "draw_image_upload_0"  # the picture uploader, before any "Use the canvas instead"


def _upload(name: str, content: bytes):
    at = open_page("app_pages/draw.py")
    uploader = next(u for u in at.get("file_uploader") if u.key == PICTURE_UPLOADER)
    uploader.set_value((name, content, "image/png")).run()
    assert not at.exception, messages(at)
    return at


def _png(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def test_a_file_that_is_not_a_picture_is_refused_alone_not_beside_predicting():
    """Seen: "Predicting: your uploaded picture notes.png" beside the refusal of that very file."""
    at = _upload("notes.png", b"these are my notes, not a picture")
    assert [e.value for e in at.error] == ["the file is not an image we can read (PNG, JPEG, GIF, BMP or WebP)"]
    assert not at.info and not at.warning, messages(at)
    assert at.metric[0].value == "–"


def test_a_blank_picture_is_said_to_be_blank():
    """A blank picture gets a sentence saying so, not a prediction of nothing."""
    at = _upload("blank.png", _png(np.full((120, 120, 3), 255, np.uint8)))
    assert [w.value for w in at.warning] == ["Your picture blank.png is blank: no digit stands out from its "
                                             "background. Upload a picture of a digit, or draw one."]
    assert not at.info and not at.error, messages(at)
    assert at.metric[0].value == "–"


def test_an_uploaded_digit_is_said_to_be_the_one_predicted_from():
    picture = np.zeros((120, 120, 3), np.uint8)
    picture[20:100, 55:65] = 255  # a white "1" on black
    at = _upload("one.png", _png(picture))
    assert [i.value for i in at.info] == ["Predicting: your uploaded picture one.png"]
    assert at.metric[0].value == "1"

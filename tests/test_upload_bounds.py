"""What a hostile visitor's picture upload or canvas value may cost the server, and what it is told.

The attacks, each as an attacker makes it:
- a 37 KB 16-bit 4096x4096 PNG, which would decode to +400 MB: each picture is refused or decoded
  reduced, and the memory a decode costs is measured in a fresh process (its peak resident set, as
  the kernel counts it: Pillow's buffers are not Python objects, so tracemalloc would not see them);
- a float32 TIFF named `.png`, and a TIFF named `.tiff`: the format is read from the bytes, the name never matters;
- six visitors uploading at once: no more than MAX_CONCURRENT_DECODES pictures decode at a time;
- a 24 MB forged canvas value, which a session would hold as widget state: a live server
  refuses a websocket message that large before it parses it (.streamlit/config.toml).
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from apptest_util import messages, open_page
from mnist_core import preprocess
from mnist_core.errors import ImageError
from mnist_core.preprocess import (MAX_CANVAS_PNG_BYTES, MAX_CONCURRENT_DECODES, MAX_FULL_DECODE_PIXELS,
                                   MAX_PIXELS, WORK_SIDE, canvas_to_mnist, load_image)
from mnist_core.paths import REPO_ROOT
PICTURE_UPLOADER = "draw_image_upload_0"  # the Draw page's picture uploader, before any "Use the canvas"

# The most one decode of an accepted picture may add to a process's peak memory. The costliest
# accepted file is a WebP of MAX_FULL_DECODE_PIXELS (libwebp's canvas, the frame's bytes, Pillow's
# image and its premultiplied copy: ~4x its 16 MB of RGBA pixels, +75 MB measured).
DECODE_PEAK_MB = 100

# A fresh interpreter (numpy, Pillow and the package imported first) decodes one file and reports how
# far its peak resident memory rose: ru_maxrss is the high-water mark, so after - before is the decode's.
_MEASURE = """
import json, resource, sys
from mnist_core.errors import ImageError
from mnist_core.preprocess import load_image
data = open(sys.argv[1], "rb").read()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    result = list(load_image(data).shape)
except ImageError as exc:
    result = str(exc)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"peak_mb": (after - before) / 1024, "result": result}))
"""


def decode_in_a_fresh_process(path: Path) -> dict:
    done = subprocess.run([sys.executable, "-c", _MEASURE, str(path)], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.splitlines()[-1])


def encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **options)
    return buf.getvalue()


def a_one(height: int, width: int, dtype=np.uint8, ink=255) -> np.ndarray:
    """A vertical bar, white on black: the digit 1, at any size and depth."""
    img = np.zeros((height, width), dtype)
    img[height // 4: 3 * height // 4, width // 2 - max(1, width // 40): width // 2 + max(1, width // 40)] = ink
    return img


def the_largest_allowed(fmt: str) -> bytes:
    """The worst picture of each accepted kind: as many pixels as a file of its format may have."""
    if fmt == "JPEG":  # decodes reduced, so it may be larger
        return encoded(Image.fromarray(a_one(4096, 4096)).convert("RGB"), "JPEG", quality=90)
    if fmt == "progressive JPEG":
        return encoded(Image.fromarray(a_one(4096, 4096)).convert("RGB"), "JPEG", quality=90, progressive=True)
    height, width = 1600, 2560
    assert height * width == MAX_FULL_DECODE_PIXELS
    if fmt == "16-bit PNG":
        return encoded(Image.fromarray(a_one(height, width, np.uint16, 65535)), "PNG")
    rgba = Image.fromarray(np.dstack([a_one(height, width)] * 3 + [np.full((height, width), 200, np.uint8)]))
    if fmt == "RGBA PNG":
        return encoded(rgba, "PNG")
    if fmt == "WebP":
        return encoded(rgba, "WEBP", lossless=True)
    if fmt == "GIF":
        return encoded(rgba.convert("RGB").convert("P"), "GIF")
    if fmt == "BMP":
        return encoded(Image.fromarray(a_one(height, width)), "BMP")
    raise ValueError(fmt)


def float32_tiff() -> bytes:
    return encoded(Image.fromarray(a_one(2048, 2048, np.float32, 1.0)), "TIFF", compression="tiff_deflate")


# --- memory -----------------------------------------------------------------------------------------

def test_the_16_bit_4096_square_png_costs_the_server_little_memory(tmp_path):
    attack = tmp_path / "digit.png"
    attack.write_bytes(encoded(Image.fromarray(a_one(4096, 4096, np.uint16, 65535)), "PNG"))
    assert attack.stat().st_size < 64 << 10  # tens of kilobytes on the wire

    measured = decode_in_a_fresh_process(attack)
    assert measured["peak_mb"] < 64, measured  # it cost +400 MB
    if isinstance(measured["result"], str):  # refused: one line, saying why
        assert "4096x4096 pixels" in measured["result"] and "\n" not in measured["result"]


@pytest.mark.parametrize("fmt", ["16-bit PNG", "RGBA PNG", "WebP", "GIF", "BMP", "JPEG", "progressive JPEG"])
def test_the_largest_picture_allowed_in_each_format_decodes_reduced_in_bounded_memory(tmp_path, fmt):
    path = tmp_path / "largest"
    path.write_bytes(the_largest_allowed(fmt))
    measured = decode_in_a_fresh_process(path)
    assert isinstance(measured["result"], list), measured  # accepted
    height, width, channels = measured["result"]
    assert max(height, width) == WORK_SIDE and channels == 4
    assert measured["peak_mb"] < DECODE_PEAK_MB, measured


def test_a_picture_reduced_while_decoding_still_reads_as_its_digit():
    for fmt in ("16-bit PNG", "JPEG", "GIF"):
        image = canvas_to_mnist(load_image(the_largest_allowed(fmt)))
        assert image.max() > 0.5, fmt
        assert abs(np.argwhere(image > 0.3)[:, 1].mean() - 13.5) < 2, fmt  # a centred vertical bar


def test_pictures_over_their_formats_pixel_limit_are_refused_before_decoding(monkeypatch):
    decoded = []
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda image: decoded.append(image.size))
    too_wide_png = encoded(Image.new("L", (4000, 2160)), "PNG")
    too_large_jpeg = encoded(Image.new("L", (4097, 4096)), "JPEG")
    for data, size, limit in ((too_wide_png, "4000x2160", MAX_FULL_DECODE_PIXELS),
                              (too_large_jpeg, "4097x4096", MAX_PIXELS)):
        with pytest.raises(ImageError, match=f"{size} pixels; at most {limit:,} pixels") as excinfo:
            load_image(data)
        assert "\n" not in str(excinfo.value)
    assert decoded == []


def test_a_photo_keeps_its_exif_rotation_through_the_reduction():
    wide = Image.fromarray(a_one(1500, 3000)).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: the camera was turned a quarter, the picture is shown rotated 90 degrees
    rgba = load_image(encoded(wide, "JPEG", exif=exif.tobytes()))
    assert rgba.shape == (WORK_SIDE, WORK_SIDE // 2, 4)  # upright: taller than wide, reduced to WORK_SIDE


# --- formats, whatever the name ------------------------------------------------------------------------

def test_a_float32_tiff_is_refused_in_one_line():
    with pytest.raises(ImageError, match="not an image we can read") as excinfo:
        load_image(float32_tiff())
    assert "\n" not in str(excinfo.value)


@pytest.mark.parametrize("name", ["digit.png", "digit.tiff"])
def test_a_tiff_uploaded_on_draw_under_any_name_is_one_line_not_an_exception(name, tmp_path, monkeypatch):
    """A browser offers only pictures, but a forged upload may carry any bytes and any name: the
    `.png` one was accepted, the `.tiff` one raised an exception box before the page ran."""
    at = open_page("app_pages/draw.py")
    uploader = next(u for u in at.get("file_uploader") if u.key == PICTURE_UPLOADER)
    uploader.set_value((name, float32_tiff(), "image/png")).run()
    assert not at.exception, messages(at)
    assert [e.value for e in at.error] == ["the file is not an image we can read (PNG, JPEG, GIF, BMP or WebP)"]
    assert at.metric[0].value == "–"  # no prediction from it


def test_a_png_named_tiff_is_read_as_the_png_it_is(tmp_path, monkeypatch):
    at = open_page("app_pages/draw.py")
    uploader = next(u for u in at.get("file_uploader") if u.key == PICTURE_UPLOADER)
    uploader.set_value(("digit.tiff", encoded(Image.fromarray(a_one(120, 90)), "PNG"), "image/tiff")).run()
    assert not at.exception and not at.error, messages(at)
    assert at.metric[0].value == "1"


# --- how many decode at once -----------------------------------------------------------------------------

@pytest.fixture
def decoders_held_inside(monkeypatch):
    """Pillow's decoder made to wait, in every thread but the test's own, until the test lets it go:
    (entered, let_go), a semaphore released by each decode that starts and an event that ends them."""
    entered, let_go = threading.Semaphore(0), threading.Event()
    real_load = ImageFile.ImageFile.load

    def held_load(image):
        if threading.current_thread() is not threading.main_thread():
            entered.release()
            let_go.wait(120)
        return real_load(image)

    monkeypatch.setattr(ImageFile.ImageFile, "load", held_load)
    yield entered, let_go
    let_go.set()


def _visitor(data: bytes, results: list) -> threading.Thread:
    def upload():
        try:
            results.append(load_image(data).shape)
        except ImageError as exc:
            results.append(str(exc))
    thread = threading.Thread(target=upload, daemon=True)
    thread.start()
    return thread


def test_a_visitor_past_the_decode_bound_is_told_to_try_again_in_one_line(decoders_held_inside, monkeypatch):
    entered, let_go = decoders_held_inside
    picture = encoded(Image.fromarray(a_one(120, 90)), "PNG")
    monkeypatch.setattr(preprocess, "DECODE_WAIT_SECONDS", 0.2)
    results: list = []
    visitors = [_visitor(picture, results) for _ in range(MAX_CONCURRENT_DECODES)]
    for _ in visitors:
        assert entered.acquire(timeout=60)  # every one of them is decoding now
    with pytest.raises(ImageError, match="try again") as excinfo:
        load_image(picture)  # one more visitor, while they are
    assert "\n" not in str(excinfo.value)

    let_go.set()
    for v in visitors:
        v.join(60)
    assert results == [(120, 90, 4)] * MAX_CONCURRENT_DECODES
    assert load_image(picture).shape == (120, 90, 4)  # and the next one is served


def test_visitors_past_the_bound_wait_their_turn_and_are_served(decoders_held_inside, monkeypatch):
    entered, let_go = decoders_held_inside
    monkeypatch.setattr(preprocess, "DECODE_WAIT_SECONDS", 120)  # however busy the machine
    picture = encoded(Image.fromarray(a_one(120, 90)), "PNG")
    results: list = []
    visitors = [_visitor(picture, results) for _ in range(MAX_CONCURRENT_DECODES)]
    for _ in visitors:
        assert entered.acquire(timeout=60)
    waiting = [_visitor(picture, results) for _ in range(6 - MAX_CONCURRENT_DECODES)]
    let_go.set()
    for v in visitors + waiting:
        v.join(60)
    assert results == [(120, 90, 4)] * 6


# --- the canvas value, on a live server --------------------------------------------------------------------

@pytest.fixture(scope="module")
def live_server(live_app):
    return live_app


def resident_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


class Visitor:
    """A client that speaks Streamlit's websocket protocol, as a hostile browser can: it asks for the
    Draw page and sends any value as the canvas's drawing."""

    def __init__(self, ws):
        self.ws = ws
        self.canvas_id = self.rerun()["canvas"]

    def rerun(self, drawing: str | None = None) -> dict:
        """Send a rerun of Draw (with `drawing` as the canvas's value); what came back: the canvas's widget
        id and the page's alerts once the run finished, or {"closed": True} if the server closed on it."""
        msg = BackMsg()
        msg.rerun_script.page_name = "draw"
        if drawing is not None:
            state = msg.rerun_script.widget_states.widgets.add()
            state.id, state.json_value = self.canvas_id, json.dumps({"drawing": drawing})
        seen: dict = {"alerts": []}
        try:
            self.ws.send(msg.SerializeToString())
            while True:
                forward = ForwardMsg()
                forward.ParseFromString(self.ws.recv(timeout=120))
                if forward.WhichOneof("type") == "script_finished":
                    return seen
                if forward.WhichOneof("type") == "delta" and forward.delta.WhichOneof("type") == "new_element":
                    element = forward.delta.new_element
                    if element.WhichOneof("type") == "bidi_component":
                        seen["canvas"] = element.bidi_component.id
                    elif element.WhichOneof("type") == "alert":
                        seen["alerts"].append(element.alert.body)
        except ConnectionClosed as closed:
            # 1009, Message Too Big; or no code at all when the server closed while the frame was still
            # being sent, as it does once a frame's header declares more than server.maxMessageSize.
            assert closed.rcvd is None or closed.rcvd.code == 1009, closed
            return {"closed": True}


@contextmanager
def visiting(server):
    with connect(server.url.replace("http://", "ws://") + "/_stcore/stream", max_size=None) as ws:
        yield Visitor(ws)


def test_the_largest_canvas_value_a_drawing_can_be_still_reaches_the_page(live_server):
    with visiting(live_server) as visitor:
        at_the_cap = "data:image/png;base64," + "A" * (4 * -(-MAX_CANVAS_PNG_BYTES // 3))
        seen = visitor.rerun(at_the_cap)
        assert "closed" not in seen, seen
        assert "the drawing sent by the browser is not a PNG image" in seen["alerts"]  # the page's own check


@pytest.mark.parametrize("megabytes", [24, 5])  # the attack; and one under maxMessageSize, read then refused
def test_a_forged_canvas_value_of_megabytes_is_refused_before_the_server_holds_it(live_server, megabytes):
    with visiting(live_server) as visitor:
        before = resident_mb(live_server.pid)
        seen = visitor.rerun("data:image/png;base64," + "A" * (megabytes * 1_000_000))
        assert seen == {"closed": True}, seen  # it was parsed, and the page ran on it to refuse it
        assert resident_mb(live_server.pid) - before < 16  # +69 MB or more, held by the session

    with visiting(live_server) as again:  # the server serves the next visitor as before
        assert "closed" not in again.rerun(None)

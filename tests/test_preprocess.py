"""mnist_core.preprocess: a drawing on an RGBA canvas -> a 28x28 image made the way MNIST was made."""

from __future__ import annotations

import numpy as np
import pytest

from mnist_core.preprocess import canvas_to_mnist, ink_map

# --- drawing helpers: a stroke as an ink mask in [0,1], with soft (anti-aliased) edges ----------------------


def _soft(distance_outside: np.ndarray) -> np.ndarray:
    """Ink 1 inside the stroke, fading to 0 over a pixel and a half outside it."""
    return np.clip(1 - distance_outside / 1.5, 0, 1)


def bar_mask(h: int, w: int, top: float, bottom: float, left: float, right: float) -> np.ndarray:
    """A thick vertical bar, coordinates as fractions of the canvas."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    dy = np.maximum(np.maximum(top * h - y, y - bottom * h), 0)
    dx = np.maximum(np.maximum(left * w - x, x - right * w), 0)
    return _soft(np.hypot(dx, dy))


def ring_mask(h: int, w: int, cy: float, cx: float, radius: float, thickness: float) -> np.ndarray:
    """A ring (a drawn zero), centre and sizes as fractions of the canvas's smaller side."""
    s = min(h, w)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = np.hypot(y - cy * h, x - cx * w)
    return _soft(np.maximum(np.abs(r - radius * s) - thickness * s / 2, 0))


def canvas(mask: np.ndarray, style: str) -> np.ndarray:
    """Paint an ink mask on an RGBA uint8 canvas in one of the styles a drawing widget produces."""
    m = mask[..., None]
    h, w = mask.shape
    if style == "white-on-black":
        rgb = 255 * m
        alpha = np.full((h, w, 1), 255.0)
    elif style == "black-on-white":
        rgb = 255 * (1 - m)
        alpha = np.full((h, w, 1), 255.0)
    elif style == "dark-ink-on-transparent":
        rgb = np.broadcast_to(np.array([20.0, 30.0, 60.0]), (h, w, 3))  # navy ink
        alpha = 255 * m
    elif style == "white-ink-on-transparent":
        rgb = np.full((h, w, 3), 255.0)
        alpha = 255 * m
    else:
        raise ValueError(style)
    return np.rint(np.concatenate([np.broadcast_to(rgb, (h, w, 3)), alpha], axis=2)).astype(np.uint8)


STYLES = ["white-on-black", "black-on-white", "dark-ink-on-transparent", "white-ink-on-transparent"]
SHAPES = {
    "bar": lambda h, w: bar_mask(h, w, 0.2, 0.8, 0.45, 0.55),
    "ring": lambda h, w: ring_mask(h, w, 0.5, 0.5, 0.3, 0.08),
    "corner-ring": lambda h, w: ring_mask(h, w, 0.3, 0.25, 0.15, 0.06),
}


def centre_of_mass(img: np.ndarray) -> tuple[float, float]:
    total = img.sum()
    return ((img.sum(1) * np.arange(28)).sum() / total, (img.sum(0) * np.arange(28)).sum() / total)


def bounding_box(img: np.ndarray, threshold: float = 0.0) -> tuple[int, int]:
    rows, cols = np.flatnonzero((img > threshold).any(1)), np.flatnonzero((img > threshold).any(0))
    return rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1


# --- the tests -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", list(SHAPES))
def test_every_canvas_style_gives_the_same_digit(shape):
    mask = SHAPES[shape](300, 300)
    results = {style: canvas_to_mnist(canvas(mask, style)) for style in STYLES}
    reference = results["white-on-black"]
    for style, img in results.items():
        np.testing.assert_allclose(img, reference, atol=0.02, err_msg=f"{style} differs from white-on-black")


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("shape", list(SHAPES))
def test_output_is_an_mnist_style_image(shape, style):
    img = canvas_to_mnist(canvas(SHAPES[shape](300, 300), style))
    assert img.dtype == np.float32 and img.shape == (28, 28)
    assert img.min() >= 0.0 and img.max() <= 1.0
    assert img.max() > 0.9, "a solid stroke keeps full-strength ink"
    # MNIST: centred by centre of mass in the 28x28 field ...
    cy, cx = centre_of_mass(img)
    assert abs(cy - 13.5) <= 0.75 and abs(cx - 13.5) <= 0.75, (cy, cx)
    # ... after fitting into a 20x20 box keeping the aspect ratio (so the longer side is 20).
    height, width = bounding_box(img)
    assert max(height, width) == 20 and min(height, width) <= 20
    # The border MNIST leaves around every digit stays empty.
    assert img[:2].sum() == 0 and img[-2:].sum() == 0 and img[:, :2].sum() == 0 and img[:, -2:].sum() == 0


def test_a_bar_keeps_its_aspect_ratio():
    img = canvas_to_mnist(canvas(SHAPES["bar"](300, 300), "white-on-black"))
    height, width = bounding_box(img, threshold=0.1)
    assert height == 20 and width <= 6


def test_where_the_digit_was_drawn_does_not_matter():
    # The same ring drawn in the top-left corner and in the middle of the canvas.
    corner = canvas_to_mnist(canvas(ring_mask(300, 300, 0.25, 0.25, 0.2, 0.06), "black-on-white"))
    middle = canvas_to_mnist(canvas(ring_mask(300, 300, 0.5, 0.5, 0.2, 0.06), "black-on-white"))
    np.testing.assert_allclose(corner, middle, atol=0.05)


@pytest.mark.parametrize("h, w", [(100, 60), (60, 100), (400, 400), (28, 28), (1000, 120), (37, 411)])
def test_any_canvas_size(h, w):
    for shape in ("bar", "ring"):
        img = canvas_to_mnist(canvas(SHAPES[shape](h, w), "black-on-white"))
        assert img.shape == (28, 28) and img.dtype == np.float32
        assert 0 <= img.min() and img.max() <= 1 and img.max() > 0.5
        cy, cx = centre_of_mass(img)
        assert abs(cy - 13.5) <= 1 and abs(cx - 13.5) <= 1
        assert max(bounding_box(img)) <= 20


def test_the_same_drawing_at_two_resolutions_gives_nearly_the_same_image():
    small = canvas_to_mnist(canvas(SHAPES["ring"](200, 200), "white-on-black"))
    large = canvas_to_mnist(canvas(SHAPES["ring"](400, 400), "white-on-black"))
    assert np.abs(small - large).mean() < 0.03


@pytest.mark.parametrize("background", [(0, 0, 0, 255), (255, 255, 255, 255), (0, 0, 0, 0), (255, 255, 255, 0),
                                        (40, 120, 200, 255)],
                         ids=["black", "white", "transparent", "transparent-white", "opaque-blue"])
@pytest.mark.parametrize("h, w", [(280, 280), (100, 60)])
def test_an_empty_canvas_gives_zeros(background, h, w):
    empty = np.broadcast_to(np.array(background, np.uint8), (h, w, 4)).copy()
    img = canvas_to_mnist(empty)
    assert img.dtype == np.float32 and img.shape == (28, 28)
    assert not img.any()


def test_a_faint_speck_below_the_ink_threshold_counts_as_empty():
    speck = np.zeros((100, 100, 4), np.uint8)
    speck[..., 3] = 255
    speck[50, 50, :3] = 10  # 4% grey on black
    assert not canvas_to_mnist(speck).any()


def test_an_rgb_canvas_without_alpha_works():
    rgba = canvas(SHAPES["ring"](150, 150), "black-on-white")
    np.testing.assert_allclose(canvas_to_mnist(rgba[..., :3]), canvas_to_mnist(rgba), atol=1e-6)


@pytest.mark.parametrize("bad", [np.zeros((28, 28)), np.zeros((28, 28, 2)), np.zeros((0, 10, 4))],
                         ids=["2d", "two-channels", "no-rows"])
def test_a_canvas_of_the_wrong_shape_is_a_value_error(bad):
    with pytest.raises(ValueError, match="RGBA"):
        canvas_to_mnist(bad)


def test_ink_map_is_the_ink_whatever_the_polarity():
    mask = SHAPES["bar"](50, 50)
    for style in STYLES:
        np.testing.assert_allclose(ink_map(canvas(mask, style)), mask, atol=0.01, err_msg=style)


def _general_ink(rgba: np.ndarray) -> np.ndarray:
    """The ink map by the general formula (weighted grey of every channel, border median)."""
    grey = (rgba[..., :3].astype(np.float32) / 255) @ np.array([0.299, 0.587, 0.114], np.float32)
    background = float(np.median(np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])))
    ink = (grey - background) / (1 - background) if background < 0.5 else (background - grey) / background
    return np.clip(ink, 0, 1)


@pytest.mark.parametrize("background", [0, 30, 255])
def test_an_opaque_grey_canvas_gives_the_general_ink_map_and_so_do_a_coloured_one_and_a_strided_view(background):
    # ink_map takes a shortcut for opaque grey canvases (the Draw page's); the others take the general path:
    # all must agree with the formula
    rng = np.random.default_rng(background)
    grey = np.full((60, 50), background, np.uint8)
    grey[10:40, 20:30] = rng.integers(0, 256, (30, 10), dtype=np.uint8)
    rgba = np.dstack([grey, grey, grey, np.full_like(grey, 255)])
    coloured = rgba.copy()
    coloured[12, 22, 1] = 7
    strided = np.repeat(rgba, 2, axis=1)[:, ::2]  # the same pixels, as a view that is not contiguous
    for canvas in (rgba, coloured, strided):
        np.testing.assert_allclose(ink_map(canvas), _general_ink(canvas), atol=1e-6)


# --- the Draw canvas's value: untrusted, checked before it is decoded -----------------------------------------

def _png(rgba: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgba).save(buf, format="PNG")
    return buf.getvalue()


def _data_url(png: bytes, mime: str = "image/png") -> str:
    import base64

    return f"data:{mime};base64," + base64.b64encode(png).decode()


def _png_declaring(width: int, height: int, depth: int = 8, colour: int = 0, rows: int = 64) -> bytes:
    """A small, well-formed PNG whose header declares width x height: a few rows of zeros, deflated (the
    attack: a few kilobytes that a decoder without limits expands to the declared size)."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    bytes_per_row = 1 + width * max(1, depth // 8) * {0: 1, 2: 3, 4: 2, 6: 4}[colour]
    pixels = zlib.compress(b"\0" * (bytes_per_row * rows), 9)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0))
            + chunk(b"IDAT", pixels) + chunk(b"IEND", b""))


def _drawing() -> np.ndarray:
    img = canvas(bar_mask(280, 280, 0.2, 0.8, 0.45, 0.55), "white-on-black")
    return img


def test_the_canvas_png_decodes_to_its_pixels():
    from mnist_core.preprocess import decode_canvas

    img = _drawing()
    out = decode_canvas(_data_url(_png(img)))
    assert out.dtype == np.uint8 and out.shape == (280, 280, 4)
    np.testing.assert_array_equal(out, img)


def test_an_empty_canvas_value_is_no_drawing():
    from mnist_core.preprocess import decode_canvas

    assert decode_canvas(None) is None


def test_a_tiny_png_declaring_a_huge_image_is_refused_before_anything_is_decoded(monkeypatch):
    """A few KB of PNG declaring a 30,000 x 30,000 picture is refused from its header: Pillow is never asked."""
    import PIL.Image

    from mnist_core.errors import ImageError
    from mnist_core.preprocess import decode_canvas

    def no_decoding(*args, **kwargs):
        raise AssertionError("the PNG reached Pillow")

    monkeypatch.setattr(PIL.Image, "open", no_decoding)
    bomb = _data_url(_png_declaring(30_000, 30_000))
    assert len(bomb) < 10_000
    with pytest.raises(ImageError, match="30000x30000 pixels; the canvas is 280x280"):
        decode_canvas(bomb)


@pytest.mark.parametrize("width, height", [(281, 280), (280, 1), (1, 1), (100_000, 100_000)])
def test_a_png_of_another_size_is_refused(width, height):
    from mnist_core.errors import ImageError
    from mnist_core.preprocess import decode_canvas

    with pytest.raises(ImageError, match=f"{width}x{height} pixels"):
        decode_canvas(_data_url(_png_declaring(width, height, rows=1)))


@pytest.mark.parametrize("fmt", ["JPEG", "GIF", "BMP", "WEBP", "TIFF"])
def test_other_image_formats_are_refused_whatever_the_data_url_says(fmt):
    import io

    from PIL import Image

    from mnist_core.errors import ImageError
    from mnist_core.preprocess import decode_canvas

    buf = io.BytesIO()
    Image.fromarray(_drawing()[..., :3]).save(buf, format=fmt)
    for mime in ("image/png", f"image/{fmt.lower()}"):
        with pytest.raises(ImageError):
            decode_canvas(_data_url(buf.getvalue(), mime))


def test_a_16_bit_png_of_the_right_size_is_refused():
    from mnist_core.errors import ImageError
    from mnist_core.preprocess import decode_canvas

    with pytest.raises(ImageError, match="not a picture of this canvas"):
        decode_canvas(_data_url(_png_declaring(280, 280, depth=16, rows=280)))


@pytest.mark.parametrize("value", [0, 1.5, True, [], {}, {"raw": {"objects": []}, "data": None}, b"\x89PNG",
                                   "", "hello", "data:image/png;base64,", "data:image/png;base64,@@@@",
                                   "data:image/png;base64,iVBORw0KGgo=", "data:image/png;base64,iVBORw0KGgoAAAA",
                                   "data:text/html;base64,PGI+aGk8L2I+"])
def test_values_that_are_not_a_canvas_png_are_refused_in_one_line(value):
    from mnist_core.errors import ImageError
    from mnist_core.preprocess import decode_canvas

    with pytest.raises(ImageError) as info:
        decode_canvas(value)
    assert "\n" not in str(info.value)


def test_a_truncated_canvas_png_is_refused():
    from mnist_core.errors import ImageError
    from mnist_core.preprocess import decode_canvas

    png = _png(_drawing())
    with pytest.raises(ImageError):
        decode_canvas(_data_url(png[: len(png) // 2]))


def test_a_value_over_the_byte_cap_is_refused_before_base64_decoding(monkeypatch):
    import base64

    from mnist_core.errors import ImageError
    from mnist_core.preprocess import MAX_CANVAS_PNG_BYTES, decode_canvas

    def no_decoding(*args, **kwargs):
        raise AssertionError("the value was base64-decoded")

    monkeypatch.setattr(base64, "b64decode", no_decoding)
    with pytest.raises(ImageError, match="too large"):
        decode_canvas("data:image/png;base64," + "A" * (4 * MAX_CANVAS_PNG_BYTES // 3 + 8))


def test_the_largest_canvas_png_fits_under_the_byte_cap():
    """Noise does not compress: the biggest PNG a 280x280 canvas can make is still accepted."""
    from mnist_core.preprocess import MAX_CANVAS_PNG_BYTES, decode_canvas

    noise = np.random.default_rng(0).integers(0, 256, (280, 280, 4), dtype=np.uint8)
    png = _png(noise)
    assert len(png) <= MAX_CANVAS_PNG_BYTES
    np.testing.assert_array_equal(decode_canvas(_data_url(png)), noise)


def test_a_damaged_canvas_png_either_decodes_to_the_canvas_or_is_refused_in_one_line():
    """Random byte flips and cuts in a real canvas PNG (hypothesis): a 280x280 RGBA image or ImageError,
    nothing else."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from mnist_core.errors import ImageError
    from mnist_core.preprocess import decode_canvas

    png = _png(_drawing())

    @settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(data=st.data())
    def check(data):
        buf = bytearray(png)
        for _ in range(data.draw(st.integers(1, 8))):
            buf[data.draw(st.integers(0, len(buf) - 1))] = data.draw(st.integers(0, 255))
        cut = data.draw(st.integers(0, len(buf)))
        try:
            out = decode_canvas(_data_url(bytes(buf[:cut] if data.draw(st.booleans()) else buf)))
        except ImageError as exc:
            assert str(exc) and "\n" not in str(exc)
        else:
            assert out.dtype == np.uint8 and out.shape == (280, 280, 4)

    check()
